"""Embedding drift: is the current window of texts drawn from the same distribution as the reference?

``embedding_drift(reference, current)`` is a two-sample test on embeddings that returns a
:class:`DriftResult` with an exact permutation p-value. Pure: arrays in, a result out, no I/O.

The default method, ``knn``, is built to catch what matters most in LLM traffic: a *new topic*,
a small cluster of prompts (or outputs) that the reference never had. Global tests dilute such a
cluster: Evidently's classifier AUC and a wide-kernel MMD both average over the whole window, so
a topic that is 10% of it barely moves them. A nearest-neighbour graph does not dilute it:

1. Pool both windows, centre them and keep their top 64 principal components (fitted on the
   pooled points, blind to which window each came from, so the test stays exact). Sentence
   embeddings share a large common direction; removing it makes cosine neighbours more topical
   (measured power went up slightly) and the neighbour search 6x cheaper at 384 dimensions.
   Then find each point's ``k`` nearest neighbours (cosine) once.
2. For each point count how many of its neighbours come from the *same* window. A point of a new
   topic sits among other current points, so almost all its neighbours are current; under the
   null hypothesis the count is roughly binomial.
3. Four statistics read the graph, two per side (current, reference):
   * the *tail count*: how many points have a same-window neighbourhood so pure that it would
     happen by chance only ~2% of the time (a new or vanished cluster lights these up);
   * the *homophily*: the mean share of same-window neighbours (Schilling's statistic, sensitive
     to diffuse shifts that move every point a little).
   Each is standardised by its permutation mean and spread, and the test statistic is their
   maximum, so one test covers both kinds of change with no multiple-testing inflation.
4. The null distribution comes from relabelling the pooled points at random. The graph does not
   change under relabelling, so every permutation is a sparse matrix product over a fixed
   adjacency matrix: all permutations together cost one ``(N x N, k per row) @ (N x P)`` product.

The p-value is ``(1 + #{permuted >= observed}) / (1 + P)``, exact under exchangeability, so the
false-positive rate is at most ``alpha`` whatever the embedding model or the window size.
``threshold`` is the calibrated critical value of the score (the permutation (1 - alpha) quantile)
so dashboards can draw it next to the score.

``method="mmd"`` is a plain RBF-kernel MMD permutation test (median-heuristic bandwidth) kept
for comparison; ``"auto"`` is ``knn``.

Evidence over time (what the default drift alert reads)
-------------------------------------------------------
One test per minute and segment at alpha 0.01 would give about 100 false flags per segment per
week. The alert therefore does not read single tests; it reads a one-sided CUSUM of their
evidence, per segment, drift metric (input, output) and horizon (minute windows, hours, days):

* each test's p-value becomes a z-value, ``z = Phi^-1(1 - p)`` (:func:`evidence_z`). Under no
  drift the permutation p-value is uniform or larger, so ``z`` is standard normal or smaller.
  When no permutation reached the observed score (p at its floor ``1/(1+P)``), the score's own
  normal tail, Bonferroni-corrected for the maximum of the four standardised statistics, refines
  it, so one strong hourly test can count for more than the permutation count allows. z is
  clipped to [-4, 8];
* the z-values of one segment's windows are not independent: windows whose trailing references
  overlap share those references' luck (the trailing hour of one minute window is 59/60 of the
  next one's), a held reference is the same luck for the whole run, and a fixed baseline is the
  same luck forever. Siegmund's formula below assumes independent N(0, 1)
  increments; on correlated ones it under-counts false alarms. So each z is first **calibrated on
  the segment's own history** (:class:`Calibration`, stored with the evidence): ``z~ = (z - m) / s``
  with ``m`` the mean of the segment's past z-values when it is positive (a baseline's constant
  luck; a negative mean is the test's ties, see :meth:`Calibration.standardise`) and ``s^2`` their
  long-run variance, estimated by overlapping batch means over ``span`` consecutive windows (the
  number of windows a reference spans, plus one: how far the sharing reaches), ``s`` at least 1.
  Both are averages over up to :data:`CALIBRATION_MEMORY` windows, winsorised at |z| = 3 so one
  shift does not swamp them, and start from a prior (mean 0, variance 1) worth
  :data:`CALIBRATION_PRIOR_N` windows. Windows of a held run (below) do not teach the calibration:
  they may be the shift;
* ``S_t = max(0, S_{t-1} + z~_t - k)`` with ``k = 0.5`` (:func:`evidence_step`): S drifts down
  under no drift and climbs by about ``z~ - k`` per window under a shift;
* an alarm starts when ``S_t >= h`` and ends when S falls back below ``h``; then S restarts at 0.
  ``h`` (:func:`cusum_limit`) comes from Siegmund's approximation of the CUSUM's average run
  length under the null, ``ARL0(h) = (exp(2kb) - 2kb - 1) / (2k^2)`` with ``b = h + 1.166``,
  set so that ``windows per week / ARL0(h)`` equals that horizon's share of the budget;
* the budget, ``LLMSIGHT_DRIFT_FALSE_ALARMS_PER_WEEK`` (default 0.5, half the target of at most
  one false drift alert per segment-week), is split between the two drift metrics and the
  horizons: 60% to minute windows, 32% to hours, 8% to days (:data:`HORIZON_SHARES`). With
  1-minute windows that is ``h`` = 9.2 for minutes, 5.8 for hours and 4.0 for days. Raising it
  lowers every ``h`` (earlier alerts, more false ones); the calibration keeps it a rate per week.

The evidence row stores ``S / h`` as its value with threshold 1.0 (``S``, ``h``, the raw ``z``,
the calibrated ``z_calibrated`` and the calibration are in its details), so the same rule reads
every horizon. While a run of evidence builds, it *holds* the trailing reference: the reference
ends where the run began (``since``), so a slow shift is not swallowed by the reference before the
evidence (or the longer horizon) has seen it; after ``LLMSIGHT_DRIFT_HOLD_SECONDS`` (default a
day) of one run the new traffic is accepted as the reference and the evidence restarts.

Where the correlation came from, and the two fixes besides the calibration
(``analyzers/window_metrics.py`` draws the references):

* **a reference drawn afresh for every window.** Base windows used to test against the same
  hash-ordered 500 texts of the trailing hour, most of which the next sixty 1-minute windows
  reused: every test carried that one sample's luck. Now each base window draws its reference
  sample at random (seeded by the window, so reruns agree) from up to
  ``LLMSIGHT_DRIFT_HORIZON_SAMPLE`` stored texts spread over the period: consecutive windows share
  the period's composition, not one sample of it;
* **a held reference drawn from a longer stretch.** A run starts *because* its reference was
  unlucky; holding that very reference made its luck the evidence of every later window (on the
  synthetic nulls below, 1.6 to 5.7 false alarms per metric-week against a budget of 0.15). A
  held base-window reference is drawn from six reference lengths before the run, whose luck is
  small. A held hourly reference is drawn afresh for each hour (a salted stratified draw) from
  the day before the run. The daily tests hold theirs only once S has come half-way to ``h``
  (:data:`HOLD_FRACTIONS`): a held day is the same luck for the run, and a day's run lasts at most
  the hold. On the synthetic nulls each horizon keeps within its budget.

Two guards from the no-shift banking77 stream (``analyzers/window_metrics.py``): a base window's test
counts as evidence only when its reference pool holds at least three times the window's texts
(the first hour of a feature held a 42-text reference for three hours and alarmed), and the
score's normal tail refines z beyond the permutation floor fully only with 200 texts a side or more,
and up to z = 4 below that (on a 37-text window a chance count gave z = 8, an alarm in one window;
stopping at the floor instead kept the demo's 10-second windows from ever alarming).

Why these and not a permutation calibration of the whole CUSUM: that would cost a test per
permutation and window. The calibration on the segment's own history works for any rate,
reference choice (a fixed baseline's luck is a constant the mean takes out) and correlation
structure, costs nothing, and what it learned is on every evidence row; the fresh and wider
reference draws remove most of the correlation at its source, so the calibration does not have
to give up power for it.

Unit tests (tests/unit/test_drift_evidence.py) run the rule on synthetic independent null
p-values and on synthetic **correlated** nulls (windows sharing a trailing reference, which runs
hold as the analyzers do) and check the false-alarm rate against the budget;
``llmsight bench drift-stream`` measures it end to end on a simulated week.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from llmsight import config
from llmsight.analyzers import settings

log = logging.getLogger("llmsight.analyzers")

METHODS = ("auto", "knn", "mmd")
TAIL_PROBABILITY = 0.02  # a neighbourhood this unlikely under the null counts as "pure"
PROJECTION_DIMS = 64
TORCH_MIN_POINTS = 4000  # pooled size from which the neighbour search runs in torch


@dataclass(frozen=True)
class DriftResult:
    """The outcome of one drift test.

    ``score`` is the test statistic (for ``knn``: the largest standardised statistic, a z-like
    number, about 0 without drift), ``threshold`` the score's critical value at ``alpha``,
    ``p_value`` the permutation p-value (None when the test could not run), ``drifted``
    ``p_value < alpha``. ``details`` is JSON-serialisable.
    """

    score: float
    threshold: float
    drifted: bool
    p_value: float | None
    method: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"score": self.score, "threshold": self.threshold, "drifted": self.drifted,
                "p_value": self.p_value, "method": self.method, "details": self.details}


# --- When a stored drift row counts as drifted --------------------------------------------------
# The one rule for every reader of the metrics table (dashboard, export). A row carries the
# analyzer's own verdict in ``details`` (``DriftResult.drifted``, taken at the alpha the analyzer
# ran with, which a reader in another process need not share), and that verdict wins. A row
# without one is judged like a DriftResult: p-value below alpha; with no p-value, score above the
# threshold; with neither, not drifted. NaN counts as missing. row_drifted() is the rule for
# Python callers, row_drifted_sql() the same rule as a ClickHouse expression; a unit test holds
# the two together on the boundary cases.
VERDICT_KEY = "drifted"


def stored_verdict(details: Any) -> bool | None:
    """The analyzer's verdict in a drift row's ``details`` (JSON text or dict), None when it has none."""
    if isinstance(details, (str, bytes)):
        try:
            details = json.loads(details) if details else None
        except ValueError:
            return None
    flag = details.get(VERDICT_KEY) if isinstance(details, dict) else None
    return flag if isinstance(flag, bool) else None


def row_drifted(value: float | None, threshold: float | None, p_value: float | None, details: Any = None,
                *, alpha: float | None = None) -> bool:
    """Whether a stored drift row counts as drifted (see the rule above); ``alpha`` defaults to ``LLMSIGHT_DRIFT_ALPHA``."""
    verdict = stored_verdict(details)
    if verdict is not None:
        return verdict
    if _present(p_value):
        return bool(p_value < config.resolve(settings.DRIFT_ALPHA, alpha, strict=True))
    if _present(threshold) and _present(value):
        return bool(value > threshold)
    return False


def row_drifted_sql(alpha: float | None = None, table: str = "") -> str:
    """row_drifted() as a ClickHouse expression over the metrics columns (``table.`` prefixes them)."""
    alpha = config.resolve(settings.DRIFT_ALPHA, alpha, strict=True)
    value, threshold, p_value, details = (f"{table}.{c}" if table else c
                                          for c in ("value", "threshold", "p_value", "details"))
    return (f"multiIf(JSONType({details}, '{VERDICT_KEY}') = 'Bool', JSONExtractBool({details}, '{VERDICT_KEY}'), "
            f"{p_value} IS NOT NULL AND NOT isNaN({p_value}), {p_value} < {float(alpha)!r}, "
            f"{threshold} IS NOT NULL AND NOT isNaN({threshold}), {value} > {threshold}, false)")


def _present(number: float | None) -> bool:
    return number is not None and not math.isnan(number)


def choose_k(n_points: int) -> int:
    """Neighbours per point: 10 for a pair of 500-text windows, up to 20 for large ones.

    k must stay well below the size of the smallest cluster worth catching (50 points for 10% of
    500), else a new cluster's points must reach into the reference for neighbours.
    """
    return int(min(20, max(5, n_points // 100)))


def embedding_drift(reference: np.ndarray, current: np.ndarray, method: str = "auto", *,
                    alpha: float | None = None, permutations: int | None = None, k: int | None = None,
                    seed: int = 0, min_samples: int | None = None,
                    dims: int | None = PROJECTION_DIMS) -> DriftResult:
    """Test whether ``current`` embeddings drifted from ``reference`` embeddings.

    Both are 2-D arrays with one row per text (any scale: rows are L2-normalised here).
    ``alpha`` (default ``LLMSIGHT_DRIFT_ALPHA``) is the false-positive rate, ``permutations``
    (default ``LLMSIGHT_DRIFT_PERMUTATIONS``) the size of the null sample, ``seed`` makes the
    result reproducible, ``dims`` is the number of principal components the ``knn`` method keeps
    (None keeps every dimension). With fewer than ``min_samples`` rows on either side (default
    ``LLMSIGHT_DRIFT_MIN_N``) no test is run: the result is not drifted and ``p_value`` is None.
    """
    if method not in METHODS:
        raise ValueError(f"unknown drift method {method!r}; expected one of {', '.join(METHODS)}")
    method = "knn" if method == "auto" else method
    alpha = config.resolve(settings.DRIFT_ALPHA, alpha, strict=True)
    permutations = config.resolve(settings.DRIFT_PERMUTATIONS, permutations, strict=True)
    min_samples = config.resolve(settings.DRIFT_MIN_N, min_samples, strict=True)
    reference = _unit_rows(reference)
    current = _unit_rows(current)
    n_ref, n_cur = len(reference), len(current)
    base = {"n_ref": n_ref, "n_cur": n_cur, "alpha": alpha, "permutations": permutations, "seed": seed}
    if reference.ndim != 2 or current.ndim != 2 or reference.shape[1] != current.shape[1]:
        raise ValueError(f"reference {reference.shape} and current {current.shape} must be 2-D with equal width")
    if min(n_ref, n_cur) < max(min_samples, 2):
        return DriftResult(0.0, math.nan, False, None, method,
                           {**base, "reason": f"too few texts (need {min_samples} per window)"})
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    # The BLAS calls here are small (a 384 x 384 eigendecomposition, thin products). OpenBLAS
    # threads spin while they wait, and on a busy 2-core host that made them 5-10x slower than
    # one thread (measured); the one big product runs in torch, which keeps its own threads.
    with one_blas_thread():
        if method == "knn":
            observed, null, extra = _knn_test(reference, current, k or choose_k(n_ref + n_cur), permutations,
                                              rng, dims)
        else:
            observed, null, extra = _mmd_test(reference, current, permutations, rng)
    p_value = float((1 + np.count_nonzero(null >= observed)) / (1 + permutations))
    threshold = float(np.quantile(null, 1 - alpha, method="higher"))
    elapsed_ms = (time.perf_counter() - started) * 1000
    details = {**base, **extra, "ms": round(elapsed_ms, 1)}
    log.debug("drift: %s n=%d+%d score=%.3f p=%.4f in %.0f ms", method, n_ref, n_cur, observed, p_value, elapsed_ms)
    return DriftResult(round(float(observed), 6), round(threshold, 6), p_value < alpha, p_value, method, details)


_blas_controller: list[Any] = []


def one_blas_thread() -> Any:
    """A context in which BLAS runs on one thread (a no-op without threadpoolctl).

    The controller, which finds the loaded BLAS libraries by scanning the process's shared objects,
    is made once: made per call it cost 1-8 ms, and a window of 40 segments asks for it 160 times.
    """
    if not _blas_controller:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return contextlib.nullcontext()
        _blas_controller.append(ThreadpoolController())
    return _blas_controller[0].limit(limits=1, user_api="blas")


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 2 and len(array):
        array = array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)
    return array


def principal_projection(pooled: np.ndarray, dims: int | None) -> np.ndarray:
    """Centre the rows, keep the top ``dims`` principal components, and re-normalise the rows."""
    if not dims or pooled.shape[1] <= dims:
        return pooled
    centred = pooled - pooled.mean(axis=0, dtype=np.float64).astype(np.float32)
    covariance = (centred.T @ centred).astype(np.float64)
    # Only the top ``dims`` eigenvectors (ascending order: the last columns are the top ones);
    # LAPACK's syevr for a subset takes about half the time of the full eigh (10 ms against 17 ms
    # at 384 dimensions, twice per segment and window).
    from scipy.linalg import eigh

    width = covariance.shape[0]
    _, axes = eigh(covariance, subset_by_index=[width - dims, width - 1], driver="evr")
    projected = centred @ axes.astype(np.float32)
    return projected / np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)


def nearest_neighbours(pooled: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices (N x k) of each row's k most cosine-similar other rows (rows are unit vectors).

    Computed in row blocks so that N = 10,000 needs a 40 MB block, not a 400 MB matrix. torch
    (installed with the server extra) does large windows: its top-k is about ten times cheaper
    than numpy's argpartition and uses every core. Small windows stay in numpy, where the whole
    search takes milliseconds and importing torch would cost seconds.
    """
    n = len(pooled)
    neighbours = np.empty((n, k), dtype=np.int32)
    torch: Any = None
    if n >= TORCH_MIN_POINTS:
        try:
            import torch
        except ImportError:
            pass
    if torch is not None:
        everything = torch.from_numpy(np.ascontiguousarray(pooled, dtype=np.float32))
        with torch.no_grad():
            for start in range(0, n, chunk):
                sims = everything[start:start + chunk] @ everything.T
                rows = torch.arange(sims.shape[0])
                sims[rows, start + rows] = -torch.inf  # a point is not its own neighbour
                neighbours[start:start + chunk] = torch.topk(sims, k, dim=1, sorted=False).indices.numpy()
        return neighbours
    for start in range(0, n, chunk):
        sims = pooled[start:start + chunk] @ pooled.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        neighbours[start:start + chunk] = np.argpartition(sims, n - k, axis=1)[:, n - k:]
    return neighbours


def tail_cut(k: int, share: float) -> int:
    """Smallest same-window count whose binomial tail probability is at most TAIL_PROBABILITY.

    With a small k even a fully same-window neighbourhood may be likelier than that (k = 5 at
    equal sizes: 1/32); then "all k neighbours" is the cut, so the statistic never goes blind.
    """
    from scipy.stats import binom

    for cut in range(1, k + 1):
        if binom.sf(cut - 1, k, share) <= TAIL_PROBABILITY:
            return cut
    return k


def _knn_test(reference: np.ndarray, current: np.ndarray, k: int, permutations: int,
              rng: np.random.Generator, dims: int | None) -> tuple[float, np.ndarray, dict[str, Any]]:
    from scipy import sparse

    n_ref, n_cur = len(reference), len(current)
    n = n_ref + n_cur
    k = min(k, n - 1)
    neighbours = nearest_neighbours(principal_projection(np.vstack([reference, current]), dims), k)
    adjacency = sparse.csr_matrix(
        (np.ones(n * k, dtype=np.float32), neighbours.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    # Column 0 holds the real labels (1 = current), the others the permutations.
    observed_labels = np.r_[np.zeros(n_ref), np.ones(n_cur)].astype(np.float32)
    shuffled = rng.permuted(np.tile(observed_labels, (permutations, 1)), axis=1)
    labels = np.ascontiguousarray(np.vstack([observed_labels, shuffled]).T)
    current_neighbours = np.asarray(adjacency @ labels)  # (n, P+1): how many neighbours are current
    is_cur = labels > 0.5
    same = np.where(is_cur, current_neighbours, k - current_neighbours)
    cut_cur = tail_cut(k, (n_cur - 1) / (n - 1))
    cut_ref = tail_cut(k, (n_ref - 1) / (n - 1))
    stats = np.stack([
        (same * is_cur).sum(axis=0) / (n_cur * k),            # homophily of the current window
        (same * ~is_cur).sum(axis=0) / (n_ref * k),           # homophily of the reference
        ((same >= cut_cur) & is_cur).sum(axis=0),             # current points in pure neighbourhoods
        ((same >= cut_ref) & ~is_cur).sum(axis=0),            # reference points in pure neighbourhoods
    ])
    null_mean = stats[:, 1:].mean(axis=1, keepdims=True)
    null_sd = stats[:, 1:].std(axis=1, keepdims=True)
    standardised = (stats - null_mean) / np.maximum(null_sd, 1e-9)
    combined = standardised.max(axis=0)
    names = ("homophily_cur", "homophily_ref", "pure_cur", "pure_ref")
    extra = {
        "k": k,
        "dims": dims,
        "z": {name: round(float(value), 3) for name, value in zip(names, standardised[:, 0], strict=True)},
        "homophily_cur": round(float(stats[0, 0]), 4),
        "homophily_ref": round(float(stats[1, 0]), 4),
        # Share of the current window in neighbourhoods too pure for chance, above what chance
        # gives: a rough size of what is new.
        "novel_share": round(max(0.0, float(stats[2, 0] - null_mean[2, 0]) / n_cur), 4),
        "vanished_share": round(max(0.0, float(stats[3, 0] - null_mean[3, 0]) / n_ref), 4),
    }
    return float(combined[0]), combined[1:], extra


def _mmd_test(reference: np.ndarray, current: np.ndarray, permutations: int,
              rng: np.random.Generator) -> tuple[float, np.ndarray, dict[str, Any]]:
    n_ref, n_cur = len(reference), len(current)
    pooled = np.vstack([reference, current])
    kernel = pooled @ pooled.T
    # Squared distances of unit vectors, in place: at N = 10,000 every copy is 400 MB.
    np.multiply(kernel, -2.0, out=kernel)
    np.add(kernel, 2.0, out=kernel)
    np.maximum(kernel, 0.0, out=kernel)
    # Median heuristic on a sample of pairs: the full upper triangle would need N^2/2 indices.
    first = rng.integers(0, len(pooled), 20_000)
    second = rng.integers(0, len(pooled), 20_000)
    distinct = first != second
    bandwidth = float(np.median(kernel[first[distinct], second[distinct]])) or 1.0
    np.multiply(kernel, -1.0 / bandwidth, out=kernel)
    np.exp(kernel, out=kernel)
    weights = np.empty((permutations + 1, len(pooled)), dtype=np.float32)
    base = np.r_[np.full(n_ref, 1.0 / n_ref), np.full(n_cur, -1.0 / n_cur)].astype(np.float32)
    weights[0] = base
    for row in range(1, permutations + 1):
        weights[row] = rng.permutation(base)
    # MMD^2 (biased) for every labelling at once: w^T K w per row of weights.
    mmd2 = np.einsum("pi,pi->p", weights @ kernel, weights)
    return float(mmd2[0]), mmd2[1:], {"bandwidth": round(bandwidth, 4)}


# --- Evidence over time: a CUSUM of the tests' z-values (see the module docstring) ---------------
CUSUM_K = 0.5
Z_CLIP = (-4.0, 8.0)
WEEK_S = 7 * 86400
# The share of the weekly false-alarm budget each horizon gets (split again between the two metrics).
HORIZON_SHARES = {"1m": 0.60, "1h": 0.32, "1d": 0.08}
HORIZON_SECONDS = {"1h": 3600, "1d": 86400}
DRIFT_METRICS_PER_SEGMENT = 2  # drift_input and drift_output share the budget


def evidence_z(p_value: float | None, score: float | None = None, permutations: int | None = None,
               method: str = "knn", n_statistics: int = 4) -> float | None:
    """The z-value of one test's evidence, ``Phi^-1(1 - p)``, clipped to :data:`Z_CLIP` (None without a p-value).

    For the ``knn`` method, when ``p_value`` is at the permutation floor ``1/(1+permutations)``
    the score's normal tail times ``n_statistics`` (Bonferroni over the maximum of the
    standardised statistics) is used if it is smaller.
    """
    from scipy.special import ndtr, ndtri  # the normal CDF and its inverse (scipy.stats' are 100x slower)

    if p_value is None or not math.isfinite(p_value):
        return None
    p = float(p_value)
    if (method == "knn" and permutations and score is not None and math.isfinite(score)
            and p <= 1.0 / (1 + permutations) + 1e-12):
        p = min(p, n_statistics * float(ndtr(-score)))
    if p <= 0.0:
        return Z_CLIP[1]
    z = float(-ndtri(min(p, 1.0)))
    return min(max(z, Z_CLIP[0]), Z_CLIP[1])


def cusum_arl0(limit: float, k: float = CUSUM_K) -> float:
    """Siegmund's approximation of a one-sided CUSUM's mean windows to a false alarm, N(0, 1) increments."""
    b = limit + 1.166
    return (math.exp(2 * k * b) - 2 * k * b - 1) / (2 * k * k)


def cusum_limit(windows_per_week: float, false_alarms_per_week: float, k: float = CUSUM_K) -> float:
    """The alarm level ``h`` at which ``windows_per_week / ARL0(h)`` is ``false_alarms_per_week``."""
    if windows_per_week <= 0 or false_alarms_per_week <= 0:
        raise ValueError("windows and false alarms per week must be above 0")
    wanted = windows_per_week / false_alarms_per_week
    low, high = 0.0, 100.0
    for _ in range(100):
        middle = (low + high) / 2
        if cusum_arl0(middle, k) < wanted:
            low = middle
        else:
            high = middle
    return round(high, 4)


def horizon_budget(granularity: str, false_alarms_per_week: float | None = None) -> float:
    """False alarms per week one drift metric of one segment may raise at this horizon."""
    total = float(config.resolve(settings.DRIFT_FALSE_ALARMS_PER_WEEK, false_alarms_per_week, strict=True))
    return total * HORIZON_SHARES.get(granularity, HORIZON_SHARES["1h"]) / DRIFT_METRICS_PER_SEGMENT


def horizon_limit(granularity: str, window_s: float, false_alarms_per_week: float | None = None) -> float:
    """The CUSUM alarm level of one drift metric at a horizon whose windows last ``window_s``."""
    return cusum_limit(WEEK_S / window_s, horizon_budget(granularity, false_alarms_per_week))


# How the z-values are calibrated on the segment's own history (see the module docstring).
# The trailing reference is held behind a run once S reaches this share of h (per horizon; see the
# module docstring: base windows draw a held reference from a wider pool, the rollups cannot).
HOLD_FRACTIONS = {"1m": 0.0, "1h": 0.0, "1d": 0.5}
HOLD_FRACTION = HOLD_FRACTIONS["1h"]
CALIBRATION_PRIOR_N = 60  # pseudo-windows of the prior (mean 0, long-run variance 1) a new series starts with
CALIBRATION_MEMORY = 4000  # windows: the estimates average every window up to this many, then forget
CALIBRATION_WINSOR = 3.0  # |z| above this counts as this much in the estimates (one shift cannot swamp them)
MAX_SPAN = 120


@dataclass(frozen=True)
class Calibration:
    """What a segment's null z-series looks like: its mean and long-run variance, from its own history.

    ``n`` windows were averaged; ``mean`` and ``lrvar`` are the raw estimates (the prior is mixed in
    by :meth:`standardise`); ``recent`` holds the last ``span`` z-values (winsorised), the overlapping
    batch the long-run variance is estimated from.
    """

    n: int = 0
    mean: float = 0.0
    lrvar: float = 1.0
    lr_n: int = 0
    recent: tuple[float, ...] = ()

    def standardise(self, z: float) -> float:
        """``(z - mean) / sd``: the prior shrinks both until the history is long; sd is never below 1
        and a negative mean counts as 0.

        Under no drift the permutation p-value makes z at most standard normal; a negative mean is the
        test's ties (p = 1 gives z = -4), a few large negative values that the CUSUM's floor at 0
        ignores. Centring on it would shift every other window up (on a real no-shift stream it
        turned k = 0.5 into about 0.1 and raised false alarms). A positive mean, such as a fixed
        baseline's luck, is taken out."""
        mean = max(0.0, self.n * self.mean / (self.n + CALIBRATION_PRIOR_N))
        lrvar = (self.lr_n * self.lrvar + CALIBRATION_PRIOR_N) / (self.lr_n + CALIBRATION_PRIOR_N)
        return (z - mean) / math.sqrt(max(lrvar, 1.0))

    def update(self, z: float, span: int) -> Calibration:
        """The estimates with one more null window (overlapping batch means of ``span`` windows)."""
        z = min(max(z, -CALIBRATION_WINSOR), CALIBRATION_WINSOR)
        n = self.n + 1
        mean = self.mean + (z - self.mean) / min(n, CALIBRATION_MEMORY)
        recent = (*self.recent, z)[-max(1, min(span, MAX_SPAN)):]
        lrvar, lr_n = self.lrvar, self.lr_n
        if len(recent) == max(1, min(span, MAX_SPAN)):
            batch = sum(recent) - len(recent) * mean
            lr_n += 1
            lrvar += (batch * batch / len(recent) - lrvar) / min(lr_n, CALIBRATION_MEMORY)
        return Calibration(n, mean, lrvar, lr_n, recent)

    def as_details(self) -> dict[str, Any]:
        return {"n": self.n, "mean": round(self.mean, 5), "lrvar": round(self.lrvar, 5), "lr_n": self.lr_n,
                "recent": [round(z, 3) for z in self.recent]}

    @classmethod
    def from_details(cls, raw: Any) -> Calibration:
        if not isinstance(raw, dict):
            return cls()
        try:
            n, lr_n = int(raw.get("n") or 0), int(raw.get("lr_n") or 0)
            mean, lrvar = float(raw.get("mean") or 0.0), float(raw.get("lrvar", 1.0))
            recent = tuple(float(z) for z in raw.get("recent") or ())
        except (TypeError, ValueError):
            return cls()
        if (n < 0 or lr_n < 0 or not math.isfinite(mean) or not math.isfinite(lrvar) or lrvar < 0
                or not all(math.isfinite(z) for z in recent)):
            return cls()
        return cls(n, mean, lrvar, lr_n, recent[-MAX_SPAN:])


@dataclass(frozen=True)
class EvidenceState:
    """The sequential drift evidence of one segment, metric and horizon after a window.

    ``cusum`` is S, ``since`` the start of the current run of S above 0, ``held`` whether the run
    has reached ``HOLD_FRACTION`` of the limit (from then on the trailing reference ends at
    ``since``), ``alarm_since`` the start of the current alarm (None when there is none), and
    ``calibration`` what the segment's z-values look like when nothing changes.
    """

    cusum: float = 0.0
    since: datetime | None = None
    alarm_since: datetime | None = None
    held: bool = False
    calibration: Calibration = field(default_factory=Calibration)

    @property
    def alarm(self) -> bool:
        return self.alarm_since is not None

    @property
    def reference_end(self) -> datetime | None:
        """Where the trailing reference ends while this run holds it (None: it trails the window)."""
        return self.since if self.held else None

    def restarted(self) -> EvidenceState:
        """No run of evidence, the calibration kept."""
        return EvidenceState(calibration=self.calibration)

    def as_details(self) -> dict[str, Any]:
        return {"cusum": round(self.cusum, 4), "since": _iso(self.since), "alarm_since": _iso(self.alarm_since),
                "held": self.held, "calibration": self.calibration.as_details()}

    @classmethod
    def from_details(cls, details: Any) -> EvidenceState:
        """The state stored in an evidence row's details (a fresh state when it holds none)."""
        if isinstance(details, (str, bytes)):
            try:
                details = json.loads(details) if details else {}
            except ValueError:
                details = {}
        if not isinstance(details, dict):
            return cls()
        try:
            cusum = float(details.get("cusum") or 0.0)
        except (TypeError, ValueError):
            return cls()
        if not math.isfinite(cusum) or cusum < 0:
            return cls()
        since = _parse_iso(details.get("since"))
        # Rows written before "held" existed held the reference behind every run.
        held = bool(details.get("held", since is not None))
        return cls(cusum, since, _parse_iso(details.get("alarm_since")), held,
                   Calibration.from_details(details.get("calibration")))


def evidence_step(state: EvidenceState, z: float | None, window_start: datetime, limit: float, *,
                  k: float = CUSUM_K, hold_s: float | None = None, span: int = 1,
                  hold_fraction: float = HOLD_FRACTION) -> EvidenceState:
    """The evidence after one more window whose test gave ``z`` (None: no test, nothing changes).

    ``z`` is standardised by the state's calibration first (:meth:`Calibration.standardise`); a window
    outside a held run then updates the calibration, with ``span`` windows per batch (the number of
    windows a trailing reference spans: the reach of their correlation). The run holds the trailing
    reference once S reaches ``hold_fraction`` of ``limit``. A run of evidence older
    than ``hold_s`` (default ``LLMSIGHT_DRIFT_HOLD_SECONDS``) is dropped first: what it saw is the
    new normal.
    """
    hold = config.resolve(settings.DRIFT_HOLD_SECONDS, hold_s, strict=True)
    if state.since is not None and window_start - state.since >= timedelta(seconds=hold):
        state = state.restarted()
    if z is None:
        return state
    calibration = state.calibration
    # Only the history outside held runs is the segment's null: a held run may be a real shift.
    learned = calibration if state.held else calibration.update(z, span)
    cusum = max(0.0, state.cusum + calibration.standardise(z) - k)
    if cusum >= limit:
        return EvidenceState(cusum, state.since or window_start, state.alarm_since or window_start, True, learned)
    if state.alarm or cusum == 0.0:
        return EvidenceState(calibration=learned)  # an alarm that ends restarts the evidence, as does a run at 0
    return EvidenceState(cusum, state.since or window_start, None, state.held or cusum >= hold_fraction * limit,
                         learned)


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    from datetime import timezone

    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
