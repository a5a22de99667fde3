"""Local service processes for the tests: a free port, an HTTP status that never raises, the chart's pods as
``llmsight`` processes, and a stop with a deadline."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

LLMSIGHT = str(Path(sys.executable).with_name("llmsight"))


def free_port() -> int:
    """A TCP port nothing listens on right now (another process may take it before it is used)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_status(url: str, body: bytes | None = None, token: str = "", timeout: float = 3.0) -> int:
    """The HTTP status of a GET (or, with ``body``, a JSON POST with an optional bearer ``token``); 0 when
    nothing answers."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def start_llmsight(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``llmsight *args`` with the test's environment plus ``env``, its output in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen([LLMSIGHT, *args], env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_for_200(urls: Iterable[str], process: subprocess.Popen[bytes], log: Path, timeout: float) -> set[str]:
    """Poll ``urls`` until each answered 200 once or ``timeout`` passed; the ones that never did. A process that
    exits fails the test with its log's tail."""
    pending = set(urls)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        pending = {url for url in pending if http_status(url) != 200}
        if pending:
            time.sleep(0.3)
    return pending


def stop(processes: Iterable[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM every process, then wait for each (killed after ``timeout``)."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
