"""embedding_drift on tiny inline arrays: calibration, power on a new or vanished cluster, determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from llmsight.analyzers.drift import DriftResult, choose_k, embedding_drift, nearest_neighbours


def _blobs(rng: np.random.Generator, centres: np.ndarray, counts: list[int], spread: float = 0.35) -> np.ndarray:
    parts = [centre + spread * rng.normal(size=(count, centres.shape[1])) for centre, count in zip(centres, counts, strict=True)]
    return np.vstack(parts).astype(np.float32)


@pytest.fixture
def centres() -> np.ndarray:
    # Five well-separated topics in 16 dimensions.
    return 3.0 * np.eye(16, dtype=np.float32)[:5]


def test_same_distribution_is_not_drifted(centres: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    reference = _blobs(rng, centres[:4], [40, 40, 40, 40])
    current = _blobs(rng, centres[:4], [40, 40, 40, 40])
    result = embedding_drift(reference, current, alpha=0.05, permutations=199, seed=3)
    assert result.method == "knn"
    assert result.drifted is False
    assert result.p_value is not None and result.p_value >= 0.05
    assert result.score < result.threshold
    assert result.details["n_ref"] == 160 and result.details["n_cur"] == 160


def test_new_cluster_is_drifted_with_the_smallest_p_value(centres: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    reference = _blobs(rng, centres[:4], [40, 40, 40, 40])
    # 10% of the current window is a topic the reference never had.
    current = _blobs(rng, centres, [36, 36, 36, 36, 16])
    result = embedding_drift(reference, current, alpha=0.01, permutations=199, seed=3)
    assert result.drifted is True
    assert result.p_value == pytest.approx(1 / 200)
    assert result.score > result.threshold
    z = result.details["z"]
    assert max(z, key=z.get) == "pure_cur"
    assert 0.05 <= result.details["novel_share"] <= 0.15
    assert result.details["vanished_share"] < 0.03


def test_vanished_cluster_is_drifted_on_the_reference_side(centres: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    reference = _blobs(rng, centres, [32, 32, 32, 32, 32])
    current = _blobs(rng, centres[:4], [40, 40, 40, 40])
    result = embedding_drift(reference, current, alpha=0.01, permutations=199, seed=3)
    assert result.drifted is True
    z = result.details["z"]
    assert max(z, key=z.get) == "pure_ref"
    assert 0.1 <= result.details["vanished_share"] <= 0.25


def test_same_seed_same_result_and_json_serialisable(centres: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    reference = _blobs(rng, centres[:4], [30, 30, 30, 30])
    current = _blobs(rng, centres[:4], [45, 25, 25, 25])
    first = embedding_drift(reference, current, permutations=99, seed=11)
    second = embedding_drift(reference, current, permutations=99, seed=11)
    strip = {"ms"}  # the only field that is allowed to differ: wall time
    assert {k: v for k, v in first.details.items() if k not in strip} == \
        {k: v for k, v in second.details.items() if k not in strip}
    assert (first.score, first.threshold, first.p_value, first.drifted) == \
        (second.score, second.threshold, second.p_value, second.drifted)
    assert json.loads(json.dumps(first.as_dict()))["p_value"] == first.p_value


def test_p_values_are_permutation_fractions(centres: np.ndarray) -> None:
    rng = np.random.default_rng(6)
    reference = _blobs(rng, centres[:3], [20, 20, 20])
    current = _blobs(rng, centres[:3], [20, 20, 20])
    result = embedding_drift(reference, current, permutations=49, seed=0, min_samples=10)
    assert result.p_value is not None
    assert round(result.p_value * 50, 9) == round(result.p_value * 50)
    assert 1 / 50 <= result.p_value <= 1.0


def test_false_positive_rate_is_controlled_on_null_windows(centres: np.ndarray) -> None:
    # 60 pairs of windows from one distribution: at alpha = 0.1 about 6 may be flagged; a test whose
    # null is wrong (e.g. a graph that looks at labels) flags far more.
    flagged = 0
    for trial in range(60):
        rng = np.random.default_rng(100 + trial)
        pooled = _blobs(rng, centres, [24, 24, 24, 24, 24])
        order = rng.permutation(len(pooled))
        result = embedding_drift(pooled[order[:60]], pooled[order[60:]], alpha=0.1, permutations=99,
                                 seed=trial, min_samples=10)
        flagged += result.drifted
    assert flagged <= 10


def test_too_few_texts_is_not_a_test() -> None:
    rng = np.random.default_rng(7)
    result = embedding_drift(rng.normal(size=(5, 8)), rng.normal(size=(50, 8)) + 5, min_samples=20)
    assert result == DriftResult(0.0, result.threshold, False, None, "knn", result.details)
    assert math.isnan(result.threshold)
    assert "too few" in result.details["reason"]


def test_mmd_method_flags_a_shift_and_passes_identical_windows(centres: np.ndarray) -> None:
    rng = np.random.default_rng(8)
    reference = _blobs(rng, centres[:4], [40, 40, 40, 40])
    same = _blobs(rng, centres[:4], [40, 40, 40, 40])
    shifted = _blobs(rng, centres, [20, 20, 20, 20, 80])
    assert embedding_drift(reference, shifted, "mmd", permutations=99, alpha=0.05).drifted is True
    calm = embedding_drift(reference, same, "mmd", permutations=99, alpha=0.05)
    assert calm.drifted is False and calm.method == "mmd"


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown drift method"):
        embedding_drift(np.zeros((30, 4)), np.zeros((30, 4)), "psi")
    with pytest.raises(ValueError, match="equal width"):
        embedding_drift(np.ones((30, 4)), np.ones((30, 5)))


def test_nearest_neighbours_are_the_closest_other_rows() -> None:
    points = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99], [-1, 0]], dtype=np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    neighbours = nearest_neighbours(points, 1)
    assert neighbours[:, 0].tolist() == [1, 0, 3, 2, 2]


def test_choose_k_grows_with_size_within_bounds() -> None:
    assert [choose_k(n) for n in (40, 1000, 2000, 10_000, 100_000)] == [5, 10, 20, 20, 20]
