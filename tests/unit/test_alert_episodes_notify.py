"""What changed, in a drift alert's notification: the grown topic with its shares and intervals, the score
beside its own critical value and the p-value apart; example texts only with the opt-in."""

from __future__ import annotations

import json

import numpy as np

from llmsight.alerts.evidence import grown_topic, levels_text, share_text
from llmsight.alerts.notify import slack_payload, webhook_payload
from llmsight.analyzers.topics import explain_drift

GROWN = {"label": "card fee withdrawal", "share_before": 0.02, "share_after": 0.095,
         "share_before_ci": [0.011, 0.034], "share_after_ci": [0.078, 0.114],
         "examples": [{"trace_id": f"t-{i}", "text": f"Why was I charged a fee on withdrawal {i}?"} for i in range(7)]}
NOTE = {
    "kind": "firing", "alert_id": "a1", "rule": "input-drift", "metric": "drift_input", "severity": "critical",
    "state": "firing", "segment": {"service": "bank", "name": "answer", "model": "m", "prompt_version": "v2"},
    "value": 22.5, "threshold": 4.07, "baseline": None, "p_value": 0.0004, "window_start": "2026-11-21T12:00:00.000Z",
    "incident_id": "a1-20261121T120000", "episode": {"id": "a1-20261121T120000", "flaps": 0},
    "evidence": {"grown_topic": GROWN, "rule_level": {"severity": "critical", "level": 0.002, "unit": "p-value"},
                 "examples": [{"trace_id": "r-1", "text": "an ordinary prompt"}]},
}


def texts(payload: dict) -> str:
    return "\n".join(block["text"]["text"] for block in payload["blocks"])


def test_the_grown_topic_is_read_from_the_analyzers_evidence_or_from_topics_grown():
    topic = grown_topic(NOTE["evidence"])
    assert topic["label"] == "card fee withdrawal" and len(topic["examples"]) == 5
    assert share_text(topic) == "2.0% [1.1–3.4%] → 9.5% [7.8–11.4%]"
    # Before the analyzers write grown_topic: the first grown entry of explain_drift's topics.
    fees, transfers = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    explained = explain_drift(np.stack([transfers] * 8 + [fees] * 2), np.stack([transfers] * 2 + [fees] * 8),
                              ["Where is my transfer?"] * 8 + ["Why a fee on my cash withdrawal?"] * 2,
                              ["Where is my transfer?"] * 2 + ["Why a fee on my cash withdrawal?"] * 8, n_clusters=2)
    fallback = grown_topic({"topics": explained})
    assert fallback["label"] == explained["grown"][0]["label"]
    shares = share_text(fallback)  # with intervals once the analyzers add share_ref_ci / share_cur_ci
    assert shares.startswith("20.0%") and "→ 80.0%" in shares
    assert fallback["examples"][0] == {"trace_id": "", "text": "Why a fee on my cash withdrawal?"}
    assert grown_topic({"topics": {"grown": []}}) is None and grown_topic({"examples": []}) is None


def test_units_a_score_with_its_critical_value_and_the_p_value_apart():
    assert levels_text(22.5, 4.07, 0.0004, NOTE["evidence"]) == (
        "score 22.5 (critical value 4.07)", "p-value 0.0004 (alerts at p ≤ 0.002)")
    assert levels_text(0.31, 0.15, None, {"rule_level": {"unit": "value", "level": 0.15}}) == (
        "value 0.31 (threshold 0.15)", None)


def test_slack_names_the_grown_topic_and_keeps_its_texts_home_without_the_opt_in():
    quiet = texts(slack_payload(NOTE))
    assert "the topic _card fee withdrawal_ grew: 2.0% [1.1–3.4%] → 9.5% [7.8–11.4%] of traffic" in quiet
    assert "*score 22.5 (critical value 4.07)*" in quiet and "p-value 0.0004 (alerts at p ≤ 0.002)" in quiet
    assert "*threshold*" not in quiet  # no p-value level posing as the score's threshold
    assert "`t-0`" in quiet and "`t-4`" in quiet and "`t-5`" not in quiet  # five examples, by trace id
    assert "charged" not in quiet and "ordinary prompt" not in quiet
    assert "a1-20261121T120000" in quiet
    loud = texts(slack_payload(NOTE, examples=True))
    assert "`t-0` Why was I charged a fee on withdrawal 0?" in loud
    assert "ordinary prompt" not in loud  # the topic's examples replace the window's random prompts


def test_the_webhook_keeps_topic_texts_home_without_the_opt_in():
    explained = {"grown": [{"label": "fees", "share_ref": 0.1, "share_cur": 0.4, "examples": ["my card 4111"]}],
                 "shrunk": [{"label": "transfers", "examples": ["transfer to John Smith"]}]}
    note = {**NOTE, "evidence": {**NOTE["evidence"], "topics": explained}}
    body = json.dumps(webhook_payload(note))
    assert "4111" not in body and "John Smith" not in body and "charged" not in body
    sent = webhook_payload(note)["evidence"]
    assert sent["grown_topic"]["examples"][0] == {"trace_id": "t-0"}
    assert sent["grown_topic"]["share_after_ci"] == [0.078, 0.114]
    assert sent["topics"]["grown"] == [{"label": "fees", "share_ref": 0.1, "share_cur": 0.4}]
    assert webhook_payload(note, examples=True)["evidence"] == note["evidence"]


def test_a_flapping_notification_says_so_and_keeps_the_incident():
    note = {**NOTE, "kind": "flapping", "episode": {"id": "a1-20261121T120000", "flaps": 2, "flapping": True}}
    payload = slack_payload(note)
    assert payload["text"].startswith(":repeat: [FLAPPING] input-drift")
    assert "`a1-20261121T120000`, flapping (2 re-fires)" in texts(payload)
