"""One rule for "this drift row drifted": drift.row_drifted (dashboard) and drift.row_drifted_sql
(weekly export) must agree with each other and with the expected verdict on every boundary case.

The SQL side runs in chdb on real metrics rows, so a change to either form that the other does
not follow fails here.
"""

from __future__ import annotations

import datetime as dt
import math

from llmsight.analyzers import drift
from llmsight.store import METRIC_COLUMNS

ALPHA = 0.01
NAN = math.nan

# (case, value, threshold, p_value, details, expected)
CASES = [
    ("the stored verdict beats a large p-value", 0.0, 1.0, 0.9, '{"drifted": true}', True),
    ("the stored verdict beats a small p-value", 5.0, 1.0, 0.001, '{"drifted": false}', False),
    ("p exactly at alpha is not drifted", 9.0, 0.1, ALPHA, "", False),
    ("p just below alpha is drifted", 0.0, 0.1, 0.0099, "", True),
    ("the p-value decides over the threshold", 0.05, 0.1, 0.001, "", True),
    ("a large p-value over a passed threshold", 0.2, 0.1, 0.5, "", False),
    ("no p-value: score exactly at the threshold", 0.1, 0.1, None, "", False),
    ("no p-value: score above the threshold", 0.1000001, 0.1, None, "", True),
    ("a NaN p-value counts as missing", 0.2, 0.1, NAN, "", True),
    ("a NaN threshold counts as missing", 0.2, NAN, None, "", False),
    ("neither p-value nor threshold", 0.2, None, None, "", False),
    ("a numeric flag is no verdict", 0.2, 0.1, None, '{"drifted": 1}', True),
    ("a string flag is no verdict", 0.2, 0.1, None, '{"drifted": "no"}', True),
    ("a null flag is no verdict", 0.0, None, 0.001, '{"drifted": null}', True),
    ("details without a flag", 0.0, None, 0.5, '{"method": "knn", "topics": []}', False),
    ("details that are not JSON", 0.2, 0.1, None, "{not json", True),
    ("details that are a JSON list", 0.0, 0.1, None, "[true]", False),
]


def test_python_rule_gives_the_expected_verdicts() -> None:
    got = {case: drift.row_drifted(v, t, p, d, alpha=ALPHA) for case, v, t, p, d, _ in CASES}
    assert got == {case: expected for case, *_, expected in CASES}


def test_python_rule_reads_a_parsed_details_dict_like_its_json() -> None:
    assert drift.row_drifted(5.0, 1.0, 0.001, {"drifted": False}, alpha=ALPHA) is False
    assert drift.row_drifted(0.0, None, None, {"drifted": True}, alpha=ALPHA) is True


def _sql_verdicts(client, cases: list[tuple], alpha: float) -> dict[str, bool]:
    """The SQL rule's verdict on each case, stored as a real metrics row."""
    # Midnight UTC yesterday, not a fixed date: FINAL drops rows past the 90-day TTL.
    start = dt.datetime.combine(dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1), dt.time(), dt.UTC)
    rows = []
    for index, (_, value, threshold, p_value, details, *_) in enumerate(cases):
        row = dict(window_start=start, window_end=start + dt.timedelta(minutes=1), granularity="1m",
                   service="s", name="n", model="m", prompt_version=str(index), metric="drift_input",
                   value=value, n=100, baseline=None, p_value=p_value, threshold=threshold, details=details)
        rows.append([row[c] for c in METRIC_COLUMNS])
    client.insert("metrics", rows, column_names=METRIC_COLUMNS)
    result = client.query(
        f"SELECT toUInt32(prompt_version), toUInt8({drift.row_drifted_sql(alpha, table='m')}) "
        "FROM metrics AS m FINAL ORDER BY toUInt32(prompt_version)").result_rows
    return {cases[index][0]: bool(flag) for index, flag in result}


def test_sql_rule_agrees_with_the_python_rule_on_stored_rows(store_client) -> None:
    by_python = {case: drift.row_drifted(v, t, p, d, alpha=ALPHA) for case, v, t, p, d, _ in CASES}
    assert _sql_verdicts(store_client, CASES, ALPHA) == by_python


def test_a_small_alpha_survives_the_trip_into_sql(store_client) -> None:
    alpha = 1e-05  # written as 1e-05: ClickHouse must read the exponent form
    cases = [("at alpha", 0.0, None, alpha, ""), ("below alpha", 0.0, None, 0.99e-05, "")]
    assert _sql_verdicts(store_client, cases, alpha) == {"at alpha": False, "below alpha": True}
    assert [drift.row_drifted(v, t, p, d, alpha=alpha) for _, v, t, p, d in cases] == [False, True]
