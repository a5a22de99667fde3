"""Drift on real banking77 questions embedded by the real MiniLM: a new intent is caught and explained,
a window from the same intents is not flagged."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from llmsight.analyzers.drift import embedding_drift
from llmsight.analyzers.embeddings import Embedder
from llmsight.analyzers.topics import explain_drift

NEW_INTENT = "apple_pay_or_google_pay"
N = 150


@pytest.fixture(scope="module")
def windows(shared_data) -> dict[str, tuple[np.ndarray, list[str], list[str]]]:
    with open(shared_data / "banking77" / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(0)
    others = [row for row in rows if row["category"] != NEW_INTENT]
    novel = [row for row in rows if row["category"] == NEW_INTENT]
    drawn = [others[i] for i in rng.choice(len(others), 3 * N, replace=False)]
    picked = {
        "reference": drawn[:N],
        "calm": drawn[N:2 * N],
        # 20% of the window is an intent the reference never saw.
        "shifted": drawn[2 * N:3 * N - N // 5] + [novel[i] for i in rng.choice(len(novel), N // 5, replace=False)],
    }
    embedder = Embedder()
    texts = [row["text"] for window in picked.values() for row in window]
    vectors = embedder.encode(texts)
    out, start = {}, 0
    for name, window in picked.items():
        out[name] = (vectors[start:start + len(window)], [r["text"] for r in window], [r["category"] for r in window])
        start += len(window)
    return out


def test_same_intents_are_not_drifted(windows) -> None:
    reference, calm = windows["reference"][0], windows["calm"][0]
    result = embedding_drift(reference, calm, alpha=0.01, permutations=500, seed=0)
    assert result.drifted is False
    assert result.p_value is not None and result.p_value > 0.01


def test_new_intent_is_drifted_and_explained(windows) -> None:
    reference, reference_texts, _ = windows["reference"]
    shifted, shifted_texts, shifted_intents = windows["shifted"]
    result = embedding_drift(reference, shifted, alpha=0.01, permutations=500, seed=0)
    assert result.drifted is True
    assert result.p_value == pytest.approx(1 / 501)
    assert result.details["novel_share"] >= 0.1

    explanation = explain_drift(reference, shifted, reference_texts, shifted_texts, seed=0)
    top = explanation["grown"][0]
    assert top["share_cur"] - top["share_ref"] >= 0.1
    intent_of = dict(zip(shifted_texts, shifted_intents, strict=True))
    assert [intent_of[text] for text in top["examples"]] == [NEW_INTENT] * 3
    assert {"apple", "google", "pay"} & set(top["label"].split())
