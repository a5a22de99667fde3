"""The drift explanation on tiny inline data: the grown and shrunk clusters, their labels and examples."""

from __future__ import annotations

import json

import numpy as np

from llmsight.analyzers.topics import choose_n_clusters, ctfidf_labels, explain_drift

TOPICS = {
    "card": ["where is my new card", "my card has not arrived yet", "card delivery is late"],
    "transfer": ["my transfer failed", "why was the bank transfer declined", "transfer still pending"],
    "refund": ["i want a refund now", "refund for my purchase please", "how long does a refund take"],
}


def _window(rng: np.random.Generator, counts: dict[str, int]) -> tuple[np.ndarray, list[str]]:
    axes = {name: 4.0 * np.eye(8, dtype=np.float32)[i] for i, name in enumerate(TOPICS)}
    vectors, texts = [], []
    for name, count in counts.items():
        vectors.append(axes[name] + 0.3 * rng.normal(size=(count, 8)))
        texts.extend(TOPICS[name][i % 3] + f" #{i}" for i in range(count))
    return np.vstack(vectors).astype(np.float32), texts


def test_explanation_names_the_new_topic_and_the_shrunk_one() -> None:
    rng = np.random.default_rng(0)
    reference, reference_texts = _window(rng, {"card": 60, "transfer": 60})
    current, current_texts = _window(rng, {"card": 60, "transfer": 36, "refund": 24})
    explanation = explain_drift(reference, current, reference_texts, current_texts, n_clusters=3, seed=0)

    grown = explanation["grown"][0]
    assert grown["kind"] == "new"  # found as a region of the neighbour graph, listed first
    assert grown["share_ref"] == 0.0
    assert grown["share_cur"] == 0.2
    assert grown["n_cur"] == 24 and grown["n_ref"] == 0
    assert grown["label"].split()[0] == "refund"
    assert len(grown["examples"]) == 3
    assert all("refund" in text for text in grown["examples"])
    assert grown["z"] > 4

    shrunk = explanation["shrunk"][0]
    assert "transfer" in shrunk["label"].split()
    assert (shrunk["share_ref"], shrunk["share_cur"]) == (0.5, 0.3)
    assert all("transfer" in text for text in shrunk["examples"])  # examples from the reference side

    assert [entry["delta"] for entry in explanation["grown"]] == sorted(
        (entry["delta"] for entry in explanation["grown"]), reverse=True)
    assert json.loads(json.dumps(explanation)) == explanation


def test_calm_window_has_no_new_or_vanished_region() -> None:
    rng = np.random.default_rng(3)
    reference, reference_texts = _window(rng, {"card": 50, "transfer": 50, "refund": 50})
    current, current_texts = _window(rng, {"card": 50, "transfer": 50, "refund": 50})
    explanation = explain_drift(reference, current, reference_texts, current_texts, seed=0)
    kinds = {entry["kind"] for entry in explanation["grown"] + explanation["shrunk"]}
    assert kinds <= {"cluster"}
    assert all(abs(entry["z"]) < 3 for entry in explanation["grown"] + explanation["shrunk"])


def test_same_seed_same_explanation() -> None:
    rng = np.random.default_rng(1)
    reference, reference_texts = _window(rng, {"card": 40, "transfer": 40})
    current, current_texts = _window(rng, {"card": 30, "transfer": 30, "refund": 20})
    first = explain_drift(reference, current, reference_texts, current_texts, seed=5)
    second = explain_drift(reference, current, reference_texts, current_texts, seed=5)
    assert first == second


def test_empty_window_gives_an_empty_explanation() -> None:
    reference, texts = _window(np.random.default_rng(2), {"card": 10})
    explanation = explain_drift(reference, np.zeros((0, 8), np.float32), texts, [])
    assert explanation["grown"] == [] and explanation["shrunk"] == [] and explanation["n_cur"] == 0


def test_ctfidf_prefers_words_distinctive_of_a_cluster() -> None:
    texts = ["refund money refund", "card card arrived", "money refund", "card lost"]
    labels = np.array([0, 1, 0, 1])
    words = ctfidf_labels(texts, labels, 2, top_words=2)
    assert words == [["refund", "money"], ["card", "arrived"]]


def test_choose_n_clusters_scales_with_size() -> None:
    assert [choose_n_clusters(n) for n in (10, 200, 1000, 10_000)] == [2, 5, 25, 30]
