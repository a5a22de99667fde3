"""Silences on the real store: a silenced alert is recorded but not notified, and notifies once after expiry;
the ``llmsight alerts silence|silences|unsilence|list`` commands through typer's CliRunner."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from llmsight.alerts.engine import AlertEngine, load_states
from llmsight.alerts.rules import parse_rules
from llmsight.alerts.silences import create_silence, load_silences, remove_silence
from llmsight.cli.app import _build
from llmsight.errors import LlmsightError

T0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=1)
RULES = parse_rules("""
rules:
  - {name: output-toxicity, metric: toxicity_rate_output, warning: 0.05, for: 1, min_samples: 10, renotify: 1h}
""", "test")


def _row(value: float, version: str) -> dict:
    return {"service": "banking-assistant", "name": "answer", "model": "m", "prompt_version": version,
            "metric": "toxicity_rate_output", "value": value, "n": 50, "baseline": 0.0, "p_value": None,
            "threshold": 0.5, "details": ""}


class Recorder:
    def __init__(self):
        self.sent = []

    def send(self, notification):
        self.sent.append(notification)


def _evaluate(engine: AlertEngine, minute: int, rows: list[dict], base: datetime = T0) -> list[tuple[str, str]]:
    when = base + timedelta(minutes=minute)
    changes = engine.evaluate(when, rows, now=when + timedelta(seconds=20))
    return [(state.segment["prompt_version"], transition) for state, transition in changes]


def test_a_silenced_alert_is_recorded_but_not_notified_and_notifies_once_after_expiry(store_client, caplog):
    recorder = Recorder()
    engine = AlertEngine(store_client, RULES, recorder)
    made = create_silence(store_client, "output-toxicity", {"prompt_version": "v3"}, timedelta(minutes=2), "ana",
                          "rolling back v3", rules=RULES, now=T0)
    caplog.set_level(logging.INFO, logger="llmsight.alerts.engine")
    breach = [_row(0.1, "v3"), _row(0.1, "v2")]

    assert _evaluate(engine, 0, breach) == [("v2", "firing"), ("v3", "firing")]
    assert [n["segment"]["prompt_version"] for n in recorder.sent] == ["v2"]  # v3 is silenced
    notified = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alerts: output-toxicity")]
    assert len(notified) == 1 and "/v2:" in notified[0]
    held = {s.segment["prompt_version"]: s for s in load_states(store_client).values()}["v3"]
    assert (held.state, held.held_back, held.silenced_by) == ("firing", "firing", made.silence_id)

    assert _evaluate(engine, 1, breach) == []  # 12:01:20, the silence lasts until 12:02:00
    assert len(recorder.sent) == 1
    assert _evaluate(engine, 2, breach) == [("v3", "unsilenced")]
    assert [(n["kind"], n["segment"]["prompt_version"]) for n in recorder.sent] == [("firing", "v2"), ("firing", "v3")]
    assert _evaluate(engine, 3, breach) == []  # exactly once
    assert len(recorder.sent) == 2

    rows = store_client.query(
        "SELECT transition, state, held_back, silenced_by FROM alerts WHERE prompt_version = 'v3' ORDER BY changed_at"
    ).result_rows
    assert rows == [("firing", "firing", "firing", made.silence_id), ("unsilenced", "firing", "", "")]
    assert [s.silence_id for s in load_silences(store_client, T0 + timedelta(minutes=1))] == [made.silence_id]
    assert load_silences(store_client, T0 + timedelta(minutes=2)) == []


def test_removing_a_silence_writes_a_newer_row_and_ends_it(store_client):
    made = create_silence(store_client, "output-toxicity", {}, timedelta(hours=2), "ana", rules=RULES, now=T0)
    removed = remove_silence(store_client, made.silence_id, "bob", now=T0 + timedelta(minutes=10))
    assert removed.removed_at == T0 + timedelta(minutes=10)
    assert [s.silence_id for s in load_silences(store_client, T0 + timedelta(minutes=9))] == [made.silence_id]
    assert load_silences(store_client, T0 + timedelta(minutes=10)) == []
    [ended] = load_silences(store_client, T0 + timedelta(minutes=10), include_ended=True)
    assert (ended.removed_by, ended.created_by, ended.until) == ("bob", "ana", T0 + timedelta(hours=2))
    assert store_client.query("SELECT count() FROM alert_silences").result_rows[0][0] == 2
    assert store_client.query("SELECT count(), any(removed_by) FROM alert_silences FINAL").result_rows[0] == (1, "bob")
    with pytest.raises(LlmsightError, match="already ended"):
        remove_silence(store_client, made.silence_id, "bob", now=T0 + timedelta(minutes=11))
    with pytest.raises(LlmsightError, match="no silence with id 'nope'"):
        remove_silence(store_client, "nope", "bob")


def test_cli_silences_lists_and_unsilences_on_the_store(store_client, store_url, store_database, monkeypatch):
    monkeypatch.delenv("LLMSIGHT_RULES", raising=False)  # the shipped rules: output-toxicity is one
    url = f"{store_url}?database={store_database}"
    # Two firing alerts, now (the CLI reads the real clock).
    now = datetime.now(timezone.utc).replace(microsecond=0)
    AlertEngine(store_client, RULES, Recorder()).evaluate(now - timedelta(seconds=30),
                                                          [_row(0.1, "v3"), _row(0.1, "v2")], now=now)
    runner, app = CliRunner(), _build()

    made = runner.invoke(app, ["alerts", "silence", "output-toxicity", "--service", "banking-assistant",
                               "--prompt-version", "v3", "--for", "2h", "--reason", "rolling back v3", "--by", "ana",
                               "--url", url, "--json"])
    assert made.exit_code == 0, made.output
    silence = json.loads(made.output.strip().splitlines()[-1])
    assert (silence["rule"], silence["segment"], silence["left"], silence["created_by"]) == (
        "output-toxicity", {"service": "banking-assistant", "prompt_version": "v3"}, "2h", "ana")

    listed = runner.invoke(app, ["alerts", "silences", "--url", url])
    assert listed.exit_code == 0, listed.output
    [line] = listed.output.strip().splitlines()
    assert line.startswith(silence["silence_id"]) and "1h 59m left" in line
    assert line.endswith("output-toxicity on service=banking-assistant prompt_version=v3  by ana  (rolling back v3)")

    alerts = runner.invoke(app, ["alerts", "list", "--url", url, "--json"])
    assert alerts.exit_code == 0, alerts.output
    by_version = {a["segment"]["prompt_version"]: a for a in map(json.loads, alerts.output.strip().splitlines())}
    assert by_version["v3"]["silenced_by"] == silence["silence_id"] and by_version["v2"]["silenced_by"] is None
    text = runner.invoke(app, ["alerts", "list", "--url", url]).output
    assert sum(f"(silenced by {silence['silence_id']}, 1h 59m left)" in row for row in text.splitlines()) == 1

    ended = runner.invoke(app, ["alerts", "unsilence", silence["silence_id"], "--by", "bob", "--url", url])
    assert ended.exit_code == 0, ended.output
    assert ended.output.strip().endswith("ended by bob")
    assert runner.invoke(app, ["alerts", "silences", "--url", url]).output.strip() == "alerts: no active silences"
    again = runner.invoke(app, ["alerts", "unsilence", silence["silence_id"], "--url", url])
    assert again.exit_code == 2 and "has already ended" in again.output
