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


def kpis_from_metrics(series: pd.DataFrame, current_start: pd.Timestamp) -> list[Kpi]:
    """Overview figures: each metric over the current period, its baseline period, and a sparkline.

    ``series`` holds buckets of both periods (from :func:`queries.metric_series`, one granularity).
    """
    result = []
    for metric in LABELS:
        rows = series[series["metric"] == metric] if not series.empty else series
        if rows.empty:
            result.append(Kpi(metric, LABELS[metric], None, None))
            continue
        current = rows[rows["bucket"] >= current_start]
        baseline = rows[rows["bucket"] < current_start]
        spark = [combine(group, metric) or 0.0 for _, group in current.groupby("bucket", sort=True)]
        result.append(Kpi(metric, LABELS[metric], combine(current, metric), combine(baseline, metric), spark))
    return result


def sparkline(series: pd.DataFrame, metrics: tuple[str, ...], current_start: pd.Timestamp) -> list[float]:
    """The n-weighted mean of some metrics per bucket of the current period (the drift score line)."""
    if series.empty:
        return []
    rows = series[series["metric"].isin(metrics) & (series["bucket"] >= current_start)]
    return [float(g["weighted"].sum() / g["n"].sum()) if g["n"].sum() > 0 else float(g["total"].mean())
            for _, g in rows.groupby("bucket", sort=True)]


def kpis_from_events(current: pd.DataFrame, baseline: pd.DataFrame) -> list[Kpi]:
    """Volume, error rate, p95 latency and cost from raw event buckets (before the analyzers ran)."""

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
    return [Kpi(m, LABELS[m], now[m], before[m], sparks.get(m, [])) for m in now]


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
