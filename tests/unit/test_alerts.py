"""The alert state machine (flapping, no data, recovery, re-notify, acknowledgement) and the rule files."""

from __future__ import annotations

from datetime import timedelta

import pytest

from llmsight.alerts.engine import FIRING, RESOLVED, AlertState, alert_id
from llmsight.alerts.rules import Observation, Rule, load_rules, parse_rules
from llmsight.errors import ConfigError
from tests.alert_windows import SEGMENT, T0, feed, toxicity_rule


def run(rule: Rule, values: list[float | None], *, n: int = 50, minutes: float = 1.0,
        state: AlertState | None = None) -> tuple[AlertState, list[str | None]]:
    """Feed one value per window (None: no row) and return the final state and every transition."""
    st, seen, _sent = feed(rule, values, n=n, seconds=minutes * 60, after_s=20, state=state)
    return st, seen


def test_pending_then_firing_after_for_windows_with_the_higher_severity():
    st, seen = run(toxicity_rule(), [0.01, 0.08, 0.20])
    assert seen == [None, "pending", "firing"]
    assert st.state == FIRING and st.severity == "critical" and st.threshold == 0.15
    assert st.fired_at == T0 + timedelta(minutes=2, seconds=20)
    assert [h["value"] for h in st.evidence["history"]] == [0.08, 0.20]


def test_flapping_never_fires_and_sends_nothing():
    st, seen = run(toxicity_rule(for_windows=2), [0.1, 0.0, 0.1, 0.0, 0.1, 0.0])
    assert seen == ["pending", "cleared"] * 3
    assert st.state == RESOLVED and st.fired_at is None and st.notified_at is None


def test_recovery_needs_recover_for_clear_windows_and_a_breach_resets_it():
    rule = toxicity_rule(for_windows=1, recover_windows=2)
    st, seen = run(rule, [0.1, 0.0, 0.1, 0.0, 0.0])
    assert seen == ["firing", "recovering", "breaching", "recovering", "resolved"]
    assert st.state == RESOLVED and st.severity == "warning"


def test_escalation_and_deescalation_are_transitions():
    _, seen = run(toxicity_rule(for_windows=1, renotify_s=0), [0.06, 0.2, 0.2, 0.07])
    assert seen == ["firing", "escalated", None, "deescalated"]


def test_below_minimum_samples_is_no_data():
    rule = toxicity_rule(for_windows=1, min_samples=100)
    st, seen = run(rule, [0.9, 0.9], n=99)
    assert seen == [None, None] and st.state == "ok"


@pytest.mark.parametrize(("policy", "expected", "final"), [
    ("keep", ["firing", None, None, None], FIRING),
    ("ok", ["firing", "resolved", None, None], RESOLVED),
    ("alert", ["firing", None, None, None], FIRING),
])
def test_no_data_policies_on_a_firing_alert(policy, expected, final):
    st, seen = run(toxicity_rule(for_windows=1, no_data=policy, renotify_s=0), [0.3, None, None, None])
    assert seen == expected and st.state == final


def test_no_data_alert_policy_fires_on_silence():
    st, seen = run(toxicity_rule(for_windows=2, no_data="alert"), [None, None, 0.0])
    assert seen == ["pending", "firing", "resolved"]
    assert st.evidence["history"][-1]["no_data"] is True


def test_renotify_waits_for_the_interval():
    # Windows 1 minute apart, renotify every 150 s: firing at window 0, renotify at windows 3 and 6.
    st, seen = run(toxicity_rule(for_windows=1, renotify_s=150), [0.1] * 7)
    assert seen == ["firing", None, None, "renotify", None, None, "renotify"]
    assert st.notified_at == T0 + timedelta(minutes=6, seconds=20)


def test_acknowledged_alert_is_not_renotified_but_escalation_still_is():
    rule = toxicity_rule(for_windows=1, renotify_s=60)
    st, _ = run(rule, [0.1])
    st.acked_by, st.ack_note, st.acked_at = "ana", "looking", T0
    st2, seen = run(rule, [0.1, 0.1, 0.3], state=st)
    # The first window repeats the firing window (same value); afterwards only the escalation is sent.
    assert seen == [None, None, "escalated"]
    assert st2.acked_by == "ana"


def test_acknowledgement_is_cleared_when_the_alert_resolves():
    rule = toxicity_rule(for_windows=1)
    st, _ = run(rule, [0.1])
    st.acked_by = "ana"
    st2, seen = run(rule, [0.0], state=st)
    assert seen == ["resolved"] and st2.acked_by == "" and st2.acked_at is None


def test_significant_drop_needs_direction_effect_and_p_value():
    rule = Rule(name="acc", metric="acceptance_rate", comparison="significant", direction="below",
                warning=0.01, critical=0.001, min_effect=0.05)
    assert rule.judge(Observation(value=0.5, n=200, baseline=0.8, p_value=0.0005)) == "critical"
    assert rule.judge(Observation(value=0.5, n=200, baseline=0.8, p_value=0.005)) == "warning"
    assert rule.judge(Observation(value=0.5, n=200, baseline=0.8, p_value=0.05)) is None
    assert rule.judge(Observation(value=0.9, n=200, baseline=0.8, p_value=0.0001)) is None  # a rise
    assert rule.judge(Observation(value=0.78, n=5000, baseline=0.8, p_value=0.0001)) is None  # too small


def test_significant_without_p_value_falls_back_to_the_analyzer_threshold():
    rule = Rule(name="drift", metric="drift_input", comparison="significant", direction="any",
                warning=0.01, critical=0.001)
    assert rule.judge(Observation(value=0.3, n=100, threshold=0.2)) == "warning"
    assert rule.judge(Observation(value=0.1, n=100, threshold=0.2)) is None
    assert rule.judge(Observation(value=0.1, n=100, p_value=0.0001)) == "critical"


def test_relative_change_against_the_baseline():
    rule = Rule(name="p95", metric="latency_p95_ms", comparison="relative", direction="above",
                warning=0.5, critical=1.0)
    assert rule.judge(Observation(value=140, n=100, baseline=100)) is None
    assert rule.judge(Observation(value=150, n=100, baseline=100)) == "warning"
    assert rule.judge(Observation(value=210, n=100, baseline=100)) == "critical"
    assert rule.judge(Observation(value=500, n=100, baseline=None)) is None
    drop = Rule(name="vol", metric="volume", comparison="relative", direction="below", warning=0.5)
    assert drop.judge(Observation(value=40, n=40, baseline=100)) == "warning"
    assert drop.judge(Observation(value=60, n=60, baseline=100)) is None


def test_segment_filters_are_globs():
    rule = toxicity_rule(segment={"service": "ba*", "prompt_version": "v2"})
    assert rule.matches(SEGMENT)
    assert not rule.matches({**SEGMENT, "prompt_version": "v1"})


def test_alert_id_is_stable_per_rule_and_segment():
    assert alert_id("tox", SEGMENT) == alert_id("tox", dict(reversed(list(SEGMENT.items()))))
    assert alert_id("tox", SEGMENT) != alert_id("tox", {**SEGMENT, "prompt_version": "v1"})
    assert alert_id("tox", SEGMENT) != alert_id("drift", SEGMENT)


def test_default_rules_cover_the_three_signals_and_operations():
    rules = {r.metric: r for r in load_rules("")}
    assert {"drift_input_evidence", "drift_output_evidence", "toxicity_rate_output", "toxicity_rate_input",
            "acceptance_rate", "latency_p95_ms", "error_rate", "cost_per_call_usd"} <= set(rules)
    # Drift alerts read the sequential evidence at every horizon, in its own units (alarm at 1.0).
    drift = [r for r in load_rules("") if r.metric.startswith("drift_")]
    assert {(r.metric, r.granularity) for r in drift} == {
        (m, g) for m in ("drift_input_evidence", "drift_output_evidence") for g in ("1m", "1h", "1d")}
    assert all(r.comparison == "absolute" and r.critical == 1.0 and r.for_windows == 1 for r in drift)
    assert rules["acceptance_rate"].direction == "below" and rules["acceptance_rate"].for_windows == 2


def test_rule_file_defaults_and_durations():
    rules = parse_rules(
        "defaults: {for: 3, renotify: 15m, no_data: ok}\n"
        "rules:\n  - {name: a, metric: error_rate, warning: 0.1}\n"
        "  - {name: b, metric: error_rate, critical: 0.5, for: 1, renotify: 2h}\n", "x.yaml")
    assert [(r.name, r.for_windows, r.renotify_s, r.no_data) for r in rules] == [
        ("a", 3, 900.0, "ok"), ("b", 1, 7200.0, "ok")]


@pytest.mark.parametrize(("text", "message"), [
    ("rules: [{name: a, metric: m}]", "warning level"),
    ("rules: [{name: a, metric: m, warning: 1, comparison: fuzzy}]", "comparison 'fuzzy'"),
    ("rules: [{name: a, metric: m, warning: 2, comparison: significant}]", "p-values"),
    ("rules: [{name: a, metric: m, warning: 1, window: 5}]", "unknown keys ['window']"),
    ("rules: [{name: a, metric: m, warning: 1, for: 0}]", "for must be"),
    ("rules: [{name: a, metric: m, warning: 1, renotify: soon}]", "not a duration"),
    ("rules: [{name: a, metric: m, warning: 1}, {name: a, metric: n, warning: 1}]", "repeated: ['a']"),
    ("rules: [{name: a, metric: m, warning: 1, segment: {region: eu}}]", "segment filters"),
    ("nothing: here", "'rules' list"),
])
def test_bad_rule_files_fail_with_the_reason(text, message):
    with pytest.raises(ConfigError, match="x.yaml") as info:
        parse_rules(text, "x.yaml")
    assert message in str(info.value)


def test_missing_rules_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_rules(str(tmp_path / "nope.yaml"))
