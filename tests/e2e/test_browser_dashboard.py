"""The dashboard in a real browser: headless Chromium (Debian's chromium + chromium-driver) opens the
Overview and Drift pages of ``llmsight dashboard`` serving seeded data, checks that no page shows an
exception, and saves screenshots to artifacts/screenshots/.

The dashboard runs as its own process on its own chdb path (this process never opens it: chdb
allows one process per data directory). The data is seeded first by another short process with
the benchmark's generator: calls over 30 days, a prompt version v2 that drifts, feedback, metric
rows with topic explanations, alerts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver; .venv/bin/pip install selenium"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,2600"]
SEED = """
import datetime as dt, sys
from llmsight import store
from llmsight.bench.query import seed
client = store.connect(sys.argv[1])
store.migrate(client)
seed(client, int(sys.argv[2]), dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0))
# A drift alert made by the real engine, whose evidence names the topic that grew (the newest alert).
import json
from llmsight.alerts.engine import AlertEngine
from llmsight.alerts.rules import parse_rules
rules = parse_rules("rules: [{name: input-drift, metric: drift_input, comparison: significant, direction: any, "
                    "warning: 0.01, critical: 0.002, for: 1, min_samples: 40}]", "browser")
grown = {"label": "fee cash withdrawal", "share_before": 0.021, "share_after": 0.094,
         "share_before_ci": [0.012, 0.036], "share_after_ci": [0.078, 0.112],
         "examples": [{"trace_id": f"t-fee{i}", "text": f"Why was I charged a fee on cash withdrawal {i}?"}
                      for i in range(5)]}
now = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
row = {"service": "search", "name": "answer", "model": "gpt-4o", "prompt_version": "v2", "metric": "drift_input",
       "value": 22.5, "n": 500, "baseline": None, "p_value": 0.0004, "threshold": 4.07,
       "details": json.dumps({"grown_topic": grown})}
AlertEngine(client, rules).evaluate(now - dt.timedelta(minutes=1), [row], now=now)
"""


def _browser_parts() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail(f"selenium is not installed in the venv; install the browser test's needs with: {INSTALL}")
    if not chromium or not driver:
        pytest.fail(f"chromium ({chromium}) or chromedriver ({driver}) is missing; install them with: {INSTALL}")
    return chromium, driver


def stop_process(process: subprocess.Popen) -> None:
    """Terminate ``process`` (kill it after 20 s) and wait for it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def running_dashboard(env: dict[str, str], log_path: Path, cwd: Path | None = None) -> Iterator[tuple[str, Any]]:
    """``llmsight dashboard`` on a free port with ``env``, once its health check answers: (base URL, process).

    Its output goes to ``log_path``, whose tail a failed start shows; it is stopped on the way out.
    """
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen([str(Path(sys.executable).with_name("llmsight")), "dashboard", "--port", str(port)],
                                   env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the dashboard did not start: {log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield base, process
        finally:
            stop_process(process)


@contextmanager
def chromium_driver(profile: Path) -> Iterator[Any]:
    """A headless Chromium (selenium) with its own profile folder; quit on the way out."""
    chromium, driver_path = _browser_parts()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """``llmsight dashboard`` on a freshly seeded chdb store; yields its base URL."""
    path = tmp_path_factory.mktemp("browser-chdb")
    url = f"chdb://{path}?database=browser"
    env = {**os.environ, "LLMSIGHT_CLICKHOUSE_URL": url, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "LLMSIGHT_DASHBOARD_REFRESH_S": "600"}
    subprocess.run([sys.executable, "-c", SEED, url, "60000"], env=env, check=True, timeout=300)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with running_dashboard(env, SCREENSHOTS.parent / "dashboard-browser.log") as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium_driver(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def _settled(browser, selector: str, count: int, timeout: float = 300.0) -> None:
    """Wait until ``count`` elements match and the script has stopped running."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(driver) -> bool:
        found = len(driver.find_elements(By.CSS_SELECTOR, selector))
        running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"] [data-testid="stSpinner"],'
                                                        '[data-testid="stSpinner"]')
        return found >= count and not running

    WebDriverWait(browser, timeout, poll_frequency=0.5).until(ready)
    time.sleep(1.0)  # let the charts finish drawing before the screenshot


def _open(browser, url: str, selector: str, count: int, name: str) -> Path:
    from selenium.webdriver.common.by import By

    browser.get(url)
    try:
        _settled(browser, selector, count)
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / f"dashboard-{name}.png"
        browser.save_screenshot(str(shot))
    errors = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"], .stException')
    assert not errors, f"{name} shows exceptions: {[e.text[:500] for e in errors]}"
    dialogs = browser.find_elements(By.CSS_SELECTOR, '[role="dialog"]')
    assert not dialogs, f"{name} shows a dialog: {[d.text[:300] for d in dialogs]}"
    return shot


def test_overview_renders_its_figures_without_errors(dashboard, browser):
    from selenium.webdriver.common.by import By

    shot = _open(browser, f"{dashboard}/?range=24h", '[data-testid="stMetric"]', 7, "overview")
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMetricLabel"]')]
    # Four columns: the DOM lists them column by column.
    assert sorted(labels) == sorted(["Volume", "Error rate", "p95 latency", "Cost", "Acceptance", "Toxicity rate",
                                     "Drift status"])
    values = [e.text for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMetricValue"]')]
    assert len(values) == 7 and all(v and v not in ("–", "no data") for v in values), values
    assert shot.stat().st_size > 20_000


def test_every_overview_card_shows_its_change_and_overview_has_its_own_url(dashboard, browser):
    from selenium.webdriver.common.by import By

    # The root moves to /overview with the same filters; /overview itself answers with its filters.
    _open(browser, f"{dashboard}/?range=7d", '[data-testid="stMetric"]', 7, "overview-root")
    assert browser.current_url.startswith(f"{dashboard}/overview") and "range=7d" in browser.current_url
    shot = _open(browser, f"{dashboard}/overview?range=24h&service=search", '[data-testid="stMetric"]', 7,
                 "overview")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Page not found" not in body
    deltas = [e.text for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMetricDelta"]')]
    assert len(deltas) == 7 and all("baseline" in d for d in deltas), deltas
    sidebar = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]').text.splitlines()
    assert "search" in sidebar, sidebar  # the service filter came from the URL
    assert shot.stat().st_size > 20_000


def test_the_alert_evidence_shows_the_grown_topic(dashboard, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{dashboard}/alerts?range=24h")
    WebDriverWait(browser, 300, poll_frequency=0.5).until(
        lambda d: "What changed" in d.find_element(By.TAG_NAME, "body").text)
    _settled(browser, '[data-testid="stMetric"]', 4)
    changed = next(e for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMarkdownContainer"]')
                   if e.text.startswith("What changed"))
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'}); window.scrollBy(0, -160);", changed)
    time.sleep(1.0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "dashboard-alert-evidence.png"
    browser.save_screenshot(str(shot))
    assert "fee cash withdrawal" in changed.text
    assert "2.1% [1.2–3.6%] → 9.4% [7.8–11.2%]" in changed.text
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMetricLabel"]')]
    assert "critical value of the score" in labels and "p-value" in labels and "threshold" not in labels
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"], .stException')
    assert shot.stat().st_size > 20_000


def test_drift_page_renders_the_score_chart_and_the_sample_map(dashboard, browser):
    from selenium.webdriver.common.by import By

    shot = _open(browser, f"{dashboard}/drift?range=24h", '[data-testid="stVegaLiteChart"]', 2, "drift")
    captions = " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stCaptionContainer"]'))
    assert "embedded and projected" in captions
    assert shot.stat().st_size > 20_000
