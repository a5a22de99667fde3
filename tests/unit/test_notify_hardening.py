"""Notifications that carry no user text unless asked, escape Slack's markup, follow no redirect and keep a deadline."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmsight.alerts.notify import WEBHOOK, Notifier, Target, slack_payload
from tests.unit.test_notify import NOTE, receiver  # noqa: F401  (the recording HTTP server fixture)

HOSTILE = {**NOTE, "rule": "tox <!channel>", "segment": {**NOTE["segment"], "service": "a&b"},
           "evidence": {"examples": [{"trace_id": "t-9", "text": "<https://evil.example|click here> & <@U123>"}],
                        "topics": [{"label": "cards", "terms": ["card"], "examples": ["my card number is 4111"]}]}}


def _sent(server) -> dict:
    [(_, _, body)] = server.requests
    return body


def test_example_texts_stay_home_unless_opted_in(receiver, monkeypatch):  # noqa: F811
    hook, slack = receiver(), receiver()
    monkeypatch.setenv("LLMSIGHT_WEBHOOK_URL", hook.url + "/hook")
    monkeypatch.setenv("LLMSIGHT_SLACK_WEBHOOK_URL", slack.url + "/slack")
    monkeypatch.delenv("LLMSIGHT_NOTIFY_EXAMPLES", raising=False)
    notifier = Notifier.from_settings()
    notifier.send(HOSTILE)
    assert notifier.flush(5)
    notifier.close()
    everything = json.dumps(_sent(hook)) + json.dumps(_sent(slack))
    assert "evil.example" not in everything and "4111" not in everything
    # The traces behind the alert are still named, so someone with access can look them up.
    assert _sent(hook)["evidence"]["examples"] == [{"trace_id": "t-9"}]
    assert _sent(hook)["evidence"]["topics"] == [{"label": "cards", "terms": ["card"]}]
    assert "t-9" in json.dumps(_sent(slack))


def test_example_texts_go_out_with_the_opt_in(receiver, monkeypatch):  # noqa: F811
    hook = receiver()
    monkeypatch.setenv("LLMSIGHT_WEBHOOK_URL", hook.url + "/hook")
    monkeypatch.setenv("LLMSIGHT_NOTIFY_EXAMPLES", "true")
    notifier = Notifier.from_settings()
    notifier.send(HOSTILE)
    assert notifier.flush(5)
    notifier.close()
    assert _sent(hook)["evidence"] == HOSTILE["evidence"]


@pytest.mark.parametrize("examples", [False, True])
def test_slack_escapes_ampersand_and_angle_brackets_everywhere(examples):
    payload = slack_payload(HOSTILE, examples=examples)
    texts = [payload["text"]] + [block["text"]["text"] for block in payload["blocks"]]
    joined = "\n".join(texts)
    assert "<" not in joined and ">" not in joined
    assert "tox &lt;!channel&gt;" in payload["text"] and "a&amp;b" in payload["text"]
    if examples:
        assert "&lt;https://evil.example|click here&gt; &amp; &lt;@U123&gt;" in texts[-1]


class _Redirector:
    """Answers every POST with a 3xx to ``target`` (another local server that would accept it)."""

    def __init__(self, status: int, target: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(status)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failure_and_is_not_followed(receiver, status, caplog):  # noqa: F811
    elsewhere = receiver()
    redirector = _Redirector(status, elsewhere.url + "/stolen")
    try:
        notifier = Notifier([Target(WEBHOOK, redirector.url, token="s3cret")], max_attempts=3, backoff_s=0.01)
        notifier.send(NOTE)
        assert notifier.flush(5)
        notifier.close()
    finally:
        redirector.close()
    assert elsewhere.requests == []  # neither the body nor the bearer token went anywhere else
    assert (notifier.sent, notifier.failed) == (0, 1)
    assert f"HTTP {status}" in caplog.text and "redirect" in caplog.text


def test_a_receiver_that_drips_its_answer_cannot_hold_the_thread():
    """One byte every 0.3 s never trips the per-read timeout; the attempt's deadline ends it anyway."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                try:
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                        if stop.is_set():
                            return
                        conn.sendall(bytes([byte]))
                        time.sleep(0.3)
                except OSError:
                    pass

    threading.Thread(target=drip, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    notifier = Notifier([Target(WEBHOOK, url)], max_attempts=1, timeout_s=2.0, deadline_s=3.0)
    try:
        started = time.monotonic()
        notifier.send(NOTE)
        assert notifier.flush(10), "the attempt was still running 10 s later"
        took = time.monotonic() - started
    finally:
        stop.set()
        notifier.close()
        listener.close()
    assert (notifier.sent, notifier.failed) == (0, 1)
    assert took < 6
