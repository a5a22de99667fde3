"""Drift: the drift score per segment over time, a map of reference against current samples, and
the topics that grew or shrank (from the drift rows' JSON explanation)."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from llmsight.analyzers import names
from llmsight.dashboard import charts, figures, filters
from llmsight.dashboard.data import q
from llmsight.dashboard.queries import Filters

log = logging.getLogger("llmsight.dashboard")

SIGNALS = {"Prompts (input)": (names.DRIFT_INPUT, "input"), "Outputs (output)": (names.DRIFT_OUTPUT, "output")}
MAP_SAMPLE = 150  # texts per period on the map


def score_chart(f: Filters, metric: str) -> pd.DataFrame:
    rows = q("segment_series", f, (metric,))
    if rows.empty:
        st.info("No drift test ran in this range and segment yet.")
        return rows
    preferred = filters.granularity_for(f.span)
    available = set(rows["granularity"])
    chosen = preferred if preferred in available else min(available, key=names.GRANULARITIES.index)
    rows = rows[rows["granularity"] == chosen].copy()
    rows["segment"] = rows.apply(figures.segment_label, axis=1)
    thresholds = rows["threshold"].dropna()
    threshold = float(thresholds.iloc[-1]) if len(thresholds) and thresholds.nunique() == 1 else None
    st.altair_chart(charts.lines(rows, "window_start", "value", "segment", title="drift score", y_format=".3f",
                                 threshold=threshold), width="stretch")
    return rows


def status_table(f: Filters, metric: str) -> pd.DataFrame:
    latest = q("latest_by_segment", f, (metric,), with_details=True)
    if latest.empty:
        return latest
    latest = latest.assign(
        segment=latest.apply(figures.segment_label, axis=1),
        drifted=[figures.drifted(v, t, p) for v, t, p in zip(latest["value"], latest["threshold"], latest["p_value"], strict=False)],
    )
    st.subheader("Latest test per segment")
    st.dataframe(latest[["segment", "drifted", "value", "threshold", "p_value", "n", "window_start"]],
                 hide_index=True, width="stretch", key=f"drift_status_{metric}")
    return latest


def topic_changes(details: Any) -> pd.DataFrame:
    """The clusters that grew or shrank, as a table, from a drift row's ``details`` JSON.

    The analyzers store ``{"topics": {"grown": [...], "shrunk": [...]}}`` (see
    :func:`llmsight.analyzers.topics.explain_drift`): each cluster has a label, its share of the
    reference and of the current window, the difference, a z-score and example texts.
    """
    try:
        parsed = json.loads(details) if isinstance(details, str) else (details or {})
    except ValueError:
        return pd.DataFrame()
    topics = parsed.get("topics") if isinstance(parsed, dict) else None
    if not isinstance(topics, dict):
        return pd.DataFrame()
    rows = []
    for direction, key in (("grew", "grown"), ("shrank", "shrunk")):
        for item in topics.get(key) or []:
            if not isinstance(item, dict):
                continue
            examples = item.get("examples") or []
            rows.append({
                "direction": direction, "topic": str(item.get("label", "")),
                "reference share": item.get("share_ref"), "current share": item.get("share_cur"),
                "change": item.get("delta"), "z": item.get("z"),
                "examples": " | ".join(str(e.get("text", e) if isinstance(e, dict) else e) for e in examples[:3]),
            })
    return pd.DataFrame(rows)


def topics(latest: pd.DataFrame) -> None:
    st.subheader("Topics that grew or shrank")
    if latest.empty or "details" not in latest:
        st.caption("No explanation stored yet.")
        return
    shown = 0
    for row in latest.sort_values("value", ascending=False).itertuples():
        table = topic_changes(row.details)
        if table.empty:
            continue
        shown += 1
        with st.expander(f"{row.segment} · score {row.value:.3f}" + (" · drifted" if row.drifted else ""),
                         expanded=bool(row.drifted)):
            st.dataframe(table, hide_index=True, width="stretch")
    if not shown:
        st.caption("The drift rows in this range carry no topic explanation.")


@st.cache_resource(show_spinner="Loading the embedding model…")
def _embedder() -> Any:
    from llmsight.analyzers.embeddings import Embedder

    return Embedder()


def embed(texts: pd.DataFrame) -> np.ndarray:
    """Vectors for the sampled texts: from the ``embeddings`` table, else computed with the analyzers' model.

    The dashboard only reads the table; the analyzers own writing it.
    """
    from llmsight.analyzers.embeddings import text_hash

    model_name = _embedder().name
    hashes = [text_hash(model_name, t) for t in texts["text"]]
    stored = q("stored_embeddings", model_name, hashes)
    missing = [i for i, h in enumerate(hashes) if h not in stored]
    vectors: list[Any] = [stored.get(h) for h in hashes]
    if missing:
        computed = _embedder().encode([texts["text"].iloc[i] for i in missing])
        for i, vector in zip(missing, computed, strict=True):
            vectors[i] = vector
    log.debug("dashboard: %d of %d map vectors from the store", len(hashes) - len(missing), len(hashes))
    return np.asarray([np.asarray(v, dtype=np.float32) for v in vectors])


def sample_map(f: Filters, column: str) -> None:
    st.subheader("Reference against current samples")
    reference = q("sample_texts", f.baseline(), column, MAP_SAMPLE).assign(period="reference")
    current = q("sample_texts", f, column, MAP_SAMPLE).assign(period="current")
    texts = pd.concat([reference, current], ignore_index=True)
    if len(reference) < 3 or len(current) < 3:
        st.caption(f"Too few samples to map ({len(reference)} reference, {len(current)} current).")
        return
    try:
        vectors = embed(texts)
    except ImportError as exc:
        st.caption(f"The embedding model is not available: {exc}")
        return
    from sklearn.decomposition import PCA

    points = PCA(n_components=2, random_state=0).fit_transform(vectors)
    texts = texts.assign(pc1=points[:, 0], pc2=points[:, 1],
                         segment=texts["service"] + "/" + texts["model"] + "/" + texts["prompt_version"])
    texts["text"] = texts["text"].str.slice(0, 200)
    st.altair_chart(charts.sample_map(texts[["pc1", "pc2", "period", "text", "segment"]]), width="stretch")
    st.caption(f"{len(reference)} reference and {len(current)} current {column}s, embedded and projected on their "
               "first two principal components. Hover a point to read its text.")


def render(f: Filters) -> None:
    st.title("Drift")
    label = st.radio("Signal", list(SIGNALS), horizontal=True, key="drift_signal")
    metric, column = SIGNALS[label]
    score_chart(f, metric)
    latest = status_table(f, metric)
    topics(latest)
    sample_map(f, column)
