"""Drift: the drift score per segment over time, a map of reference against current samples, and
the topics that grew or shrank (from the drift rows' JSON explanation)."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from llmsight.dashboard import charts, figures
from llmsight.dashboard.data import q
from llmsight.dashboard.text import plain
from llmsight.store import names, queries
from llmsight.store.queries import Filters

log = logging.getLogger("llmsight.dashboard")

SIGNALS = {"Prompts (input)": (names.DRIFT_INPUT, "input"), "Outputs (output)": (names.DRIFT_OUTPUT, "output")}
TOPIC_SEGMENTS = 5  # explanations shown, highest drift score first
MAP_SAMPLE = 100  # texts per period on the map: enough to see a new cluster, quick to embed


def score_chart(f: Filters, metric: str) -> pd.DataFrame:
    rows = q("segment_series", f, (metric,))
    if rows.empty:
        st.info("No drift test ran in this range and segment yet.")
        return rows
    preferred = queries.granularity_for(f.span)
    available = set(rows["granularity"])
    chosen = preferred if preferred in available else min(available, key=names.GRANULARITIES.index)
    rows = rows[rows["granularity"] == chosen].copy()
    rows["segment"] = rows.apply(figures.segment_label, axis=1)
    thresholds = rows["threshold"].dropna()
    threshold = float(thresholds.iloc[-1]) if len(thresholds) and thresholds.nunique() == 1 else None
    st.altair_chart(charts.lines(rows, "window_start", "value", "segment", title="drift score", y_format=".3f",
                                 threshold=threshold), width="stretch")
    if threshold is not None:
        st.caption(f"Dashed line: the score's critical value ({threshold:.3g}); p-values are in the table below.")
    return rows


def status_table(f: Filters, metric: str) -> pd.DataFrame:
    latest = q("latest_by_segment", f, (metric,), with_details=True)
    if latest.empty:
        return latest
    latest = latest.assign(
        segment=latest.apply(figures.segment_label, axis=1),
        drifted=figures.drift_flags(latest),
    )
    st.subheader("Latest test per segment")
    # A score beside its own critical value; the p-value in its own, labelled column (never as a threshold).
    st.dataframe(latest[["segment", "drifted", "value", "threshold", "p_value", "n", "window_start"]].rename(
        columns={"value": "score", "threshold": "critical value", "p_value": "p-value"}),
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
                "reference 95% CI": _ci(item.get("share_ref_ci")), "current 95% CI": _ci(item.get("share_cur_ci")),
                "change": item.get("delta"), "z": item.get("z"),
                "examples": " | ".join(str(e.get("text", e) if isinstance(e, dict) else e) for e in examples[:3]),
            })
    return pd.DataFrame(rows)


def _ci(interval: Any) -> str:
    if isinstance(interval, (list, tuple)) and len(interval) == 2 and all(isinstance(v, (int, float)) for v in interval):
        return f"{interval[0] * 100:.1f}–{interval[1] * 100:.1f}%"
    return ""


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
        if shown > TOPIC_SEGMENTS:
            st.caption(f"Showing the {TOPIC_SEGMENTS} segments with the highest scores; filter to see others.")
            break
        with st.expander(f"{plain(row.segment)} · score {row.value:.3f}" + (" · drifted" if row.drifted else ""),
                         expanded=bool(row.drifted)):
            st.dataframe(table, hide_index=True, width="stretch")
    if not shown:
        st.caption("The drift rows in this range carry no topic explanation.")


_model_lock = threading.Lock()
_model: list[Any] = []


def embedder() -> Any:
    """The analyzers' embedding model, loaded once per process (``server.run`` warms it in the background)."""
    with _model_lock:
        if not _model:
            from llmsight.analyzers.embeddings import Embedder

            started = time.perf_counter()
            model = Embedder()
            model.encode(["warm up"])
            _model.append(model)
            log.info("dashboard: embedding model %s loaded in %.1f s", model.name, time.perf_counter() - started)
        return _model[0]


@st.cache_data(ttl=600, show_spinner="Embedding the samples…", max_entries=64)
def project(texts: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """The texts' embeddings on their first two principal components, and how many vectors came from
    the store (cached: the same sample is mapped once).

    Vectors come from the ``embeddings`` table when the analyzers stored them, else from the model;
    the dashboard only reads the table.
    """
    from sklearn.decomposition import PCA

    from llmsight.analyzers.embeddings import Embedder, text_hash

    name = Embedder().name  # cheap: the model loads on the first encode only
    hashes = [text_hash(name, t) for t in texts]
    stored = q("stored_embeddings", name, hashes)
    missing = [i for i, h in enumerate(hashes) if h not in stored]
    vectors: list[Any] = [stored.get(h) for h in hashes]
    if missing:
        for i, vector in zip(missing, embedder().encode([texts[i] for i in missing]), strict=True):
            vectors[i] = vector
    log.info("dashboard: map of %d texts, %d vectors from the store", len(texts), len(texts) - len(missing))
    matrix = np.asarray([np.asarray(v, dtype=np.float32) for v in vectors])
    return PCA(n_components=2, random_state=0).fit_transform(matrix), len(texts) - len(missing)


def sample_map(f: Filters, column: str) -> None:
    st.subheader("Reference against current samples")
    reference = q("sample_texts", f.baseline(), column, MAP_SAMPLE).assign(period="reference")
    current = q("sample_texts", f, column, MAP_SAMPLE).assign(period="current")
    texts = pd.concat([reference, current], ignore_index=True)
    if len(reference) < 3 or len(current) < 3:
        st.caption(f"Too few samples to map ({len(reference)} reference, {len(current)} current).")
        return
    points, from_store = project(tuple(texts["text"]))
    texts = texts.assign(pc1=points[:, 0], pc2=points[:, 1],
                         segment=texts["service"] + "/" + texts["model"] + "/" + texts["prompt_version"])
    texts["text"] = texts["text"].str.slice(0, 200)
    st.altair_chart(charts.sample_map(texts[["pc1", "pc2", "period", "text", "segment"]]), width="stretch")
    st.caption(f"{len(reference)} reference and {len(current)} current {column}s, embedded and projected on their "
               "first two principal components. Hover a point to read its text. "
               f"{from_store} of {len(texts)} vectors came from the analyzers' embeddings table.")


def render(f: Filters) -> None:
    st.title("Drift")
    label = st.radio("Signal", list(SIGNALS), horizontal=True, key="drift_signal")
    metric, column = SIGNALS[label]
    score_chart(f, metric)
    sample_map(f, column)
    latest = status_table(f, metric)
    topics(latest)
