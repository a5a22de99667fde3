"""Why a window drifted: which topics are new, grew, shrank or vanished, with a label and examples.

The drift test says *whether* the current window differs from the reference; this module says
*what* changed, for the person on call. Two views, merged into one list per direction:

* **New (or vanished) regions**, read from the same nearest-neighbour graph as the ``knn`` test:
  current points whose neighbourhood is almost all current (too pure for chance) are grouped into
  connected components of that graph. A component is a topic the reference lacks; reference
  points with most of their neighbours in it count towards its ``share_ref`` (about 0 for a
  truly new topic, more for an old topic that grew a lot). The same on the reference side gives vanished topics. This catches a new
  topic even when it sits next to an old one that k-means would lump it with.
* **Clusters whose share moved**: k-means on the pooled embeddings (k chosen by size), each
  cluster's share of the reference against its share of the current window, with a
  two-proportion z-score so a wobble on a small window does not look like a real move.

Each entry has ``kind`` ("new", "vanished" or "cluster"), ``share_ref``, ``share_cur``, their 95%
Wilson intervals ``share_ref_ci`` and ``share_cur_ci`` ([lo, hi]), ``delta``, ``z``, ``label`` (the most distinctive words by class-based TF-IDF, c-TF-IDF as in BERTopic: term
frequency within the group times the log of how rare the term is across groups),
``examples`` (the texts nearest the group's centre, from the window where it is over-represented)
and ``example_rows`` (the positions of those examples in the current window, when they are from it).

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
# scikit-learn's English stop words, less the ones that carry a topic in LLM traffic
# ("top up", "cash back", "log out", "call back", "bill").
_KEEP = {"top", "up", "down", "off", "out", "back", "bill", "call", "empty", "full", "fire", "find", "give",
         "move", "show", "system", "detail", "interest", "amount", "name", "first", "last"}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson score interval [lo, hi] of a share ``successes / n`` ([0, 1] when ``n`` is 0).

    Unlike the normal interval it stays inside [0, 1] and is not empty at 0 or n successes,
    which matters here: a new topic's share before is usually exactly 0.
    """
    if n <= 0:
        return [0.0, 1.0]
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


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
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        vectorizer = CountVectorizer(stop_words=sorted(ENGLISH_STOP_WORDS - _KEEP), token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z']+\b",
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


def novel_regions(reference: np.ndarray, current: np.ndarray, *, k: int | None = None,
                  dims: int | None = None, min_size: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Index groups (into the pooled reference+current rows) of new and of vanished regions.

    A point is *pure* when so many of its k nearest neighbours come from its own window that
    chance would do it about 2% of the time (the ``knn`` test's tail statistic). Pure points
    linked by neighbour edges form one region; regions smaller than ``min_size`` are dropped.
    Largest first.
    """
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components
    from scipy.stats import binom

    from llmsight.analyzers.drift import (
        PROJECTION_DIMS,
        choose_k,
        nearest_neighbours,
        principal_projection,
        tail_cut,
    )

    n_ref, n_cur = len(reference), len(current)
    n = n_ref + n_cur
    k = min(k or choose_k(n), n - 1)
    pooled = principal_projection(np.vstack([reference, current]).astype(np.float32),
                                  PROJECTION_DIMS if dims is None else dims)
    neighbours = nearest_neighbours(pooled, k)
    is_cur = np.r_[np.zeros(n_ref, bool), np.ones(n_cur, bool)]
    same = (is_cur[neighbours] == is_cur[:, None]).sum(axis=1)
    edges = sparse.csr_matrix((np.ones(n * k), neighbours.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    groups: list[list[np.ndarray]] = []
    for side, share in ((is_cur, (n_cur - 1) / (n - 1)), (~is_cur, (n_ref - 1) / (n - 1))):
        cut = tail_cut(k, share)
        pure = np.flatnonzero(side & (same >= cut))
        # Chance alone makes about n * P(tail) pure points; a region must be clearly more than that.
        by_chance = np.count_nonzero(side) * binom.sf(cut - 1, k, share)
        smallest = max(min_size, math.ceil(2 * by_chance))
        if len(pure) == 0:
            groups.append([])
            continue
        _, component = connected_components(edges[pure][:, pure], directed=False)
        found = [pure[component == c] for c in np.unique(component)]
        regions = []
        for members in sorted((g for g in found if len(g) >= smallest), key=len, reverse=True):
            # The other window's points that live in the region too: most of their neighbours are in it.
            inside = np.isin(neighbours, members).sum(axis=1) * 2 >= k
            others = np.flatnonzero(inside & ~side)
            regions.append(np.union1d(members, others))
        groups.append(regions)
    return groups[0], groups[1]


def explain_drift(reference: np.ndarray, current: np.ndarray, reference_texts: Sequence[str],
                  current_texts: Sequence[str], *, top: int = 3, n_examples: int = 3,
                  n_clusters: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Describe which topics are new or grew, and which vanished or shrank, from ``reference`` to ``current``.

    ``reference``/``current`` are the embeddings of ``reference_texts``/``current_texts`` (same
    order). Returns ``{"method", "n_clusters", "n_ref", "n_cur", "grown": [...], "shrunk": [...]}``
    with at most ``top`` entries per list, new/vanished regions first; each entry has ``kind``,
    ``cluster``, ``label``, ``share_ref``, ``share_cur``, ``delta``, ``z``, ``n_ref``, ``n_cur``
    and ``examples``.
    """
    from llmsight.analyzers.drift import one_blas_thread

    n_ref, n_cur = len(reference), len(current)
    if len(reference_texts) != n_ref or len(current_texts) != n_cur:
        raise ValueError("each window needs one text per embedding row")
    empty: dict[str, Any] = {"method": "knn-regions+kmeans+ctfidf", "n_clusters": 0, "n_ref": n_ref,
                             "n_cur": n_cur, "grown": [], "shrunk": []}
    if n_ref == 0 or n_cur == 0:
        return empty
    pooled = np.vstack([reference, current]).astype(np.float32)
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    texts = [*reference_texts, *current_texts]
    is_cur = np.r_[np.zeros(n_ref, bool), np.ones(n_cur, bool)]
    # KMeans and its BLAS calls are small here; their spinning thread pools cost more than they
    # give on a shared 2-core host (see drift.one_blas_thread).
    with one_blas_thread():
        labels, _ = cluster(pooled, n_clusters or choose_n_clusters(len(pooled)), seed)
        # A handful of pure points can link up by chance; a region worth naming has a few percent.
        min_size = max(5, round(0.01 * min(n_ref, n_cur)))
        new, vanished = novel_regions(reference, current, min_size=min_size) if min(n_ref, n_cur) >= 2 else ([], [])
    k = int(labels.max()) + 1
    # Regions get labels of their own after the k-means clusters, so one c-TF-IDF pass labels all.
    groups: list[tuple[str, np.ndarray]] = [("cluster", np.flatnonzero(labels == c)) for c in range(k)]
    for kind, regions in (("new", new), ("vanished", vanished)):
        for members in regions:
            labels[members] = len(groups)
            groups.append((kind, members))
    words = ctfidf_labels(texts, labels, len(groups))

    def describe(index: int) -> dict[str, Any] | None:
        kind, members = groups[index]
        if kind == "cluster":
            members = np.flatnonzero(labels == index)  # regions took some members away
        if len(members) == 0:
            return None
        in_ref = int(np.count_nonzero(~is_cur[members]))
        in_cur = len(members) - in_ref
        share_ref, share_cur = in_ref / n_ref, in_cur / n_cur
        pooled_share = len(members) / (n_ref + n_cur)
        spread = math.sqrt(max(pooled_share * (1 - pooled_share) * (1 / n_ref + 1 / n_cur), 1e-12))
        grown = kind == "new" or (kind == "cluster" and share_cur >= share_ref)
        # Examples from the window where the group is over-represented.
        side = members[is_cur[members] == grown] if kind == "cluster" else members
        centre = pooled[side].mean(axis=0) if len(side) else pooled[members].mean(axis=0)
        closest = side[np.argsort(-(pooled[side] @ centre), kind="stable")][:n_examples]
        return {
            "kind": kind,
            "cluster": index,
            "label": " ".join(words[index]) or f"cluster {index}",
            "share_ref": round(share_ref, 4),
            "share_cur": round(share_cur, 4),
            "delta": round(share_cur - share_ref, 4),
            "z": round((share_cur - share_ref) / spread, 2),
            "n_ref": in_ref,
            "n_cur": in_cur,
            "share_ref_ci": wilson_interval(in_ref, n_ref),
            "share_cur_ci": wilson_interval(in_cur, n_cur),
            "examples": [texts[i][:EXAMPLE_CHARS] for i in closest],
            # Where the examples sit in the current window (for their trace ids); empty for a shrunk topic.
            "example_rows": [int(i - n_ref) for i in closest if is_cur[i]],
        }

    described = [d for d in (describe(i) for i in range(len(groups))) if d is not None]
    regions_first = {"new": 0, "vanished": 0, "cluster": 1}
    grown = sorted((d for d in described if d["kind"] == "new" or (d["kind"] == "cluster" and d["delta"] > 0)),
                   key=lambda d: (regions_first[d["kind"]], -d["delta"], d["cluster"]))[:top]
    shrunk = sorted((d for d in described if d["kind"] == "vanished" or (d["kind"] == "cluster" and d["delta"] < 0)),
                    key=lambda d: (regions_first[d["kind"]], d["delta"], d["cluster"]))[:top]
    log.debug("topics: %d clusters, %d new and %d vanished regions over %d+%d texts", k, len(new),
              len(vanished), n_ref, n_cur)
    return {**empty, "n_clusters": k, "grown": grown, "shrunk": shrunk}
