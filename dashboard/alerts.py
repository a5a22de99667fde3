"""Alerts: firing, pending and resolved alerts with their evidence; acknowledge one with a note, or silence it.

An acknowledgement is a new row in the ``alerts`` table written by the alert engine's own
:func:`llmsight.alerts.engine.acknowledge`; it stops re-notifications until the alert resolves.
A silence (:mod:`llmsight.dashboard.silences`) holds every notification back for a set time.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from llmsight.alerts.evidence import grown_topic, p_level, share_text
from llmsight.dashboard import auth, data, silences
from llmsight.dashboard.data import q
from llmsight.dashboard.text import plain
from llmsight.store.queries import Filters

TABS = (("firing", "Firing"), ("pending", "Pending"), ("resolved", "Resolved"))
COLUMNS = ["rule", "severity", "state", "service", "name", "model", "prompt_version", "value", "threshold",
           "baseline", "p_value", "window_start", "acked_by", "ack_note", "silenced_until", "changed_at"]


def _label(row: pd.Series) -> str:
    silenced = " · silenced" if pd.notna(row["silenced_until"]) else ""
    return (f"{row['state']} · {row['rule']} · {row['service']}/{row['name']}/{row['model']}/"
            f"{row['prompt_version']} · {row['alert_id']}{silenced}")


def _shown(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.4g}"


def what_changed(parsed: dict[str, Any]) -> bool:
    """The topic that grew (drift alerts): label, share before → after with intervals, examples. True if shown."""
    topic = grown_topic(parsed)
    if topic is None:
        return False
    st.markdown(f"**What changed:** the topic *{plain(topic['label'])}* grew from "
                f"{share_text(topic)} of the traffic (before → after, 95% intervals).")
    if topic["examples"]:
        st.dataframe(pd.DataFrame(topic["examples"], columns=["trace_id", "text"]), hide_index=True,
                     width="stretch", key="alert_topic_examples")
    return True


def evidence(alert: pd.Series) -> None:
    segment = f"{alert['service']}/{alert['name']}/{alert['model']}/{alert['prompt_version']}"
    st.markdown(f"**{alert['rule']}** ({alert['severity']}, {alert['state']}) on {plain(segment)}")
    try:
        parsed = json.loads(alert["evidence"]) if alert["evidence"] else {}
    except ValueError:
        parsed = {"raw": alert["evidence"]}
    parsed = parsed if isinstance(parsed, dict) else {"raw": parsed}
    level = p_level(parsed)
    cols = st.columns(4)
    if level is None:  # a value and its threshold, in the same units
        shown = (("value", alert["value"]), ("threshold", alert["threshold"]), ("baseline", alert["baseline"]),
                 ("p-value", alert["p_value"]))
        for col, (label, value) in zip(cols, shown, strict=True):
            col.metric(label, _shown(value))
    else:  # a score beside its own critical value; the p-value apart, beside the rule's level
        cols[0].metric("score", _shown(alert["value"]))
        cols[1].metric("critical value of the score", _shown(alert["threshold"]))
        cols[2].metric("p-value", _shown(alert["p_value"]))
        cols[3].metric("alerts at p ≤", f"{level:g}")
    episode = parsed.get("episode") if isinstance(parsed.get("episode"), dict) else {}
    if episode:
        flapping = " · **flapping**" if episode.get("flapping") else ""
        st.caption(f"Incident {plain(str(episode.get('id', '')))} · started {episode.get('started', '–')} · "
                   f"fired {episode.get('fired', '–')} · re-fired {episode.get('flaps', 0)} times after resolving"
                   + flapping)
    if not what_changed(parsed):
        examples = parsed.get("examples")
        if examples:
            st.markdown("**Examples**")
            st.dataframe(pd.DataFrame(examples if isinstance(examples[0], dict) else {"text": examples}),
                         hide_index=True, width="stretch")
    with st.expander("Evidence (JSON)"):
        st.json(parsed)
    st.markdown("**History**")
    st.dataframe(q("alert_history", alert["alert_id"]), hide_index=True, width="stretch")


def acknowledge_form(alert: pd.Series) -> None:
    if alert["state"] not in ("firing", "pending"):
        return
    by = auth.current_user()  # from the login, never typed in
    with st.form("acknowledge", clear_on_submit=True):
        st.caption(f"Acknowledging as {plain(by)}")
        note = st.text_area("Note", key="ack_note", placeholder="What you are doing about it")
        submitted = st.form_submit_button("Acknowledge (silence re-notifications until it resolves)")
    if submitted:
        from llmsight.alerts.engine import acknowledge
        from llmsight.errors import LlmsightError

        try:
            acknowledge(data.client(), alert["alert_id"], by, note)
        except LlmsightError as exc:
            st.error(str(exc))
            return
        data.forget()
        st.success(f"Acknowledged by {plain(by)}.")


def render(f: Filters) -> None:
    st.title("Alerts")
    alerts = silences.mark(q("alert_states", f), q("active_silences"))
    counts = {state: int((alerts["state"] == state).sum()) if not alerts.empty else 0 for state, _ in TABS}
    tabs = st.tabs([f"{title} ({counts[state]})" for state, title in TABS])
    for tab, (state, _title) in zip(tabs, TABS, strict=False):
        with tab:
            rows = alerts[alerts["state"] == state] if not alerts.empty else alerts
            if rows.empty:
                st.caption(f"No {state} alerts.")
            else:
                st.dataframe(rows[COLUMNS], hide_index=True, width="stretch", key=f"alerts_{state}")
    if not alerts.empty:
        st.subheader("Evidence, acknowledgement and silence")
        labels = {_label(row): row["alert_id"] for _, row in alerts.iterrows()}
        ids = list(labels.values())
        linked = st.query_params.get("alert")  # a notification's link (LLMSIGHT_DASHBOARD_URL) names its alert
        chosen = st.selectbox("Alert", list(labels), index=ids.index(linked) if linked in ids else 0,
                              key="alert_choice")
        alert = alerts[alerts["alert_id"] == labels[chosen]].iloc[0]
        evidence(alert)
        acknowledge_form(alert)
        silences.silence_form(alert)
    silences.active_list()
