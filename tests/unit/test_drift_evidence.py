"""The sequential drift evidence: its false-alarm rate on synthetic nulls, and that it still detects."""

from __future__ import annotations

import json
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
    assert state.held and state.reference_end == state.since
    stored = EvidenceState.from_details(json.loads(json.dumps(state.as_details())))
    assert (stored.cusum, stored.since, stored.alarm_since, stored.held) == (
        round(state.cusum, 4), state.since, state.alarm_since, True)
    assert stored.calibration.n == state.calibration.n and stored.calibration.recent == pytest.approx(
        state.calibration.recent, abs=1e-3)
    assert stored.calibration.standardise(1.0) == pytest.approx(state.calibration.standardise(1.0), abs=1e-4)
    # The held run's windows did not teach the calibration (they may be the shift).
    assert state.calibration.n < 30 + 20
    # Without tests (no traffic) the evidence waits; after the hold the run is the new normal.
    assert evidence_step(state, None, shift + timedelta(minutes=30), limit, hold_s=86400) == state
    later = evidence_step(state, 2.0, state.since + timedelta(seconds=86400), limit, hold_s=86400)
    expected = state.calibration.standardise(2.0) - 0.5
    assert not later.alarm and later.cusum == pytest.approx(expected) and later.since == state.since + timedelta(days=1)
    assert later.calibration.n == state.calibration.n + 1  # the restart kept what it learned


def test_an_alarm_ends_and_restarts_the_evidence() -> None:
    limit = 3.0
    state = evidence_step(EvidenceState(), 4.0, T0, limit, hold_s=86400)
    assert state.alarm and state.cusum == pytest.approx(3.5)
    state = evidence_step(state, -1.0, T0 + timedelta(minutes=1), limit, hold_s=86400)
    # Fell below the limit: alarm over, S back to 0, reference moves on (the calibration stays).
    assert state == EvidenceState(calibration=state.calibration) and state.reference_end is None


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", '{"cusum": -1}', '{"cusum": "x"}', '{"cusum": NaN}'])
def test_bad_stored_state_starts_afresh(raw: str) -> None:
    assert EvidenceState.from_details(raw) == EvidenceState()


# --- Correlated nulls: windows that share a trailing reference ------------------------------------
HELD_POOL = 6  # reference lengths a held base-window reference is drawn from (window_metrics.HELD_POOL_FACTOR)
HELD_HOURS = 24  # hours a held hourly reference is drawn from (window_metrics.HELD_HORIZON_POOL)


class SharedReferenceNulls:
    """A synthetic no-drift stream whose tests share their reference, as the analyzers' windows do.

    Each window's traffic deviates from the population by ``u_w / sqrt(n_cur)`` (a scalar stand-in
    for its topic mix). A test's z is the standardised difference of the window's deviation and
    its reference's: N(0, 1) for each window alone, correlated across windows through the
    reference, and, while a run holds the reference, selected by the very luck that started the run.

    ``resampled`` (what the analyzers do): the reference is ``n_ref`` texts drawn afresh for each
    window from every text of the ``span`` windows before it, or, while a run holds it, of
    ``held_pool * span`` windows before the run. Otherwise (the earlier draw): the same hash-ordered
    sample of the reference period, so overlapping references share most of their sample.
    """

    def __init__(self, seed: int, windows: int, n_cur: int, n_ref: int, span: int, resampled: bool,
                 held_pool: int = HELD_POOL) -> None:
        self.rng = np.random.default_rng(seed)
        self.held_pool = held_pool
        self.n_cur, self.n_ref, self.span, self.resampled = n_cur, n_ref, span, resampled
        self.u = self.rng.standard_normal(windows)
        per_window = n_ref / span
        share = min(1.0, per_window / n_cur)
        v = (math.sqrt(share) * self.u + math.sqrt(1 - share) * self.rng.standard_normal(windows)) / math.sqrt(per_window)
        self.sample_prefix = np.r_[0.0, np.cumsum(v)]
        self.prefix = np.r_[0.0, np.cumsum(self.u)]

    def z(self, t: int, ref_end: int, held: bool) -> float | None:
        if ref_end - self.span < 0:
            return None
        if not self.resampled:
            reference = (self.sample_prefix[ref_end] - self.sample_prefix[ref_end - self.span]) / self.span
            n_ref = self.n_ref
        else:
            first = max(0, ref_end - self.span * (self.held_pool if held else 1))
            pool = (ref_end - first) * self.n_cur
            n_ref = min(self.n_ref, pool)
            fresh = self.rng.standard_normal() * math.sqrt(max(0.0, 1 / n_ref - 1 / pool))
            reference = (self.prefix[ref_end] - self.prefix[first]) / (ref_end - first) / math.sqrt(self.n_cur) + fresh
        return float((self.u[t] / math.sqrt(self.n_cur) - reference) / math.sqrt(1 / self.n_cur + 1 / n_ref))


def correlated_run(seed: int, weeks: float, window_s: int, granularity: str, n_cur: int, n_ref: int, span: int, *,
                   resampled: bool = True, hold_fraction: float | None = None,
                   held_pool: int = HELD_POOL) -> tuple[int, list[float]]:
    """Alarms of the real evidence_step on a shared-reference null stream (the reference follows the
    state as the analyzers' ``_periods`` does), and the raw z-values. ``resampled=False,
    hold_fraction=0`` is the earlier rule."""
    if hold_fraction is None:
        hold_fraction = drift.HOLD_FRACTIONS[granularity]
    windows = int(weeks * WEEK_WINDOWS * 60 / window_s)
    nulls = SharedReferenceNulls(seed, windows, n_cur, n_ref, span, resampled, held_pool)
    limit = horizon_limit(granularity, window_s, 0.5)
    state, count, raw = EvidenceState(), 0, []
    for t in range(windows):
        start = T0 + timedelta(seconds=t * window_s)
        held = state.reference_end
        ref_end = t if held is None else int((held - T0).total_seconds() // window_s)
        z = nulls.z(t, ref_end, held is not None)
        if z is not None:
            raw.append(z)
        before = state.alarm
        state = evidence_step(state, z, start, limit, hold_s=86400, span=span + 1, hold_fraction=hold_fraction)
        count += state.alarm and not before
    return count, raw


WEEK_WINDOWS = 10080


def long_run_variance(z: list[float], span: int) -> float:
    array = np.asarray(z) - np.mean(z)
    sums = np.convolve(array, np.ones(span), "valid")
    return float(np.mean(sums ** 2) / span)


def test_minute_windows_sharing_a_reference_stay_within_the_budget() -> None:
    """1 call/s: 60 texts a minute against 500 from the trailing hour (span 60 windows)."""
    weeks = 10
    count, _ = correlated_run(5, weeks, 60, "1m", 60, 500, 60)
    # Within the budget, 0.15 per metric-week (1.5 expected in 10 weeks, room for Poisson noise).
    assert count / weeks <= 0.15 * 3, count
    # The earlier draw (one hash-ordered sample shared by overlapping references, held behind every
    # run) made strongly correlated z's and far more alarms.
    earlier, raw = correlated_run(5, 4, 60, "1m", 60, 500, 60, resampled=False, hold_fraction=0.0)
    assert long_run_variance(raw, 60) > 3.0
    assert earlier / 4 > 1.0, earlier


def test_ten_minute_windows_at_a_low_rate_stay_within_the_budget() -> None:
    """0.05 call/s: 30 texts per 10-minute window against the 180 of the trailing hour (span 6)."""
    weeks = 40
    count, _ = correlated_run(6, weeks, 600, "1m", 30, 180, 6)
    assert count / weeks <= 0.15 * 2, count
    earlier, _ = correlated_run(6, weeks, 600, "1m", 30, 180, 6, resampled=False, hold_fraction=0.0)
    assert earlier / weeks > 1.0, earlier


def test_hours_sharing_a_held_reference_stay_within_the_budget() -> None:
    """Hourly tests of 3,000 texts against the hour before (3,000): held, the reference is drawn
    afresh each hour from the day before the run."""
    weeks = 600
    count, _ = correlated_run(7, weeks, 3600, "1h", 3000, 3000, 1, held_pool=HELD_HOURS)
    assert count / weeks <= 0.08 * 1.5, count
    # Holding the one hour before the run (the earlier rule) makes half of every later z its luck.
    earlier, _ = correlated_run(7, 100, 3600, "1h", 3000, 3000, 1, resampled=False, hold_fraction=0.0)
    assert earlier / 100 > 1.0, earlier
