"""Alert e-mails: the message built from a notification, and the SMTP settings refused at start.

(The delivery itself, to a real SMTP server with STARTTLS, a login and retries, is in
tests/integration/test_smtp_notify.py.)"""

from __future__ import annotations

import email
import logging
from email.message import EmailMessage
from email.policy import default

import pytest

from llmsight.alerts.mail import Mailer, alert_link, build_message
from llmsight.alerts.notify import EMAIL, Notifier, Target
from llmsight.errors import ConfigError
from tests.processes import free_port

PASSWORD = "s3cret-smtp-pass"  # noqa: S105 - a test value, checked never to show

DRIFT = {
    "kind": "firing", "alert_id": "a1b2c3", "rule": "input-drift", "metric": "drift_input",
    "description": "the prompts moved away from the baseline", "severity": "critical", "state": "firing",
    "segment": {"service": "checkout", "name": "answer", "model": "gpt-4o", "prompt_version": "v3"},
    "value": 22.5, "threshold": 4.07, "baseline": None, "p_value": 0.0004, "window_start": "2026-11-21T12:00:00.000Z",
    "incident_id": "a1b2c3@2026-11-21T11:58:00.000Z", "episode": {"flaps": 0, "flapping": False},
    "evidence": {
        "rule_level": {"severity": "critical", "level": 0.002, "unit": "p-value"},
        "grown_topic": {"label": "card declined abroad", "share_before": 0.02, "share_after": 0.095,
                        "share_before_ci": [0.011, 0.034], "share_after_ci": [0.078, 0.114],
                        "examples": [{"trace_id": "t-1", "text": "my card <b>was</b> declined in Spain"},
                                     {"trace_id": "t-2", "text": "card refused at a shop in Paris"}]},
        "examples": [{"trace_id": "t-9", "text": "an ordinary prompt"}],
    },
}


def _parts(raw: bytes) -> tuple[EmailMessage, str, str]:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None and rich is not None
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only: SMTP servers read bare LFs as one line
    return message, plain.get_content().replace("\r\n", "\n"), rich.get_content()


def test_a_drift_e_mail_says_what_changed_in_the_units_of_the_slack_message():
    raw = build_message(DRIFT, sender="llmsight@example.com", to=("oncall@example.com", "ml@example.com"),
                        dashboard_url="https://llmsight.example.com")
    message, text, rich = _parts(raw)
    assert message["Subject"].strip() == "[llmsight] FIRING critical: input-drift on checkout / answer / gpt-4o / v3"
    assert message["To"] == "oncall@example.com, ml@example.com"
    assert message["From"] == "llmsight@example.com"
    assert message["X-Llmsight-Incident"] == DRIFT["incident_id"]
    for part in (text, rich):
        assert "score 22.5 (critical value 4.07)" in part
        assert "p-value 0.0004 (alerts at p ≤ 0.002)" in part  # the p-value apart, with the rule's level
        assert "2.0% [1.1–3.4%] → 9.5% [7.8–11.4%]" in part
        assert "card declined abroad" in part and "t-1" in part and "t-2" in part
        assert "the prompts moved away from the baseline" in part
        assert "t-9" not in part  # the grown topic's examples, not the window's random prompts
        assert "declined in Spain" not in part  # no user text without LLMSIGHT_NOTIFY_EXAMPLES
    link = "https://llmsight.example.com/alerts?alert=a1b2c3&service=checkout&model=gpt-4o&prompt_version=v3"
    assert f"Open in the dashboard: {link}" in text
    assert f'href="{link.replace("&", "&amp;")}"' in rich


def test_example_texts_only_when_asked_and_escaped_in_html():
    _message, text, rich = _parts(build_message(DRIFT, sender="a@example.com", to=("b@example.com",), examples=True))
    assert "t-1: my card <b>was</b> declined in Spain" in text
    assert "my card &lt;b&gt;was&lt;/b&gt; declined in Spain" in rich and "<b>was</b>" not in rich
    assert "dashboard" not in text  # no link without LLMSIGHT_DASHBOARD_URL


def test_a_resolved_threshold_alert_shows_value_threshold_and_its_examples():
    note = {"kind": "resolved", "alert_id": "x", "rule": "output-toxicity", "metric": "toxicity_rate_output",
            "severity": "warning", "segment": {"service": "bank", "name": "answer", "model": "m1",
                                                "prompt_version": "v2"},
            "value": 0.01, "threshold": 0.05, "baseline": 0.0, "p_value": None, "window_start": "2026-11-21T13:00:00Z",
            "evidence": {"examples": [{"trace_id": "t-7", "text": "you are an idiot"}]}}
    message, text, _rich = _parts(build_message(note, sender="a@example.com", to=("b@example.com",)))
    assert message["Subject"].strip() == "[llmsight] RESOLVED: output-toxicity on bank / answer / m1 / v2"
    assert "level: value 0.01 (threshold 0.05)" in text and "p-value" not in text
    assert "Examples:\n  - trace t-7\n" in text and "idiot" not in text


def test_traffic_values_cannot_add_a_header():
    note = {**DRIFT, "segment": {**DRIFT["segment"], "service": "evil\r\nBcc: thief@example.com"}}
    message, _text, _rich = _parts(build_message(note, sender="a@example.com", to=("b@example.com",)))
    assert message["Bcc"] is None
    assert message["Subject"].strip().startswith("[llmsight] FIRING critical: input-drift on evil Bcc: thief@example.com /")


def test_the_link_filters_the_segment_and_quotes_it():
    note = {"alert_id": "id 1", "segment": {"service": "a&b", "name": "n", "model": "", "prompt_version": "v1"}}
    assert alert_link("", note) == ""
    assert alert_link("http://d:8501/llm", note) == "http://d:8501/llm/alerts?alert=id+1&service=a%26b&prompt_version=v1"


def test_rule_recipients_replace_the_global_ones_first_match_wins():
    mailer = Mailer(host="smtp.example.com", port=587, sender="a@example.com", to=("all@example.com",),
                    rule_to=(("input-*", ("ml@example.com",)), ("input-drift", ("never@example.com",))))
    assert mailer.recipients("input-drift") == ("ml@example.com",)
    assert mailer.recipients("output-toxicity") == ("all@example.com",)
    assert "s3cret" not in repr(Mailer(host="h", port=587, sender="a@example.com", to=("b@example.com",),
                                       user="u", password=PASSWORD))


BASE = {"LLMSIGHT_SMTP_HOST": "smtp.example.com", "LLMSIGHT_SMTP_FROM": "llmsight@example.com",
        "LLMSIGHT_SMTP_TO": "oncall@example.com", "LLMSIGHT_SMTP_USER": "llmsight",
        "LLMSIGHT_SMTP_PASSWORD": PASSWORD}


@pytest.mark.parametrize(("changes", "message"), [
    ({"LLMSIGHT_SMTP_PORT": "smtp"}, "LLMSIGHT_SMTP_PORT='smtp' is not valid: expected a port number"),
    ({"LLMSIGHT_SMTP_PORT": "70000"}, "LLMSIGHT_SMTP_PORT='70000' is not valid: expected a TCP port"),
    ({"LLMSIGHT_SMTP_TLS": "true", "LLMSIGHT_SMTP_STARTTLS": "true"}, "LLMSIGHT_SMTP_TLS and LLMSIGHT_SMTP_STARTTLS"),
    ({"LLMSIGHT_SMTP_TO": ""}, "no recipient is: set LLMSIGHT_SMTP_TO"),
    ({"LLMSIGHT_SMTP_FROM": ""}, "LLMSIGHT_SMTP_FROM is empty"),
    ({"LLMSIGHT_SMTP_TO": "oncall@example.com, not an address"}, "'not an address' is not an e-mail address"),
    ({"LLMSIGHT_SMTP_RULE_TO": "input-drift:ml@example.com"}, "is not rule=address"),
    ({"LLMSIGHT_SMTP_RULE_TO": "input-drift="}, "the rule 'input-drift' has no address"),
    ({"LLMSIGHT_SMTP_PASSWORD": ""}, "LLMSIGHT_SMTP_USER and LLMSIGHT_SMTP_PASSWORD go together"),
    ({"LLMSIGHT_SMTP_STARTTLS": "false"}, "the password would cross the network in clear"),
    ({"LLMSIGHT_SMTP_CAFILE": "/nonexistent/ca.pem"}, "LLMSIGHT_SMTP_CAFILE is /nonexistent/ca.pem"),
    ({"LLMSIGHT_SMTP_HOST": ""}, "set but LLMSIGHT_SMTP_HOST is empty"),
    ({"LLMSIGHT_DASHBOARD_URL": "llmsight.example.com"}, "LLMSIGHT_DASHBOARD_URL='llmsight.example.com' is not valid"),
])
def test_a_setting_that_cannot_work_stops_the_start_with_what_to_set(monkeypatch, changes, message):
    for name, value in {**BASE, **changes}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=None) as caught:
        Notifier.from_settings()
    assert message in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_the_usual_port_follows_the_tls_mode(monkeypatch):
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    [target] = Notifier.from_settings().targets
    assert target.kind == EMAIL and target.mailer is not None
    assert (target.mailer.port, target.mailer.starttls, target.mailer.tls) == (587, True, False)
    monkeypatch.setenv("LLMSIGHT_SMTP_TLS", "true")  # implicit TLS turns the STARTTLS default off
    [target] = Notifier.from_settings().targets
    assert target.mailer is not None and (target.mailer.port, target.mailer.starttls) == (465, False)
    assert target.display() == "email smtp://smtp.example.com:465 (tls)"
    monkeypatch.delenv("LLMSIGHT_SMTP_HOST")
    for name in ("LLMSIGHT_SMTP_FROM", "LLMSIGHT_SMTP_TO", "LLMSIGHT_SMTP_USER", "LLMSIGHT_SMTP_PASSWORD"):
        monkeypatch.delenv(name)
    assert Notifier.from_settings().targets == []  # no SMTP host, nothing else: no e-mail, no error


def test_an_unreachable_server_is_retried_then_given_up_without_the_password_in_logs(caplog):
    port = free_port()  # nothing listens on it
    mailer = Mailer(host="127.0.0.1", port=port, sender="a@example.com", to=("b@example.com",), user="llmsight",
                    password=PASSWORD, starttls=True)
    notifier = Notifier([Target(EMAIL, "smtp", mailer=mailer)], max_attempts=3, backoff_s=0.01, timeout_s=2)
    with caplog.at_level(logging.DEBUG, logger="llmsight"):
        notifier.send(DRIFT)
        assert notifier.flush(10)
    notifier.close()
    assert (notifier.sent, notifier.failed) == (0, 1)
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and f"127.0.0.1:{port}" in retries[0]
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)


def test_a_rule_without_recipients_sends_nothing_and_does_not_stop_the_others(caplog):
    mailer = Mailer(host="127.0.0.1", port=9, sender="a@example.com", rule_to=(("output-*", ("t@example.com",)),))
    notifier = Notifier([Target(EMAIL, "smtp", mailer=mailer)], max_attempts=1)
    with caplog.at_level(logging.INFO, logger="llmsight.alerts.notify"):
        notifier.send(DRIFT)  # input-drift: no entry, and no global recipients
        assert notifier.flush(5)
    notifier.close()
    assert (notifier.sent, notifier.failed) == (0, 0)
    assert "no e-mail recipients for rule 'input-drift'" in caplog.text


def test_slack_and_webhook_link_to_the_alert_only_with_a_dashboard_address():
    from llmsight.alerts.notify import slack_payload, webhook_payload

    link = alert_link("https://llmsight.example.com", DRIFT)
    blocks = slack_payload(DRIFT, link=link)["blocks"]
    assert blocks[-1]["text"]["text"] == (
        "<https://llmsight.example.com/alerts?alert=a1b2c3&amp;service=checkout&amp;model=gpt-4o&amp;"
        "prompt_version=v3|Open the alert in the dashboard>")
    assert "dashboard" not in str(slack_payload(DRIFT)["blocks"])
    assert webhook_payload(DRIFT, link=link)["dashboard_url"] == link
    assert "dashboard_url" not in webhook_payload(DRIFT)
