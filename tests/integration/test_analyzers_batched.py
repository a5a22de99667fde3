"""The window analysis batched across segments, on real chdb with the real MiniLM and toxicity scorer.

The bench's workload (banking77 prompts, the demo model's answers, feedback, a trailing reference
hour with operations baselines, new prompt versions that fall back to their feature's traffic):

* analysing a subset of a window's segments writes, for those segments, exactly the rows the whole
  window writes (what lets workers split a window's segments);
* a cold window reaches the model once, with each distinct text once (prompts, outputs, their
  references and the toxicity pass's sentences), and a warm rerun not at all.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from llmsight.analyzers.window_metrics import AnalysisSettings, WindowAnalyzer
from llmsight.analyzers.windows import FEATURE_KEYS, floor_time, segments_in
from llmsight.bench.analyzers import bench_segments, seed

SEGMENTS, CALLS, REFERENCE_CALLS = 10, 30, 40


class CountingEmbedder:
    """The real embedder, counting what reaches the model."""

    def __init__(self, inner):
        self.inner = inner
        self.batches: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts):
        self.batches.append(list(texts))
        return self.inner.encode(texts)


@pytest.fixture(scope="module")
def parts():
    from llmsight.analyzers.embeddings import Embedder
    from llmsight.analyzers.toxicity import ToxicityScorer

    return Embedder(backend="torch"), ToxicityScorer(sentences=True)


def _analyzer(client, embedder, scorer):
    from llmsight.analyzers.embeddings import EmbeddingCache

    return WindowAnalyzer(client, AnalysisSettings(sample=500, drift_min_n=20),
                          embeddings=EmbeddingCache(client, embedder), toxicity=scorer)


def _seed(client):
    start = floor_time(datetime.now(timezone.utc) - timedelta(hours=2), 3600)
    return seed(client, SEGMENTS, CALLS, start, reference_calls=REFERENCE_CALLS)


def test_a_subset_of_segments_gets_the_rows_the_whole_window_gives_it(store_client, parts):
    embedder, scorer = parts
    window = _seed(store_client)
    everything = _analyzer(store_client, embedder, scorer).analyze(window)
    segments = segments_in(store_client, window)
    assert len(segments) == SEGMENTS
    # Every signal ran, including drift and acceptance against a feature's traffic (the v2 segments).
    metrics = {(r.metric, (r.details or {}).get("reference", {}).get("scope")) for r in everything}
    assert {("drift_input", "segment"), ("drift_input", "feature"), ("acceptance_rate", "feature"),
            ("toxicity_rate_output", None), ("latency_p95_ms", None)} <= metrics
    assert any(r.baseline is not None for r in everything if r.metric == "latency_p95_ms")

    # A v2 segment without its v1 sibling, a v1 without its v2, and one more, in a scrambled order.
    v2 = next(s for s in segments if s["prompt_version"] == "v2")
    sibling = next(s for s in segments if s["prompt_version"] == "v1" and
                   all(s[k] == v2[k] for k in FEATURE_KEYS))
    other_v1 = next(s for s in segments if s["prompt_version"] == "v1" and s != sibling and
                    any(t["prompt_version"] == "v2" and t["name"] == s["name"] for t in segments))
    lonely = [s for s in segments if s not in (v2, sibling, other_v1)][-1]
    subset = [lonely, v2, other_v1]
    # A fresh analyzer (empty LRU) on the same store: the rows must not depend on the other segments.
    part = _analyzer(store_client, embedder, scorer).analyze(window, subset)

    def rows_of(rows, chosen):
        return sorted((r.as_list() for r in rows if r.segment in chosen), key=repr)

    assert part and rows_of(part, subset) == rows_of(everything, subset)
    assert {tuple(r.segment.values()) for r in part} == {tuple(s.values()) for s in subset}
    # One segment at a time gives the same rows again.
    alone = [row for s in subset for row in _analyzer(store_client, embedder, scorer).analyze(window, [s])]
    assert rows_of(alone, subset) == rows_of(everything, subset)
    # None means every segment with calls (today's behaviour), and rerunning is identical.
    assert sorted((r.as_list() for r in _analyzer(store_client, embedder, scorer).analyze(window, None)), key=repr) \
        == sorted((r.as_list() for r in everything), key=repr)


def test_a_window_reaches_the_model_once_with_each_text_once(store_client, parts):
    from llmsight.analyzers.toxicity import ToxicityScorer

    embedder, _ = parts
    window = _seed(store_client)
    counting = CountingEmbedder(embedder)
    # The scorer's own embedder counts too: a sentence pass of its own would show as a second call.
    scorer = ToxicityScorer(sentences=True, embedder=counting)
    analyzer = _analyzer(store_client, counting, scorer)
    rows = analyzer.analyze(window)
    assert {r.metric for r in rows} >= {"drift_input", "drift_output", "toxicity_rate_output", "acceptance_rate"}
    assert len(counting.batches) == 1, [len(b) for b in counting.batches]
    batch = counting.batches[0]
    assert len(batch) == len(set(batch))
    # Every sampled prompt and output of the window is in that one batch, and so are the sentences
    # the toxicity pass scores (the demo's answers have several).
    window_texts = {t for row in store_client.query(
        "SELECT input, output FROM events FINAL WHERE ts >= {a:DateTime64(3, 'UTC')} AND ts < {b:DateTime64(3, 'UTC')} "
        "AND error = ''", parameters={"a": window.start, "b": window.end}).result_rows for t in row}
    assert window_texts <= set(batch)
    sentences = set(scorer.sentences_to_embed(sorted(window_texts)))
    assert sentences and sentences <= set(batch)

    again = analyzer.analyze(window)
    assert len(counting.batches) == 1, "a warm rerun embeds nothing"
    assert sorted((r.as_list() for r in again), key=repr) == sorted((r.as_list() for r in rows), key=repr)
    assert len(bench_segments(SEGMENTS)) == SEGMENTS
