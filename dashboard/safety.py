"""Safety: the toxicity rate of outputs and inputs over time, and the flagged texts with their scores.

Both come from the analyzers' toxicity rows: the rate is the row's value, the flagged texts are
the examples (trace id, text, score, kind) the analyzers keep in the row's ``details``, and "what
kind" sums the rows' ``categories`` (hate, abuse, sexism, threat, profanity: the fine-tuned
encoder's reading of each flagged text).
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from llmsight.dashboard import charts, figures
from llmsight.dashboard.data import q
from llmsight.store import names, queries
from llmsight.store.queries import TOXICITY_METRICS, Filters, pick_granularity

LABELS = {names.TOXICITY_OUTPUT: "outputs", names.TOXICITY_INPUT: "inputs"}


def rates(f: Filters) -> None:
    bucket = queries.bucket_seconds(f.span)
    series = pick_granularity(q("metric_series", f, TOXICITY_METRICS, bucket), queries.granularity_for(f.span))
    cols = st.columns(2)
    for col, metric in zip(cols, TOXICITY_METRICS, strict=True):
        rows = series[series["metric"] == metric] if not series.empty else series
        value = figures.combine(rows, metric) if not rows.empty else None
        col.metric(f"Toxicity rate of {LABELS[metric]}", figures.format_value(metric, value), border=True)
    if series.empty:
        st.info("No toxicity figures in this range yet.")
        return
    points = series.assign(rate=series["weighted"] / series["n"].where(series["n"] > 0),
                           signal=series["metric"].map(LABELS))
    st.altair_chart(charts.lines(points, "bucket", "rate", "signal", title="toxicity rate", y_format=".1%"),
                    width="stretch")


def flagged(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per flagged text, highest score first, from the metric rows' examples."""
    found = []
    for row, example in figures.examples(rows):
        if example.get("score") is not None:
            found.append({"signal": LABELS.get(row.metric, row.metric), "score": float(example["score"]),
                          "kind": str(example.get("category", "")),
                          "text": str(example.get("text", "")), "trace_id": str(example.get("trace_id", "")),
                          "window": row.window_start,
                          "segment": f"{row.service}/{row.name}/{row.model}/{row.prompt_version}"})
    columns = ["signal", "score", "kind", "text", "trace_id", "window", "segment"]
    table = pd.DataFrame(found, columns=columns)
    return table.drop_duplicates(["signal", "trace_id", "text"]).sort_values("score", ascending=False,
                                                                             ignore_index=True)


def kinds(rows: pd.DataFrame) -> pd.DataFrame:
    """Flagged texts per signal and kind of toxicity, summed over the rows' ``categories``; most first."""
    counts: dict[tuple[str, str], int] = {}
    for row in rows.itertuples():
        try:
            details = json.loads(row.details) if row.details else {}
        except ValueError:
            continue
        found = details.get("categories") if isinstance(details, dict) else None
        for kind, n in (found.items() if isinstance(found, dict) else []):
            if isinstance(n, int | float) and n > 0:
                key = (LABELS.get(row.metric, row.metric), str(kind))
                counts[key] = counts.get(key, 0) + int(n)
    table = pd.DataFrame([{"signal": s, "kind": k, "texts": n} for (s, k), n in counts.items()],
                         columns=["signal", "kind", "texts"])
    return table.sort_values(["texts", "kind"], ascending=[False, True], ignore_index=True)


def render(f: Filters) -> None:
    st.title("Safety")
    rates(f)
    rows = q("metric_examples", f, TOXICITY_METRICS)
    by_kind = kinds(rows)
    if not by_kind.empty:
        st.subheader("What kind")
        st.dataframe(by_kind, hide_index=True, width="stretch", key="toxicity_kinds")
    table = flagged(rows)
    for signal, title in (("outputs", "Flagged outputs"), ("inputs", "Flagged inputs")):
        st.subheader(title)
        rows = table[table["signal"] == signal].drop(columns="signal")
        if rows.empty:
            st.caption(f"No flagged {signal} in this range.")
        else:
            st.dataframe(rows, hide_index=True, width="stretch", key=f"flagged_{signal}")
    st.caption("Flagged texts are the most toxic examples of each analyzed window, scored by the analyzers.")
