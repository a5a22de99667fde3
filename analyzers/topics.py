"""Why a window drifted: which topics grew or shrank, with a label and example texts.

The drift test says *whether* the current window differs from the reference; this module says
*what* changed, for the person on call. It clusters the pooled embeddings of both windows
(k-means, k chosen by size), compares each cluster's share of the reference with its share of
the current window, and describes the clusters that moved most:

* ``share_ref`` / ``share_cur`` and their difference;
* ``z``: a two-proportion z-score of that difference, so a cluster that moved by chance on a small
  window does not look as alarming as one that really appeared;
* ``label``: the cluster's most distinctive words by class-based TF-IDF (c-TF-IDF, as in
  BERTopic: term frequency within the cluster times the log of how rare the term is across
  clusters);
* ``examples``: three texts nearest the cluster centre, from the window where the cluster is
  over-represented.

The result is a plain JSON-serialisable dict; the scheduler stores it in ``metrics.details``.
Pure: no I/O.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger("llmsight.analyzers")

EXAMPLE_CHARS = 200  # examples are for a glance on the dashboard, not a transcript


def choose_n_clusters(n_points: int) -> int:
    """About one cluster per 40 points, between 2 and 30: fine enough to isolate a topic that
    makes up 5-10% of a 500-text window, coarse enough to keep shares stable."""
    return int(min(30, max(2, round(n_points / 40))))


def cluster(vectors: np.ndarray, n_clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """K-means on unit vectors; returns (labels, unit centroids). Deterministic for a seed."""
    from sklearn.cluster import KMeans

    n_clusters = max(1, min(n_clusters, len(vectors)))
    model = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed, max_iter=100)
    labels = model.fit_predict(vectors)
    centres = model.cluster_centers_.astype(np.float32)
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    return labels.astype(int), centres


def ctfidf_labels(texts: Sequence[str], labels: np.ndarray, n_clusters: int, top_words: int = 4) -> list[list[str]]:
    """The ``top_words`` most distinctive words of each cluster by c-TF-IDF."""
    from sklearn.feature_extraction.text import CountVectorizer

    documents = [" ".join(texts[i] for i in np.flatnonzero(labels == c)) for c in range(n_clusters)]
    try:
        vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z']+\b",
                                     lowercase=True)
        counts = vectorizer.fit_transform(documents).toarray().astype(float)
    except ValueError:  # every text was stop words or empty
        return [[] for _ in range(n_clusters)]
    vocabulary = np.asarray(vectorizer.get_feature_names_out())
    words_per_cluster = counts.sum(axis=1, keepdims=True)
    term_frequency = counts / np.maximum(words_per_cluster, 1.0)
    average_words = max(float(words_per_cluster.mean()), 1.0)
    idf = np.log1p(average_words / np.maximum(counts.sum(axis=0), 1.0))
    scores = term_frequency * idf
    result = []
    for c in range(n_clusters):
        order = np.argsort(-scores[c], kind="stable")[:top_words]
        result.append([str(vocabulary[i]) for i in order if scores[c, i] > 0])
    return result


def explain_drift(reference: np.ndarray, current: np.ndarray, reference_texts: Sequence[str],
                  current_texts: Sequence[str], *, top: int = 3, n_examples: int = 3,
                  n_clusters: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Describe which clusters of meaning grew and which shrank from ``reference`` to ``current``.

    ``reference``/``current`` are the embeddings of ``reference_texts``/``current_texts`` (same
    order). Returns ``{"method", "n_clusters", "n_ref", "n_cur", "grown": [...], "shrunk": [...]}``;
    each entry has ``cluster``, ``label``, ``share_ref``, ``share_cur``, ``delta``, ``z``,
    ``n_ref``, ``n_cur`` and ``examples``.
    """
    n_ref, n_cur = len(reference), len(current)
    if len(reference_texts) != n_ref or len(current_texts) != n_cur:
        raise ValueError("each window needs one text per embedding row")
    empty: dict[str, Any] = {"method": "kmeans+ctfidf", "n_clusters": 0, "n_ref": n_ref, "n_cur": n_cur,
                             "grown": [], "shrunk": []}
    if n_ref == 0 or n_cur == 0:
        return empty
    pooled = np.vstack([reference, current]).astype(np.float32)
    texts = [*reference_texts, *current_texts]
    k = n_clusters or choose_n_clusters(len(pooled))
    labels, centres = cluster(pooled, k, seed)
    k = centres.shape[0]
    words = ctfidf_labels(texts, labels, k)
    ref_counts = np.bincount(labels[:n_ref], minlength=k)
    cur_counts = np.bincount(labels[n_ref:], minlength=k)
    share_ref = ref_counts / n_ref
    share_cur = cur_counts / n_cur
    delta = share_cur - share_ref
    pooled_share = (ref_counts + cur_counts) / (n_ref + n_cur)
    spread = np.sqrt(np.maximum(pooled_share * (1 - pooled_share) * (1 / n_ref + 1 / n_cur), 1e-12))
    z = delta / spread

    def describe(c: int, grown: bool) -> dict[str, Any]:
        # Examples come from the window where the cluster is over-represented: for a new topic,
        # the current window; for a vanished one, the reference.
        offset, size = (n_ref, n_cur) if grown else (0, n_ref)
        members = offset + np.flatnonzero(labels[offset:offset + size] == c)
        closest = members[np.argsort(-(pooled[members] @ centres[c]), kind="stable")][:n_examples]
        return {
            "cluster": int(c),
            "label": " ".join(words[c]) or f"cluster {c}",
            "share_ref": round(float(share_ref[c]), 4),
            "share_cur": round(float(share_cur[c]), 4),
            "delta": round(float(delta[c]), 4),
            "z": round(float(z[c]), 2) if math.isfinite(z[c]) else None,
            "n_ref": int(ref_counts[c]),
            "n_cur": int(cur_counts[c]),
            "examples": [texts[i][:EXAMPLE_CHARS] for i in closest],
        }

    order = np.argsort(-delta, kind="stable")
    grown = [describe(int(c), True) for c in order[:top] if delta[c] > 0]
    shrunk = [describe(int(c), False) for c in order[::-1][:top] if delta[c] < 0]
    log.debug("topics: %d clusters over %d+%d texts; top growth %s", k, n_ref, n_cur,
              grown[0]["label"] if grown else "none")
    return {**empty, "n_clusters": int(k), "grown": grown, "shrunk": shrunk}
