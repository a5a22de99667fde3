"""SIGTERM (Kubernetes, on every rollout) and Ctrl-C end every service within 10 s.

Each test starts the real command as its own process on its own chdb store and spool, waits until it is
working (the dashboard ones with a real headless Chromium session open on a page, so Streamlit has a live
session and the page's queries run), sends the signal and measures how long the process takes to exit.
Before the fix `llmsight demo` with a browser connected outlived SIGTERM by far (the analyzers' window
under way, the collector join, then chdb's teardown at interpreter exit).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_browser_dashboard import SEED, browser  # noqa: F401  (the headless Chromium fixture)
from tests.processes import free_port

LLMSIGHT = str(Path(sys.executable).with_name("llmsight"))
LIMIT_S = 10.0


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "LLMSIGHT_CLICKHOUSE_URL": f"chdb://{tmp / 'db'}", "LLMSIGHT_SINK": f"file://{tmp / 'spool'}",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LLMSIGHT_DASHBOARD_REFRESH_S": "2",
            "LLMSIGHT_COLLECTOR_HTTP_PORT": "0", "LLMSIGHT_ANALYZERS_HTTP_PORT": "0", **extra}


def _wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} never answered: {log.read_text()[-3000:]}")
        time.sleep(0.5)


def _stop(process: subprocess.Popen, log: Path, signum: int = signal.SIGTERM) -> float:
    """Send ``signum``; return the seconds until the process exited (fails after LIMIT_S)."""
    sent = time.monotonic()
    process.send_signal(signum)
    try:
        process.wait(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        threads = sorted((p / "comm").read_text().strip() for p in Path(f"/proc/{process.pid}/task").iterdir())
        process.kill()
        process.wait()
        raise AssertionError(f"still running {LIMIT_S:.0f} s after {signal.Signals(signum).name} (threads: "
                             f"{threads}); log: {log.read_text()[-3000:]}") from None
    return time.monotonic() - sent


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([LLMSIGHT, *args], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _open_page(browser, base: str) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{base}/?range=24h")
    # The page has run its script (its title is up) and holds a live session.
    WebDriverWait(browser, 240, poll_frequency=0.5).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stHeading"], [data-testid="stMetric"]'))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_demo_with_a_browser_session_stops_within_10_s(tmp_path, browser, signum):  # noqa: F811
    port = free_port()
    log = tmp_path / "demo.log"
    # Heavy windows: v2 ships after 20 s at 40 calls/s, so the analyzers are mid-window when the signal comes.
    process = _start(["demo", "--port", str(port), "--rate", "40", "--switch-after", "20",
                      "--data-dir", str(tmp_path / "demo")], _env(tmp_path), log)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/_stcore/health", process, log)
        _open_page(browser, base)
        time.sleep(35)  # past the switch: drift, toxicity and acceptance windows under way, live refresh on
        took = _stop(process, log, signum)
    finally:
        if process.poll() is None:
            process.kill()
    assert took < LIMIT_S


def test_up_with_a_browser_session_stops_within_10_s(tmp_path, browser):  # noqa: F811
    port = free_port()
    log = tmp_path / "up.log"
    env = _env(tmp_path)
    subprocess.run([sys.executable, "-c", SEED, env["LLMSIGHT_CLICKHOUSE_URL"], "20000"], env=env, check=True,
                   timeout=300)
    process = _start(["up", "--port", str(port)], env, log)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/_stcore/health", process, log)
        _open_page(browser, base)
        time.sleep(5)
        took = _stop(process, log)
    finally:
        if process.poll() is None:
            process.kill()
    assert took < LIMIT_S


def test_dashboard_with_a_browser_session_stops_within_10_s(tmp_path, browser):  # noqa: F811
    port = free_port()
    log = tmp_path / "dashboard.log"
    env = _env(tmp_path)
    subprocess.run([sys.executable, "-c", SEED, env["LLMSIGHT_CLICKHOUSE_URL"], "20000"], env=env, check=True,
                   timeout=300)
    process = _start(["dashboard", "--port", str(port)], env, log)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/_stcore/health", process, log)
        _open_page(browser, base)
        took = _stop(process, log)
    finally:
        if process.poll() is None:
            process.kill()
    assert took < LIMIT_S


def test_collector_and_analyzers_stop_within_10_s_while_busy(tmp_path):
    env = _env(tmp_path)
    subprocess.run([sys.executable, "-c", SEED, env["LLMSIGHT_CLICKHOUSE_URL"], "20000"], env=env, check=True,
                   timeout=300)
    # chdb allows one process per data directory: the analyzers get the seeded store, the collector its own.
    port = free_port()
    log = tmp_path / "analyzers.log"
    process = _start(["analyzers"], {**env, "LLMSIGHT_ANALYZERS_HTTP_PORT": str(port)}, log)
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", process, log)
        time.sleep(5)  # catching up on the missed windows: embeddings, toxicity, drift
        took = _stop(process, log)
    finally:
        if process.poll() is None:
            process.kill()
    assert took < LIMIT_S

    writer = ("import llmsight, sys\n"
              "llmsight.init(sink=sys.argv[1])\n"
              "@llmsight.monitor(model='m')\n"
              "def call(q): return 'answer to ' + q\n"
              "for i in range(20000): call(f'question {i}')\n"
              "llmsight.flush(30)\n")
    spool = f"file://{tmp_path / 'collector-spool'}"
    subprocess.run([sys.executable, "-c", writer, spool], env=env, check=True, timeout=300)
    port = free_port()
    log = tmp_path / "collector.log"
    process = _start(["collector", "--source", spool],
                     {**env, "LLMSIGHT_CLICKHOUSE_URL": f"chdb://{tmp_path / 'collector-db'}",
                      "LLMSIGHT_COLLECTOR_HTTP_PORT": str(port)}, log)
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", process, log)
        took = _stop(process, log)
    finally:
        if process.poll() is None:
            process.kill()
    assert took < LIMIT_S
