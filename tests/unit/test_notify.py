"""Notifications against a local HTTP server that records what it receives."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmsight.alerts.notify import SLACK, WEBHOOK, Notifier, Target

NOTE = {
    "kind": "firing", "alert_id": "abc123", "rule": "output-toxicity", "metric": "toxicity_rate_output",
    "severity": "critical", "state": "firing",
    "segment": {"service": "bank", "name": "answer", "model": "m1", "prompt_version": "v2"},
    "value": 0.31, "threshold": 0.15, "baseline": 0.0, "p_value": None, "window_start": "2026-11-21T12:00:00.000Z",
    "evidence": {"examples": [{"trace_id": "t-1", "text": "you people are idiots"}]},
}


class Receiver:
    """A local HTTP server; the first ``fail_first`` requests get ``fail_status``, the rest 200."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500, delay_s: float = 0.0) -> None:
        self.requests: list[tuple[str, dict, dict]] = []
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.delay_s = delay_s
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay_s)
                receiver.requests.append((self.path, dict(self.headers), json.loads(body)))
                status = receiver.fail_status if len(receiver.requests) <= receiver.fail_first else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kwargs):
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_webhook_gets_the_notification_as_json_with_the_bearer_token(receiver):
    server = receiver()
    notifier = Notifier([Target(WEBHOOK, server.url + "/hook", token="s3cret")], examples=True)
    notifier.send(NOTE)
    assert notifier.flush(5)
    notifier.close()
    [(path, headers, body)] = server.requests
    assert path == "/hook"
    assert headers["Authorization"] == "Bearer s3cret" and headers["Content-Type"] == "application/json"
    assert body == {"version": 1, "source": "llmsight", **NOTE}
    assert (notifier.sent, notifier.failed) == (1, 0)


def test_slack_gets_text_and_blocks_with_evidence(receiver):
    server = receiver()
    notifier = Notifier([Target(SLACK, server.url + "/services/T/B/X")], examples=True)
    notifier.send(NOTE)
    assert notifier.flush(5)
    notifier.close()
    [(_, headers, body)] = server.requests
    assert "Authorization" not in headers
    assert body["text"] == ":red_circle: [FIRING] output-toxicity (critical) on bank / answer / m1 / v2"
    texts = [block["text"]["text"] for block in body["blocks"]]
    assert "*value* 0.31" in texts[1] and "*threshold* 0.15" in texts[1] and "*p-value* -" in texts[1]
    assert texts[2] == "*examples*\n• `t-1` you people are idiots"


def test_a_500_is_retried_with_backoff_until_it_succeeds(receiver):
    server = receiver(fail_first=2, fail_status=500)
    notifier = Notifier([Target(WEBHOOK, server.url)], backoff_s=0.1, max_attempts=5)
    started = time.monotonic()
    notifier.send(NOTE)
    assert notifier.flush(10)
    elapsed = time.monotonic() - started
    notifier.close()
    assert len(server.requests) == 3
    assert server.requests[0][2] == server.requests[2][2]  # the same payload each time
    assert (notifier.sent, notifier.failed) == (1, 0)
    assert elapsed >= 0.1 + 0.2  # backoff doubled between the attempts


def test_gives_up_after_max_attempts(receiver):
    server = receiver(fail_first=100, fail_status=503)
    notifier = Notifier([Target(WEBHOOK, server.url)], backoff_s=0.01, max_attempts=3)
    notifier.send(NOTE)
    assert notifier.flush(10)
    notifier.close()
    assert len(server.requests) == 3 and (notifier.sent, notifier.failed) == (0, 1)


def test_a_400_is_not_retried(receiver):
    server = receiver(fail_first=100, fail_status=400)
    notifier = Notifier([Target(WEBHOOK, server.url)], backoff_s=0.01, max_attempts=5)
    notifier.send(NOTE)
    assert notifier.flush(5)
    notifier.close()
    assert len(server.requests) == 1 and notifier.failed == 1


def test_send_never_blocks_on_a_slow_receiver(receiver):
    server = receiver(delay_s=0.2)
    notifier = Notifier([Target(WEBHOOK, server.url), Target(SLACK, server.url)])
    started = time.monotonic()
    for _ in range(5):
        notifier.send(NOTE)
    assert time.monotonic() - started < 0.1
    assert notifier.flush(15)
    notifier.close()
    assert len(server.requests) == 10


def test_an_unreachable_receiver_is_retried_then_dropped():
    notifier = Notifier([Target(WEBHOOK, "http://127.0.0.1:9/")], backoff_s=0.01, max_attempts=2, timeout_s=1)
    notifier.send(NOTE)
    assert notifier.flush(10)
    notifier.close()
    assert (notifier.sent, notifier.failed) == (0, 1)


def test_from_settings_reads_the_secrets_from_the_environment(monkeypatch):
    monkeypatch.setenv("LLMSIGHT_WEBHOOK_URL", "http://127.0.0.1:1/hook")
    monkeypatch.setenv("LLMSIGHT_WEBHOOK_TOKEN", "tok")
    monkeypatch.setenv("LLMSIGHT_SLACK_WEBHOOK_URL", "http://127.0.0.1:1/slack")
    notifier = Notifier.from_settings()
    assert notifier.targets == [Target(WEBHOOK, "http://127.0.0.1:1/hook", "tok"),
                                Target(SLACK, "http://127.0.0.1:1/slack")]
    assert "tok" not in notifier.targets[0].display() and "/hook" not in notifier.targets[0].display()
