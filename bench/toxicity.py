"""Toxicity scoring speed, and how often ordinary banking questions are flagged.

* ``texts_per_s_cached``: :meth:`ToxicityScorer.score_embeddings` on texts whose MiniLM
  embeddings exist already (what the scheduler does with its embedding cache): the shipped head's
  own cost, i.e. text normalisation, alt-profanity-check and one dense layer;
* ``texts_per_s_cached_with_sentence_pass``: the same with the sentence pass on (the default),
  which embeds the sentences of multi-sentence texts (uncached here: the worst case);
* ``texts_per_s_end_to_end``: :meth:`ToxicityScorer.score`, embedding included;
* ``banking77_flagged``: the share of banking77 test questions (benign customer text, CC BY 4.0,
  Casanueva et al. 2020) at or above the threshold: the false-positive rate on text like the
  demo's traffic.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(n: int = typer.Option(2000, "--n", help="texts scored in the cached-embeddings run"),
         n_embed: int = typer.Option(300, "--n-embed", help="texts scored end to end (embedding included)"),
         data: Path = typer.Option(DEFAULT_DATA, "--data", help="the shared data folder"),
         json_out: bool = typer.Option(False, "--json", help="print the figures as one JSON line")) -> None:
    """Toxicity: texts per second with cached embeddings and end to end, and banking77 false positives."""
    import numpy as np
    import pandas as pd

    from llmsight.analyzers.toxicity import ToxicityScorer, normalize
    from llmsight.bench.report import emit

    banking = pd.read_csv(data / "banking77" / "test.csv")["text"].astype(str).tolist()
    scorer = ToxicityScorer(sentences=False)
    per_sentence = ToxicityScorer(sentences=True, embedder=scorer.embedder)
    texts = (banking * (n // len(banking) + 1))[:n]
    distinct = sorted(set(texts))
    vectors = dict(zip(distinct, scorer.embedder.encode([normalize(t) for t in distinct]), strict=True))
    embeddings = np.stack([vectors[t] for t in texts])
    scorer.score_embeddings(embeddings[:10], texts[:10])  # warm up: profanity-check loads on first use
    started = time.perf_counter()
    probabilities = scorer.score_embeddings(embeddings, texts)
    cached_s = time.perf_counter() - started
    started = time.perf_counter()
    per_sentence.score_embeddings(embeddings[:n_embed], texts[:n_embed])
    sentences_s = time.perf_counter() - started
    started = time.perf_counter()
    per_sentence.score(banking[:n_embed])
    end_to_end_s = time.perf_counter() - started
    all_vectors = np.stack([vectors[t] for t in distinct])
    figures = {
        "texts_per_s_cached": round(n / cached_s, 1),
        "texts_per_s_cached_with_sentence_pass": round(n_embed / sentences_s, 1),
        "texts_per_s_end_to_end": round(n_embed / end_to_end_s, 1),
        "threshold": scorer.threshold,
        "banking77_flagged": round(float(scorer.is_toxic(scorer.score_embeddings(all_vectors, distinct)).mean()), 4),
        "banking77_flagged_with_sentence_pass": round(float(
            per_sentence.is_toxic(per_sentence.score_embeddings(all_vectors, distinct)).mean()), 4),
        "banking77_texts": len(distinct),
        "mean_probability": round(float(probabilities.mean()), 4),
    }
    emit("toxicity", figures, json_out)
