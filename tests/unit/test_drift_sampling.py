"""stratified_sample: the cap, the per-stratum shares, determinism; text_hash: the cache key."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from llmsight.analyzers.embeddings import stratified_sample, text_hash


def test_window_under_the_cap_is_kept_whole() -> None:
    assert stratified_sample(["a", "b", "a"], cap=5).tolist() == [0, 1, 2]


def test_cap_and_shares_per_stratum() -> None:
    keys = ["chat"] * 700 + ["search"] * 250 + ["summary"] * 50
    chosen = stratified_sample(keys, cap=100, seed=1)
    assert len(chosen) == 100
    assert len(set(chosen.tolist())) == 100
    assert chosen.tolist() == sorted(chosen.tolist())
    assert Counter(keys[i] for i in chosen) == {"chat": 70, "search": 25, "summary": 5}


def test_rounding_goes_to_the_largest_remainders() -> None:
    keys = ["a"] * 5 + ["b"] * 3 + ["c"] * 2  # exact quotas for cap 3: 1.5, 0.9, 0.6
    chosen = stratified_sample(keys, cap=3, seed=0)
    assert Counter(keys[i] for i in chosen) == {"a": 1, "b": 1, "c": 1}


def test_same_seed_same_sample_other_seed_other_sample() -> None:
    keys = [f"name-{i % 7}" for i in range(2000)]
    first = stratified_sample(keys, cap=300, seed=42)
    assert np.array_equal(first, stratified_sample(keys, cap=300, seed=42))
    assert not np.array_equal(first, stratified_sample(keys, cap=300, seed=43))


def test_default_cap_comes_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSIGHT_SAMPLE_PER_WINDOW", "40")
    assert len(stratified_sample(["x"] * 100)) == 40


def test_text_hash_depends_on_model_and_text() -> None:
    assert text_hash("m", "hello") == text_hash("m", "hello")
    assert len({text_hash("m", "hello"), text_hash("m2", "hello"), text_hash("m", "hello!")}) == 3
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert text_hash("ab", "c") != text_hash("a", "bc")
