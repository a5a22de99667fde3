"""Overview: the headline figures against their baseline, the active alerts and the drift status."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from llmsight.dashboard import figures
from llmsight.dashboard.data import q
from llmsight.store import names, queries
from llmsight.store.queries import (
    ACTIVE_STATES,
    DRIFT_METRICS,
    OVERVIEW_METRICS,
    Filters,
    pick_granularity,
)


def alert_banner(f: Filters) -> None:
    active = q("alert_states", f, ACTIVE_STATES)
    if active.empty:
        st.success("No active alerts.", icon=":material/check_circle:")
        return
    firing = active[active["state"] == "firing"]
    pending = active[active["state"] == "pending"]
    lines = [f"**{row.rule}** ({row.severity}) on {row.service}/{row.name}/{row.model}/{row.prompt_version}"
             for row in active.head(5).itertuples()]
    more = f" and {len(active) - 5} more" if len(active) > 5 else ""
    text = f"{len(firing)} firing, {len(pending)} pending: " + "; ".join(lines) + more
    (st.error if len(firing) else st.warning)(text, icon=":material/notifications_active:")


def kpis(f: Filters) -> tuple[list[figures.Kpi], str, list[float]]:
    """The headline figures, where they came from ("metrics" or "events"), and the drift score sparkline."""
    span = Filters(f.baseline().start, f.end, f.services, f.models, f.prompt_versions, f.environments)
    bucket = queries.bucket_seconds(f.span)
    buckets = figures.bucket_index(pd.Timestamp(f.start), pd.Timestamp(f.end), bucket)
    series = q("metric_series", span, OVERVIEW_METRICS + DRIFT_METRICS, bucket)
    series = pick_granularity(series, queries.granularity_for(f.span))
    result = figures.kpis_from_metrics(series, pd.Timestamp(f.start), buckets)
    drift_spark = figures.sparkline(series, DRIFT_METRICS, pd.Timestamp(f.start), buckets)
    if f.environments or result[0].value is None:
        # Metric rows have no environment, and before the analyzers' first run there are none:
        # the operational figures then come straight from the events.
        events = q("event_series", span, bucket)
        current = events[events["bucket"] >= pd.Timestamp(f.start)]
        baseline = events[events["bucket"] < pd.Timestamp(f.start)]
        raw = {k.metric: k for k in figures.kpis_from_events(current, baseline, buckets)}
        return [raw.get(k.metric, k) for k in result], "events", drift_spark
    return result, "metrics", drift_spark


def drift_status(f: Filters, spark: list[float]) -> None:
    latest = q("latest_by_segment", f, DRIFT_METRICS, with_details=True)
    before = q("latest_by_segment", f.baseline(), DRIFT_METRICS, with_details=True)
    drifted, checked = figures.drift_summary(latest)
    drifted_before, checked_before = figures.drift_summary(before)
    label = "Drift status"
    if checked == 0:
        st.metric(label, "no data", border=True, help="No drift test ran in this range.")
        return
    if checked_before:
        delta = f"{drifted - drifted_before:+d} vs baseline ({drifted_before} of {checked_before})"
        arrow = drifted != drifted_before
    else:
        delta, arrow = "no baseline: no drift test in the range before", False
    st.metric(label, f"{drifted} of {checked}", delta=delta, delta_color="inverse" if arrow else "off",
              delta_arrow="auto" if arrow else "off", border=True,
              chart_data=_spark(spark, figures.history_points(spark)),
              help="Segments drifted of segments tested: (service/name/model/prompt version × input or output) "
                   "whose latest drift test passed its threshold; the sparkline is the mean drift score over "
                   "the selected range.")
    _history_note(figures.history_points(spark))


def _spark(series: list[float], points: int) -> list[float] | None:
    """The sparkline over the whole range, or None (no empty box) when too few buckets hold data."""
    return series if points >= figures.MIN_HISTORY else None


def _history_note(points: int) -> None:
    if points < figures.MIN_HISTORY:
        st.caption("Not enough history in this range for a sparkline.")


def render(f: Filters) -> None:
    st.title("Overview")
    alert_banner(f)
    result, source, drift_spark = kpis(f)
    columns = st.columns(4)
    for index, kpi in enumerate(result):
        with columns[index % 4]:
            rise_good = figures.RISE_IS_GOOD.get(kpi.metric, False)
            delta, arrow = figures.change_text(kpi)
            st.metric(kpi.label, figures.format_value(kpi.metric, kpi.value), delta=delta,
                      delta_color=("normal" if rise_good else "inverse") if arrow else "off",
                      delta_arrow="auto" if arrow else "off", chart_data=_spark(kpi.series, kpi.points),
                      border=True, help=_HELP.get(kpi.metric))
            _history_note(kpi.points)
    with columns[len(result) % 4]:
        drift_status(f, drift_spark)
    if source == "events":
        st.caption("Volume, errors, latency and cost computed from the raw calls (the environment filter is set, "
                   "or the analyzers have not written metrics for this range yet).")
    latest = q("latest_by_segment", f, DRIFT_METRICS, with_details=True)
    if not latest.empty:
        latest = latest.assign(segment=latest.apply(figures.segment_label, axis=1),
                               drifted=figures.drift_flags(latest))
        shown = latest[latest["drifted"]]
        if not shown.empty:
            st.subheader("Drifted segments")
            # A score beside its own critical value; the p-value in its own, labelled column.
            st.dataframe(shown[["segment", "metric", "value", "threshold", "p_value", "window_start"]].rename(
                columns={"value": "score", "threshold": "critical value", "p_value": "p-value"}),
                hide_index=True, width="stretch")


_HELP = {
    names.LATENCY_P95: "Volume-weighted mean of the segments' p95 latencies.",
    names.TOXICITY_OUTPUT: "Share of outputs the toxicity scorer flagged.",
    names.ACCEPTANCE: "Share of feedback that accepted the output.",
}
