"""The figures the pages show, computed from query results: pure functions, no Streamlit, no I/O.

Combining metric rows across segments: counts and sums add up; rates are weighted by each row's
``n`` (so a busy segment weighs more than a quiet one); a p95 latency cannot be merged exactly
from per-segment p95s, so the overview shows their volume-weighted mean and says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from llmsight.analyzers import drift
from llmsight.analyzers.acceptance import wilson_interval
from llmsight.store import names

# How each overview metric combines across segments and buckets: "count" sums n, "sum" sums
# values, "rate" is sum(value * n) / sum(n).
COMBINE = {
    names.VOLUME: "count",
    names.ERROR_RATE: "rate",
    names.LATENCY_P95: "rate",
    names.COST: "sum",
    names.ACCEPTANCE: "rate",
    names.TOXICITY_OUTPUT: "rate",
    names.TOXICITY_INPUT: "rate",
}
LABELS = {
    names.VOLUME: "Volume",
    names.ERROR_RATE: "Error rate",
    names.LATENCY_P95: "p95 latency",
    names.COST: "Cost",
    names.ACCEPTANCE: "Acceptance",
    names.TOXICITY_OUTPUT: "Toxicity rate",
}
# Whether a rise is good news: it decides the colour of the change arrow.
RISE_IS_GOOD = {names.VOLUME: True, names.ACCEPTANCE: True}


@dataclass
class Kpi:
    metric: str
    label: str
    value: float | None
    baseline: float | None
    series: list[float] = field(default_factory=list)
    history: int | None = None  # buckets of the range that hold data (None: every point of ``series``)

    @property
    def points(self) -> int:
        """Buckets with data behind the sparkline (zero-filled empty buckets do not count)."""
        return self.history if self.history is not None else history_points(self.series)

    @property
    def change(self) -> float | None:
        """Relative change against the baseline (0.25 = +25 %); None without a usable baseline."""
        if self.value is None or self.baseline is None or self.baseline == 0:
            return None
        return (self.value - self.baseline) / abs(self.baseline)


def combine(rows: pd.DataFrame, metric: str) -> float | None:
    """One figure from metric rows (``n``, ``weighted``, ``total`` columns) of one metric."""
    if rows.empty:
        return None
    how = COMBINE.get(metric, "rate")
    n = float(rows["n"].sum())
    if how == "count":
        return n
    if how == "sum":
        return float(rows["total"].sum())
    return float(rows["weighted"].sum()) / n if n > 0 else None


def bucket_index(start: pd.Timestamp, end: pd.Timestamp, bucket_s: int) -> list[pd.Timestamp]:
    """Every chart bucket of the selected range (the x axis a sparkline must span)."""
    step = pd.Timedelta(seconds=bucket_s)
    first = pd.Timestamp(start).floor(step)
    return list(pd.date_range(first, pd.Timestamp(end) - pd.Timedelta(microseconds=1), freq=step))


def spread_over(values: dict[pd.Timestamp, float], buckets: list[pd.Timestamp], metric: str) -> list[float]:
    """A sparkline over every bucket of the range: empty buckets are 0 for counts and sums, a gap (NaN) for
    rates, which have no value without calls."""
    how = COMBINE.get(metric, "rate")
    empty = 0.0 if how in ("count", "sum") else float("nan")
    return [float(values[b]) if b in values else empty for b in buckets]


def history_points(series: list[float]) -> int:
    """How many buckets of a sparkline hold a value (not NaN)."""
    return sum(1 for v in series if v == v)


MIN_HISTORY = 2  # buckets with data before a sparkline says anything


def kpis_from_metrics(series: pd.DataFrame, current_start: pd.Timestamp,
                      buckets: list[pd.Timestamp] | None = None) -> list[Kpi]:
    """Overview figures: each metric over the current period, its baseline period, and a sparkline.

    ``series`` holds buckets of both periods (from :func:`queries.metric_series`, one granularity).
    With ``buckets`` (see :func:`bucket_index`) the sparkline spans every bucket of the range, so a
    short history sits at the right end instead of being stretched across the card.
    """
    result = []
    for metric in LABELS:
        rows = series[series["metric"] == metric] if not series.empty else series
        if rows.empty:
            result.append(Kpi(metric, LABELS[metric], None, None))
            continue
        current = rows[rows["bucket"] >= current_start]
        baseline = rows[rows["bucket"] < current_start]
        per_bucket = {pd.Timestamp(b): combine(group, metric) for b, group in current.groupby("bucket", sort=True)}
        if buckets is None:
            spark = [v or 0.0 for v in per_bucket.values()]
        else:
            known = {b: v for b, v in per_bucket.items() if v is not None}
            spark = spread_over(known, buckets, metric)
        result.append(Kpi(metric, LABELS[metric], combine(current, metric), combine(baseline, metric), spark,
                          sum(v is not None for v in per_bucket.values())))
    return result


def sparkline(series: pd.DataFrame, metrics: tuple[str, ...], current_start: pd.Timestamp,
              buckets: list[pd.Timestamp] | None = None) -> list[float]:
    """The n-weighted mean of some metrics per bucket of the current period (the drift score line); with
    ``buckets``, over every bucket of the range (a gap where no test ran)."""
    if series.empty:
        return [float("nan")] * len(buckets) if buckets is not None else []
    rows = series[series["metric"].isin(metrics) & (series["bucket"] >= current_start)]
    values = {pd.Timestamp(b): float(g["weighted"].sum() / g["n"].sum()) if g["n"].sum() > 0
              else float(g["total"].mean()) for b, g in rows.groupby("bucket", sort=True)}
    return list(values.values()) if buckets is None else spread_over(values, buckets, "rate")


def kpis_from_events(current: pd.DataFrame, baseline: pd.DataFrame,
                     buckets: list[pd.Timestamp] | None = None) -> list[Kpi]:
    """Volume, error rate, p95 latency and cost from raw event buckets (before the analyzers ran); with
    ``buckets`` the sparklines span every bucket of the range."""

    def figures(frame: pd.DataFrame) -> dict[str, float | None]:
        n = float(frame["n"].sum()) if not frame.empty else 0.0
        if n == 0:
            return {names.VOLUME: None, names.ERROR_RATE: None, names.LATENCY_P95: None, names.COST: None}
        return {
            names.VOLUME: n,
            names.ERROR_RATE: float(frame["errors"].sum()) / n,
            names.LATENCY_P95: float((frame["latency_p95"] * frame["n"]).sum()) / n,
            names.COST: float(frame["cost"].sum()),
        }

    now, before = figures(current), figures(baseline)
    sparks = {
        names.VOLUME: current["n"].astype(float).tolist(),
        names.ERROR_RATE: (current["errors"] / current["n"]).astype(float).tolist(),
        names.LATENCY_P95: current["latency_p95"].astype(float).tolist(),
        names.COST: current["cost"].astype(float).tolist(),
    } if not current.empty else {}
    filled = len(current)
    if buckets is not None:
        stamps = [pd.Timestamp(b) for b in current["bucket"]] if not current.empty else []
        sparks = {m: spread_over(dict(zip(stamps, sparks.get(m, []), strict=True)), buckets, m) for m in now}
    return [Kpi(m, LABELS[m], now[m], before[m], sparks.get(m, []), filled) for m in now]


def _with_rate_and_interval(grouped: pd.DataFrame) -> pd.DataFrame:
    """Add the acceptance rate and its Wilson interval (the analyzers' own) to summed (accepted, n) rows."""
    grouped["accepted"] = grouped["accepted"].round()
    grouped["rate"] = grouped["accepted"] / grouped["n"].where(grouped["n"] > 0)
    bounds = [wilson_interval(int(a), int(n)) for a, n in zip(grouped["accepted"], grouped["n"], strict=True)]
    grouped["low"] = [b[0] for b in bounds]
    grouped["high"] = [b[1] for b in bounds]
    return grouped


def acceptance_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Acceptance per (bucket, model, prompt version) with its Wilson interval."""
    columns = ["bucket", "model", "prompt_version", "series", "n", "accepted", "rate", "low", "high"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    grouped = _with_rate_and_interval(
        rows.groupby(["bucket", "model", "prompt_version"], as_index=False)[["accepted", "n"]].sum())
    grouped["series"] = grouped["model"] + " · " + grouped["prompt_version"]
    return grouped[columns]


def acceptance_totals(rows: pd.DataFrame) -> pd.DataFrame:
    """Acceptance per (model, prompt version) over the whole range, with its Wilson interval."""
    columns = ["model", "prompt_version", "n", "accepted", "rate", "low", "high"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    grouped = _with_rate_and_interval(
        rows.groupby(["model", "prompt_version"], as_index=False)[["accepted", "n"]].sum())
    return grouped[columns].sort_values(["model", "prompt_version"], ignore_index=True)


def examples(rows: pd.DataFrame) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Each (row, example) pair from metric rows whose ``details`` JSON lists examples; bad JSON is skipped."""
    for row in rows.itertuples():
        try:
            details = json.loads(row.details) if row.details else {}
        except ValueError:
            continue
        for example in details.get("examples") or [] if isinstance(details, dict) else []:
            if isinstance(example, dict):
                yield row, example


def drift_flags(latest: pd.DataFrame) -> list[bool]:
    """Whether each drift row counts as drifted, by the analyzers' one rule (the rows need ``details``)."""
    return [drift.row_drifted(v, t, p, d) for v, t, p, d in
            zip(latest["value"], latest["threshold"], latest["p_value"], latest["details"], strict=True)]


def drift_summary(latest: pd.DataFrame) -> tuple[int, int]:
    """(segments drifted, segments checked) from the latest drift row per segment and metric."""
    if latest.empty:
        return 0, 0
    flags = drift_flags(latest)
    return sum(flags), len(flags)


def segment_label(row: pd.Series) -> str:
    """service/name/model/prompt_version, the segment as people read it."""
    return "/".join(str(row[c]) for c in names.SEGMENT_KEYS)


def format_value(metric: str, value: float | None) -> str:
    """A KPI value for display."""
    if value is None:
        return "–"
    if metric == names.VOLUME:
        return f"{value:,.0f}"
    if metric == names.COST:
        return f"${value:,.2f}"
    if metric == names.LATENCY_P95:
        return f"{value:,.0f} ms"
    return f"{value * 100:.1f}%"


def format_change(change: float | None) -> str | None:
    return None if change is None else f"{change * 100:+.1f}% vs baseline"


def change_text(kpi: Kpi) -> tuple[str, bool]:
    """The change against the baseline for a card, and whether it has a direction (an arrow) at all.

    Every card says something: a relative change, a change from zero, or why there is none.
    """
    if kpi.value is None:
        return "no data in this range", False
    if kpi.baseline is None:
        return "no baseline: no data in the range before", False
    if kpi.baseline == 0:
        if kpi.value == 0:
            return "no change vs baseline (0)", False
        if COMBINE.get(kpi.metric, "rate") == "rate":
            return f"{(kpi.value - kpi.baseline) * 100:+.1f} pts vs baseline 0%", True
        return f"{format_value(kpi.metric, kpi.value)} vs baseline 0", True
    return format_change(kpi.change) or "", True
