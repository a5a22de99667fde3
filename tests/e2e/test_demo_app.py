"""The demo's synthetic app through the real SDK into a real spool: versions switch on time, feedback joins by trace."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import llmsight
from llmsight.demo.app import FEATURE, SERVICE, SyntheticApp


def test_the_app_switches_versions_and_sends_feedback_for_its_own_traces(tmp_path):
    spool = tmp_path / "spool"
    switch_at = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    app = SyntheticApp(f"file://{spool}", switch_at, rate=40, latency_scale=0.01, workers=8)
    try:
        app.start()
        time.sleep(3.2)
    finally:
        app.stop()
    events = [json.loads(line) for path in sorted(spool.glob("*.jsonl")) for line in path.read_text().splitlines()]
    calls = [e for e in events if e["type"] == "llm_call"]
    feedback = [e for e in events if e["type"] == "feedback"]
    assert sum(app.calls.values()) == len(calls) > 60
    assert {(c["service"], c["name"], c["model"]) for c in calls} == {(SERVICE, FEATURE, "gpt-4o-mini")}
    # Every call before the switch is v1 and every call after it is v2.
    for call in calls:
        stamped = datetime.fromisoformat(call["ts"].replace("Z", "+00:00"))
        expected = "v2" if stamped >= switch_at else "v1"
        assert call["prompt_version"] == expected or abs((stamped - switch_at).total_seconds()) < 0.2
    assert app.calls["v1"] > 10 and app.calls["v2"] > 10
    # The recorded input is the customer's text and the output the model's answer.
    assert all(c["input"] and (c["output"] or c["error"]) for c in calls)
    assert sum(1 for c in calls if c["error"]) == app.errors
    # Feedback refers to the app's own traces, for most calls.
    traces = {c["trace_id"] for c in calls}
    assert len(feedback) == app.feedback_sent and {f["trace_id"] for f in feedback} <= traces
    assert 0.6 < len(feedback) / len(calls) < 0.95
    assert llmsight.stats()["dropped"] == 0
