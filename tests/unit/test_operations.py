"""Operational figures and the refusal detector, on tiny inline data."""

import math

import numpy as np
import pandas as pd
import pytest

from llmsight.analyzers.operations import compute, from_events, is_refusal, percentiles, window_figures
from llmsight.analyzers.windows import Calls
from llmsight.store import names

REFUSALS = [
    "I can't help with that.",
    "I’m sorry, but I cannot share another customer's account details.",
    "Sorry, I can't assist with that request.",
    "I am unable to provide legal advice.",
    "As an AI language model, I cannot transfer money for you.",
    "I'm not able to help with that.",
    "I must decline to answer that.",
    "That's not something I can help with.",
    "I won't provide instructions for that.",
    "I'm not able to answer questions about this topic.",
    "Unfortunately I can only help with everyday banking questions.",
]
ANSWERS = [
    "Your card should arrive within 5 working days.",
    "I can help with that: open the app and tap Cards.",
    "I can't help but notice you asked twice; the fee is $2.",
    "You cannot withdraw more than $500 a day at an ATM.",
    "If the transfer fails, we can't charge you a fee.",
    "",
    None,
]


def test_refusal_detector_flags_refusals_and_not_ordinary_answers():
    assert [is_refusal(t) for t in REFUSALS] == [True] * len(REFUSALS)
    assert [is_refusal(t) for t in ANSWERS] == [False] * len(ANSWERS)


def test_refusal_must_open_the_answer():
    long_answer = "Here is how to order a new card. " * 20 + "I can't help with that part."
    assert not is_refusal(long_answer)


def test_percentiles_are_exact_and_skip_unknown_values():
    assert percentiles([1, 2, 3, 4, 5, None, float("nan")], (50, 95, 99)) == [3.0, 4.8, 4.96]
    assert percentiles([None]) is None


def test_compute_from_columns():
    figures = compute(latency_ms=[100, 200, 300, 400], errors=["", "timeout", "", ""],
                      ttft_ms=[10, None, 30, float("nan")], tokens_in=[10, 20, None, 30],
                      tokens_out=[5, 5, 5, 5], cost_usd=[0.01, None, 0.03, None],
                      outputs=["Your balance is $3.", "I can't help with that.", "Done."])
    assert figures[names.VOLUME] == (4.0, 4)
    assert figures[names.ERROR_RATE] == (0.25, 4)
    assert figures[names.LATENCY_P50] == (250.0, 4)
    assert figures[names.LATENCY_P95] == (pytest.approx(385.0), 4)
    assert figures[names.LATENCY_P99] == (pytest.approx(397.0), 4)
    assert figures[names.TTFT_P50] == (20.0, 2)
    assert figures[names.TOKENS_IN] == (60.0, 3)
    assert figures[names.TOKENS_OUT] == (20.0, 4)
    assert figures[names.COST] == (pytest.approx(0.04), 2)
    assert figures[names.COST_PER_CALL] == (pytest.approx(0.02), 2)
    assert figures[names.OUTPUT_CHARS] == (pytest.approx((19 + 23 + 5) / 3), 3)
    assert figures[names.REFUSAL_RATE] == (pytest.approx(1 / 3), 3)


def test_unknown_figures_are_left_out_and_empty_windows_have_volume_zero():
    figures = compute(latency_ms=[50.0], errors=[None], cost_usd=[None])
    assert set(figures) == {names.VOLUME, names.ERROR_RATE, names.LATENCY_P50, names.LATENCY_P95,
                            names.LATENCY_P99}
    assert compute(latency_ms=[], errors=[]) == {names.VOLUME: (0.0, 0)}
    with pytest.raises(ValueError):
        compute(latency_ms=[1, 2], errors=[""])


def test_from_events_dataframe_measures_outputs_of_successful_calls_only():
    frame = pd.DataFrame({
        "latency_ms": [120.0, 80.0, 100.0],
        "error": ["", "RateLimitError: slow down", ""],
        "output": ["I'm sorry, but I cannot do that.", "", "Sure, your PIN is reset."],
        "tokens_in": pd.array([12, None, 8], dtype="UInt32"),
        "tokens_out": pd.array([7, None, 6], dtype="UInt32"),
        "cost_usd": [0.002, None, 0.001],
        "ttft_ms": [None, None, None],
    })
    figures = from_events(frame)
    assert figures[names.ERROR_RATE] == (pytest.approx(1 / 3), 3)
    assert figures[names.REFUSAL_RATE] == (0.5, 2)
    assert figures[names.OUTPUT_CHARS] == (pytest.approx((32 + 24) / 2), 2)
    assert figures[names.TOKENS_IN] == (20.0, 2)
    assert figures[names.COST_PER_CALL] == (pytest.approx(0.0015), 2)
    assert names.TTFT_P50 not in figures


def test_window_figures_from_the_schedulers_calls():
    calls = Calls(n=3, latency_ms=np.array([10.0, 20.0, 30.0]), ttft_ms=np.array([np.nan, 5.0, 7.0]),
                  tokens_in=np.array([1.0, 2.0, 3.0]), tokens_out=np.array([4.0, 5.0, 6.0]),
                  cost_usd=np.array([np.nan, np.nan, np.nan]), errors=np.array([False, True, False]),
                  output_chars=np.array([10.0, 0.0, 30.0]), sample_trace_ids=["a", "c"],
                  sample_inputs=["q1", "q3"], sample_outputs=["I can't help with that.", "Sure."])
    figures = window_figures(calls)
    assert figures[names.OUTPUT_CHARS] == (20.0, 2)
    assert figures[names.REFUSAL_RATE] == (0.5, 2)
    assert figures[names.TTFT_P50] == (6.0, 2)
    assert names.COST not in figures and math.isclose(figures[names.ERROR_RATE][0], 1 / 3)
