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


def segments_in(client: Any, window: Window) -> list[dict[str, str]]:
    """Every segment with at least one call in the window."""
    where, params = _where_period(Period(window.start, window.end))
    rows = client.query(
        f"SELECT DISTINCT service, name, model, prompt_version FROM events WHERE {where} "
        "ORDER BY service, name, model, prompt_version", parameters=params).result_rows
    return [dict(zip(SEGMENT_KEYS, row, strict=True)) for row in rows]


Key = tuple[str, ...]  # a segment's (or a feature's) values, in the order of its keys


def key_of(segment: dict[str, str], keys: tuple[str, ...] = SEGMENT_KEYS) -> Key:
    """The values of ``keys`` in ``segment``: what the batched reads below key their results by."""
    return tuple(segment[k] for k in keys)


def _where_keys(segments: list[dict[str, str]], keys: tuple[str, ...], prefix: str = "") -> tuple[str, dict[str, Any]]:
    """``(service, name, ...) IN [...]``: the rows of these segments (or, with FEATURE_KEYS, features)."""
    wanted = sorted(set(key_of(s, keys) for s in segments))
    columns = ", ".join(f"{prefix}{k}" for k in keys)
    return (f"({columns}) IN {{w_keys:Array(Tuple({', '.join(['String'] * len(keys))}))}}",
            {"w_keys": wanted})


def count_calls_many(client: Any, period: Period, segments: list[dict[str, str]],
                     keys: tuple[str, ...] = SEGMENT_KEYS) -> dict[Key, int]:
    """Calls in ``period`` per segment (or feature) of ``segments``, in one query; absent ones have none."""
    if not segments:
        return {}
    where_p, params = _where_period(period)
    where_k, params_k = _where_keys(segments, keys)
    columns = ", ".join(keys)
    rows = client.query(f"SELECT {columns}, count() FROM events FINAL WHERE {where_p} AND {where_k} "
                        f"GROUP BY {columns}", parameters={**params, **params_k}).result_rows
    return {tuple(row[:-1]): int(row[-1]) for row in rows}


def count_calls(client: Any, period: Period, segment: dict[str, str], keys: tuple[str, ...]) -> int:
    return count_calls_many(client, period, [segment], keys).get(key_of(segment, keys), 0)


def read_calls_many(client: Any, period: Period, segments: list[dict[str, str]],
                    keys: tuple[str, ...] = SEGMENT_KEYS, sample: int = 500, *,
                    numbers: bool = True) -> dict[Key, Calls]:
    """The calls of many segments (or, with ``keys=FEATURE_KEYS``, features) in ``period``, two queries
    in all. Each group's rows are exactly what :func:`read_calls` reads for it alone: the same numbers
    (in ``event_id`` order) and the same text sample (``LIMIT n BY`` the keys, in the sample's order).
    ``numbers=False`` reads the text sample only. A group without calls is absent from the result."""
    if not segments:
        return {}
    where_p, params = _where_period(period)
    where_k, params_k = _where_keys(segments, keys)
    params = {**params, **params_k}
    columns = ", ".join(keys)
    width = len(keys)
    result: dict[Key, Calls] = {}
    if numbers:
        rows = client.query(
            f"SELECT {columns}, latency_ms, ifNull(ttft_ms, nan), toFloat64(ifNull(tokens_in, 0)), "
            "toFloat64(ifNull(tokens_out, 0)), ifNull(cost_usd, nan), error != '', lengthUTF8(output) "
            f"FROM events FINAL WHERE {where_p} AND {where_k} ORDER BY {columns}, event_id",
            parameters=params).result_rows
        start = 0
        while start < len(rows):
            key = tuple(rows[start][:width])
            end = start
            while end < len(rows) and tuple(rows[end][:width]) == key:
                end += 1
            columns_ = list(zip(*(row[width:] for row in rows[start:end]), strict=True))
            result[key] = Calls(
                n=end - start, latency_ms=np.asarray(columns_[0], dtype=float),
                ttft_ms=np.asarray(columns_[1], dtype=float), tokens_in=np.asarray(columns_[2], dtype=float),
                tokens_out=np.asarray(columns_[3], dtype=float), cost_usd=np.asarray(columns_[4], dtype=float),
                errors=np.asarray(columns_[5], dtype=bool), output_chars=np.asarray(columns_[6], dtype=float))
            start = end
    texts = client.query(
        f"SELECT {columns}, trace_id, input, output FROM events FINAL WHERE {where_p} AND {where_k} "
        f"AND error = '' ORDER BY cityHash64(event_id), event_id LIMIT {int(sample)} BY {columns}",
        parameters=params).result_rows
    for row in texts:
        key = tuple(row[:width])
        calls = result.get(key)
        if calls is None:
            calls = result[key] = Calls()
        calls.sample_trace_ids.append(row[width])
        calls.sample_inputs.append(row[width + 1])
        calls.sample_outputs.append(row[width + 2])
    return result


def read_calls(client: Any, period: Period, segment: dict[str, str], keys: tuple[str, ...] = SEGMENT_KEYS,
               sample: int = 500) -> Calls:
    """The calls of a segment (or, with ``keys=FEATURE_KEYS``, of its feature) in ``period``."""
    return read_calls_many(client, period, [segment], keys, sample).get(key_of(segment, keys)) or Calls()


def read_texts_stratified_many(client: Any, period: Period, segments: list[dict[str, str]],
                               keys: tuple[str, ...] = SEGMENT_KEYS, sample: int = 3000,
                               bucket_s: int = 60, salt: int | None = None) -> dict[Key, Calls]:
    """A text sample of each group in ``period`` spread evenly over it: the longer horizons' drift sample.

    The period is cut into ``bucket_s`` buckets (the base windows); each bucket gives at most
    ``ceil(sample / buckets)`` texts, in the order the base windows sample theirs
    (``cityHash64(event_id)``), so at the same window length these are texts the base windows
    already embedded. A group with more than ``sample`` texts is cut down by
    :func:`llmsight.analyzers.embeddings.stratified_sample` over the buckets. One query.

    With a ``salt`` each bucket's texts are chosen by ``cityHash64(event_id, salt)`` instead: a
    different draw for each salt (a held reference drawn afresh for each window); some of those
    texts may have no stored vector where the base windows sampled fewer than they held.
    """
    from llmsight.analyzers.embeddings import stratified_sample

    if not segments:
        return {}
    where_p, params = _where_period(period)
    where_k, params_k = _where_keys(segments, keys)
    columns = ", ".join(keys)
    order = "cityHash64(event_id)" if salt is None else f"cityHash64(event_id, toUInt64({int(salt)}))"
    buckets = max(1, -(-int((period.end - period.start).total_seconds()) // bucket_s))
    per_bucket = max(1, -(-int(sample) // buckets))
    rows = client.query(
        f"SELECT {columns}, intDiv(toUnixTimestamp(ts), {int(bucket_s)}) AS bucket, trace_id, input, output "
        f"FROM events FINAL WHERE {where_p} AND {where_k} AND error = '' "
        f"ORDER BY {columns}, bucket, {order}, event_id LIMIT {per_bucket} BY {columns}, bucket",
        parameters={**params, **params_k}).result_rows
    width = len(keys)
    grouped: dict[Key, list[Any]] = {}
    for row in rows:
        grouped.setdefault(tuple(row[:width]), []).append(row[width:])
    result: dict[Key, Calls] = {}
    for key, members in grouped.items():
        chosen = stratified_sample([m[0] for m in members], sample)
        calls = result[key] = Calls(n=len(members))
        for index in chosen:
            _, trace_id, text_in, text_out = members[int(index)]
            calls.sample_trace_ids.append(trace_id)
            calls.sample_inputs.append(text_in)
            calls.sample_outputs.append(text_out)
    return result


def latest_details_many(client: Any, metrics: list[str], granularity: str, before: datetime, since: datetime,
                        segments: list[dict[str, str]]) -> dict[Key, dict[str, str]]:
    """The details of each segment's newest row of each of ``metrics`` with a window start in
    ``since``..``before`` (``before`` excluded): where sequential evidence resumes. One query."""
    if not segments or not metrics:
        return {}
    where_k, params = _where_keys(segments, SEGMENT_KEYS)
    columns = ", ".join(SEGMENT_KEYS)
    params.update(g=granularity, m=sorted(set(metrics)), a=since, b=before)
    rows = client.query(
        f"SELECT {columns}, metric, argMax(details, window_start) FROM metrics FINAL "
        "WHERE granularity = {g:String} AND metric IN {m:Array(String)} "
        f"AND window_start >= {{a:DateTime('UTC')}} AND window_start < {{b:DateTime('UTC')}} AND {where_k} "
        f"GROUP BY {columns}, metric", parameters=params).result_rows
    result: dict[Key, dict[str, str]] = {}
    for row in rows:
        result.setdefault(tuple(row[:-2]), {})[row[-2]] = row[-1]
    return result


def read_feedback_many(client: Any, period: Period, segments: list[dict[str, str]],
                       keys: tuple[str, ...] = SEGMENT_KEYS) -> dict[Key, list[tuple[str, int | None, float | None, bool]]]:
    """The latest feedback per trace on the calls in ``period`` of each segment (or feature), in one
    query: (trace_id, accepted, score, edited), ordered by trace id. A trace with calls in several
    groups counts in each, as it does read one group at a time."""
    if not segments:
        return {}
    where_p, params = _where_period(period)
    where_k, params_k = _where_keys(segments, keys)
    columns = ", ".join(keys)
    rows = client.query(
        f"SELECT {', '.join('t.' + k for k in keys)}, f.trace_id, f.accepted, f.score, f.edited FROM ("
        "SELECT trace_id, argMax(accepted, (ts, event_id)) AS accepted, argMax(score, (ts, event_id)) AS score, "
        "argMax(edited_output != '', (ts, event_id)) AS edited FROM feedback "
        f"WHERE trace_id IN (SELECT trace_id FROM events WHERE {where_p} AND {where_k}) GROUP BY trace_id) AS f "
        f"INNER JOIN (SELECT DISTINCT trace_id, {columns} FROM events WHERE {where_p} AND {where_k}) AS t "
        f"ON f.trace_id = t.trace_id ORDER BY {', '.join('t.' + k for k in keys)}, f.trace_id",
        parameters={**params, **params_k}).result_rows
    width = len(keys)
    result: dict[Key, list[tuple[str, int | None, float | None, bool]]] = {}
    for r in rows:
        result.setdefault(tuple(r[:width]), []).append(
            (r[width], None if r[width + 1] is None else int(r[width + 1]), r[width + 2], bool(r[width + 3])))
    return result


def read_feedback(client: Any, period: Period, segment: dict[str, str],
                  keys: tuple[str, ...] = SEGMENT_KEYS) -> list[tuple[str, int | None, float | None, bool]]:
    """The latest feedback per trace on the segment's calls in ``period``: (trace_id, accepted, score, edited)."""
    return read_feedback_many(client, period, [segment], keys).get(key_of(segment, keys), [])


def feature_starts(client: Any, segments: list[dict[str, str]]) -> dict[Key, datetime]:
    """When each feature's first call happened (the start of an automatic baseline), in one query."""
    if not segments:
        return {}
    where_k, params = _where_keys(segments, FEATURE_KEYS)
    columns = ", ".join(FEATURE_KEYS)
    rows = client.query(f"SELECT {columns}, min(ts) FROM events WHERE {where_k} GROUP BY {columns}",
                        parameters=params).result_rows
    return {tuple(row[:-1]): utc(row[-1]) for row in rows}


def feature_start(client: Any, segment: dict[str, str]) -> datetime | None:
    """When the feature's first call happened (the start of an automatic baseline)."""
    return feature_starts(client, [segment]).get(key_of(segment, FEATURE_KEYS))


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


def reference_means_many(client: Any, metrics: list[str], period: Period, segments: list[dict[str, str]],
                         keys: tuple[str, ...]) -> dict[Key, dict[str, float]]:
    """The mean of each metric over the base windows of a reference period, per segment (or feature),
    in one query: the baseline of figures that need no raw data (latency percentiles, cost, toxicity
    rates). Metrics without rows are left out."""
    if not metrics or not segments:
        return {}
    where_k, params = _where_keys(segments, keys)
    columns = ", ".join(keys)
    sql = (f"SELECT {columns}, metric, avg(value) FROM metrics FINAL WHERE granularity = {{g:String}} "
           "AND metric IN {m:Array(String)} "
           f"AND window_start >= {{a:DateTime('UTC')}} AND window_end <= {{b:DateTime('UTC')}} AND {where_k}")
    params.update(g=BASE_GRANULARITY, m=sorted(set(metrics)), a=period.start, b=period.end)
    if period.exclude is not None:
        sql += " AND window_start != {x:DateTime('UTC')}"
        params["x"] = period.exclude[0]
    rows = client.query(sql + f" GROUP BY {columns}, metric", parameters=params).result_rows
    result: dict[Key, dict[str, float]] = {}
    for row in rows:
        result.setdefault(tuple(row[:-2]), {})[row[-2]] = float(row[-1])
    return result


def reference_means(client: Any, metrics: list[str], period: Period, segment: dict[str, str],
                    keys: tuple[str, ...]) -> dict[str, float]:
    """:func:`reference_means_many` for one segment (or feature)."""
    return reference_means_many(client, metrics, period, [segment], keys).get(key_of(segment, keys), {})


def last_window_start(client: Any, granularity: str = BASE_GRANULARITY) -> datetime | None:
    """The newest window already computed (where the scheduler resumes after a restart)."""
    row = client.query("SELECT max(window_start), count() FROM metrics WHERE granularity = {g:String}",
                       parameters={"g": granularity}).result_rows[0]
    return utc(row[0]) if row[1] else None
