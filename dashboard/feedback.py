"""Feedback: acceptance by model and prompt version over time, with Wilson intervals, the
worst-rated calls, and the online evaluators' scores (:mod:`llmsight.dashboard.evaluator_scores`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from llmsight.dashboard import charts, evaluator_scores, figures
from llmsight.dashboard.data import q
from llmsight.store import queries
from llmsight.store.queries import Filters


def acceptance_rows(f: Filters) -> pd.DataFrame:
    rows = q("acceptance_by_version", f, queries.bucket_seconds(f.span))
    if rows.empty:
        return rows
    preferred = queries.granularity_for(f.span)
    available = set(rows["granularity"])
    chosen = preferred if preferred in available else min(available, key=["1m", "1h", "1d"].index)
    return rows[rows["granularity"] == chosen]


def render(f: Filters) -> None:
    st.title("Feedback")
    rows = acceptance_rows(f)
    if rows.empty:
        st.info("No acceptance figures in this range yet (they need feedback joined to calls by the analyzers).")
    else:
        totals = figures.acceptance_totals(rows)
        st.subheader("Acceptance by model and prompt version")
        st.dataframe(totals, hide_index=True, width="stretch", key="acceptance_totals", column_config={
            "rate": st.column_config.NumberColumn("acceptance", format="percent"),
            "low": st.column_config.NumberColumn("95% CI low", format="percent"),
            "high": st.column_config.NumberColumn("95% CI high", format="percent"),
        })
        over_time = figures.acceptance_table(rows)
        st.altair_chart(charts.rate_with_band(over_time), width="stretch")
        st.caption("Bands are 95% Wilson score intervals.")
    st.subheader("Worst-rated calls")
    worst = q("worst_rated", f, 20)
    if worst.empty:
        st.caption("No rejected or scored calls in this range.")
    else:
        st.dataframe(worst, hide_index=True, width="stretch", key="worst_rated")
    st.divider()
    evaluator_scores.section(f)
