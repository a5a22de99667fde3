"""The shipped toxicity heads on text they were not trained on, with the real MiniLM.

* The shipped head (trained on both sources and the hand-written seeds) on each source's held-out
  15% (``in_holdout``, never trained on): all 1,612 Stormfront sentences, and a fixed sample of
  600 Davidson tweets.
* The one-source heads (one source and the seeds), written by the same ``scripts/train-toxicity``
  run, on the *other* source: the generalisation to hate the head never saw. Stormfront's hate is
  mostly implicit (few slurs); Davidson's is mostly explicit profanity. alt-profanity-check was
  trained on Davidson's tweets, so the honest Davidson figure is that of the Stormfront head
  without it (``toxicity_head_stormfront_only_without_profanity.npz``), which knows profanity
  and slurs only from the hand-written lexicon.
* The shipped head on the hand-written hidden-style check (``toxicity_check.json``: implicit
  statements about groups and matched benign ones), which nothing was trained or tuned on.

The floors are the figures measured on these very texts (analyzers/data/TOXICITY.md) less 0.01
for float noise across machines, and 0.02 on the Davidson sample (measured: shipped head 0.983
on the sample, 0.837 on Stormfront, 0.840 for the head before the hard negatives; Davidson-only head on Stormfront 0.793; Stormfront-only
heads on the sample 0.982, and 0.948 without alt-profanity-check); a worse recipe, head or
normalisation drops below them. Scoring is whole-text here (``sentences=False``): the sentence
pass changes these AUCs by under 0.002 and is covered by the unit tests.
"""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from llmsight.analyzers.toxicity import HEAD_PATH, ToxicityScorer, in_holdout, normalize

DAVIDSON_SAMPLE = 600


@pytest.fixture(scope="module")
def held_out(shared_data):
    """For each source: held-out texts, labels and their MiniLM embeddings."""
    from llmsight.analyzers.embeddings import Embedder

    embedder = Embedder(backend="torch")
    out = {}
    for name in ("davidson", "stormfront"):
        frame = pd.read_csv(shared_data / "toxicity" / f"{name}.csv")
        frame["clean"] = [normalize(t) for t in frame["text"].astype(str)]
        frame = frame[[in_holdout(t) for t in frame["clean"]]]
        if name == "davidson":
            frame = frame.sample(n=DAVIDSON_SAMPLE, random_state=7)
        out[name] = (frame["text"].astype(str).tolist(), frame["label"].to_numpy(),
                     embedder.encode(frame["clean"].tolist()))
    assert len(out["stormfront"][0]) == 1612
    return out


def _score(head: str, held_out, source: str) -> tuple[float, float, np.ndarray, ToxicityScorer]:
    texts, labels, vectors = held_out[source]
    scorer = ToxicityScorer(model=str(HEAD_PATH.with_name(head)), sentences=False)
    scores = scorer.score_embeddings(vectors, texts)
    return roc_auc_score(labels, scores), float(scorer.is_toxic(scores[labels == 0]).mean()), labels, scorer


@pytest.mark.parametrize("source, auc_floor, max_fpr", [("davidson", 0.965, 0.12), ("stormfront", 0.83, 0.12)])
def test_shipped_head_on_held_out_texts(held_out, source, auc_floor, max_fpr):
    auc, fpr, _, scorer = _score("toxicity_head.npz", held_out, source)
    assert scorer.threshold == 0.5
    assert auc >= auc_floor
    assert fpr <= max_fpr


@pytest.mark.parametrize("head, scored_on, floor", [("davidson_only", "stormfront", 0.78),
                                                    ("stormfront_only", "davidson", 0.96),
                                                    ("stormfront_only_without_profanity", "davidson", 0.93)])
def test_one_source_head_generalises_to_the_other_source(held_out, head, scored_on, floor):
    auc, _, _, _ = _score(f"toxicity_head_{head}.npz", held_out, scored_on)
    assert auc >= floor


def test_shipped_head_on_the_hidden_style_check():
    """Measured 0.907 (0.898 for the head before the hard negatives, 0.813 for the recipe trained without the
    seeds); floor as set for the 0.898.

    The head before the lexicon measured 0.911 here: the lexicon costs the check one or two pairs
    and buys 0.01-0.2 on every held-out source (analyzers/data/TOXICITY.md).
    """
    check = json.loads((HEAD_PATH.parent / "toxicity_check.json").read_text())
    texts = check["toxic"] + check["benign"]
    labels = np.r_[np.ones(len(check["toxic"])), np.zeros(len(check["benign"]))]
    scorer = ToxicityScorer(sentences=False)
    scores = scorer.score(texts)
    assert len(texts) == 96
    assert roc_auc_score(labels, scores) >= 0.89
    assert scorer.is_toxic(scores[labels == 0]).mean() <= 0.125
