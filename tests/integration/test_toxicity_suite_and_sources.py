"""The shipped toxicity scorer (the default ``ToxicityScorer()``) with the real MiniLM, on text it was
never trained on: the functional suite, banking77 questions, and unseen texts of the five sources.

* The hand-written functional suite (``toxicity_functional.json``), which nothing was trained or
  chosen on: the overall AUC, and the pass rates of explicit slurs and of the blocks where false
  alarms cost most (counter-speech, negation, an assistant's refusals). Measured for the shipped head
  (the hard negatives at 0.25 of a source, analyzers/data/TOXICITY.md, through the default int8 MiniLM):
  AUC 0.853; pass 0.96 on slurs, 0.84 counter-speech, 0.52 negation, 0.96 refusals (the head before it:
  0.824; 0.96, 0.60, 0.44, 0.60). Issue 16's targets, 0.90 and 90%, are not met for the AUC and
  negation; the floors guard the gains on refusals and counter-speech.
* banking77 test questions (benign), every tenth (308): measured 1 flagged (0.32%).
* Texts of each source outside the leave-one-source-out draws of ``scripts/train-toxicity`` (rank
  by hash beyond 3,000) and in the head's hold-out (``in_holdout``), 60 per class: measured ROC AUC
  Davidson 0.994, Stormfront 0.809, HateXplain 0.721, EDOS 0.606 (the head before it: 0.993, 0.818,
  0.721, 0.602; HateXplain and EDOS were never trained on by the head; Hatemoji, 0.55, is left out: a
  floor near chance would catch nothing).

Floors are the measured figures less about 0.04 (0.05 for the per-source AUCs of 120 texts).
"""

import hashlib

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from llmsight.analyzers.toxicity import ToxicityScorer, in_holdout, normalize
from llmsight.analyzers.toxicity_suite import load_suite, suite_report

SUITE_AUC_FLOOR = 0.81
BLOCK_PASS_FLOORS = {"explicit_slurs": 0.92, "counter_speech": 0.8, "negation": 0.48, "assistant_refusals": 0.92}
BANKING_MAX_FLAGGED = 0.01
SOURCE_AUC_FLOORS = {"davidson": 0.95, "stormfront": 0.77, "hatexplain": 0.67, "edos": 0.55}
PER_CLASS = 60


@pytest.fixture(scope="module")
def scorer():
    shipped = ToxicityScorer()
    assert shipped.encoder is None, "an encoder now ships: measure it and set its own floors here"
    return shipped


def _rank(text: str) -> int:
    """The rank scripts/train-toxicity draws by (load_loso)."""
    return int.from_bytes(hashlib.blake2b(("loso:" + text).encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "big")


def test_shipped_scorer_on_the_functional_suite(scorer):
    suite = load_suite()
    report = suite_report(suite, scorer.score(suite.texts), scorer.threshold)
    assert report["auc"] >= SUITE_AUC_FLOOR
    for name, floor in BLOCK_PASS_FLOORS.items():
        assert report["blocks"][name]["pass_rate"] >= floor, (name, report["blocks"][name])


def test_shipped_scorer_rarely_flags_banking_questions(scorer, shared_data):
    texts = pd.read_csv(shared_data / "banking77" / "test.csv")["text"].astype(str).tolist()[::10]
    assert scorer.is_toxic(scorer.score(texts)).mean() <= BANKING_MAX_FLAGGED


@pytest.mark.parametrize("source", sorted(SOURCE_AUC_FLOORS))
def test_shipped_scorer_on_unseen_texts_of_each_source(scorer, shared_data, source):
    frame = pd.read_csv(shared_data / "toxicity" / f"{source}.csv")
    frame["clean"] = [normalize(t) for t in frame["text"].astype(str)]
    frame = frame[frame["clean"].str.len() > 0].drop_duplicates("clean")
    frame = frame.assign(rank=[_rank(t) for t in frame["clean"]]).sort_values("rank").iloc[3000:]
    frame = frame[[in_holdout(t) for t in frame["clean"]]]  # nor in the head's training splits
    sample = pd.concat([frame[frame["label"] == k].head(PER_CLASS) for k in (0, 1)])
    scores = scorer.score(sample["text"].astype(str).tolist())
    assert roc_auc_score(sample["label"].to_numpy(), np.asarray(scores)) >= SOURCE_AUC_FLOORS[source]
