"""Acceptance: how often users take what the model gives them, and whether that got worse.

Pure functions, no I/O; the scheduler reads feedback from the store and calls them.

* :func:`summarize` turns feedback rows into a :class:`FeedbackSummary`: the acceptance rate with
  its Wilson interval, thumbs up and down, the mean score and the edit rate.
* :func:`compare` decides whether the current acceptance rate regressed from a baseline. A
  regression needs all three of:

  1. significance: a one-sided test that the current rate is *lower*, with ``p < alpha``. It is
     Fisher's exact test when any expected cell count is below 5 (where the normal
     approximation is poor), else the pooled two-proportion z-test;
  2. size: the drop ``baseline_rate - current_rate`` is at least ``min_effect``, so that a tiny
     but significant drop over huge traffic does not page anyone;
  3. evidence: both sides have at least ``min_n`` judged feedback events.

* :func:`wilson_interval` is the interval the dashboard and the export draw around every rate;
  :func:`newcombe_interval` is the matching interval of a difference of two rates (Newcombe's
  hybrid score method, "method 10" of Newcombe 1998), reported with each comparison.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from llmsight.analyzers import settings

DEFAULT_ALPHA: float = settings.ACCEPTANCE_ALPHA.default
DEFAULT_MIN_EFFECT: float = settings.ACCEPTANCE_MIN_EFFECT.default
DEFAULT_MIN_N: int = settings.ACCEPTANCE_MIN_N.default

Interval = tuple[float, float]
# Rates are ratios of ints: 0.70 - 0.65 is 0.0499999... in floats and must still count as 0.05.
_EPS = 1e-9


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval of a proportion; ``(0.0, 1.0)`` when there is no data (``n == 0``)."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At p=0 or p=1 the exact bound is 0 or 1; the formula gives it only up to float noise.
    lower = 0.0 if successes == 0 else max(0.0, centre - half)
    upper = 1.0 if successes == n else min(1.0, centre + half)
    return (lower, upper)


def newcombe_interval(successes_a: int, n_a: int, successes_b: int, n_b: int,
                      confidence: float = 0.95) -> Interval:
    """Interval of the difference ``rate_b - rate_a`` from the two Wilson intervals (Newcombe's method 10)."""
    if n_a == 0 or n_b == 0:
        return (-1.0, 1.0)
    p_a, p_b = successes_a / n_a, successes_b / n_b
    lo_a, hi_a = wilson_interval(successes_a, n_a, confidence)
    lo_b, hi_b = wilson_interval(successes_b, n_b, confidence)
    difference = p_b - p_a
    lower = difference - math.sqrt((p_b - lo_b) ** 2 + (hi_a - p_a) ** 2)
    upper = difference + math.sqrt((hi_b - p_b) ** 2 + (p_a - lo_a) ** 2)
    return (max(-1.0, lower), min(1.0, upper))


@dataclass(frozen=True)
class FeedbackSummary:
    """What a window's feedback says. Rates are ``None`` when nothing was given to compute them from."""

    n: int                       # feedback events
    accepted: int                # thumbs up: accepted is true
    rejected: int                # thumbs down: accepted is false
    acceptance_rate: float | None
    acceptance_ci: Interval
    score_n: int
    score_mean: float | None
    edited: int
    edit_rate: float | None

    @property
    def judged(self) -> int:
        """Feedback events that said yes or no (the acceptance rate's denominator)."""
        return self.accepted + self.rejected


def _fields(row: Any) -> tuple[Any, Any, Any]:
    """(accepted, score, edited) of one row: a mapping with feedback columns, or the scheduler's tuple."""
    if isinstance(row, Mapping):
        edited = row.get("edited", None)
        if edited is None:
            edited = bool(row.get("edited_output") or "")
        return row.get("accepted"), row.get("score"), edited
    # The scheduler's rows: (trace_id, accepted, score, edited).
    _, accepted, score, edited = row
    return accepted, score, edited


def _missing(value: Any) -> bool:
    # None from Python, NaN or pandas.NA from a DataFrame's nullable columns.
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:  # pandas.NA refuses bool()
        return True


def _rows(feedback: Any) -> Iterable[Any]:
    if hasattr(feedback, "to_dict") and hasattr(feedback, "columns"):  # a pandas DataFrame
        return feedback.to_dict("records")
    return feedback


def summarize(feedback: Any, confidence: float = 0.95) -> FeedbackSummary:
    """Summarize feedback rows.

    ``feedback`` is a pandas DataFrame with the ``feedback`` table's columns (``accepted``,
    ``score``, ``edited_output``), an iterable of such dicts, or the scheduler's tuples
    ``(trace_id, accepted, score, edited)``. Missing ``accepted`` or ``score`` values (None, NaN)
    are left out of their own figure only; every row counts towards ``n`` and the edit rate.
    """
    n = accepted = rejected = edited = 0
    scores: list[float] = []
    for row in _rows(feedback):
        verdict, score, was_edited = _fields(row)
        n += 1
        if not _missing(verdict):
            if bool(verdict):
                accepted += 1
            else:
                rejected += 1
        if not _missing(score):
            scores.append(float(score))
        if not _missing(was_edited) and bool(was_edited):
            edited += 1
    judged = accepted + rejected
    return FeedbackSummary(
        n=n, accepted=accepted, rejected=rejected,
        acceptance_rate=accepted / judged if judged else None,
        acceptance_ci=wilson_interval(accepted, judged, confidence),
        score_n=len(scores), score_mean=sum(scores) / len(scores) if scores else None,
        edited=edited, edit_rate=edited / n if n else None,
    )


@dataclass(frozen=True)
class AcceptanceResult:
    """The comparison of a current acceptance rate with a baseline (``difference = current - baseline``)."""

    baseline_rate: float | None
    current_rate: float | None
    difference: float | None
    p_value: float | None          # one-sided, H1: current rate < baseline rate; None without data
    regressed: bool
    n_baseline: int
    n_current: int
    baseline_ci: Interval
    current_ci: Interval
    difference_ci: Interval
    method: str                    # "z-test", "fisher" or "none"
    reason: str                    # why it did or did not count as a regression, in words


Counts = tuple[int, int]
Side = FeedbackSummary | Counts | Sequence[Any]


def _counts(side: Side) -> Counts:
    """(accepted, judged) from a summary, an ``(accepted, n)`` pair or a sequence of verdicts."""
    if isinstance(side, FeedbackSummary):
        return side.accepted, side.judged
    if (isinstance(side, tuple) and len(side) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                         for v in side)):
        successes, n = side
        if not 0 <= successes <= n:
            raise ValueError(f"need 0 <= accepted <= n, got {side}")
        return successes, n
    verdicts = [bool(v) for v in side if not _missing(v)]
    return sum(verdicts), len(verdicts)


def _one_sided_p(acc_b: int, n_b: int, acc_c: int, n_c: int) -> tuple[float, str]:
    """P-value of "current rate < baseline rate", and the test used."""
    pooled = (acc_b + acc_c) / (n_b + n_c)
    expected = (pooled * n_b, (1 - pooled) * n_b, pooled * n_c, (1 - pooled) * n_c)
    if min(expected) < 5:
        # Odds of acceptance higher in the baseline row than in the current row.
        table = [[acc_b, n_b - acc_b], [acc_c, n_c - acc_c]]
        return float(stats.fisher_exact(table, alternative="greater").pvalue), "fisher"
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_b + 1 / n_c))
    z = (acc_b / n_b - acc_c / n_c) / se
    return float(stats.norm.sf(z)), "z-test"


def compare(baseline: Side, current: Side, alpha: float = DEFAULT_ALPHA, min_effect: float = DEFAULT_MIN_EFFECT,
            min_n: int = DEFAULT_MIN_N, confidence: float = 0.95) -> AcceptanceResult:
    """Did acceptance regress from ``baseline`` to ``current``?

    Each side is a :class:`FeedbackSummary`, an ``(accepted, n)`` pair of ints, or a sequence of
    verdicts (truthy = accepted; None and NaN are skipped). ``regressed`` is true only when the
    drop is significant (one-sided ``p < alpha``), at least ``min_effect`` (absolute, e.g. 0.05 is
    five points) and both sides have ``min_n`` verdicts or more.
    """
    acc_b, n_b = _counts(baseline)
    acc_c, n_c = _counts(current)
    rate_b = acc_b / n_b if n_b else None
    rate_c = acc_c / n_c if n_c else None
    common = dict(n_baseline=n_b, n_current=n_c, baseline_ci=wilson_interval(acc_b, n_b, confidence),
                  current_ci=wilson_interval(acc_c, n_c, confidence),
                  difference_ci=newcombe_interval(acc_b, n_b, acc_c, n_c, confidence))
    if rate_b is None or rate_c is None:
        return AcceptanceResult(rate_b, rate_c, None, None, False, method="none",
                                reason="no feedback on one side", **common)
    if acc_b + acc_c in (0, n_b + n_c):
        # Every verdict the same on both sides: nothing can have dropped.
        p_value, method = 1.0, "none"
    else:
        p_value, method = _one_sided_p(acc_b, n_b, acc_c, n_c)
    drop = rate_b - rate_c
    if min(n_b, n_c) < min_n:
        reason = f"too little feedback: {n_b} baseline and {n_c} current verdicts, need {min_n} each"
    elif p_value >= alpha:
        reason = f"not significant: p={p_value:.3g} >= alpha={alpha}"
    elif drop < min_effect - _EPS:
        reason = f"drop of {drop:.3f} is below the minimum effect {min_effect}"
    else:
        reason = f"acceptance fell from {rate_b:.3f} to {rate_c:.3f} (p={p_value:.3g})"
    regressed = min(n_b, n_c) >= min_n and p_value < alpha and drop >= min_effect - _EPS
    return AcceptanceResult(rate_b, rate_c, rate_c - rate_b, p_value, regressed, method=method, reason=reason,
                            **common)
