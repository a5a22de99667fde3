"""The Evaluators section of the Feedback page: what the online evaluators (:mod:`llmsight.evaluators`) said
about the answers in the selected range and filters.

It sits on the Feedback page because that page already answers "are the answers still good?" for the same
range and segment filters (users' acceptance, worst-rated calls), refreshes live, and is where an
``eval_*`` alert's segment and time lead; the Review page works a whole ISO week at a time for reviewers.

Per evaluator and segment (from the ``eval_<evaluator>`` metric rows, one granularity): the latest window's
mean score, the mean over the range against the period of equal length before it, the flagged share (the
rows' ``details``), and a line per series over time; then the lowest-scored verdicts of the range from the
``evaluations`` table with their call's output. Event text (reasons, outputs, labels, names) goes through
:func:`llmsight.dashboard.text.plain` or ``st.text``: it never renders as Markdown.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from llmsight.dashboard import charts
from llmsight.dashboard.data import q
from llmsight.dashboard.text import plain
from llmsight.store import queries
from llmsight.store.names import EVAL_PREFIX, SEGMENT_KEYS
from llmsight.store.queries import Filters

TABLE_COLUMNS = ["evaluator", "segment", "latest", "mean", "previous", "change", "flagged_share", "scored",
                 "evaluated"]
MAX_SERIES = 12  # lines on the chart: the lowest-scored series first
WORST_SHOWN = 10
OUTPUT_CHARS = 300
SEEN_SINCE = dt.timedelta(days=30)  # how far back the empty state looks for evaluators' rows


def _one_granularity(rows: pd.DataFrame, span: pd.Timedelta) -> pd.DataFrame:
    return queries.pick_granularity(rows, queries.granularity_for(span)) if not rows.empty else rows


def _with_labels(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    rows["evaluator"] = rows["metric"].str.slice(len(EVAL_PREFIX))
    rows["segment"] = ["/".join(str(v) for v in values) for values in rows[list(SEGMENT_KEYS)].itertuples(index=False)]
    return rows


def evaluator_table(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluator and segment with scores in the current range (rows of one granularity each,
    from :func:`queries.evaluator_series`): the newest window's mean score, the n-weighted mean over the
    range and over the previous period, their difference, the flagged share and the call counts.
    Ordered by evaluator, then the lowest mean first."""
    if current.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    current, previous = _with_labels(current), _with_labels(previous) if not previous.empty else previous
    before = {}
    if not previous.empty:
        for key, rows in previous.groupby(["evaluator", "segment"]):
            n = float(rows["n"].sum())
            before[key] = float(rows["weighted"].sum()) / n if n > 0 else None
    out = []
    for (evaluator, segment), rows in current.groupby(["evaluator", "segment"]):
        n = float(rows["n"].sum())
        mean = float(rows["weighted"].sum()) / n if n > 0 else None
        latest = float(rows.loc[rows["newest"].idxmax(), "newest_value"])
        prior = before.get((evaluator, segment))
        evaluated = int(rows["evaluated"].sum())
        flagged_share = int(rows["flagged"].sum()) / evaluated if evaluated else None
        change = mean - prior if mean is not None and prior is not None else None
        out.append([evaluator, segment, latest, mean, prior, change, flagged_share, int(n), evaluated])
    table = pd.DataFrame(out, columns=TABLE_COLUMNS)
    return table.sort_values(["evaluator", "mean", "segment"], ignore_index=True)


def score_lines(current: pd.DataFrame, keep: list[tuple[str, str]]) -> pd.DataFrame:
    """Mean score per bucket for the (evaluator, segment) series in ``keep``."""
    rows = _with_labels(current)
    rows = rows[[(e, s) in set(keep) for e, s in zip(rows["evaluator"], rows["segment"], strict=True)]]
    grouped = rows.groupby(["evaluator", "segment", "bucket"], as_index=False)[["weighted", "n"]].sum()
    grouped["score"] = grouped["weighted"] / grouped["n"].where(grouped["n"] > 0)
    grouped["series"] = grouped["evaluator"] + " · " + grouped["segment"]
    return grouped[["bucket", "series", "score", "n"]]


def _change_text(change: float | None) -> str:
    return "–" if change is None or change != change else f"{change:+.2f}"


def _no_scores() -> None:
    """No scores in the range: say whether any evaluator scored calls lately, else how to turn one on.

    The dashboard cannot see the analyzers' evaluators file (another process, on Kubernetes another pod),
    so it judges by the store: an evaluator that is on writes its eval_<name> rows every window.
    """
    seen = q("evaluators_seen", queries.now() - SEEN_SINCE)
    if seen:
        st.info(f"No evaluator scores in this range and filters. Evaluators that scored calls in the last "
                f"{SEEN_SINCE.days} days: {plain(', '.join(seen))}. Widen the range or the filters; an evaluator "
                "scores each window once it closes.")
        return
    st.info(f"No online evaluator has scored a call in the last {SEEN_SINCE.days} days: none is on. To turn one "
            "on, copy the shipped `default-evaluators.yaml` (in `llmsight/evaluators/`), set `enabled: true` on the "
            "checks or judges you want, and point `LLMSIGHT_EVALUATORS_FILE` at the copy for the analyzers (on "
            "Kubernetes: the chart's `analyzers.evaluators`). Each evaluator then writes the metric `eval_<name>`, "
            "shown here.")


def _worst(f: Filters) -> None:
    st.markdown("**Lowest-scored calls**")
    worst = q("worst_evaluations", f, WORST_SHOWN)
    if worst.empty:
        st.caption("No scored verdict in this range.")
        return
    for row in worst.itertuples():
        segment = "/".join(str(getattr(row, k)) for k in SEGMENT_KEYS)
        st.markdown(f"**{row.score:.2f}** · {plain(row.evaluator)} · {plain(row.label or 'no label')}"
                    f"{' · flagged' if row.flagged else ''} · {plain(segment)} · trace {plain(row.trace_id)}")
        if row.reason:
            st.caption(f"Reason: {plain(row.reason)}")
        output = str(row.output or "")
        st.text(output[:OUTPUT_CHARS] + ("…" if len(output) > OUTPUT_CHARS else "") if output else "(no output)")


def section(f: Filters) -> None:
    """The Evaluators section for the range and filters ``f``."""
    st.subheader("Evaluators")
    bucket_s = queries.bucket_seconds(f.span)
    span = pd.Timedelta(f.span)
    current = _one_granularity(q("evaluator_series", f, bucket_s), span)
    if current.empty:
        _no_scores()
        return
    previous = _one_granularity(q("evaluator_series", f.baseline(), bucket_s), span)
    table = evaluator_table(current, previous)
    st.dataframe(table, hide_index=True, width="stretch", key="evaluator_scores", column_config={
        "latest": st.column_config.NumberColumn("latest window", format="%.2f"),
        "mean": st.column_config.NumberColumn("mean (range)", format="%.2f"),
        "previous": st.column_config.NumberColumn("mean (period before)", format="%.2f"),
        "change": st.column_config.NumberColumn("change", format="%+.2f"),
        "flagged_share": st.column_config.NumberColumn("flagged", format="percent"),
        "scored": st.column_config.NumberColumn("calls scored"),
        "evaluated": st.column_config.NumberColumn("calls evaluated"),
    })
    worst_first = table.sort_values("mean").head(MAX_SERIES)
    lines = score_lines(current, list(zip(worst_first["evaluator"], worst_first["segment"], strict=True)))
    st.altair_chart(charts.lines(lines, "bucket", "score", "series", title="mean score (1 = best)", y_format=".2f",
                                 tooltip=["bucket:T", "series:N", "score:Q", "n:Q"]), width="stretch")
    moves = [f"{plain(r.evaluator)} on {plain(r.segment)} {_change_text(r.change)}" for r in table.itertuples()
             if r.change is not None and r.change == r.change]
    st.caption("Scores run from 0 to 1, 1 the best; the change is the range's mean minus the mean of the period "
               "of equal length before it; flagged: the share of evaluated calls the evaluator judged bad. "
               + (f"Changes: {'; '.join(moves)}." if moves else "No score in the period before to compare with."))
    _worst(f)

