"""Default redaction: each kind of personal data or secret is replaced, look-alikes are kept."""

from __future__ import annotations

import pytest

import llmsight
from llmsight.redact import iban_ok, luhn_ok, redact
from llmsight.sinks import MemorySink


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to bob.smith+x@example.co.uk today", "write to [EMAIL] today"),
        ("card 4111 1111 1111 1111.", "card [CARD]."),
        ("card 4012-8888-8888-1881 ok", "card [CARD] ok"),
        ("call +44 20 7946 0958 now", "call [PHONE] now"),
        ("call (555) 123-4567", "call [PHONE]"),
        ("iban DE89 3704 0044 0532 0130 00 please", "iban [IBAN] please"),
        ("iban GB82WEST12345698765432", "iban [IBAN]"),
        ("server 192.168.1.20, port 80", "server [IP], port 80"),
        ("v6 2001:db8::8a2e:370:7334 here", "v6 [IP] here"),
        ("key sk-abcdefghijklmnop1234", "key [API_KEY]"),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [API_KEY]"),
        ("Authorization: Bearer abc.def.ghi12345", "Authorization: Bearer [TOKEN]"),
        ("api_key=supersecret123 ok", "api_key=[API_KEY] ok"),
        # A fine-grained GitHub token in a text with no other key marker (and no "gh": "github" has none).
        ("use github_pat_11BCDEFG0123456789bcdefjklmnopq now", "use [API_KEY] now"),
        ("push with ghp_abcdefijklmnopqrstuvwxyz0123456789AB", "push with [API_KEY]"),
    ],
)
def test_redacts(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails the Luhn check",
        "iban DE89 3704 0044 0532 0130 01 fails mod 97",
        "on 2026-11-21 at 12:30:45 the price was 12.50",
        "version 3.14159 of pi; order 123456789",
        "999.1.1.1 is not an address",
        "a key idea, no secrets",
        "",
    ],
)
def test_keeps_lookalikes(text):
    assert redact(text) == text


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE89 3704 0044 0532 0130 01")


def test_redaction_applies_to_input_output_error_and_feedback_by_default():
    sink = MemorySink()
    llmsight.init(sink=sink)

    @llmsight.monitor
    def ask(q):
        raise ValueError("no account for jane@corp.com")

    @llmsight.monitor
    def ok(q):
        return "sent to 10.0.0.1"

    try:
        with pytest.raises(ValueError):
            ask("my email is jane@corp.com")
        ok("x")
        llmsight.feedback("t", comment="call me at +1 415 555 2671", edited_output="card 4111111111111111")
        assert llmsight.flush(5)
        failed, passed, fb = sink.events
        assert failed["input"] == "my email is [EMAIL]"
        assert failed["error"] == "ValueError: no account for [EMAIL]"
        assert passed["output"] == "sent to [IP]"
        assert (fb["comment"], fb["edited_output"]) == ("call me at [PHONE]", "card [CARD]")
    finally:
        llmsight.shutdown(2)


def test_user_redactor_replaces_default_and_false_turns_it_off():
    sink = MemorySink()
    llmsight.init(sink=sink, redact=lambda text: text.replace("secret", "***"))

    @llmsight.monitor
    def echo(q):
        return q

    try:
        echo("secret jane@corp.com")
        llmsight.init(sink=sink, redact=False)
        echo("jane@corp.com")
        assert llmsight.flush(5)
        assert [e["output"] for e in sink.events] == ["*** jane@corp.com", "jane@corp.com"]
    finally:
        llmsight.shutdown(2)


def test_failing_user_redactor_never_ships_the_raw_text():
    sink = MemorySink()

    def broken(text):
        raise RuntimeError("bug in redactor")

    llmsight.init(sink=sink, redact=broken)

    @llmsight.monitor
    def echo(q):
        return q

    try:
        assert echo("jane@corp.com") == "jane@corp.com"
        assert llmsight.flush(5)
        [event] = sink.events
        assert event["input"] == event["output"] == "[redaction failed]"
    finally:
        llmsight.shutdown(2)


def test_secret_at_the_truncation_boundary_is_redacted_not_cut():
    sink = MemorySink()
    llmsight.init(sink=sink, max_text_chars=20)

    @llmsight.monitor
    def echo(q):
        return q

    try:
        echo("x" * 10 + " bob.smith@example.com and more text")
        assert llmsight.flush(5)
        [event] = sink.events
        assert event["input"] == ("x" * 10 + " [EMAIL] and more text")[:20]
        assert "bob" not in event["input"] and event["truncated"] is True
    finally:
        llmsight.shutdown(2)
