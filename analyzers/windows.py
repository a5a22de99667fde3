"""The scheduler's I/O: which windows are due, what a window and its reference hold, and the metric rows.

Every read that feeds an analyzer is deterministic, so a rerun of a window reads the same rows and
writes the same metric rows:

* events are read ``FINAL`` (duplicates by ``event_id`` collapsed);
* texts are sampled by the order of ``cityHash64(event_id)``, not at random, capped per segment;
* the metric rows are written with the ``metrics`` table's ReplacingMergeTree key, so a rerun
  replaces the earlier rows instead of adding to them.

A segment is service × name × model × prompt_version. Its *feature* is service × name × model: a
new prompt version has no history of its own, so its reference falls back to the feature's traffic
(the versions before it) when it has too little.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from llmsight.store import METRIC_COLUMNS
from llmsight.store.names import FEATURE_KEYS, SEGMENT_KEYS
from llmsight.store.times import iso_s, utc

log = logging.getLogger("llmsight.analyzers.windows")

BASE_GRANULARITY = "1m"  # the scheduler's base window is stored as 1m whatever its length (see names.py)
ROLLUPS = {"1h": 3600, "1d": 86400}


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    granularity: str = BASE_GRANULARITY

    def __str__(self) -> str:
        return f"{self.granularity} {iso_s(self.start)}..{iso_s(self.end)}"


@dataclass(frozen=True)
class Period:
    """A stretch of time to read, optionally with one window cut out (the window under test)."""

    start: datetime
    end: datetime
    exclude: tuple[datetime, datetime] | None = None


@dataclass
class Calls:
    """One segment's calls in a period: numbers for all of them, texts for a deterministic sample."""

    n: int = 0
    latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ttft_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))  # NaN where unknown
    tokens_in: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tokens_out: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cost_usd: np.ndarray = field(default_factory=lambda: np.zeros(0))  # NaN where unknown
    errors: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    output_chars: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_trace_ids: list[str] = field(default_factory=list)
    sample_inputs: list[str] = field(default_factory=list)
    sample_outputs: list[str] = field(default_factory=list)


def floor_time(ts: datetime, seconds: int) -> datetime:
    """The start of the ``seconds``-long window that holds ``ts`` (windows are aligned to the epoch)."""
    epoch = int(utc(ts).timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=timezone.utc)


def due_windows(last_start: datetime | None, now: datetime, seconds: int, lag_s: float, catchup: int,
                granularity: str = BASE_GRANULARITY) -> list[Window]:
    """Closed windows (ended at least ``lag_s`` ago) after ``last_start``, oldest first, at most ``catchup``."""
    newest_start = floor_time(now - timedelta(seconds=lag_s), seconds) - timedelta(seconds=seconds)
    step = timedelta(seconds=seconds)
    first = newest_start - step * (catchup - 1)
    if last_start is not None:
        # Floored, so a store analyzed with another window length resumes on this length's grid.
        first = max(first, floor_time(last_start, seconds) + step)
    windows = []
    start = first
    while start <= newest_start:
        windows.append(Window(start, start + step, granularity))
        start += step
    return windows


def _where_period(period: Period, prefix: str = "") -> tuple[str, dict[str, Any]]:
    sql = f"{prefix}ts >= {{p_start:DateTime64(3, 'UTC')}} AND {prefix}ts < {{p_end:DateTime64(3, 'UTC')}}"
    params: dict[str, Any] = {"p_start": period.start, "p_end": period.end}
    if period.exclude is not None:
        sql += (f" AND NOT ({prefix}ts >= {{x_start:DateTime64(3, 'UTC')}} "
                f"AND {prefix}ts < {{x_end:DateTime64(3, 'UTC')}})")
        params.update(x_start=period.exclude[0], x_end=period.exclude[1])
    return sql, params


def _where_segment(segment: dict[str, str], keys: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    parts, params = [], {}
    for key in keys:
        parts.append(f"{key} = {{s_{key}:String}}")
        params[f"s_{key}"] = segment[key]
    return " AND ".join(parts), params


def segments_in(client: Any, window: Window) -> list[dict[str, str]]:
    """Every segment with at least one call in the window."""
    where, params = _where_period(Period(window.start, window.end))
    rows = client.query(
        f"SELECT DISTINCT service, name, model, prompt_version FROM events WHERE {where} "
        "ORDER BY service, name, model, prompt_version", parameters=params).result_rows
    return [dict(zip(SEGMENT_KEYS, row, strict=True)) for row in rows]


def count_calls(client: Any, period: Period, segment: dict[str, str], keys: tuple[str, ...]) -> int:
    where_p, params = _where_period(period)
    where_s, params_s = _where_segment(segment, keys)
    return int(client.query(f"SELECT count() FROM events FINAL WHERE {where_p} AND {where_s}",
                            parameters={**params, **params_s}).result_rows[0][0])


def read_calls(client: Any, period: Period, segment: dict[str, str], keys: tuple[str, ...] = SEGMENT_KEYS,
               sample: int = 500) -> Calls:
    """The calls of a segment (or, with ``keys=FEATURE_KEYS``, of its feature) in ``period``."""
    where_p, params = _where_period(period)
    where_s, params_s = _where_segment(segment, keys)
    params = {**params, **params_s}
    numbers = client.query(
        "SELECT latency_ms, ifNull(ttft_ms, nan), toFloat64(ifNull(tokens_in, 0)), "
        "toFloat64(ifNull(tokens_out, 0)), ifNull(cost_usd, nan), error != '', lengthUTF8(output) "
        f"FROM events FINAL WHERE {where_p} AND {where_s}", parameters=params).result_rows
    calls = Calls(n=len(numbers))
    if numbers:
        columns = list(zip(*numbers, strict=True))
        calls.latency_ms = np.asarray(columns[0], dtype=float)
        calls.ttft_ms = np.asarray(columns[1], dtype=float)
        calls.tokens_in = np.asarray(columns[2], dtype=float)
        calls.tokens_out = np.asarray(columns[3], dtype=float)
        calls.cost_usd = np.asarray(columns[4], dtype=float)
        calls.errors = np.asarray(columns[5], dtype=bool)
        calls.output_chars = np.asarray(columns[6], dtype=float)
    texts = client.query(
        f"SELECT trace_id, input, output FROM events FINAL WHERE {where_p} AND {where_s} AND error = '' "
        f"ORDER BY cityHash64(event_id), event_id LIMIT {int(sample)}", parameters=params).result_rows
    calls.sample_trace_ids = [r[0] for r in texts]
    calls.sample_inputs = [r[1] for r in texts]
    calls.sample_outputs = [r[2] for r in texts]
    return calls


def read_feedback(client: Any, period: Period, segment: dict[str, str],
                  keys: tuple[str, ...] = SEGMENT_KEYS) -> list[tuple[str, int | None, float | None, bool]]:
    """The latest feedback per trace on the segment's calls in ``period``: (trace_id, accepted, score, edited)."""
    where_p, params = _where_period(period)
    where_s, params_s = _where_segment(segment, keys)
    rows = client.query(
        "SELECT trace_id, argMax(accepted, (ts, event_id)), argMax(score, (ts, event_id)), "
        "argMax(edited_output != '', (ts, event_id)) FROM feedback "
        f"WHERE trace_id IN (SELECT trace_id FROM events WHERE {where_p} AND {where_s}) "
        "GROUP BY trace_id ORDER BY trace_id", parameters={**params, **params_s}).result_rows
    return [(r[0], None if r[1] is None else int(r[1]), r[2], bool(r[3])) for r in rows]


def feature_start(client: Any, segment: dict[str, str]) -> datetime | None:
    """When the feature's first call happened (the start of an automatic baseline)."""
    where_s, params = _where_segment(segment, FEATURE_KEYS)
    row = client.query(f"SELECT min(ts), count() FROM events WHERE {where_s}", parameters=params).result_rows[0]
    return utc(row[0]) if row[1] else None


@dataclass(frozen=True)
class MetricRow:
    window: Window
    segment: dict[str, str]
    metric: str
    value: float
    n: int
    baseline: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] | None = None

    def as_list(self) -> list[Any]:
        details = json.dumps(self.details, sort_keys=True, ensure_ascii=False, default=_json_default) \
            if self.details else ""
        return [self.window.start, self.window.end, self.window.granularity,
                *(self.segment[k] for k in SEGMENT_KEYS), self.metric, float(self.value), int(self.n),
                _opt(self.baseline), _opt(self.p_value), _opt(self.threshold), details]


def _opt(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return iso_s(value)
    return str(value)


def write_metrics(client: Any, rows: list[MetricRow]) -> None:
    """Upsert metric rows: the ReplacingMergeTree key replaces a rerun's rows."""
    if rows:
        client.insert("metrics", [r.as_list() for r in rows], column_names=METRIC_COLUMNS)


def read_metrics(client: Any, window: Window) -> list[dict[str, Any]]:
    """The metric rows of one window (all segments), latest version of each."""
    rows = client.query(
        f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics FINAL WHERE granularity = {{g:String}} "
        "AND window_start = {w:DateTime('UTC')} ORDER BY metric, service, name, model, prompt_version",
        parameters={"g": window.granularity, "w": window.start}).result_rows
    return [dict(zip(METRIC_COLUMNS, r, strict=True)) for r in rows]


def reference_means(client: Any, metrics: list[str], period: Period, segment: dict[str, str],
                    keys: tuple[str, ...]) -> dict[str, float]:
    """The mean of each metric over the base windows of a reference period: the baseline of figures
    that need no raw data (latency percentiles, cost, toxicity rates). Metrics without rows are left out."""
    if not metrics:
        return {}
    where_s, params = _where_segment(segment, keys)
    sql = ("SELECT metric, avg(value) FROM metrics FINAL WHERE granularity = {g:String} "
           "AND metric IN {m:Array(String)} "
           f"AND window_start >= {{a:DateTime('UTC')}} AND window_end <= {{b:DateTime('UTC')}} AND {where_s}")
    params.update(g=BASE_GRANULARITY, m=list(metrics), a=period.start, b=period.end)
    if period.exclude is not None:
        sql += " AND window_start != {x:DateTime('UTC')}"
        params["x"] = period.exclude[0]
    rows = client.query(sql + " GROUP BY metric", parameters=params).result_rows
    return {metric: float(value) for metric, value in rows}


def last_window_start(client: Any, granularity: str = BASE_GRANULARITY) -> datetime | None:
    """The newest window already computed (where the scheduler resumes after a restart)."""
    row = client.query("SELECT max(window_start), count() FROM metrics WHERE granularity = {g:String}",
                       parameters={"g": granularity}).result_rows[0]
    return utc(row[0]) if row[1] else None
