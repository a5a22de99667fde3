"""Loss audit: per producer (one SDK process) what it sent, what is stored, and what it dropped or failed.

Reads ``queries.producer_audit`` (heartbeat counters against stored rows); ``llmsight audit`` shows
the same figures on the command line.
"""

from __future__ import annotations

import streamlit as st

from llmsight.dashboard.data import q
from llmsight.store import queries
from llmsight.store.queries import Filters


def render(f: Filters) -> None:
    st.title("Loss audit")
    hours = q("producer_audit", f.start, f.end)
    totals = queries.producer_audit_totals(hours)
    if totals.empty:
        st.info("No producer heartbeats in this range. Each SDK process sends one now and then with its "
                "cumulative counters (sent, dropped, spilled, failed).")
        return
    missing = int(totals["missing"].clip(lower=0).sum())
    columns = st.columns(4)
    columns[0].metric("Sent", f"{int(totals['sent'].sum()):,}")
    columns[1].metric("Stored", f"{int(totals['stored'].sum()):,}")
    columns[2].metric("Missing", f"{missing:,}", help="sent − stored − dead letters, summed over producers")
    columns[3].metric("Dropped / failed in the SDK", f"{int(totals['dropped'].sum()):,} / {int(totals['failed'].sum()):,}")
    if (totals["missing"] == 0).all():
        st.success("Balanced: every producer's sent events are stored or in dead letters.")
    else:
        st.warning("Not balanced for some producers (a single hour may differ near its end; totals must not).")
    st.subheader("Per producer")
    st.dataframe(totals, hide_index=True, width="stretch", key="audit_totals")
    st.subheader("Per producer and hour")
    st.dataframe(hours, hide_index=True, width="stretch", key="audit_hours")
    unattributed = q("unattributed_rows", f.start, f.end)
    if not unattributed.empty:
        st.caption("Rows without a producer id (sent by an SDK that does not stamp one): "
                   + ", ".join(f"{r.rows} of {r.service or 'feedback'}" for r in unattributed.itertuples()))
