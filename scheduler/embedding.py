"""A window's embedding phase with replicas: each distinct text embedded by exactly one worker.

The segments of a minute window are cut into units for several workers, and units share texts (the
same answers from several segments, the same questions asked of two models or prompt versions).
Each worker's embedding cache would miss them and embed them again. So before its analysis units, a
window gets ``shards`` embedding units: every one reads the window's text sample (the one query the
analysis reads it with, :func:`llmsight.analyzers.windows.read_calls_many`), takes the prompts and
outputs, the toxicity pass's sentences of them and their toxicity views (emoji named, obfuscation spelled
out) whose hash falls in its shard, and embeds those through the cache
(:class:`llmsight.analyzers.embeddings.EmbeddingCache`): found in the ``embeddings`` table, or embedded once
and written there. The analysis units then find the window's own texts in the table.

An embedding unit writes nothing but cache rows, which are keyed by the text's hash: a unit redone
after a crash or a rebalance finds them and embeds nothing.

A reference period's texts are not sharded: a running deployment embedded them when they were the
texts of their own windows (a cold start embeds them in the analysis units, as one process does).
"""

from __future__ import annotations

import logging
from typing import Any

from llmsight.analyzers.windows import SEGMENT_KEYS, Period, Window, read_calls_many

log = logging.getLogger("llmsight.scheduler.embedding")


def shard_of(key: str, shards: int) -> int:
    """The shard of a text's cache key (a hex hash): the same on every replica."""
    return int(key[:15], 16) % shards


def window_texts(analyzer: Any, window: Window, segments: list[dict[str, str]]) -> list[str]:
    """The distinct prompts and outputs of the window's text sample (what its analysis embeds of its own
    calls, besides the toxicity pass's sentences)."""
    calls = read_calls_many(analyzer.client, Period(window.start, window.end), segments, SEGMENT_KEYS,
                            analyzer.settings.sample, numbers=False)
    texts: dict[str, None] = {}
    for item in calls.values():
        texts.update(dict.fromkeys(item.sample_outputs))
        texts.update(dict.fromkeys(item.sample_inputs))
    return list(texts)


def embed_shard(analyzer: Any, window: Window, segments: list[dict[str, str]], shard: int, shards: int) -> int:
    """Embed (through the cache) the window's texts and toxicity sentences in ``shard`` of ``shards``;
    returns how many there were."""
    from llmsight.analyzers.embeddings import text_hash

    cache = analyzer.embeddings
    model = cache.embedder.name
    texts = window_texts(analyzer, window, segments)
    # Sentences are sharded by their own hash, not their text's: answers share sentences (a greeting, a
    # closing line), and each is embedded once too. Every shard splits every text for that. So are the
    # toxicity views of texts with emoji or obfuscated words (the head reads those through a vector of their
    # view, ``toxicity.toxic_view``).
    toxicity = analyzer.toxicity
    if getattr(toxicity, "uses_embeddings", False):
        texts = list(dict.fromkeys([*texts, *toxicity.views_to_embed(texts), *toxicity.sentences_to_embed(texts)]))
    mine = [t for t in texts if shard_of(text_hash(model, t), shards) == shard]
    if mine:
        cache.encode(mine)
    log.debug("analyzers: %s shard %d/%d: %d texts", window, shard, shards, len(mine))
    return len(mine)
