"""Silences on the alerts page: which alerts are silenced, a form to silence one, the active silences.

A silence made here covers the chosen alert's rule on its exact segment, for 1, 4 or 24 hours. It is
written by :func:`llmsight.alerts.silences.create_silence`, the function the CLI uses too; the
alert engine reads it at its next evaluation.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from llmsight.alerts.silences import DASHBOARD_DURATIONS, Silence, matching
from llmsight.dashboard import auth, data
from llmsight.dashboard.data import q
from llmsight.dashboard.text import plain
from llmsight.store.names import SEGMENT_KEYS

SHOWN = ["silence_id", "rule", "service", "name", "model", "prompt_version", "until", "left", "created_by", "reason"]


def _silences(frame: pd.DataFrame) -> list[Silence]:
    return [Silence(row["silence_id"], row["rule"], {k: row[k] for k in SEGMENT_KEYS if row[k]},
                    pd.Timestamp(row["until"]).to_pydatetime(), row["created_by"], row["reason"],
                    pd.Timestamp(row["created_at"]).to_pydatetime()) for _, row in frame.iterrows()]


def mark(alerts: pd.DataFrame, silences: pd.DataFrame) -> pd.DataFrame:
    """``alerts`` with a ``silenced_until`` column: the end of the silence holding a pending or firing alert."""
    marked = alerts.copy()
    active = _silences(silences)
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()

    def until(row: pd.Series) -> object:
        if row["state"] not in ("firing", "pending"):
            return None
        found = matching(active, row["rule"], {k: row[k] for k in SEGMENT_KEYS}, now)
        return found.until if found else None

    marked["silenced_until"] = marked.apply(until, axis=1) if not marked.empty else pd.Series(dtype=object)
    return marked


def silence_form(alert: pd.Series) -> None:
    """Silence the chosen pending or firing alert (its rule, on its segment) for 1 h, 4 h or 24 h."""
    if alert["state"] not in ("firing", "pending"):
        return
    by = auth.current_user()  # from the login, never typed in
    with st.form("silence", clear_on_submit=True):
        st.markdown(f"**Silence** `{alert['rule']}` on this segment: still recorded, not notified; "
                    "if it still fires when the silence ends, it notifies once.")
        length = st.radio("For", DASHBOARD_DURATIONS, horizontal=True, key="silence_for")
        st.caption(f"Silencing as {plain(by)}")
        reason = st.text_input("Reason", key="silence_reason", placeholder="Known regression, rollback under way")
        submitted = st.form_submit_button("Silence")
    if submitted:
        from llmsight.alerts.silences import create_silence, parse_silence_for
        from llmsight.errors import LlmsightError

        segment = {k: str(alert[k]) for k in SEGMENT_KEYS}
        try:
            made = create_silence(data.client(), str(alert["rule"]), segment, parse_silence_for(length), by, reason)
        except LlmsightError as exc:
            st.error(str(exc))
            return
        data.forget()
        st.success(f"Silenced {made.rule} for {length} (until {made.until:%Y-%m-%d %H:%M} UTC) as {made.silence_id}.")


def active_list() -> None:
    """The active silences, and a form to end one early."""
    st.subheader("Active silences")
    frame = q("active_silences")
    if frame.empty:
        st.caption("No active silences.")
        return
    st.dataframe(frame[SHOWN], hide_index=True, width="stretch", key="silences_table")
    labels = {f"{row['silence_id']} · {row['rule']} · {row['left']} left": row["silence_id"]
              for _, row in frame.iterrows()}
    by = auth.current_user()  # from the login, never typed in
    with st.form("unsilence", clear_on_submit=True):
        chosen = st.selectbox("Silence", list(labels), key="unsilence_choice")
        st.caption(f"Ending as {plain(by)}")
        submitted = st.form_submit_button("End silence now")
    if submitted and chosen is not None:
        from llmsight.alerts.silences import remove_silence
        from llmsight.errors import LlmsightError

        try:
            removed = remove_silence(data.client(), labels[chosen], by)
        except LlmsightError as exc:
            st.error(str(exc))
            return
        data.forget()
        st.success(f"Silence {removed.silence_id} ended.")
