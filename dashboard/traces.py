"""Traces: search and filter calls, then open one to read its prompt, output, feedback and scores.

The list leads with what the person on call reads first: the time, the segment, the prompt and the
output (each cut to one line); latency, errors and the trace id follow. The open trace is kept in the
URL (``?trace=...``) so it can be shared.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import streamlit as st

from llmsight.dashboard import figures
from llmsight.dashboard.data import q
from llmsight.dashboard.text import plain
from llmsight.store import names
from llmsight.store.queries import Filters

LIST_CHARS = 120  # prompt and output in the list: one readable line each; the full text opens below
LIST_COLUMNS = ["time", "segment", "prompt", "output", "latency_ms", "error_type", "environment", "cost_usd",
                "trace_id"]
EVIDENCE_METRICS = (names.TOXICITY_OUTPUT, names.TOXICITY_INPUT, names.DRIFT_INPUT, names.DRIFT_OUTPUT,
                    names.ACCEPTANCE)


def scores(trace_id: str, around: dt.datetime) -> pd.DataFrame:
    """What the analyzers said about this trace: every metric row near it that lists it as an example."""
    rows = q("trace_evidence", trace_id, around, EVIDENCE_METRICS)
    found = []
    for row, example in figures.examples(rows):
        if example.get("trace_id") == trace_id:
            found.append({"metric": row.metric, "window": row.window_start, "score": example.get("score"),
                          "window value": row.value, "threshold": row.threshold,
                          "text": str(example.get("text", ""))[:200]})
    return pd.DataFrame(found, columns=["metric", "window", "score", "window value", "threshold", "text"])


def _cut(text: Any, limit: int = LIST_CHARS) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def listing(results: pd.DataFrame) -> pd.DataFrame:
    """The search results as the list shows them: time, segment, prompt and output first."""
    if results.empty:
        return pd.DataFrame(columns=LIST_COLUMNS)
    return pd.DataFrame({
        "time": results["ts"],
        "segment": results["service"] + "/" + results["name"] + "/" + results["model"] + "/"
        + results["prompt_version"],
        "prompt": results["input"].map(_cut), "output": results["output"].map(_cut),
        "latency_ms": results["latency_ms"], "error_type": results["error_type"],
        "environment": results["environment"], "cost_usd": results["cost_usd"], "trace_id": results["trace_id"],
    })[LIST_COLUMNS]


def _height(text: Any) -> int:
    """A text box tall enough to read the text without scrolling, up to about 25 lines."""
    lines = sum(max(1, len(line) // 70 + 1) for line in str(text or "").splitlines() or [""])
    return int(min(560, max(90, 24 * lines + 20)))


def trace_detail(trace_id: str, around: dt.datetime | None) -> None:
    calls = q("trace_calls", trace_id, around)
    if calls.empty:
        calls = q("trace_calls", trace_id, None)
    if calls.empty:
        st.warning(f"No call with trace id {plain(repr(trace_id))}.")
        return
    st.subheader("Trace")
    st.caption(f"trace id {plain(trace_id)}")
    feedback = q("trace_feedback", trace_id)
    for index, call in calls.iterrows():
        with st.container(border=True):
            # When, where, then what was asked and answered; the figures after.
            st.markdown(f"**{plain(call['name'])}** · {plain(call['service'])} · {plain(call['model'])} · prompt "
                        f"{plain(call['prompt_version'])} · {plain(call['environment'])} · "
                        f"{call['ts']:%Y-%m-%d %H:%M:%S} UTC")
            if call["error"] or call["error_type"]:
                st.error(plain(f"{call['error_type']}: {call['error']}", one_line=False))
            left, right = st.columns(2)
            height = max(_height(call["input"]), _height(call["output"]))
            left.text_area("Prompt", call["input"], disabled=True, height=height, key=f"trace_input_{index}")
            right.text_area("Output", call["output"], disabled=True, height=height, key=f"trace_output_{index}")
            cols = st.columns(4)
            cols[0].metric("latency", f"{call['latency_ms']:,.0f} ms")
            cols[1].metric("time to first token", "–" if pd.isna(call["ttft_ms"]) else f"{call['ttft_ms']:,.0f} ms")
            cols[2].metric("tokens in/out", f"{_int(call['tokens_in'])} / {_int(call['tokens_out'])}")
            cols[3].metric("cost", "–" if pd.isna(call["cost_usd"]) else f"${call['cost_usd']:.5f}")
    st.markdown("**Scores**")
    evidence = scores(trace_id, calls["ts"].iloc[0].to_pydatetime())
    if evidence.empty:
        st.caption("No analyzer row lists this trace (toxicity and drift score a sample of each window).")
    else:
        st.dataframe(evidence, hide_index=True, width="stretch", key="trace_scores")
    st.markdown("**Feedback**")
    if feedback.empty:
        st.caption("No feedback on this trace.")
    else:
        st.dataframe(feedback, hide_index=True, width="stretch", key="trace_feedback")


def _int(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{int(value):,}"


def render(f: Filters) -> None:
    st.title("Traces")
    params = st.query_params
    cols = st.columns([3, 2, 1])
    text = cols[0].text_input("Search prompts and outputs", key="trace_search")
    trace_id = cols[1].text_input("Trace id", value=params.get("trace", ""), key="trace_id_input")
    only_errors = cols[2].checkbox("Errors only", key="trace_errors")
    results = q("search_traces", f, text.strip(), "", only_errors, 100)
    st.caption(f"{len(results)} newest matching calls (at most 100). Select a row to read the whole call.")
    selection = st.dataframe(
        listing(results), hide_index=True, width="stretch", key="trace_results", on_select="rerun",
        selection_mode="single-row",
        column_config={
            "time": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss", width="small"),
            "segment": st.column_config.TextColumn("segment", width="small"),
            "prompt": st.column_config.TextColumn("prompt", width="large"),
            "output": st.column_config.TextColumn("output", width="large"),
            "latency_ms": st.column_config.NumberColumn("latency ms", format="%d", width="small"),
        })
    rows = selection.selection.rows if selection is not None and hasattr(selection, "selection") else []
    around = None
    if rows:
        picked = results.iloc[rows[0]]
        trace_id, around = picked["trace_id"], picked["ts"].to_pydatetime()
    trace_id = trace_id.strip()
    if trace_id:
        params["trace"] = trace_id
        trace_detail(trace_id, around)
    elif "trace" in params:
        del params["trace"]
