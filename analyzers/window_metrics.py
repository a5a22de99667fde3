"""The metric rows of one window: the I/O around the pure analyzers, for every segment of the window.

For each segment (service × name × model × prompt_version) with calls in the window:

* operations: volume, error rate, latency and time-to-first-token percentiles, tokens, cost,
  output length, refusal rate; each with the reference period's mean as its baseline;
* toxicity of outputs and inputs: the share of sampled texts the scorer calls toxic, with the
  most toxic examples (trace id and text) as evidence;
* acceptance, mean score, edit rate and feedback count, from feedback joined by trace id, compared
  with the reference period by :func:`llmsight.analyzers.acceptance.compare`;
* drift of inputs and outputs against the reference period, with the explanation of what changed.

The reference period is either the trailing ``LLMSIGHT_REFERENCE_SECONDS`` before the window or a
fixed baseline (``LLMSIGHT_BASELINE``, or else the first ``LLMSIGHT_REFERENCE_SECONDS`` of the
feature's traffic). The window itself is always cut out of its reference. A segment with too few
calls of its own in the reference (a prompt version just shipped) is compared with its feature's
traffic instead, which is what makes a bad release visible in its very first windows.

One failing segment or signal is logged and skipped; the others are still written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from llmsight.analyzers.windows import (
    FEATURE_KEYS,
    SEGMENT_KEYS,
    Calls,
    MetricRow,
    Period,
    Window,
    count_calls,
    feature_start,
    read_calls,
    read_feedback,
    reference_means,
    segments_in,
)
from llmsight.store import names

log = logging.getLogger("llmsight.scheduler.service")

_EXAMPLES = 3


@dataclass(frozen=True)
class AnalysisSettings:
    """How windows are analyzed (read from ``LLMSIGHT_*`` by :meth:`from_env`)."""

    reference: str = "trailing"  # or "baseline"
    reference_s: int = 3600
    baseline: tuple[datetime, datetime] | None = None
    sample: int = 500
    drift_min_n: int = 20

    @classmethod
    def from_env(cls) -> AnalysisSettings:
        from llmsight import config
        from llmsight.analyzers import settings
        from llmsight.schema import parse_ts

        raw = config.resolve(settings.BASELINE, strict=True)
        baseline = None
        if raw:
            first, _, last = raw.partition("/")
            baseline = (parse_ts(first.strip()), parse_ts(last.strip()))
        return cls(reference=config.resolve(settings.REFERENCE, strict=True),
                   reference_s=config.resolve(settings.REFERENCE_SECONDS, strict=True), baseline=baseline,
                   sample=config.resolve(settings.SAMPLE_PER_WINDOW, strict=True),
                   drift_min_n=config.resolve(settings.DRIFT_MIN_N, strict=True))


class WindowAnalyzer:
    """Computes the metric rows of a window. The embedder and the toxicity scorer load lazily, once."""

    def __init__(self, client: Any, settings: AnalysisSettings | None = None, *, embeddings: Any = None,
                 toxicity: Any = None) -> None:
        self.client = client
        self.settings = settings or AnalysisSettings.from_env()
        self._embeddings = embeddings
        self._toxicity = toxicity
        self.failures = 0
        self._stopping = False

    def stop(self) -> None:
        """Make a window under way end after its current segment (the service is shutting down)."""
        self._stopping = True

    # -- heavy parts, loaded on first use --------------------------------------------------------
    @property
    def embeddings(self) -> Any:
        if self._embeddings is None:
            from llmsight.analyzers.embeddings import Embedder, EmbeddingCache

            self._embeddings = EmbeddingCache(self.client, Embedder())
        return self._embeddings

    @property
    def toxicity(self) -> Any:
        if self._toxicity is None:
            from llmsight.analyzers.toxicity import ToxicityScorer

            # Through the cache, so the sentences the scorer embeds on its own are embedded once.
            self._toxicity = ToxicityScorer(embedder=self.embeddings)
        return self._toxicity

    def warm_up(self) -> None:
        """Load the embedding model and the toxicity scorer now rather than in the first window."""
        vectors = self.embeddings.encode(["warm up"])
        self.toxicity.score_embeddings(vectors, ["warm up"])

    # -- one window ----------------------------------------------------------------------------
    def analyze(self, window: Window) -> list[MetricRow]:
        """Every metric row of ``window``; a failing segment or signal is logged and left out."""
        started = time.perf_counter()
        rows: list[MetricRow] = []
        segments = segments_in(self.client, window)
        for segment in segments:
            if self._stopping:
                break
            rows.extend(self._segment(window, segment))
        log.info("scheduler: window %s: %d segments, %d metric rows in %.0f ms", window, len(segments),
                 len(rows), (time.perf_counter() - started) * 1000)
        return rows

    def reference(self, window: Window, segment: dict[str, str]) -> tuple[Period, tuple[str, ...]]:
        """The reference period of a segment and whether it is the segment's own traffic or its feature's."""
        cut = (window.start, window.end)
        if self.settings.reference == "baseline":
            if self.settings.baseline is not None:
                period = Period(*self.settings.baseline, exclude=cut)
            else:
                first = feature_start(self.client, segment) or window.start
                period = Period(first, first + timedelta(seconds=self.settings.reference_s), exclude=cut)
        else:
            period = Period(window.start - timedelta(seconds=self.settings.reference_s), window.start)
        own = count_calls(self.client, period, segment, SEGMENT_KEYS)
        return period, (SEGMENT_KEYS if own >= self.settings.drift_min_n else FEATURE_KEYS)

    def _segment(self, window: Window, segment: dict[str, str]) -> list[MetricRow]:
        rows: list[MetricRow] = []
        try:
            period, keys = self.reference(window, segment)
            current = read_calls(self.client, Period(window.start, window.end), segment, SEGMENT_KEYS,
                                 self.settings.sample)
        except Exception:
            self.failures += 1
            log.exception("scheduler: window %s segment %s: reading failed", window, "/".join(segment.values()))
            return rows
        scope = {"reference": {"from": period.start, "to": period.end,
                               "scope": "segment" if keys == SEGMENT_KEYS else "feature"}}
        steps = (("operations", lambda: self._operations(window, segment, current, period, keys)),
                 ("toxicity", lambda: self._toxicity_rows(window, segment, current, period, keys)),
                 ("acceptance", lambda: self._acceptance(window, segment, period, keys, scope)),
                 ("drift", lambda: self._drift(window, segment, current, period, keys, scope)))
        for name, compute in steps:
            try:
                rows.extend(compute())
            except Exception:
                self.failures += 1
                log.exception("scheduler: window %s segment %s: %s failed", window, "/".join(segment.values()), name)
        return rows

    def _operations(self, window: Window, segment: dict[str, str], calls: Calls, period: Period,
                    keys: tuple[str, ...]) -> list[MetricRow]:
        from llmsight.analyzers import operations

        figures = operations.window_figures(calls)
        baselines = reference_means(self.client, list(figures), period, segment, keys)
        return [MetricRow(window, segment, metric, value, n, baseline=baselines.get(metric))
                for metric, (value, n) in figures.items()]

    def _toxicity_rows(self, window: Window, segment: dict[str, str], calls: Calls, period: Period,
                       keys: tuple[str, ...]) -> list[MetricRow]:
        rows = []
        baselines = reference_means(self.client, [names.TOXICITY_OUTPUT, names.TOXICITY_INPUT], period, segment, keys)
        for metric, texts in ((names.TOXICITY_OUTPUT, calls.sample_outputs), (names.TOXICITY_INPUT, calls.sample_inputs)):
            if not texts:
                continue
            probabilities = np.asarray(self.toxicity.score_embeddings(self.embeddings.encode(texts), texts))
            toxic = np.asarray(self.toxicity.is_toxic(probabilities))
            order = np.argsort(-probabilities, kind="stable")[:_EXAMPLES]
            examples = [{"trace_id": calls.sample_trace_ids[i], "text": texts[i][:500],
                         "score": round(float(probabilities[i]), 4)} for i in order if toxic[i]]
            rows.append(MetricRow(window, segment, metric, float(toxic.mean()), len(texts), baseline=baselines.get(metric),
                                  threshold=float(self.toxicity.threshold),
                                  details={"examples": examples, "toxic": int(toxic.sum())}))
        return rows

    def _acceptance(self, window: Window, segment: dict[str, str], period: Period, keys: tuple[str, ...],
                    scope: dict[str, Any]) -> list[MetricRow]:
        from llmsight.analyzers import acceptance

        current = read_feedback(self.client, Period(window.start, window.end), segment, SEGMENT_KEYS)
        if not current:
            return []
        reference = read_feedback(self.client, period, segment, keys)
        now, before = acceptance.summarize(current), acceptance.summarize(reference)
        return acceptance_rows(window, segment, now, acceptance.compare(before, now), current, scope)

    def _drift(self, window: Window, segment: dict[str, str], calls: Calls, period: Period,
               keys: tuple[str, ...], scope: dict[str, Any]) -> list[MetricRow]:
        from llmsight.analyzers.drift import embedding_drift

        minimum = self.settings.drift_min_n
        if len(calls.sample_inputs) < minimum:
            return []
        reference = read_calls(self.client, period, segment, keys, self.settings.sample)
        if len(reference.sample_inputs) < minimum:
            return []
        rows = []
        for metric, cur_texts, ref_texts in ((names.DRIFT_INPUT, calls.sample_inputs, reference.sample_inputs),
                                             (names.DRIFT_OUTPUT, calls.sample_outputs, reference.sample_outputs)):
            cur = self.embeddings.encode(cur_texts)
            ref = self.embeddings.encode(ref_texts)
            result = embedding_drift(ref, cur)
            details = dict(scope)
            details.update(_drift_details(result, ref, cur, ref_texts, cur_texts, calls.sample_trace_ids))
            rows.append(MetricRow(window, segment, metric, float(result.score), len(cur_texts),
                                  p_value=result.p_value, threshold=result.threshold, details=details))
        return rows


def acceptance_rows(window: Window, segment: dict[str, str], summary: Any, result: Any, current: list[tuple],
                    scope: dict[str, Any]) -> list[MetricRow]:
    """Acceptance (compared with the reference), mean score, edit rate and feedback count of a window."""
    rejected = [trace for trace, accepted, _, _ in current if accepted == 0][:_EXAMPLES]
    details = {**scope, "method": result.method, "reason": result.reason, "regressed": result.regressed,
               "current_ci": result.current_ci, "baseline_ci": result.baseline_ci,
               "difference": result.difference, "difference_ci": result.difference_ci,
               "n_baseline": result.n_baseline, "examples": [{"trace_id": t, "text": "rejected"} for t in rejected]}
    rows = [MetricRow(window, segment, names.FEEDBACK_N, float(summary.n), summary.n)]
    if summary.acceptance_rate is not None:
        rows.append(MetricRow(window, segment, names.ACCEPTANCE, summary.acceptance_rate, summary.judged,
                              baseline=result.baseline_rate, p_value=result.p_value, details=details))
    if summary.score_mean is not None:
        rows.append(MetricRow(window, segment, names.SCORE_MEAN, summary.score_mean, summary.score_n))
    if summary.edit_rate is not None:
        rows.append(MetricRow(window, segment, names.EDIT_RATE, summary.edit_rate, summary.n))
    return rows


def _drift_details(result: Any, ref: np.ndarray, cur: np.ndarray, ref_texts: list[str], cur_texts: list[str],
                   trace_ids: list[str]) -> dict[str, Any]:
    details: dict[str, Any] = {"method": result.method, "drifted": bool(result.drifted)}
    extra = getattr(result, "details", None)
    if isinstance(extra, dict):
        # Timings vary run to run; rows must not (a rerun writes identical rows).
        details.update({k: v for k, v in extra.items() if k not in ("ms", "seconds", "elapsed_ms")})
    try:
        from llmsight.analyzers import topics

        details["topics"] = topics.explain_drift(ref, cur, ref_texts, cur_texts)
    except Exception:  # the explanation is a help, never a reason to lose the score
        log.warning("scheduler: drift explanation failed", exc_info=True)
    details["examples"] = [{"trace_id": t, "text": x[:300]} for t, x in list(zip(trace_ids, cur_texts, strict=True))[:_EXAMPLES]]
    return details
