"""The reads shared by the rooms: every query the dashboard runs, the bench measures and alerting reuses.

User input never becomes SQL text: each value travels as a ClickHouse server-side parameter
(``{name:Type}``, bound by the engine for both chdb and an HTTP server). The only thing a filter
changes in the SQL text is *whether* a fixed clause such as ``AND service IN {services:Array(String)}``
is present, so the primary key still prunes when a filter is set.

Speed on 10 million events (see ``llmsight bench query``): figures come from the pre-aggregated
``metrics`` rows; the raw ``events`` table is read only within the chosen time range, which the
partition key (month) and the sort key (``service, toDate(ts)``) prune, and with a LIMIT.
The ``events`` and ``feedback`` tables are ReplacingMergeTree: rows not yet merged may be counted
twice for a few minutes; ``FINAL`` over millions of rows would cost more than that error.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from llmsight.store import names

DRIFT_METRICS = (names.DRIFT_INPUT, names.DRIFT_OUTPUT)
TOXICITY_METRICS = (names.TOXICITY_OUTPUT, names.TOXICITY_INPUT)
OVERVIEW_METRICS = (
    names.VOLUME, names.ERROR_RATE, names.LATENCY_P95, names.COST, names.ACCEPTANCE, names.TOXICITY_OUTPUT,
)
ACTIVE_STATES = ("firing", "pending")


@dataclass(frozen=True)
class Filters:
    """What the person on call is looking at: a time range and segment filters (empty = all)."""

    start: dt.datetime
    end: dt.datetime
    services: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    prompt_versions: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    names: tuple[str, ...] = field(default=())

    @property
    def span(self) -> dt.timedelta:
        return self.end - self.start

    def baseline(self) -> Filters:
        """The same filters over the period of equal length just before this one."""
        return Filters(self.start - self.span, self.start, self.services, self.models,
                       self.prompt_versions, self.environments, self.names)




# -- Views: a named range ending now, cut into about 48 chart buckets ----------------------------

RANGES = {
    "15m": dt.timedelta(minutes=15),
    "1h": dt.timedelta(hours=1),
    "6h": dt.timedelta(hours=6),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}
DEFAULT_RANGE = "24h"
GRANULARITY_SECONDS = {"1m": 60, "1h": 3600, "1d": 86400}
POINTS = 48


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def granularity_for(span: dt.timedelta) -> str:
    """The metrics granularity that gives a readable number of points for a time range."""
    if span <= dt.timedelta(hours=6):
        return "1m"
    if span <= dt.timedelta(days=7):
        return "1h"
    return "1d"


def bucket_seconds(span: dt.timedelta) -> int:
    """About 48 chart buckets over ``span``, each a whole number of metric windows."""
    step = GRANULARITY_SECONDS[granularity_for(span)]
    return max(step, int(span.total_seconds()) // POINTS // step * step)


def view_for(range_key: str, at: dt.datetime | None = None, **segments: tuple[str, ...]) -> Filters:
    """The view of a named range ending at the next bucket boundary after ``at`` (default now).

    Aligning the end to a bucket keeps the current and the baseline period on whole buckets.
    """
    span = RANGES.get(range_key, RANGES[DEFAULT_RANGE])
    step = bucket_seconds(span)
    epoch = int((at or now()).replace(tzinfo=dt.timezone.utc).timestamp())
    end_epoch = (epoch // step + 1) * step
    end = dt.datetime.fromtimestamp(end_epoch, dt.timezone.utc).replace(tzinfo=None)
    return Filters(start=end - span, end=end, **segments)


def fitting_range(newest_age: dt.timedelta | None, oldest_recent_age: dt.timedelta | None) -> str:
    """The default range for the data there is: the shortest that holds the last day's calls (the demo's
    few minutes open on 15m), else the shortest that reaches the newest call, else the default.

    ``newest_age``: how old the newest call is (None: no call in 30 days); ``oldest_recent_age``: how old
    the oldest call of the last :data:`DEFAULT_RANGE` is (None: none in it).
    """
    if newest_age is None:
        return DEFAULT_RANGE
    wanted = oldest_recent_age if oldest_recent_age is not None else newest_age
    for key, span in RANGES.items():
        if wanted < span:
            return key if oldest_recent_age is None or span <= RANGES[DEFAULT_RANGE] else DEFAULT_RANGE
    return list(RANGES)[-1]


def data_ages(client: Any, at: dt.datetime) -> tuple[dt.timedelta | None, dt.timedelta | None]:
    """How old the newest call of the last 30 days is, and the oldest of the last :data:`DEFAULT_RANGE`
    (for :func:`fitting_range`); Nones where there is none. Reads only the ``ts`` column of that month."""
    sql = ("SELECT count() AS n, max(ts) AS newest, countIf(ts >= {recent:DateTime64(3, 'UTC')}) AS n_recent, "
           "minIf(ts, ts >= {recent:DateTime64(3, 'UTC')}) AS oldest FROM events "
           "PREWHERE ts >= {since:DateTime64(3, 'UTC')} AND ts <= {at:DateTime64(3, 'UTC')}")
    params = {"since": at - RANGES["30d"], "recent": at - RANGES[DEFAULT_RANGE], "at": at}
    n, newest, n_recent, oldest = client.query(sql, parameters=params).result_rows[0]

    def age(moment: Any) -> dt.timedelta:
        stamp: dt.datetime = pd.Timestamp(moment).tz_localize(None).to_pydatetime()
        return max(dt.timedelta(0), at - stamp)

    return (age(newest) if n else None), (age(oldest) if n_recent else None)


def segment_clauses(f: Filters, *, environment: bool, table: str = "") -> tuple[str, dict[str, Any]]:
    """Fixed clause texts for the non-empty filters, and their parameters."""
    clauses, params = [], {}
    for column, values in (("service", f.services), ("model", f.models),
                           ("prompt_version", f.prompt_versions), ("name", f.names)):
        if values:
            clauses.append(f" AND {table}{column} IN {{{column}s:Array(String)}}")
            params[f"{column}s"] = list(values)
    if environment and f.environments:
        clauses.append(" AND environment IN {environments:Array(String)}")
        params["environments"] = list(f.environments)
    return "".join(clauses), params


def _events_where(f: Filters) -> tuple[str, dict[str, Any]]:
    clause, params = segment_clauses(f, environment=True)
    params.update(start=f.start, end=f.end)
    return ("ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')}" + clause), params


def _metrics_where(f: Filters) -> tuple[str, dict[str, Any]]:
    # Metric segments have no environment: the analyzers aggregate across it.
    # Qualified with the table alias ``m``: the queries alias aggregates with the column names.
    clause, params = segment_clauses(f, environment=False, table="m.")
    params.update(start=f.start, end=f.end)
    return ("m.window_start >= {start:DateTime('UTC')} AND m.window_start < {end:DateTime('UTC')}" + clause), params


def _df(client: Any, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    result = client.query(sql, parameters=params)
    columns = list(result.column_names)
    if not columns:
        # chdb sends no header with an empty result; the pages still need the columns.
        described = client.query(f"DESCRIBE TABLE ({sql})", parameters=params).result_rows
        columns = [row[0] for row in described]
    return pd.DataFrame(result.result_rows, columns=columns)


# -- Filter choices --------------------------------------------------------------------------------

def segment_values(client: Any, since: dt.datetime, recent: dt.datetime) -> dict[str, list[str]]:
    """The services, models, prompt versions and environments to offer in the filter menus.

    Segments come from the small ``volume`` metric rows since ``since``, plus the raw calls since
    ``recent`` (before the analyzers' first run there are no metric rows); environments, which the
    metric rows do not carry, from the raw calls since ``recent``. Scanning 30 days of raw calls
    for four menus would cost seconds on 10M events.
    """
    sql = (
        "SELECT groupUniqArray(100)(service), groupUniqArray(100)(model), groupUniqArray(100)(prompt_version), "
        "[] FROM metrics WHERE metric = {volume:String} AND window_start >= {since:DateTime('UTC')} "
        "UNION ALL SELECT groupUniqArray(100)(service), groupUniqArray(100)(model), "
        "groupUniqArray(100)(prompt_version), groupUniqArray(100)(environment) FROM events "
        "PREWHERE ts >= {recent:DateTime64(3, 'UTC')}"
    )
    rows = client.query(sql, parameters={"since": since, "recent": recent, "volume": names.VOLUME}).result_rows
    keys = ("services", "models", "prompt_versions", "environments")
    found: dict[str, set[str]] = {key: set() for key in keys}
    for row in rows:
        for key, values in zip(keys, row, strict=True):
            found[key].update(v for v in values if v)
    return {key: sorted(values) for key, values in found.items()}


# -- Metrics (pre-aggregated by the analyzers) -----------------------------------------------------

def metric_series(client: Any, f: Filters, metrics: tuple[str, ...], bucket_s: int) -> pd.DataFrame:
    """Per bucket, metric and granularity: sum(n), the n-weighted sum of values and the plain sum.

    Rows of every granularity come back; :func:`pick_granularity` keeps one so nothing is counted twice.
    """
    where, params = _metrics_where(f)
    params.update(metrics=list(metrics), bucket=bucket_s)
    sql = (
        "SELECT granularity, metric, toStartOfInterval(m.window_start, INTERVAL {bucket:UInt32} SECOND) AS bucket, "
        "sum(m.n) AS n, sum(m.value * m.n) AS weighted, sum(m.value) AS total "
        "FROM metrics AS m FINAL WHERE metric IN {metrics:Array(String)} AND " + where +
        " GROUP BY granularity, metric, bucket ORDER BY bucket"
    )
    return _df(client, sql, params)


def pick_granularity(frame: pd.DataFrame, preferred: str) -> pd.DataFrame:
    """Keep one granularity per metric: the preferred one when present, else the finest available."""
    if frame.empty:
        return frame
    kept = []
    for _metric, rows in frame.groupby("metric", sort=False):
        available = set(rows["granularity"])
        choice = preferred if preferred in available else min(available, key=names.GRANULARITIES.index)
        kept.append(rows[rows["granularity"] == choice])
    return pd.concat(kept, ignore_index=True)


def segment_series(client: Any, f: Filters, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Metric rows per segment and window (drift and toxicity over time), newest last."""
    where, params = _metrics_where(f)
    params["metrics"] = list(metrics)
    sql = (
        "SELECT window_start, granularity, metric, service, name, model, prompt_version, value, n, baseline, "
        "p_value, threshold FROM metrics AS m FINAL WHERE metric IN {metrics:Array(String)} AND " + where +
        " ORDER BY window_start LIMIT 20000"
    )
    return _df(client, sql, params)


def latest_by_segment(client: Any, f: Filters, metrics: tuple[str, ...], with_details: bool = False) -> pd.DataFrame:
    """The most recent row of each metric per segment in the range (drift status, topic explanations)."""
    where, params = _metrics_where(f)
    params["metrics"] = list(metrics)
    details = ", argMax(m.details, m.window_start) AS details" if with_details else ""
    sql = (
        "SELECT metric, service, name, model, prompt_version, max(m.window_start) AS window_start, "
        "argMax(m.value, m.window_start) AS value, argMax(m.threshold, m.window_start) AS threshold, "
        "argMax(m.p_value, m.window_start) AS p_value, argMax(m.n, m.window_start) AS n" + details +
        " FROM metrics AS m FINAL WHERE metric IN {metrics:Array(String)} AND " + where +
        " GROUP BY metric, service, name, model, prompt_version ORDER BY metric, service, name, model, prompt_version"
    )
    return _df(client, sql, params)


def acceptance_by_version(client: Any, f: Filters, bucket_s: int) -> pd.DataFrame:
    """Accepted and judged counts per model, prompt version and bucket, from the acceptance metric rows."""
    where, params = _metrics_where(f)
    params.update(metric=names.ACCEPTANCE, bucket=bucket_s)
    sql = (
        "SELECT granularity, model, prompt_version, "
        "toStartOfInterval(m.window_start, INTERVAL {bucket:UInt32} SECOND) AS bucket, "
        "sum(m.value * m.n) AS accepted, sum(m.n) AS n FROM metrics AS m FINAL WHERE metric = {metric:String} AND " + where +
        " GROUP BY granularity, model, prompt_version, bucket ORDER BY bucket"
    )
    return _df(client, sql, params)


# -- Raw events (within the time range, limited) ---------------------------------------------------

def event_series(client: Any, f: Filters, bucket_s: int) -> pd.DataFrame:
    """Volume, errors, p95 latency and cost per bucket straight from the events.

    Used when the analyzers have not written metric rows for the range yet.
    """
    where, params = _events_where(f)
    params["bucket"] = bucket_s
    sql = (
        "SELECT toStartOfInterval(ts, INTERVAL {bucket:UInt32} SECOND) AS bucket, count() AS n, "
        "countIf(error != '' OR error_type != '') AS errors, quantile(0.95)(latency_ms) AS latency_p95, "
        "sum(ifNull(cost_usd, 0)) AS cost FROM events PREWHERE " + where + " GROUP BY bucket ORDER BY bucket"
    )
    return _df(client, sql, params)


def sample_texts(client: Any, f: Filters, column: str, limit: int) -> pd.DataFrame:
    """About ``limit`` texts spread over the range, chosen by a hash of the event id (stable across reruns)."""
    if column not in ("input", "output"):
        raise ValueError(f"column must be input or output, not {column!r}")
    where, params = _events_where(f)
    params["limit"] = limit
    # The count in the range sets the sampling modulus, so only the sampled rows' text is read.
    # The sample keys on a hash of the call's time, already read for the time range (hashing the
    # event id would read another column); it is stable across reruns.
    count_sql = "SELECT count() FROM events PREWHERE " + where
    total = int(client.query(count_sql, parameters=params).result_rows[0][0])
    params["modulus"] = max(1, total // max(1, limit))
    sql = (
        f"SELECT event_id, trace_id, ts, service, model, prompt_version, {column} AS text "
        "FROM events PREWHERE " + where +
        " AND intHash64(toUnixTimestamp64Milli(ts)) % {modulus:UInt64} = 0 WHERE " + column +
        " != '' LIMIT {limit:UInt32}"
    )
    return _df(client, sql, params)


def stored_embeddings(client: Any, model: str, text_hashes: list[str]) -> dict[str, list[float]]:
    """The vectors already in the ``embeddings`` table for these text hashes."""
    if not text_hashes:
        return {}
    sql = ("SELECT text_hash, any(vector) FROM embeddings WHERE model = {model:String} "
           "AND text_hash IN {hashes:Array(String)} GROUP BY text_hash")
    rows = client.query(sql, parameters={"model": model, "hashes": text_hashes}).result_rows
    return {row[0]: row[1] for row in rows}


SEARCH_STEPS = (dt.timedelta(hours=1), dt.timedelta(hours=6), dt.timedelta(days=1), dt.timedelta(days=7))


def search_traces(client: Any, f: Filters, text: str = "", trace_id: str = "", only_errors: bool = False,
                  limit: int = 100) -> pd.DataFrame:
    """The newest calls that match: a text contained in the prompt or output, a trace id, errors only.

    The range is searched newest slice first (the last hour, then up to 6 h, 1 day, 7 days, then
    the rest) and stops once ``limit`` calls are found: the usual answer lies in the last hour,
    and a text search then reads an hour of prompts instead of the whole range.
    """
    frames: list[pd.DataFrame] = []
    found = 0
    upper = f.end
    for step in (*SEARCH_STEPS, f.span):
        lower = max(f.start, f.end - step)
        if lower >= upper:
            continue
        part = _search_slice(client, replace(f, start=lower, end=upper), text, trace_id, only_errors, limit - found)
        frames.append(part)
        found += len(part)
        upper = lower
        if found >= limit or lower <= f.start:
            break
    non_empty = [frame for frame in frames if not frame.empty]
    if len(non_empty) > 1:
        return pd.concat(non_empty, ignore_index=True)
    return non_empty[0] if non_empty else frames[0]


def _search_slice(client: Any, f: Filters, text: str, trace_id: str, only_errors: bool, limit: int) -> pd.DataFrame:
    where, params = _events_where(f)
    if trace_id:
        where += " AND trace_id = {trace_id:String}"
        params["trace_id"] = trace_id
    if only_errors:
        where += " AND (error != '' OR error_type != '')"
    post = ""
    if text:
        post = (" WHERE positionCaseInsensitiveUTF8(input, {text:String}) > 0 "
                "OR positionCaseInsensitiveUTF8(output, {text:String}) > 0")
        params["text"] = text
    params["limit"] = limit
    sql = (
        "SELECT ts, trace_id, service, environment, name, model, prompt_version, latency_ms, cost_usd, "
        "error_type, substring(input, 1, 160) AS input, substring(output, 1, 160) AS output "
        "FROM events PREWHERE " + where + post + " ORDER BY ts DESC LIMIT {limit:UInt32}"
    )
    return _df(client, sql, params)


def trace_calls(client: Any, trace_id: str, around: dt.datetime | None = None) -> pd.DataFrame:
    """Every call of one trace; ``around`` (the call's time) lets the date prune the scan."""
    params: dict[str, Any] = {"trace_id": trace_id}
    when = ""
    if around is not None:
        when = " AND ts >= {lo:DateTime64(3, 'UTC')} AND ts < {hi:DateTime64(3, 'UTC')}"
        params.update(lo=around - dt.timedelta(days=1), hi=around + dt.timedelta(days=1))
    sql = (
        "SELECT ts, event_id, trace_id, service, environment, name, model, prompt_version, input, output, error, "
        "error_type, latency_ms, ttft_ms, tokens_in, tokens_out, cost_usd, user_id, session_id, tags, metadata "
        "FROM events PREWHERE trace_id = {trace_id:String}" + when + " ORDER BY ts LIMIT 100"
    )
    return _df(client, sql, params)


def trace_feedback(client: Any, trace_id: str) -> pd.DataFrame:
    sql = ("SELECT ts, accepted, score, comment, edited_output, user_id FROM feedback "
           "PREWHERE trace_id = {trace_id:String} ORDER BY ts LIMIT 100")
    return _df(client, sql, {"trace_id": trace_id})


def worst_rated(client: Any, f: Filters, limit: int = 20) -> pd.DataFrame:
    """Rejected or lowest-scored calls in the range, with their prompt and output.

    Two steps: the worst feedback rows first, then their calls by trace id with a constant list,
    which the ``trace_id`` bloom-filter index (migration 0003) turns into a read of a few granules.
    """
    span = {"start": f.start, "end": f.end}
    # More candidates than shown: the segment filters apply to the calls and may drop some.
    candidates = limit * 10 if (f.services or f.models or f.prompt_versions or f.environments or f.names) else limit
    worst = _df(client, (
        "SELECT ts AS feedback_ts, trace_id, accepted, score, comment FROM feedback "
        "PREWHERE ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')} "
        "WHERE accepted = 0 OR score IS NOT NULL "
        "ORDER BY ifNull(score, 0), ifNull(accepted, 1), ts DESC LIMIT 1 BY trace_id LIMIT {candidates:UInt32}"
    ), {**span, "candidates": candidates})
    where, params = _events_where(replace(f, start=f.start - dt.timedelta(days=1)))
    params["traces"] = worst["trace_id"].tolist()
    calls = _df(client, (
        # The aliases differ from the column names: the segment filters refer to the columns.
        "SELECT trace_id, any(model) AS call_model, any(prompt_version) AS call_version, any(input) AS call_input, "
        "any(output) AS call_output FROM events PREWHERE trace_id IN {traces:Array(String)} AND " + where +
        " GROUP BY trace_id"
    ), params)
    calls = calls.rename(columns={"call_model": "model", "call_version": "prompt_version", "call_input": "input",
                                  "call_output": "output"})
    return worst.merge(calls, on="trace_id", how="inner").head(limit).reset_index(drop=True)


# -- Analysis progress (the analysis_windows table the scheduler writes) ------------------------------

@dataclass(frozen=True)
class AnalysisLag:
    """How far analysis is behind: the newest base window whose analysis is done, and its age."""

    newest_end: dt.datetime | None  # None: nothing planned yet (with nothing finished: the oldest planned start)
    window_s: int
    seconds: float
    windows: int
    unfinished: int  # planned windows whose units are not all done yet

    @property
    def behind(self) -> bool:
        """More than two windows behind: what the dashboard's banner and the default rule say."""
        return self.windows > 2


def analysis_lag(client: Any, now: dt.datetime, granularity: str = "1m") -> AnalysisLag:
    """The lag of analysis at ``now``, from the store alone (so a reader sees it even when no analyzer runs).

    ``seconds`` is ``now`` minus the end of the newest window whose analysis is done (and its alert
    rules evaluated); ``windows`` is how many whole windows fit in that time. Keeping up, a window is
    analysed its lag after it ends, so ``windows`` is 0 or 1; every window not analysed adds one.
    """
    row = client.query(
        "SELECT maxIf(window_end, state = 'evaluated'), countIf(state = 'evaluated'), "
        "anyLast(toUInt32(window_end - window_start)), countIf(state = 'planned'), minIf(window_start, state = 'planned') "
        "FROM analysis_windows FINAL WHERE granularity = {g:String}", parameters={"g": granularity}).result_rows[0]
    newest, done, window_s, unfinished, oldest_open = row
    window_s = int(window_s or 60)
    if not done and not unfinished:
        return AnalysisLag(None, window_s, 0.0, 0, 0)
    if not done:  # nothing finished yet: behind since the oldest planned window began
        newest = oldest_open
    newest = newest.replace(tzinfo=dt.timezone.utc) if newest.tzinfo is None else newest
    moment = now.replace(tzinfo=dt.timezone.utc) if now.tzinfo is None else now
    seconds = max(0.0, (moment - newest).total_seconds())
    return AnalysisLag(newest, window_s, seconds, int(seconds // window_s), int(unfinished))


# -- Alerts ----------------------------------------------------------------------------------------

def latest_alerts_sql(columns: str = "*", where: str = "") -> str:
    """The newest row of each alert: its current state (the ``alerts`` table is an append-only log).

    One definition for alerting's state machine and the dashboard; ``where`` (with its parameters
    bound by the caller) filters the rows before the newest is taken."""
    return f"SELECT {columns} FROM alerts {where} ORDER BY alert_id, changed_at DESC LIMIT 1 BY alert_id"


def alert_states(client: Any, f: Filters, states: tuple[str, ...] = ("firing", "pending", "resolved"),
                 limit: int = 500) -> pd.DataFrame:
    """The current state of each alert (its newest row), with the evidence and the latest acknowledgement.

    Alerts are filtered by segment but not by time: a firing alert stays on screen until it resolves.
    """
    clause, params = segment_clauses(f, environment=False)
    params.update(states=list(states), limit=limit)
    # The newest row of an alert carries its state and, until it resolves, its acknowledgement.
    sql = (
        "SELECT alert_id, rule, metric, severity, state, service, name, model, prompt_version, value, threshold, "
        "baseline, p_value, window_start, evidence, acked_by, ack_note, fired_at, changed_at FROM ("
        + latest_alerts_sql("*", "WHERE 1 = 1" + clause) + ") "
        "WHERE state IN {states:Array(String)} ORDER BY changed_at DESC LIMIT {limit:UInt32}"
    )
    return _df(client, sql, params)


def alert_history(client: Any, alert_id: str) -> pd.DataFrame:
    sql = ("SELECT changed_at, state, severity, value, threshold, baseline, p_value, acked_by, ack_note "
           "FROM alerts WHERE alert_id = {alert_id:String} ORDER BY changed_at DESC LIMIT 200")
    return _df(client, sql, {"alert_id": alert_id})


# -- Evidence the analyzers attached to metric rows ------------------------------------------------

def metric_examples(client: Any, f: Filters, metrics: tuple[str, ...], limit: int = 200) -> pd.DataFrame:
    """Metric rows in the range whose ``details`` JSON lists examples (flagged texts with their scores)."""
    where, params = _metrics_where(f)
    params.update(metrics=list(metrics), limit=limit)
    sql = (
        "SELECT m.window_start AS window_start, metric, service, name, model, prompt_version, threshold, details "
        "FROM metrics AS m FINAL WHERE metric IN {metrics:Array(String)} AND " + where +
        " AND granularity = '1m' AND JSONLength(details, 'examples') > 0 ORDER BY window_start DESC LIMIT {limit:UInt32}"
    )
    return _df(client, sql, params)


def trace_evidence(client: Any, trace_id: str, around: dt.datetime, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Metric rows near a call whose ``details`` name its trace (toxicity scores, drift or rejection examples)."""
    sql = (
        "SELECT m.window_start AS window_start, metric, value, threshold, details FROM metrics AS m FINAL "
        "WHERE metric IN {metrics:Array(String)} AND granularity = '1m' "
        "AND m.window_start >= {lo:DateTime('UTC')} AND m.window_start < {hi:DateTime('UTC')} "
        "AND position(details, {needle:String}) > 0 ORDER BY window_start DESC LIMIT 50"
    )
    params = {"metrics": list(metrics), "lo": around - dt.timedelta(hours=2), "hi": around + dt.timedelta(hours=2),
              "needle": json_string(trace_id)}
    return _df(client, sql, params)


def json_string(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


# -- The loss audit (producer heartbeats against stored rows) --------------------------------------

AUDIT_COLUMNS = ["producer_id", "service", "host", "pid", "hour", "sent", "stored", "dead_letters", "missing",
                 "dropped", "spilled", "failed"]
_AUDIT_COUNTERS = ["sent", "dropped", "spilled", "failed"]


def producer_audit(client: Any, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """Per producer (one SDK process) and hour in ``[start, end)``: what it sent against what is stored.

    * ``sent``, ``dropped``, ``spilled``, ``failed``: the growth of the producer's cumulative heartbeat
      counters over the hour (the last heartbeat of the hour minus the last one before it, or minus
      zero, the producer's start);
    * ``stored``: distinct ``event_id`` of events and feedback stamped with the producer's id, by the
      hour of their ``ts``;
    * ``dead_letters``: distinct events of the producer in ``dead_letters`` that are not stored (a
      dead letter replayed into its table counts as stored), by the hour of their ``ts`` (by the hour
      received when the ts is the reason);
    * ``missing``: ``sent - stored - dead_letters``; zero when nothing was lost. An event counts in the
      hour of its ``ts`` when stored and in the hour of the heartbeat after its sending when sent, so
      single hours may differ by the events of a hour's last heartbeat interval; a producer's total
      over a range that holds its whole life balances exactly (:func:`producer_audit_totals`).
    """
    first_hour = start.replace(minute=0, second=0, microsecond=0)
    params = {"start": start, "end": end, "first_hour": first_hour}
    beats = _df(client, """
        SELECT producer_id, toStartOfHour(ts) AS hour, argMax(service, ts) AS service, argMax(host, ts) AS host,
               argMax(pid, ts) AS pid, max(sent) AS sent, max(dropped) AS dropped, max(spilled) AS spilled,
               max(failed) AS failed
        FROM producer_heartbeats
        WHERE ts < {end:DateTime64(3, 'UTC')} AND producer_id IN (
            SELECT producer_id FROM producer_heartbeats
            WHERE ts >= {first_hour:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')})
        GROUP BY producer_id, hour ORDER BY producer_id, hour""", params)
    stored = _df(client, """
        SELECT producer_id, toStartOfHour(ts) AS hour, uniqExact(event_id) AS stored
        FROM (SELECT producer_id, ts, event_id FROM events
              WHERE producer_id != '' AND ts >= {first_hour:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')}
              UNION ALL
              SELECT producer_id, ts, event_id FROM feedback
              WHERE producer_id != '' AND ts >= {first_hour:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')})
        GROUP BY producer_id, hour""", params)
    # A dead letter counts in the hour of its event's ts, as a stored row would, unless that ts is the
    # problem (out of range, unreadable): then in the hour it was received.
    dead = _df(client, """
        SELECT producer_id, hour, uniqExact(event_id) AS dead_letters FROM (
            SELECT JSONExtractString(raw, 'producer_id') AS producer_id, JSONExtractString(raw, 'event_id') AS event_id,
                   toStartOfHour(if(kind = 'ts_out_of_range', received_at, ifNull(
                       parseDateTime64BestEffortOrNull(JSONExtractString(raw, 'ts'), 3, 'UTC'), received_at))) AS hour
            FROM dead_letters
            WHERE received_at >= {first_hour:DateTime64(3, 'UTC')}
              AND JSONExtractString(raw, 'producer_id') != ''
              AND JSONExtractString(raw, 'type') IN ('llm_call', 'feedback'))
        WHERE hour >= {first_hour:DateTime64(3, 'UTC')} AND hour < {end:DateTime64(3, 'UTC')}
          AND event_id NOT IN (
              SELECT toString(event_id) FROM events WHERE producer_id != ''
              UNION ALL SELECT toString(event_id) FROM feedback WHERE producer_id != '')
        GROUP BY producer_id, hour""", params)
    if not beats.empty:
        beats = beats.sort_values(["producer_id", "hour"])
        for counter in _AUDIT_COUNTERS:
            cumulative = beats[counter].astype("int64")
            beats[counter] = cumulative - cumulative.groupby(beats["producer_id"]).shift(1, fill_value=0)
    frames = [frame.assign(hour=pd.to_datetime(frame["hour"], utc=True)) for frame in (beats, stored, dead)]
    beats, stored, dead = frames
    first = pd.Timestamp(first_hour)
    beats = beats[beats["hour"] >= (first.tz_localize("UTC") if first.tzinfo is None else first)]
    merged = beats.merge(stored, on=["producer_id", "hour"], how="outer").merge(dead, on=["producer_id", "hour"],
                                                                                  how="outer")
    for column in ("sent", "stored", "dead_letters", "dropped", "spilled", "failed", "pid"):
        if column not in merged:
            merged[column] = 0
        merged[column] = merged[column].fillna(0).astype("int64")
    for column in ("service", "host"):
        if column not in merged:
            merged[column] = ""
        merged[column] = merged.groupby("producer_id")[column].transform(
            lambda values: values.dropna().iloc[-1] if values.notna().any() else "").fillna("")
    merged["pid"] = merged.groupby("producer_id")["pid"].transform("max")
    merged["missing"] = merged["sent"] - merged["stored"] - merged["dead_letters"]
    return merged[AUDIT_COLUMNS].sort_values(["producer_id", "hour"]).reset_index(drop=True)


def producer_audit_totals(audit: pd.DataFrame) -> pd.DataFrame:
    """One row per producer: the sums of :func:`producer_audit`'s hours."""
    if audit.empty:
        return audit.drop(columns=["hour"])
    sums = ["sent", "stored", "dead_letters", "missing", "dropped", "spilled", "failed"]
    return (audit.groupby(["producer_id", "service", "host", "pid"], as_index=False)[sums].sum()
            .sort_values("producer_id").reset_index(drop=True))


def unattributed_rows(client: Any, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """Events and feedback in ``[start, end)`` stamped with no producer id (sent by an SDK that does not
    stamp one), by service (feedback carries no service: '')."""
    return _df(client, """
        SELECT service, count() AS rows FROM (
            SELECT service FROM events WHERE producer_id = ''
                AND ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')}
            UNION ALL SELECT '' AS service FROM feedback WHERE producer_id = ''
                AND ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')})
        GROUP BY service ORDER BY service""", {"start": start, "end": end})


# -- Online evaluators (the eval_<evaluator> metric rows and the evaluations table) ----------------

def evaluator_series(client: Any, f: Filters, bucket_s: int) -> pd.DataFrame:
    """Per evaluator metric, segment, granularity and bucket of the range: sum(n) (calls scored), the
    n-weighted sum of the mean scores, and the calls evaluated and flagged (from the rows' ``details``).

    Every ``eval_*`` metric found, whatever evaluators are configured now. Rows of every granularity come
    back: keep one with :func:`pick_granularity`. Newest first: past the limit the oldest buckets go.
    """
    where, params = _metrics_where(f)
    params.update(prefix=names.EVAL_PREFIX, bucket=bucket_s)
    sql = (
        "SELECT granularity, metric, service, name, model, prompt_version, "
        "toStartOfInterval(m.window_start, INTERVAL {bucket:UInt32} SECOND) AS bucket, max(m.window_start) AS newest, "
        "argMax(m.value, m.window_start) AS newest_value, sum(m.n) AS n, sum(m.value * m.n) AS weighted, "
        "sum(JSONExtractUInt(m.details, 'evaluated')) AS evaluated, sum(JSONExtractUInt(m.details, 'flagged')) AS flagged "
        "FROM metrics AS m FINAL WHERE startsWith(metric, {prefix:String}) AND " + where +
        " GROUP BY granularity, metric, service, name, model, prompt_version, bucket ORDER BY bucket DESC LIMIT 20000"
    )
    return _df(client, sql, params)


def worst_evaluations(client: Any, f: Filters, limit: int = 20) -> pd.DataFrame:
    """The lowest-scored verdicts of the range (``evaluations``), each with its call's output.

    Like :func:`worst_rated`: the verdicts first, then their calls by trace id (the bloom-filter index).
    A verdict whose call is gone (retention, erasure) keeps an empty output.
    """
    clause, params = segment_clauses(f, environment=False)
    params.update(start=f.start, end=f.end, limit=limit)
    worst = _df(client, (
        "SELECT ts, trace_id, toString(event_id) AS event_id, evaluator, kind, score, label, flagged, reason, "
        "service, name, model, prompt_version FROM evaluations FINAL "
        "WHERE ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')} AND score IS NOT NULL" + clause +
        " ORDER BY score, flagged DESC, ts DESC LIMIT {limit:UInt32}"
    ), params)
    calls = _df(client, (
        "SELECT trace_id, toString(event_id) AS call_event, output FROM events "
        "PREWHERE trace_id IN {traces:Array(String)} AND ts >= {start:DateTime64(3, 'UTC')} "
        "AND ts < {end:DateTime64(3, 'UTC')} LIMIT 1 BY event_id"
    ), {"traces": sorted(set(worst["trace_id"])), "start": f.start - dt.timedelta(days=1), "end": f.end})
    by_event = dict(zip(calls["call_event"], calls["output"], strict=True))
    by_trace = dict(zip(calls["trace_id"], calls["output"], strict=True))
    worst["output"] = [by_event.get(e, by_trace.get(t, "")) for e, t in zip(worst["event_id"], worst["trace_id"],
                                                                             strict=True)]
    return worst


def evaluators_seen(client: Any, since: dt.datetime) -> list[str]:
    """The evaluators (``eval_<name>`` metrics) with any metric row since ``since``, by name."""
    rows = client.query(
        "SELECT DISTINCT metric FROM metrics WHERE startsWith(metric, {prefix:String}) "
        "AND window_start >= {since:DateTime('UTC')} ORDER BY metric LIMIT 100",
        parameters={"prefix": names.EVAL_PREFIX, "since": since}).result_rows
    return [str(row[0])[len(names.EVAL_PREFIX):] for row in rows]
