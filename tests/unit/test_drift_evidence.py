"""The sequential drift evidence: its false-alarm rate on synthetic nulls, and that it still detects."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from llmsight.analyzers import drift
from llmsight.analyzers.drift import (
    EvidenceState,
    cusum_arl0,
    cusum_limit,
    evidence_step,
    evidence_z,
    horizon_budget,
    horizon_limit,
)

T0 = datetime(2026, 11, 2, tzinfo=timezone.utc)
PERMUTATIONS = 500


def null_p_values(rng: np.random.Generator, size: int) -> np.ndarray:
    """Permutation p-values under no drift: (1 + B) / (1 + P) with B uniform on 0..P."""
    return (1 + rng.integers(0, PERMUTATIONS + 1, size)) / (1 + PERMUTATIONS)


def alarms(p_values: np.ndarray, limit: float, step_s: int) -> int:
    """How many alarms the real evidence_step raises over a sequence of windows."""
    state, count = EvidenceState(), 0
    for i, p in enumerate(p_values):
        before = state.alarm
        state = evidence_step(state, evidence_z(float(p), None, PERMUTATIONS), T0 + timedelta(seconds=i * step_s),
                              limit, hold_s=10**9)
        count += state.alarm and not before
    return count


def test_limits_follow_the_budget_per_horizon() -> None:
    # Defaults: 0.5 false alarms per segment-week over 2 metrics; minutes 60%, hours 32%, days 8%.
    assert horizon_budget("1m", 0.5) == pytest.approx(0.15)
    assert horizon_budget("1h", 0.5) == pytest.approx(0.08)
    assert horizon_budget("1d", 0.5) == pytest.approx(0.02)
    minute, hour, day = horizon_limit("1m", 60, 0.5), horizon_limit("1h", 3600, 0.5), horizon_limit("1d", 86400, 0.5)
    assert 9.0 < minute < 9.5 and 5.6 < hour < 6.0 and 3.8 < day < 4.2
    # The limit inverts the run-length formula.
    for windows, budget in ((10080, 0.15), (168, 0.08)):
        assert windows / cusum_arl0(cusum_limit(windows, budget)) == pytest.approx(budget, rel=1e-3)
    # A larger budget means a lower limit.
    assert horizon_limit("1m", 60, 2.0) < minute
    with pytest.raises(ValueError):
        cusum_limit(0, 1.0)


def test_evidence_z() -> None:
    assert evidence_z(None) is None
    assert evidence_z(0.5) == pytest.approx(0.0, abs=1e-9)
    assert evidence_z(0.01) == pytest.approx(2.326, abs=1e-3)
    assert evidence_z(1.0) == drift.Z_CLIP[0]
    floor = 1 / (1 + PERMUTATIONS)
    # At the permutation floor a strong score refines the evidence (Bonferroni over 4 statistics)...
    strong = evidence_z(floor, 7.0, PERMUTATIONS)
    assert strong is not None and strong > 6.0
    # ...a score whose normal tail is weaker than the floor does not, and neither does a p above the floor.
    assert evidence_z(floor, 1.0, PERMUTATIONS) == pytest.approx(evidence_z(floor), abs=1e-9)
    assert evidence_z(2 * floor, 7.0, PERMUTATIONS) == pytest.approx(evidence_z(2 * floor), abs=1e-9)
    assert evidence_z(floor, 50.0, PERMUTATIONS) == drift.Z_CLIP[1]
    assert evidence_z(floor, 7.0, PERMUTATIONS, method="mmd") == pytest.approx(evidence_z(floor), abs=1e-9)


def test_hourly_null_stays_within_its_budget() -> None:
    """1,500 simulated weeks of hourly tests under no drift, through the real evidence_step."""
    rng = np.random.default_rng(7)
    weeks = 1500
    limit = horizon_limit("1h", 3600, 0.5)
    count = alarms(null_p_values(rng, 168 * weeks), limit, 3600)
    rate = count / weeks
    # The budget is 0.08 per metric-week; the permutation p-value is conservative, so at most that
    # (with room for simulation noise), and not so conservative that the limit is pointless.
    assert rate <= 0.08 * 1.25, rate
    assert rate >= 0.08 / 20, rate


def test_minute_null_stays_within_its_budget() -> None:
    """30 simulated weeks of minute windows (302,400 tests) under no drift: alpha-0.01 tests would flag
    about 3,000 of them; the evidence allows 0.15 alarms per week."""
    rng = np.random.default_rng(11)
    weeks = 30
    limit = horizon_limit("1m", 60, 0.5)
    p = null_p_values(rng, 10080 * weeks)
    assert np.count_nonzero(p < 0.01) > 0.005 * 10080 * weeks  # what independent tests would have flagged
    count = alarms(p, limit, 60)
    assert count / weeks <= 0.15 * 3, count  # 0.15 expected (4.5 in 30 weeks); room for Poisson noise
    # The CUSUM under N(0, 1) increments (vectorised, the same recursion) agrees with the formula.
    z = rng.standard_normal((200, 2000))
    s = np.zeros(200)
    first = np.full(200, -1)
    short_limit = cusum_limit(1.0, 1.0 / 300)  # ARL0 of 300 windows
    for t in range(z.shape[1]):
        s = np.maximum(0.0, s + z[:, t] - drift.CUSUM_K)
        hit = (s >= short_limit) & (first < 0)
        first[hit] = t + 1
    assert (first > 0).all()
    assert 200 < first.mean() < 450, first.mean()


def test_a_shift_is_detected_within_a_few_windows_and_the_reference_anchor_holds() -> None:
    limit = horizon_limit("1m", 60, 0.5)
    state = EvidenceState()
    rng = np.random.default_rng(3)
    for i, p in enumerate(null_p_values(rng, 30)):
        state = evidence_step(state, evidence_z(float(p)), T0 + timedelta(minutes=i), limit, hold_s=86400)
    assert not state.alarm
    # A shift: every window now gives p = 0.002 (z = 2.88); S climbs by about 2.4 per window.
    shift = T0 + timedelta(minutes=30)
    detected = None
    for i in range(20):
        state = evidence_step(state, evidence_z(0.002), shift + timedelta(minutes=i), limit, hold_s=86400)
        if state.alarm and detected is None:
            detected = i + 1
    assert detected is not None and detected <= math.ceil(limit / (2.878 - 0.5)) + 1
    # The run began at or before the shift: the trailing reference ends there and does not swallow it.
    assert state.since is not None and state.since <= shift
    assert state.alarm_since is not None and state.alarm_since >= shift
    # Stored and read back, the state is the same.
    assert EvidenceState.from_details(state.as_details()) == EvidenceState(
        round(state.cusum, 4), state.since, state.alarm_since)
    # Without tests (no traffic) the evidence waits; after the hold the run is the new normal.
    assert evidence_step(state, None, shift + timedelta(minutes=30), limit, hold_s=86400) == state
    later = evidence_step(state, 2.0, state.since + timedelta(seconds=86400), limit, hold_s=86400)
    assert not later.alarm and later.cusum == pytest.approx(1.5) and later.since == state.since + timedelta(days=1)


def test_an_alarm_ends_and_restarts_the_evidence() -> None:
    limit = 3.0
    state = evidence_step(EvidenceState(), 4.0, T0, limit, hold_s=86400)
    assert state.alarm and state.cusum == pytest.approx(3.5)
    state = evidence_step(state, -1.0, T0 + timedelta(minutes=1), limit, hold_s=86400)
    assert state == EvidenceState()  # fell below the limit: alarm over, S back to 0, reference moves on


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", '{"cusum": -1}', '{"cusum": "x"}', '{"cusum": NaN}'])
def test_bad_stored_state_starts_afresh(raw: str) -> None:
    assert EvidenceState.from_details(raw) == EvidenceState()
