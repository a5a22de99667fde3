"""The dashboard's pure parts: how figures combine across segments, Wilson intervals, drift flags,
topic tables, time windows and which addresses count as local."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from llmsight.dashboard import auth, figures
from llmsight.dashboard.drift import topic_changes
from llmsight.dashboard.safety import flagged
from llmsight.errors import ConfigError
from llmsight.store import queries


def rows(*triples: tuple[float, float, float]) -> pd.DataFrame:
    return pd.DataFrame(triples, columns=["n", "weighted", "total"])


def test_rates_are_weighted_by_n_counts_and_sums_add_up():
    frame = rows((300, 0.02 * 300, 0.02), (100, 0.10 * 100, 0.10))
    assert figures.combine(frame, "error_rate") == pytest.approx(0.04)
    assert figures.combine(frame, "volume") == 400
    assert figures.combine(rows((1, 1.5, 1.5), (1, 0.5, 0.5)), "cost_usd") == 2.0
    assert figures.combine(rows(), "error_rate") is None
    assert figures.combine(rows((0, 0, 0)), "error_rate") is None


def test_kpis_split_the_current_period_from_the_baseline():
    start = pd.Timestamp("2026-11-20 00:00")
    series = pd.DataFrame({
        "metric": ["volume", "volume", "volume", "acceptance_rate", "acceptance_rate"],
        "bucket": [start - pd.Timedelta(hours=2), start + pd.Timedelta(hours=1), start + pd.Timedelta(hours=2),
                   start - pd.Timedelta(hours=1), start + pd.Timedelta(hours=1)],
        "n": [200, 150, 250, 100, 50], "weighted": [0, 0, 0, 90, 40], "total": [200, 150, 250, 0.9, 0.8],
    })
    by_metric = {k.metric: k for k in figures.kpis_from_metrics(series, start)}
    assert (by_metric["volume"].value, by_metric["volume"].baseline) == (400, 200)
    assert by_metric["volume"].change == 1.0
    assert by_metric["volume"].series == [150, 250]
    assert by_metric["acceptance_rate"].value == pytest.approx(0.8)
    assert by_metric["acceptance_rate"].change == pytest.approx((0.8 - 0.9) / 0.9)
    assert by_metric["cost_usd"].value is None and by_metric["cost_usd"].change is None


def test_acceptance_totals_sum_segments_and_draw_the_wilson_interval():
    rows = pd.DataFrame({"model": ["m", "m", "n"], "prompt_version": ["v1", "v1", "v1"],
                         "accepted": [30.0, 10.0, 0.0], "n": [40, 10, 0]})
    totals = figures.acceptance_totals(rows)
    m, n = totals.iloc[0], totals.iloc[1]
    assert (m["accepted"], m["n"], m["rate"]) == (40, 50, 0.8)
    assert (round(m["low"], 4), round(m["high"], 4)) == (0.6696, 0.8876)
    assert (n["low"], n["high"]) == (0.0, 1.0) and pd.isna(n["rate"])


def test_drift_summary_counts_rows_by_the_analyzers_rule():
    # Row 2's score passes its threshold but the analyzer's stored verdict says no; row 3 has no
    # verdict and no p-value, so its score against the threshold decides (drift.row_drifted).
    latest = pd.DataFrame({"value": [0.2, 0.3, 0.3, 0.05], "threshold": [0.1, 0.1, 0.1, 0.1],
                           "p_value": [0.001, None, None, None],
                           "details": ["", '{"drifted": false}', "", '{"drifted": true}']})
    assert figures.drift_flags(latest) == [True, False, True, True]
    assert figures.drift_summary(latest) == (3, 4)
    assert figures.drift_summary(latest.iloc[:0]) == (0, 0)


def test_formats():
    assert figures.format_value("volume", 1234567) == "1,234,567"
    assert figures.format_value("cost_usd", 2) == "$2.00"
    assert figures.format_value("latency_p95_ms", 599.6) == "600 ms"
    assert figures.format_value("error_rate", 0.04) == "4.0%"
    assert figures.format_value("error_rate", None) == "–"
    assert figures.format_change(-0.2777) == "-27.8% vs baseline"


def test_topic_table_reads_the_analyzers_explanation():
    details = json.dumps({"drifted": True, "topics": {
        "grown": [{"label": "card fees", "share_ref": 0.05, "share_cur": 0.25, "delta": 0.2, "z": 4.1,
                   "examples": ["fee?", "why a fee", "fees again", "a fourth"]}],
        "shrunk": [{"label": "transfers", "share_ref": 0.3, "share_cur": 0.1, "delta": -0.2, "z": -3.0,
                    "examples": []}]}})
    table = topic_changes(details)
    assert table[["direction", "topic", "change"]].values.tolist() == [["grew", "card fees", 0.2],
                                                                       ["shrank", "transfers", -0.2]]
    assert table["examples"].iloc[0] == "fee? | why a fee | fees again"
    assert topic_changes("").empty and topic_changes("not json").empty and topic_changes('{"topics": []}').empty


def test_flagged_texts_come_from_the_toxicity_rows_examples_highest_first():
    window = pd.Timestamp("2026-11-20 10:00")
    examples = {"toxic": 2, "examples": [{"trace_id": "t1", "text": "bad", "score": 0.7},
                                         {"trace_id": "t2", "text": "worse", "score": 0.95}]}
    metric_rows = pd.DataFrame([
        {"window_start": window, "metric": "toxicity_rate_output", "service": "s", "name": "n", "model": "m",
         "prompt_version": "v2", "threshold": 0.5, "details": json.dumps(examples)},
        {"window_start": window, "metric": "toxicity_rate_input", "service": "s", "name": "n", "model": "m",
         "prompt_version": "v2", "threshold": 0.5, "details": "{}"},
    ])
    table = flagged(metric_rows)
    assert table[["signal", "trace_id", "score"]].values.tolist() == [["outputs", "t2", 0.95], ["outputs", "t1", 0.7]]


@pytest.mark.parametrize(("address", "local"), [
    ("127.0.0.1", True), ("127.0.0.53", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("", False), ("10.0.0.5", False), ("::", False), ("example.com", False),
])
def test_only_loopback_addresses_are_local(address, local):
    assert auth.is_local(address) is local


def test_startup_fails_fast_beyond_localhost_without_a_login(monkeypatch):
    monkeypatch.delenv("LLMSIGHT_DASHBOARD_PASSWORD", raising=False)
    auth.check_startup("127.0.0.1")
    with pytest.raises(ConfigError, match="LLMSIGHT_DASHBOARD_PASSWORD"):
        auth.check_startup("0.0.0.0")
    # A password long enough (12 characters at least, see test_dashboard_hardening) lets it start.
    monkeypatch.setenv("LLMSIGHT_DASHBOARD_PASSWORD", "secret-secret")
    auth.check_startup("0.0.0.0")


def test_views_end_on_a_bucket_boundary_and_the_baseline_precedes_them():
    at = dt.datetime(2026, 11, 20, 10, 17, 42)
    day = queries.view_for("24h", at, services=("a",))
    assert (day.start, day.end, day.services) == (dt.datetime(2026, 11, 19, 11), dt.datetime(2026, 11, 20, 11), ("a",))
    assert (day.baseline().start, day.baseline().end) == (dt.datetime(2026, 11, 18, 11), day.start)
    hour = queries.view_for("1h", at)
    assert (hour.start, hour.end) == (dt.datetime(2026, 11, 20, 9, 18), dt.datetime(2026, 11, 20, 10, 18))
    assert queries.view_for("no-such-range", at) == queries.view_for("24h", at)
    assert [queries.bucket_seconds(queries.RANGES[k]) for k in ("1h", "6h", "24h", "7d", "30d")] == [
        60, 420, 3600, 10800, 86400]
    assert [queries.granularity_for(queries.RANGES[k]) for k in ("1h", "6h", "24h", "7d", "30d")] == [
        "1m", "1m", "1h", "1h", "1d"]


def test_segment_filters_add_fixed_clauses_and_carry_values_as_parameters():
    view = queries.Filters(dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2), services=("a'b",), environments=("x",))
    clause, params = queries.segment_clauses(view, environment=True)
    assert clause == " AND service IN {services:Array(String)} AND environment IN {environments:Array(String)}"
    assert params == {"services": ["a'b"], "environments": ["x"]}
    clause, params = queries.segment_clauses(view, environment=False, table="m.")
    assert clause == " AND m.service IN {services:Array(String)}" and params == {"services": ["a'b"]}


def test_pick_granularity_prefers_the_asked_one_else_the_finest():
    frame = pd.DataFrame({"metric": ["a", "a", "b", "b"], "granularity": ["1m", "1h", "1m", "1d"],
                          "n": [1, 2, 3, 4]})
    kept = queries.pick_granularity(frame, "1h")
    assert sorted(zip(kept["metric"], kept["granularity"], strict=True)) == [("a", "1h"), ("b", "1m")]
