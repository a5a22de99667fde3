"""Acceptance summary, intervals and the regression decision, on tiny inline data."""

import math

import pandas as pd
import pytest

from llmsight.analyzers.acceptance import compare, newcombe_interval, summarize, wilson_interval


def test_wilson_interval_matches_the_textbook_values():
    # 8 of 10, 95%: the Wilson interval is (0.4902, 0.9433) (Newcombe 1998, table I style check).
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 10)[0] == 0.0 and round(wilson_interval(0, 10)[1], 4) == 0.2775
    assert wilson_interval(10, 10)[1] == 1.0 and round(wilson_interval(10, 10)[0], 4) == 0.7225
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_newcombe_interval_of_a_difference():
    # Newcombe 1998, example (e): 56/70 vs 48/80, method 10 gives 0.0524 to 0.3339 for p1 - p2.
    lo, hi = newcombe_interval(48, 80, 56, 70)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)


def test_summarize_counts_thumbs_scores_and_edits_from_dicts_and_frames():
    rows = [
        {"accepted": 1, "score": 5.0, "edited_output": ""},
        {"accepted": 0, "score": 1.0, "edited_output": "fixed text"},
        {"accepted": None, "score": None, "edited_output": ""},
        {"accepted": 1, "score": None, "edited_output": "small fix"},
    ]
    for feedback in (rows, pd.DataFrame(rows).astype({"accepted": "Int64"})):
        s = summarize(feedback)
        assert (s.n, s.accepted, s.rejected, s.judged) == (4, 2, 1, 3)
        assert s.acceptance_rate == pytest.approx(2 / 3)
        assert s.acceptance_ci == wilson_interval(2, 3)
        assert (s.score_n, s.score_mean) == (2, 3.0)
        assert (s.edited, s.edit_rate) == (2, 0.5)


def test_summarize_takes_the_schedulers_tuples_and_empty_input():
    s = summarize([("t1", 1, 4.0, False), ("t2", 0, None, True), ("t3", None, 2.0, False)])
    assert (s.n, s.accepted, s.rejected, s.score_mean, s.edited) == (3, 1, 1, 3.0, 1)
    empty = summarize([])
    assert (empty.n, empty.acceptance_rate, empty.score_mean, empty.edit_rate) == (0, None, None, None)


def test_a_large_significant_drop_is_a_regression():
    r = compare((80, 100), (60, 100), alpha=0.01, min_effect=0.05, min_n=30)
    assert r.regressed and r.method == "z-test"
    assert (r.baseline_rate, r.current_rate, r.n_baseline, r.n_current) == (0.8, 0.6, 100, 100)
    assert r.difference == pytest.approx(-0.2)
    # z = 0.2 / sqrt(0.7 * 0.3 * 0.02) = 3.0861; one-sided p = 0.001014
    assert r.p_value == pytest.approx(0.0010141, rel=1e-4)
    assert r.difference_ci[1] < 0 < r.baseline_ci[0]


def test_no_regression_when_not_significant_too_small_an_effect_or_too_little_data():
    assert not compare((80, 100), (75, 100)).regressed                            # p = 0.19
    big = compare((80_000, 100_000), (79_000, 100_000), min_effect=0.05)
    assert big.p_value < 1e-6 and not big.regressed and "minimum effect" in big.reason
    small = compare((20, 20), (5, 20), min_n=30)
    assert small.p_value < 0.01 and not small.regressed and "too little" in small.reason
    assert compare((60, 100), (80, 100)).p_value > 0.99                            # an improvement
    assert not compare((80, 100), (60, 100), alpha=0.001).regressed


def test_small_samples_use_fisher_exact():
    r = compare((10, 10), (2, 10), min_n=5)
    assert r.method == "fisher"
    # P(X >= 10) for the hypergeometric with 12 accepted among 20, 10 drawn: C(12,10)/C(20,10)
    assert r.p_value == pytest.approx(math.comb(12, 10) / math.comb(20, 10))
    assert r.regressed


def test_compare_accepts_verdict_lists_summaries_and_exact_min_effect():
    base = [True] * 70 + [False] * 30
    cur = [1] * 65 + [0] * 35 + [None]
    r = compare(base, cur, alpha=0.5, min_effect=0.05, min_n=100)
    assert (r.n_baseline, r.n_current) == (100, 100)
    assert r.regressed  # a drop of exactly 0.05 counts, despite 0.70 - 0.65 != 0.05 in floats
    assert compare(summarize([{"accepted": 1}] * 3), summarize([])).reason == "no feedback on one side"
    same = compare((50, 50), (50, 50), min_n=1)
    assert (same.p_value, same.regressed) == (1.0, False)
