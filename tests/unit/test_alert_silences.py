"""Alert silences: matching, expiry at the boundary, durations, and the held-back notification sent once."""

from __future__ import annotations

import importlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from llmsight.alerts.engine import NOTIFYING, AlertState, alert_id, step
from llmsight.alerts.rules import Observation, Rule
from llmsight.alerts.silences import (
    Silence,
    create_silence,
    gate,
    matching,
    parse_silence_for,
    time_left,
)
from llmsight.errors import ConfigError

migrate_module = importlib.import_module("llmsight.store.migrate")  # the package re-exports migrate()
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
SEGMENT = {"service": "banking-assistant", "name": "answer", "model": "gpt-x", "prompt_version": "v3"}
RULE = Rule(name="tox", metric="toxicity_rate_output", warning=0.05, critical=0.15, min_samples=10,
            for_windows=1, renotify_s=600)


def silence(until: datetime, rule: str = "tox", removed_at: datetime | None = None, ident: str = "s1",
            **segment: str) -> Silence:
    return Silence(ident, rule, segment, until, "ana", "known regression", T0, removed_at=removed_at)


def test_a_silence_matches_its_rule_and_the_segment_values_it_gives():
    assert silence(T0, prompt_version="v3").matches("tox", SEGMENT)
    assert silence(T0).matches("tox", SEGMENT)  # no segment: every segment of the rule
    assert silence(T0, service="banking-assistant", prompt_version="v3").matches("tox", SEGMENT)
    assert not silence(T0, prompt_version="v2").matches("tox", SEGMENT)
    assert not silence(T0, service="banking-assistant", prompt_version="v2").matches("tox", SEGMENT)
    assert not silence(T0, prompt_version="v3").matches("drift", SEGMENT)
    # Values are compared exactly, not as patterns.
    assert not silence(T0, service="banking-*").matches("tox", SEGMENT)


def test_a_silence_ends_exactly_at_until_or_at_its_removal():
    s = silence(T0 + timedelta(hours=2))
    assert s.active(T0 + timedelta(hours=2) - timedelta(milliseconds=1))
    assert not s.active(T0 + timedelta(hours=2))
    removed = silence(T0 + timedelta(hours=2), removed_at=T0 + timedelta(minutes=30))
    assert removed.active(T0 + timedelta(minutes=29, seconds=59))
    assert not removed.active(T0 + timedelta(minutes=30))


def test_matching_picks_the_active_silence_that_lasts_longest():
    short = silence(T0 + timedelta(hours=1), ident="short", prompt_version="v3")
    long = silence(T0 + timedelta(hours=4), ident="long")
    other = silence(T0 + timedelta(hours=9), rule="drift", ident="other")
    assert matching([short, long, other], "tox", SEGMENT, T0).silence_id == "long"
    assert matching([short, other], "tox", SEGMENT, T0 + timedelta(hours=1)) is None
    assert matching([short, long], "tox", {**SEGMENT, "prompt_version": "v2"}, T0).silence_id == "long"


@pytest.mark.parametrize(("raw", "seconds"), [("30m", 1800), ("2h", 7200), ("1d", 86400), ("90s", 90),
                                              ("30d", 30 * 86400)])
def test_silence_durations(raw, seconds):
    assert parse_silence_for(raw) == timedelta(seconds=seconds)


@pytest.mark.parametrize(("raw", "message"), [("2x", "is not a duration"), ("soon", "is not a duration"),
                                              ("-1h", "is not a duration"), ("0m", "longer than zero"),
                                              ("31d", "longer than 30 days")])
def test_bad_silence_durations_say_why(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_silence_for(raw)


def test_time_left_is_rounded_down_to_the_minute():
    s = silence(T0 + timedelta(days=1, hours=2, minutes=3, seconds=59))
    assert time_left(s, T0) == "1d 2h 3m"
    assert time_left(s, T0 + timedelta(days=1)) == "2h 3m"
    assert time_left(s, T0 + timedelta(days=1, hours=2, minutes=3, seconds=15)) == "44s"
    assert time_left(s, T0 + timedelta(days=3)) == "0s"


def test_creating_a_silence_refuses_an_unknown_rule_before_touching_the_store():
    with pytest.raises(ConfigError, match="no alert rule named 'toxx'; the rules are: tox"):
        create_silence(None, "toxx", {}, timedelta(hours=1), "ana", rules=[RULE])
    with pytest.raises(ConfigError, match="who creates it"):
        create_silence(None, "tox", {}, timedelta(hours=1), " ", rules=[RULE])
    with pytest.raises(ConfigError, match="segment keys \\['region'\\]"):
        create_silence(None, "tox", {"region": "eu"}, timedelta(hours=1), "ana", rules=[RULE])
    # The same length rule as the CLI's --for, for callers that pass a timedelta.
    with pytest.raises(ConfigError, match="longer than 30 days"):
        create_silence(None, "tox", {}, timedelta(days=30, seconds=1), "ana", rules=[RULE])
    with pytest.raises(ConfigError, match="longer than zero"):
        create_silence(None, "tox", {}, timedelta(0), "ana", rules=[RULE])


# -- the engine's per-alert step with silences, as AlertEngine.evaluate runs it ------------------------

def run(values: list[float | None], silences: list[Silence], state: AlertState | None = None,
        rule: Rule = RULE, start: int = 0) -> tuple[AlertState, list[str | None], list[str]]:
    """One value per minute window (evaluated 20 s after it starts): final state, transitions, sent kinds."""
    st = state or AlertState(alert_id(rule.name, SEGMENT), rule.name, rule.metric, dict(SEGMENT))
    transitions, sent = [], []
    for i, value in enumerate(values, start=start):
        window = T0 + timedelta(minutes=i)
        now = window + timedelta(seconds=20)
        obs = None if value is None else Observation(value=value, n=50)
        new, transition = step(rule, st, obs, window, now)
        sends = transition in NOTIFYING and (transition != "resolved" or rule.send_recovery)
        new, transition, kind = gate(matching(silences, rule.name, SEGMENT, now), st, new, transition, sends, now)
        transitions.append(transition)
        if kind is not None:
            sent.append(kind)
        st = new
    return st, transitions, sent


def test_an_alert_firing_under_a_silence_is_recorded_and_notifies_once_when_it_ends():
    # Silenced until 12:03:00; windows evaluated at 12:00:20, 12:01:20, ...
    quiet = [silence(T0 + timedelta(minutes=3), prompt_version="v3")]
    st, transitions, sent = run([0.1, 0.1, 0.1, 0.1, 0.1, 0.1], quiet)
    assert transitions == ["firing", None, None, "unsilenced", None, None]
    assert sent == ["firing"]
    assert (st.state, st.held_back, st.silenced_by) == ("firing", "", "")
    assert st.fired_at == T0 + timedelta(seconds=20)
    assert st.notified_at == T0 + timedelta(minutes=3, seconds=20)  # the renotify clock restarts here


def test_the_boundary_window_evaluated_exactly_at_until_already_notifies():
    quiet = [silence(T0 + timedelta(minutes=1, seconds=20))]
    _, transitions, sent = run([0.1, 0.1], quiet)
    assert transitions == ["firing", "unsilenced"] and sent == ["firing"]


def test_while_silenced_the_state_is_marked_with_what_was_held_back():
    st, _, sent = run([0.1], [silence(T0 + timedelta(hours=1))])
    assert sent == [] and (st.state, st.held_back, st.silenced_by) == ("firing", "firing", "s1")


def test_a_silence_on_another_segment_or_rule_does_not_hold_anything_back():
    quiet = [silence(T0 + timedelta(hours=1), prompt_version="v2"), silence(T0 + timedelta(hours=1), rule="x")]
    st, transitions, sent = run([0.1, 0.2], quiet)
    assert transitions == ["firing", "escalated"] and sent == ["firing", "escalated"] and st.held_back == ""


def test_a_held_back_firing_stays_firing_through_escalations_and_renotifies():
    rule = replace(RULE, renotify_s=90)
    quiet = [silence(T0 + timedelta(minutes=4))]
    st, transitions, sent = run([0.1, 0.2, 0.2, 0.2, 0.2, 0.2], quiet, rule=rule)
    assert transitions == ["firing", "escalated", None, "renotify", "unsilenced", None]
    assert sent == ["firing"] and st.severity == "critical" and st.held_back == ""
    # When the window that releases it is itself a renotify, that goes out once, as the firing never seen.
    _, transitions, sent = run([0.1, 0.2, 0.2, 0.2, 0.2], [silence(T0 + timedelta(minutes=3))], rule=rule)
    assert transitions == ["firing", "escalated", None, "renotify", None] and sent == ["firing"]


def test_a_held_back_firing_that_resolves_in_the_releasing_window_sends_no_recovery():
    _, transitions, sent = run([0.1, 0.0], [silence(T0 + timedelta(minutes=1))])
    assert transitions == ["firing", "resolved"] and sent == []


def test_a_renotify_held_back_is_sent_as_a_renotify():
    rule = replace(RULE, renotify_s=120)
    fired, _, sent_before = run([0.1], [], rule=rule)
    assert sent_before == ["firing"]
    st, transitions, sent = run([0.1, 0.1, 0.1, 0.1], [silence(T0 + timedelta(minutes=3))], state=fired,
                                rule=rule, start=1)
    assert transitions == [None, "renotify", "unsilenced", None] and sent == ["renotify"]


def test_an_alert_that_fires_and_resolves_under_the_silence_sends_nothing():
    st, transitions, sent = run([0.1, 0.0, 0.0, 0.0], [silence(T0 + timedelta(minutes=2))])
    assert transitions == ["firing", "resolved", None, None] and sent == []
    assert (st.state, st.held_back, st.silenced_by) == ("resolved", "", "")


def test_the_recovery_of_an_alert_notified_before_the_silence_is_still_sent():
    fired, _, sent_before = run([0.1], [])
    st, transitions, sent = run([0.1, 0.0, 0.0], [silence(T0 + timedelta(hours=1))], state=fired, start=1)
    assert sent_before == ["firing"] and transitions == [None, "resolved", None] and sent == ["resolved"]
    assert st.held_back == ""


def test_an_acknowledged_alert_is_not_sent_after_the_silence():
    st, _, _ = run([0.1], [silence(T0 + timedelta(minutes=1))])
    st = replace(st, acked_by="ana", acked_at=T0)
    _, transitions, sent = run([0.1, 0.1], [], state=st, start=1)
    assert transitions == [None, None] and sent == []


def test_a_removed_silence_releases_at_the_next_window():
    quiet = [silence(T0 + timedelta(hours=2), removed_at=T0 + timedelta(minutes=1))]
    _, transitions, sent = run([0.1, 0.1, 0.1], quiet)
    assert transitions == ["firing", "unsilenced", None] and sent == ["firing"]


def test_the_silences_table_is_replicated_and_sharded_by_id_on_a_cluster():
    [migration] = [m for m in migrate_module.load_migrations() if m.name == "0004_alert_silences"]
    statements = migrate_module.render(migration, "db", ttl_days=7, cluster="c1")
    assert statements[0].startswith("CREATE TABLE IF NOT EXISTS `db`.alert_silences_local ON CLUSTER `c1`")
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', " \
           "updated_at)" in statements[0]
    assert statements[1].endswith("Distributed('c1', 'db', 'alert_silences_local', cityHash64(silence_id))")
    assert [s.split(" ON CLUSTER")[0] for s in statements[2:]] == [
        "ALTER TABLE `db`.alerts_local", "ALTER TABLE `db`.alerts"]


# -- the command line refuses bad input before it opens the store ---------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["output-toxicity", "--for", "2x"], "Invalid value for --for: silence duration: '2x' is not a duration"),
    (["output-toxicity", "--for", "0m"], "must be longer than zero"),
    (["output-toxicity", "--for", "45d"], "longer than 30 days"),
    (["toxicity", "--for", "2h"], "Invalid value for RULE: no alert rule named 'toxicity'; the rules are: "
                                  "acceptance-drop, analysis-lag, cost-per-call, error-rate,"),
])
def test_cli_silence_refuses_bad_durations_and_unknown_rules_with_exit_code_2(args, message, monkeypatch):
    from typer.testing import CliRunner

    from llmsight.cli.app import _build

    monkeypatch.delenv("LLMSIGHT_RULES", raising=False)
    # A store URL nothing listens on: reaching it would be a different error.
    result = CliRunner().invoke(_build(), ["alerts", "silence", *args, "--url", "http://127.0.0.1:9/nowhere"])
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())


def test_cli_silence_checks_the_rules_file_in_llmsight_rules(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from llmsight.cli.app import _build

    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{name: refunds-errors, metric: error_rate, warning: 0.1}]\n", encoding="utf-8")
    monkeypatch.setenv("LLMSIGHT_RULES", str(rules))
    result = CliRunner().invoke(_build(), ["alerts", "silence", "output-toxicity", "--for", "1h",
                                           "--url", "http://127.0.0.1:9/nowhere"])
    assert result.exit_code == 2
    assert "the rules are: refunds-errors" in " ".join(result.output.replace("│", " ").split())
