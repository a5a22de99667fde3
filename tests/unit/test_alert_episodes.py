"""Alerts that do not flap: hysteresis (clean windows, a clear level), a minimum firing time, flap detection,
one incident per episode, and thresholds shown in the units of the value. Synthetic metric sequences."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from llmsight.alerts.engine import FIRING, RESOLVED, AlertState, alert_id, step
from llmsight.alerts.rules import Observation, Rule, parse_rules
from llmsight.errors import ConfigError
from tests.alert_windows import SEGMENT, T0, feed, toxicity_rule


def tox(**overrides) -> Rule:
    return toxicity_rule(**{"for_windows": 1, "renotify_s": 0, **overrides})


def drift_rule_with_shipped_defaults() -> Rule:
    """A significant-change drift rule under the `defaults:` block of the shipped default-rules.yaml."""
    shipped = yaml.safe_load(resources.files("llmsight.alerts").joinpath("default-rules.yaml").read_text("utf-8"))
    text = yaml.safe_dump({"defaults": shipped["defaults"], "rules": [
        {"name": "drift", "metric": "drift_input", "comparison": "significant", "direction": "any",
         "warning": 0.01, "critical": 0.002, "min_samples": 40}]})
    [rule] = parse_rules(text, "shipped-defaults")
    return rule


def run(rule: Rule, values: list[float | None], *, seconds: float = 60, state: AlertState | None = None,
        p_values: bool = False, start: int = 0) -> tuple[AlertState, list[str | None], list[dict]]:
    """Feed one value per window; returns the final state, every transition and the notifications sent."""
    return feed(rule, values, seconds=seconds, state=state, p_values=p_values, start=start)


def test_the_demo_flap_reproduced_without_hysteresis_and_gone_with_the_shipped_defaults():
    # The demo's 10-second windows: a drift p-value that is noisy around the level.
    p = [0.001, 0.001, 0.3, 0.001, 0.001, 0.3, 0.001, 0.2, 0.001, 0.001, 0.4, 0.001]
    old = Rule(name="drift", metric="drift_input", comparison="significant", direction="any", warning=0.01,
               critical=0.002, min_samples=40, for_windows=2, recover_windows=1)
    _, seen, sent = run(old, p, seconds=10, p_values=True)
    # pending -> firing -> resolved -> pending within 70 s, and a new firing every few windows.
    assert seen[:4] == ["pending", "firing", "resolved", "pending"]
    assert [n["kind"] for n in sent] == ["firing", "resolved"] * 3

    st, seen, sent = run(drift_rule_with_shipped_defaults(), p, seconds=10, p_values=True)
    assert seen[:2] == ["pending", "firing"]
    assert "resolved" not in seen and "pending" not in seen[2:]
    assert [n["kind"] for n in sent] == ["firing"]  # one incident, paged once
    assert st.state == FIRING


def test_recovery_needs_n_consecutive_clean_windows():
    _, seen, _ = run(tox(recover_windows=3), [0.1, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0])
    assert seen == ["firing", "recovering", "recovering", "breaching", "recovering", "recovering", "resolved", None]


def test_a_clear_level_holds_the_alert_in_the_band_between_clear_and_warning():
    rule = tox(clear=0.03, recover_windows=2)
    st, seen, _ = run(rule, [0.1, 0.04, 0.04, 0.02, 0.04, 0.02, 0.01])
    # 0.04 is below warning (no breach) but above clear: neither a breach nor a clean window.
    assert seen == ["firing", None, None, "recovering", "held", "recovering", "resolved"]
    assert st.state == RESOLVED
    assert rule.clean(Observation(0.029, 50)) and not rule.clean(Observation(0.03, 50))


def test_a_clear_level_for_p_values_needs_the_p_value_above_it():
    rule = Rule(name="acc", metric="acceptance_rate", comparison="significant", direction="below", warning=0.01,
                clear=0.2)
    assert not rule.clean(Observation(0.5, 200, baseline=0.8, p_value=0.05))  # not significant, not clear either
    assert rule.clean(Observation(0.5, 200, baseline=0.8, p_value=0.3))
    assert rule.clean(Observation(0.9, 200, baseline=0.8, p_value=0.0001))  # a rise is clean for a drop rule


def test_minimum_firing_time_in_window_time():
    st, seen, _ = run(tox(min_firing_s=300), [0.1] + [0.0] * 7)
    assert seen == ["firing"] + ["recovering"] * 4 + ["resolved", None, None]  # window 5 is 300 s after firing
    assert st.episode["resolved"] == "2026-11-21T12:05:00.000Z"


def test_a_breach_soon_after_resolving_refires_the_same_incident_marked_flapping():
    rule = tox(for_windows=2, flap_window_s=600)
    values = [0.1, 0.1, 0.0, 0.1] + [0.0] * 11 + [0.0] * 10 + [0.1, 0.1]
    st, seen, sent = run(rule, values)
    assert seen[:4] == ["pending", "firing", "resolved", "flapping"]
    # While flapping it resolves only after a whole flap window (10 one-minute windows) clean.
    assert seen[4:15] == ["recovering"] * 10 + ["resolved"]
    # A flap window after that resolution, a breach is a new episode: through pending, with a new incident id.
    assert seen[15:25] == [None] * 10
    assert seen[25:] == ["pending", "firing"]
    kinds = [n["kind"] for n in sent]
    assert kinds == ["firing", "resolved", "flapping", "resolved", "firing"]
    first, second = {n["incident_id"] for n in sent[:4]}, sent[4]["incident_id"]
    assert len(first) == 1 and second not in first
    assert sent[2]["episode"]["flaps"] == 1 and sent[2]["episode"]["flapping"] is True
    assert sent[2]["fired_at"] == sent[0]["fired_at"]  # the same incident, not re-opened
    assert st.episode["flaps"] == 0


def test_pending_that_clears_opens_no_incident_and_is_not_a_flap():
    st, seen, sent = run(tox(for_windows=3, flap_window_s=600), [0.1, 0.0, 0.1, 0.0])
    assert seen == ["pending", "cleared", "pending", "cleared"] and sent == [] and st.episode == {}


def test_stepping_down_from_critical_waits_recover_for_windows_at_warning():
    _, seen, sent = run(tox(recover_windows=2), [0.2, 0.07, 0.2, 0.07, 0.07, 0.2])
    assert seen == ["firing", "deescalating", "breaching", "deescalating", "deescalated", "escalated"]
    assert [n["severity"] for n in sent] == ["critical", "warning", "critical"]


def test_every_notification_of_an_episode_carries_its_incident_id():
    rule = tox(renotify_s=120, recover_windows=1)
    _, seen, sent = run(rule, [0.1, 0.1, 0.1, 0.2, 0.0])
    assert [n["kind"] for n in sent] == ["firing", "renotify", "escalated", "resolved"]
    assert len({n["incident_id"] for n in sent}) == 1
    assert sent[0]["incident_id"] == f"{alert_id('tox', SEGMENT)}-20261121T120000"


def test_thresholds_are_in_the_units_of_the_value():
    drift = Rule(name="d", metric="drift_input", comparison="significant", direction="any", warning=0.01,
                 critical=0.002, for_windows=1)
    st, _, sent = run(drift, [0.0005], p_values=True)
    # The score (5.0) stands next to its own critical value (4.07); the p-value and its level apart.
    assert (st.value, st.threshold, st.p_value) == (5.0, 4.07, 0.0005)
    assert st.evidence["rule_level"] == {"severity": "critical", "level": 0.002, "unit": "p-value"}
    assert sent[0]["threshold"] == 4.07
    latency = Rule(name="p95", metric="latency_p95_ms", comparison="relative", direction="above", warning=0.5,
                   critical=1.0, for_windows=1)
    st, _, _ = run(latency, [170.0], state=None)
    assert st.threshold is None  # no baseline: no threshold in ms to show
    st, _ = step(latency, AlertState("a", "p95", "latency_p95_ms", dict(SEGMENT)),
                 Observation(value=170.0, n=100, baseline=100.0), T0, T0)
    assert st.threshold == 150.0 and st.evidence["rule_level"]["unit"] == "fraction of baseline"


def test_rule_files_take_the_new_keys_with_defaults():
    rules = parse_rules(
        "defaults: {min_firing: 5m}\nrules:\n"
        "  - {name: a, metric: error_rate, warning: 0.1, clear: 0.05, recover_for: 3}\n"
        "  - {name: b, metric: error_rate, warning: 0.1, min_firing: 0, flap_window: 0}\n", "x.yaml")
    assert [(r.clear, r.recover_windows, r.min_firing_s, r.flap_window_s) for r in rules] == [
        (0.05, 3, 300.0, 600.0), (None, 1, 0.0, 0.0)]


@pytest.mark.parametrize(("rule", "message"), [
    ("{name: a, metric: m, warning: 0.1, clear: 0.2}", "clear 0.2 must be at or below the lowest level 0.1"),
    ("{name: a, metric: m, warning: 0.5, direction: below, clear: 0.4}", "at or above the lowest level 0.5"),
    ("{name: a, metric: m, comparison: significant, warning: 0.01, clear: 0.001}", "between the lowest p-value"),
    ("{name: a, metric: m, warning: 0.1, min_firing: soon}", "not a duration"),
    ("{name: a, metric: m, warning: 0.1, flap_window: -5}", "must be 0 or more"),
    ("{name: a, metric: m, warning: 0.1, clear: low}", "clear must be a number"),
])
def test_bad_hysteresis_settings_fail_with_the_reason(rule, message):
    with pytest.raises(ConfigError, match="x.yaml") as info:
        parse_rules(f"rules: [{rule}]", "x.yaml")
    assert message in str(info.value)
