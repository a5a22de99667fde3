"""The alert engine on the real ``alerts`` table: dedup, persistence across restarts, acknowledgement, notifications."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from llmsight.alerts.engine import AlertEngine, acknowledge, fired_alerts, load_states
from llmsight.alerts.rules import parse_rules
from llmsight.errors import LlmsightError

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
RULES = parse_rules("""
rules:
  - {name: tox, metric: toxicity_rate_output, warning: 0.05, critical: 0.2, for: 2, min_samples: 10, renotify: 90s}
""", "test")


def _row(value: float, version: str = "v2", n: int = 50, metric: str = "toxicity_rate_output") -> dict:
    return {"service": "bank", "name": "assistant", "model": "m", "prompt_version": version, "metric": metric,
            "value": value, "n": n, "baseline": 0.0, "p_value": None, "threshold": 0.5,
            "details": json.dumps({"examples": [{"trace_id": "t1", "text": "you idiot"}]})}


class Recorder:
    def __init__(self):
        self.sent = []

    def send(self, notification):
        self.sent.append(notification)


def _evaluate(engine: AlertEngine, minute: int, rows: list[dict]):
    when = T0 + timedelta(minutes=minute)
    return engine.evaluate(when, rows, now=when + timedelta(seconds=20))


def test_lifecycle_is_stored_deduplicated_acknowledged_and_resumed_after_a_restart(store_client):
    recorder = Recorder()
    engine = AlertEngine(store_client, RULES, recorder)
    assert [t for _, t in _evaluate(engine, 0, [_row(0.1), _row(0.0, "v1")])] == ["pending"]
    # A new engine (a restart) continues from the table: the second breach fires.
    engine = AlertEngine(store_client, RULES, recorder)
    assert [t for _, t in _evaluate(engine, 1, [_row(0.1), _row(0.0, "v1")])] == ["firing"]
    assert [n["kind"] for n in recorder.sent] == ["firing"]
    note = recorder.sent[0]
    assert note["segment"]["prompt_version"] == "v2" and note["evidence"]["examples"][0]["trace_id"] == "t1"
    assert note["evidence"]["history"] == [
        {"window_start": (T0).strftime("%Y-%m-%dT%H:%M:%S.000Z"), "value": 0.1, "n": 50, "baseline": 0.0,
         "p_value": None},
        {"window_start": (T0 + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"), "value": 0.1, "n": 50,
         "baseline": 0.0, "p_value": None}]

    # One alert per (rule, segment), however many windows breach.
    _evaluate(engine, 2, [_row(0.1)])
    states = load_states(store_client)
    assert len(states) == 1
    [state] = states.values()
    assert (state.rule, state.state, state.severity, state.segment["prompt_version"]) == ("tox", "firing", "warning", "v2")

    # Re-notified once the interval passed, unless acknowledged.
    assert [t for _, t in _evaluate(engine, 3, [_row(0.1)])] == ["renotify"]
    acknowledge(store_client, state.alert_id, "ana", "rolling back v2", now=T0 + timedelta(minutes=3, seconds=30))
    assert [t for _, t in _evaluate(engine, 5, [_row(0.1)])] == []
    acked = load_states(store_client)[state.alert_id]
    assert (acked.acked_by, acked.ack_note) == ("ana", "rolling back v2")
    # Escalation still goes out; recovery resolves and clears the acknowledgement.
    assert [t for _, t in _evaluate(engine, 6, [_row(0.3)])] == ["escalated"]
    assert [t for _, t in _evaluate(engine, 7, [_row(0.0)])] == ["resolved"]
    assert [n["kind"] for n in recorder.sent] == ["firing", "renotify", "escalated", "resolved"]
    final = load_states(store_client)[state.alert_id]
    assert (final.state, final.acked_by) == ("resolved", "")

    # Re-evaluating an old window changes nothing (a rerun never counts a window twice).
    assert _evaluate(engine, 7, [_row(0.5)]) == []
    history = store_client.query("SELECT transition FROM alerts ORDER BY changed_at").result_rows
    assert [r[0] for r in history] == ["pending", "firing", "renotify", "ack", "escalated", "resolved"]

    [fired] = fired_alerts(store_client)
    assert (fired["rule"], fired["severity"], fired["segment"]["prompt_version"]) == ("tox", "critical", "v2")
    assert fired["fired_at"] == (T0 + timedelta(minutes=1, seconds=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_acknowledging_needs_a_name_and_an_active_alert(store_client):
    with pytest.raises(LlmsightError, match="not pending or firing"):
        acknowledge(store_client, "nope", "ana")
    with pytest.raises(LlmsightError, match="who acknowledges"):
        acknowledge(store_client, "nope", " ")


def test_a_silent_segment_gets_its_no_data_step(store_client):
    rules = parse_rules("rules: [{name: e, metric: error_rate, warning: 0.1, for: 1, no_data: ok}]", "test")
    engine = AlertEngine(store_client, rules, Recorder())
    assert [t for _, t in _evaluate(engine, 0, [_row(0.5, metric="error_rate")])] == ["firing"]
    # The segment sends nothing in the next window: with no_data ok the alert resolves.
    assert [t for _, t in _evaluate(engine, 1, [])] == ["resolved"]
