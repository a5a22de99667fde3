"""Toxicity: speed of each scoring path, banking77 false positives, the functional suite, and the
leave-one-source-out table recorded when the shipped models were trained.

Speed, side by side in one run (so the busy machine weighs on all paths alike):

* ``texts_per_s_cached.head``: :meth:`ToxicityScorer.score_embeddings` on texts whose MiniLM
  embeddings exist already (what the scheduler does with its embedding cache), head only, its text
  features (alt-profanity-check, the lexicon) computed afresh; ``.head_features_cached``: the same
  texts again, their text features in the head's LRU (a text a window scored before);
* ``texts_per_s_cached.cascade``: the same with the cascade (the fine-tuned encoder re-scores the
  texts the head does not clear; ``--encoder PATH``, or the shipped one if any, else the head again);
* ``texts_per_s_cached.cascade_with_sentence_pass``: and the sentence pass (uncached sentences);
* ``texts_per_s_end_to_end.head`` / ``.cascade``: :meth:`ToxicityScorer.score`, embedding included;
* ``texts_per_s_encoder_alone``: the fine-tuned encoder on every text (no head in front).

Quality: ``banking77_flagged`` (benign customer questions, CC BY 4.0, Casanueva et al. 2020) for the
head and the cascade; ``suite``: the hand-written functional suite (``toxicity_functional.json``),
AUC and per-block pass rates at the threshold; ``loso``: the leave-one-source-out table stored in
the encoder's metadata by ``scripts/train-toxicity --encoder`` (re-running it takes the better part
of an hour, so the bench reports the recorded one, and says so).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _rate(n: int, started: float) -> float:
    return round(n / (time.perf_counter() - started), 1)


def main(n: int = typer.Option(2000, "--n", help="texts scored in the cached-embeddings runs"),
         n_embed: int = typer.Option(300, "--n-embed", help="texts scored end to end (embedding included)"),
         data: Path = typer.Option(DEFAULT_DATA, "--data", help="the shared data folder"),
         encoder: Path | None = typer.Option(None, "--encoder", help="a toxicity encoder (.npz) for the cascade "
                                             "paths; default: the shipped one, if any"),
         json_out: bool = typer.Option(False, "--json", help="print the figures as one JSON line")) -> None:
    """Toxicity: texts per second on each path, banking77 false positives, the suite and the LOSO table."""
    import numpy as np
    import pandas as pd

    from llmsight.analyzers.toxicity import ToxicityScorer, normalize
    from llmsight.analyzers.toxicity_suite import load_suite, suite_report
    from llmsight.bench.report import emit

    banking = pd.read_csv(data / "banking77" / "test.csv")["text"].astype(str).tolist()
    head = ToxicityScorer(sentences=False, encoder=False)
    chosen = str(encoder) if encoder is not None else None
    cascade = ToxicityScorer(sentences=False, embedder=head.embedder, encoder=chosen)
    with_sentences = ToxicityScorer(sentences=True, embedder=head.embedder, encoder=chosen)
    figures: dict = {"encoder": str(cascade.encoder_path) if cascade.encoder_path else None}
    texts = (banking * (n // len(banking) + 1))[:n]
    distinct = sorted(set(texts))
    vectors = dict(zip(distinct, head.embedder.encode([normalize(t) for t in distinct]), strict=True))
    embeddings = np.stack([vectors[t] for t in texts])
    for scorer in (head, cascade):  # warm up: profanity-check and the encoder load on first use
        scorer.score_embeddings(embeddings[:10], ["You stupid idiot."] * 10)
    cached: dict[str, float] = {}
    # Each path starts with no cached text features (alt-profanity-check, the lexicon), as a new
    # window's texts do; "head_features_cached" scores the same texts again (the head's LRU by hash).
    head.model.clear_cache()
    started = time.perf_counter()
    probabilities = head.score_embeddings(embeddings, texts)
    cached["head"] = _rate(n, started)
    started = time.perf_counter()
    head.score_embeddings(embeddings, texts)
    cached["head_features_cached"] = _rate(n, started)
    head.model.clear_cache()
    started = time.perf_counter()
    cascade.score_embeddings(embeddings, texts)
    cached["cascade"] = _rate(n, started)
    head.model.clear_cache()
    started = time.perf_counter()
    with_sentences.score_embeddings(embeddings[:n_embed], texts[:n_embed])
    cached["cascade_with_sentence_pass"] = _rate(n_embed, started)
    end_to_end: dict[str, float] = {}
    for name, scorer in (("head", head), ("cascade", cascade)):
        head.model.clear_cache()
        started = time.perf_counter()
        scorer.score(banking[:n_embed])
        end_to_end[name] = _rate(n_embed, started)
    figures.update({"texts_per_s_cached": cached, "texts_per_s_end_to_end": end_to_end,
                    "threshold": head.threshold, "banking77_texts": len(distinct)})
    all_vectors = np.stack([vectors[t] for t in distinct])
    flagged = {}
    for name, scorer in (("head", head), ("cascade", cascade)):
        scores = scorer.score_embeddings(all_vectors, distinct)
        flagged[name] = round(float(scorer.is_toxic(scores).mean()), 4)
        if name == "cascade":
            figures["cascade_share_sent_to_encoder"] = round(float(
                (head.score_embeddings(all_vectors, distinct) >= scorer.cascade_clear).mean()), 4)
    figures["banking77_flagged"] = flagged
    figures["mean_probability_head"] = round(float(probabilities.mean()), 4)
    if cascade.encoder is not None:
        started = time.perf_counter()
        cascade.encoder.score([normalize(t) for t in banking[:n_embed]])
        figures["texts_per_s_encoder_alone"] = _rate(n_embed, started)
    suite = load_suite()
    suite_vectors = head.embedder.encode([normalize(t) for t in suite.texts])
    figures["suite"] = {name: _suite_summary(suite_report(suite, scorer.score_embeddings(suite_vectors, suite.texts),
                                                          scorer.threshold))
                        for name, scorer in (("head", head), ("cascade", cascade))}
    if cascade.encoder is not None:
        figures["loso"] = {"recorded_by": "scripts/train-toxicity --loso --encoder (analyzers/data/TOXICITY.md)",
                           **cascade.encoder.metadata.get("figures", {}).get("loso_auc", {})}
    emit("toxicity", figures, json_out)


def _suite_summary(report: dict) -> dict:
    return {"auc": report["auc"], **{f"pass_{name}": block["pass_rate"] for name, block in report["blocks"].items()}}
