"""Episodes on the real ``alerts`` table: a flap re-fires the same incident across engine restarts, the
episode survives in the stored evidence, and the rows record every step."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from llmsight.alerts.engine import AlertEngine, load_states
from llmsight.alerts.rules import parse_rules

T0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=2)
RULES = parse_rules("""
rules:
  - {name: err, metric: error_rate, warning: 0.05, for: 1, min_samples: 10, recover_for: 2, min_firing: 3m,
     flap_window: 10m, renotify: 0}
""", "test")


class Recorder:
    def __init__(self):
        self.sent = []

    def send(self, notification):
        self.sent.append(notification)


def _row(value: float) -> dict:
    return {"service": "bank", "name": "answer", "model": "m", "prompt_version": "v2", "metric": "error_rate",
            "value": value, "n": 100, "baseline": None, "p_value": None, "threshold": None, "details": ""}


def test_a_flap_refires_the_same_incident_across_restarts(store_client):
    recorder = Recorder()
    seen = []
    values = [0.2, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0]
    for minute, value in enumerate(values):
        engine = AlertEngine(store_client, RULES, recorder)  # a new engine each window: state comes from the table
        when = T0 + timedelta(minutes=minute)
        seen.append([t for _, t in engine.evaluate(when, [_row(value)], now=when + timedelta(seconds=20))])
    # Fired at 0; two clean windows are not enough before min_firing (3 min); resolves at 3; flaps at 5.
    assert seen == [["firing"], ["recovering"], ["recovering"], ["resolved"], [], ["flapping"], ["recovering"]]
    assert [n["kind"] for n in recorder.sent] == ["firing", "resolved", "flapping"]
    assert len({n["incident_id"] for n in recorder.sent}) == 1
    [state] = load_states(store_client).values()
    assert state.state == "firing" and state.episode["flaps"] == 1 and state.episode["flapping"] is True
    assert state.episode["fired"] == T0.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert "episode" not in state.evidence  # kept apart from the evidence shown as such
    rows = store_client.query("SELECT transition, JSONExtractUInt(evidence, 'episode', 'flaps') FROM alerts "
                              "ORDER BY changed_at").result_rows
    assert rows == [("firing", 0), ("recovering", 0), ("recovering", 0), ("resolved", 0), ("flapping", 1),
                    ("recovering", 1)]
