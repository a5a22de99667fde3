"""Alert e-mails through a real SMTP server (aiosmtpd) started here: STARTTLS with a certificate from a CA
made here, a login, the message of a firing and a resolved drift alert from the real engine on chdb, retries
of a temporary refusal only, implicit TLS, a certificate that does not verify, and a server too slow to hold
the notifier's thread. The password never reaches a log line."""

from __future__ import annotations

import email
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from llmsight.alerts.engine import AlertEngine
from llmsight.alerts.mail import Mailer
from llmsight.alerts.notify import EMAIL, Notifier, Target
from llmsight.alerts.rules import parse_rules
from tests.smtp import SmtpServer

USER, PASSWORD = "llmsight", "Sm7p-pa55word"
T0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=1)
RULES = parse_rules("""
rules:
  - {name: input-drift, metric: drift_input, comparison: significant, direction: any, warning: 0.01, critical: 0.002, for: 1,
     min_samples: 10, recover_for: 1, flap_window: 0, renotify: 0}
""", "test")
TOPIC = {"label": "card declined abroad", "share_before": 0.02, "share_after": 0.095,
         "share_before_ci": [0.011, 0.034], "share_after_ci": [0.078, 0.114],
         "examples": [{"trace_id": "t-1", "text": "my card was declined in Spain"}]}


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path, user=USER, password=PASSWORD).start()
    yield server
    server.stop()


def _row(score: float, p_value: float) -> dict:
    return {"service": "checkout", "name": "answer", "model": "gpt-4o", "prompt_version": "v3",
            "metric": "drift_input", "value": score, "n": 500, "baseline": None, "p_value": p_value,
            "threshold": 4.07, "details": json.dumps({"grown_topic": TOPIC})}


def _message(data: bytes) -> tuple[EmailMessage, str, str]:
    message = email.message_from_bytes(data, policy=default)
    assert isinstance(message, EmailMessage)
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and rich is not None
    return message, plain.get_content(), rich.get_content()


def _mailer(server: SmtpServer, **changes) -> Mailer:
    options = {"host": "127.0.0.1", "port": server.port, "sender": "llmsight@example.com",
               "to": ("oncall@example.com",), "user": USER, "password": PASSWORD, "cafile": str(server.ca_file)}
    return Mailer(**{**options, **changes})


def test_the_engine_mails_a_firing_and_a_resolved_alert_over_starttls_with_a_login(
        smtp, store_client, monkeypatch, caplog):
    for name, value in {"LLMSIGHT_SMTP_HOST": "127.0.0.1", "LLMSIGHT_SMTP_PORT": str(smtp.port),
                        "LLMSIGHT_SMTP_USER": USER, "LLMSIGHT_SMTP_PASSWORD": PASSWORD,
                        "LLMSIGHT_SMTP_FROM": "llmsight@example.com", "LLMSIGHT_SMTP_TO": "oncall@example.com",
                        "LLMSIGHT_SMTP_RULE_TO": "input-*=ml@example.com,oncall@example.com",
                        "LLMSIGHT_SMTP_CAFILE": str(smtp.ca_file),
                        "LLMSIGHT_DASHBOARD_URL": "https://llmsight.example.com"}.items():
        monkeypatch.setenv(name, value)
    notifier = Notifier.from_settings()
    with caplog.at_level(logging.DEBUG, logger="llmsight"):
        engine = AlertEngine(store_client, RULES, notifier)
        fired = engine.evaluate(T0, [_row(22.5, 0.0004)], now=T0 + timedelta(seconds=20))
        resolved = engine.evaluate(T0 + timedelta(minutes=1), [_row(1.2, 0.6)], now=T0 + timedelta(seconds=80))
        assert notifier.flush(20)
    notifier.close()
    assert [t for _, t in fired] == ["firing"] and [t for _, t in resolved] == ["resolved"]
    assert (notifier.sent, notifier.failed) == (2, 0)
    assert smtp.logins == [(USER, True), (USER, True)]  # aiosmtpd accepts AUTH only after STARTTLS
    assert [r.recipients for r in smtp.received] == [["ml@example.com", "oncall@example.com"]] * 2
    (first, first_text, first_html), (second, second_text, _) = (_message(r.data) for r in smtp.received)
    assert first["Subject"].strip() == "[llmsight] FIRING critical: input-drift on checkout / answer / gpt-4o / v3"
    assert second["Subject"].strip() == "[llmsight] RESOLVED: input-drift on checkout / answer / gpt-4o / v3"
    assert first["X-Llmsight-Incident"] and first["X-Llmsight-Incident"] == second["X-Llmsight-Incident"]
    for part in (first_text, first_html):
        assert "score 22.5 (critical value 4.07)" in part and "p-value 0.0004 (alerts at p ≤ 0.002)" in part
        assert "card declined abroad" in part and "2.0% [1.1–3.4%] → 9.5% [7.8–11.4%]" in part and "t-1" in part
        assert "declined in Spain" not in part  # no user text without LLMSIGHT_NOTIFY_EXAMPLES
        assert "https://llmsight.example.com/alerts?alert=" in part
    assert "score 1.2 (critical value 4.07)" in second_text
    assert PASSWORD not in caplog.text


def test_a_temporary_refusal_is_retried_a_permanent_one_is_not(smtp, caplog):
    smtp.replies = ["451 4.3.0 try again later"]
    notifier = Notifier([Target(EMAIL, "smtp", mailer=_mailer(smtp))], max_attempts=3, backoff_s=0.05)
    with caplog.at_level(logging.INFO, logger="llmsight.alerts.notify"):
        notifier.send({"kind": "firing", "rule": "r", "alert_id": "a", "segment": {}})
        assert notifier.flush(20)
        assert (notifier.sent, notifier.failed, len(smtp.received)) == (1, 0, 1)
        assert "(SMTP 451: 4.3.0 try again later); retry 2" in caplog.text

        wrong = Notifier([Target(EMAIL, "smtp", mailer=_mailer(smtp, password="not-" + PASSWORD))], max_attempts=3,
                         backoff_s=0.05)
        wrong.send({"kind": "firing", "rule": "r", "alert_id": "a", "segment": {}})
        assert wrong.flush(20)
    notifier.close()
    wrong.close()
    assert (wrong.sent, wrong.failed) == (0, 1)
    refused = smtp.logins[2:]  # one connection: smtplib tries each mechanism the server offers (PLAIN, LOGIN) once
    assert refused and all(not ok for _user, ok in refused) and len(refused) <= 2
    assert "gave up after 1 attempts (SMTP 535" in caplog.text
    assert PASSWORD not in caplog.text


def test_implicit_tls_and_a_certificate_that_does_not_verify(tmp_path):
    server = SmtpServer(tmp_path, implicit_tls=True).start()
    try:
        good = Notifier([Target(EMAIL, "smtp", mailer=_mailer(server, starttls=False, tls=True, user="",
                                                              password=""))], max_attempts=1)
        good.send({"kind": "firing", "rule": "r", "alert_id": "a", "segment": {}})
        assert good.flush(20)
        bad = Notifier([Target(EMAIL, "smtp", mailer=_mailer(server, starttls=False, tls=True, user="", password="",
                                                             cafile=str(server.other_ca_file)))], max_attempts=3)
        bad.send({"kind": "firing", "rule": "r", "alert_id": "a", "segment": {}})
        assert bad.flush(20)
    finally:
        server.stop()
    assert (good.sent, good.failed, len(server.received)) == (1, 0, 1)
    assert (bad.sent, bad.failed, len(server.received)) == (0, 1, 1)


def test_a_server_answering_one_byte_at_a_time_cannot_hold_the_thread(caplog):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def trickle() -> None:  # a greeting that never ends: one byte every 0.1 s, no line break
        connection, _ = listener.accept()
        with connection:
            while not stop.is_set():
                try:
                    connection.sendall(b"2")
                except OSError:
                    return
                time.sleep(0.1)

    threading.Thread(target=trickle, daemon=True).start()
    mailer = Mailer(host="127.0.0.1", port=listener.getsockname()[1], sender="a@example.com", to=("b@example.com",))
    notifier = Notifier([Target(EMAIL, "smtp", mailer=mailer)], max_attempts=1, timeout_s=1.0, deadline_s=1.5)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="llmsight.alerts.notify"):
        notifier.send({"kind": "firing", "rule": "r", "alert_id": "a", "segment": {}})
        assert notifier.flush(20)
    took = time.monotonic() - started
    stop.set()
    listener.close()
    notifier.close()
    assert notifier.failed == 1 and "no complete answer within 1.5 s" in caplog.text
    assert took < 10  # cut at the deadline, not after the endless greeting
