"""The metric rows of one window: the I/O around the pure analyzers, for every segment of the window.

For each segment (service × name × model × prompt_version) with calls in the window:

* operations: volume, error rate, latency and time-to-first-token percentiles, tokens, cost,
  output length, refusal rate; each with the reference period's mean as its baseline;
* toxicity of outputs and inputs: the share of sampled texts the scorer calls toxic, with the
  most toxic examples (trace id and text) as evidence;
* acceptance, mean score, edit rate and feedback count, from feedback joined by trace id, compared
  with the reference period by :func:`llmsight.analyzers.acceptance.compare`;
* drift of inputs and outputs against the reference period, with the explanation of what changed
  (``grown_topic``: the topic that grew, its share before and after with 95% intervals, and five
  of its texts with their trace ids), and next to each drift row its sequential evidence row
  (``drift_*_evidence``, a CUSUM over the windows of the same horizon, see
  :mod:`llmsight.analyzers.drift`). Hourly and daily windows test up to
  ``LLMSIGHT_DRIFT_HORIZON_SAMPLE`` texts per side, spread over the period and read from the
  embeddings the minute windows stored: a longer horizon embeds nothing new.

The reference period is either the trailing ``LLMSIGHT_REFERENCE_SECONDS`` before the window or a
fixed baseline (``LLMSIGHT_BASELINE``, or else the first ``LLMSIGHT_REFERENCE_SECONDS`` of the
feature's traffic). The window itself is always cut out of its reference. A trailing reference is
at least as long as the window's horizon, and once a run of drift evidence has come part of the
way to its alarm it ends where the run began (held at most ``LLMSIGHT_DRIFT_HOLD_SECONDS``), so
it cannot swallow a shift the evidence has not finished weighing. When the evidence alarms, its
grown topic is named over the whole run (every window since it began, against as many texts of
the held reference), not over the last window's few texts. A segment with too few
calls of its own in the reference (a prompt version just shipped) is compared with its feature's
traffic instead, which is what makes a bad release visible in its very first windows.

One failing segment or signal is logged and skipped; the others are still written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from llmsight.analyzers.windows import (
    FEATURE_KEYS,
    ROLLUPS,
    SEGMENT_KEYS,
    Calls,
    Key,
    MetricRow,
    Period,
    Window,
    count_calls_many,
    feature_starts,
    key_of,
    latest_details_many,
    read_calls_many,
    read_feedback_many,
    read_texts_stratified_many,
    reference_means_many,
    segments_in,
)
from llmsight.store import names

log = logging.getLogger("llmsight.scheduler.service")

_EXAMPLES = 3
# Topics are explained for drifted windows and those with a p-value below this (about one in ten
# windows when nothing changed).
EXPLAIN_BELOW_P = 0.1
_TOPIC_EXAMPLES = 5  # texts of the grown topic on a drift row (the alert page and notifications show them)
# A held trailing reference is drawn from this many reference lengths before the run (its luck,
# which every window of the run shares, shrinks with the pool; see analyzers/drift.py).
HELD_POOL_FACTOR = 6
HELD_HORIZON_POOL = timedelta(days=1)  # where a held hourly or daily reference is drawn from, before the run
REFINE_MIN_N = 200  # texts a side from which a test's z may go as far as the score's normal tail says
SMALL_SAMPLE_Z_MAX = 4.0  # below that, the tail is trusted up to z = 4 only (one small window cannot alarm alone)
REFERENCE_MIN_RATIO = 3  # a base window's test counts as evidence when its reference pool has this many times its texts
RUN_TOPIC_SAMPLE = 1000  # texts a side when an alarm's grown topic is named over its whole run of evidence
# The sequential evidence row written next to each drift row.
EVIDENCE_METRICS = {names.DRIFT_INPUT: names.DRIFT_INPUT_EVIDENCE, names.DRIFT_OUTPUT: names.DRIFT_OUTPUT_EVIDENCE}
# The metrics whose reference-period mean is a row's baseline: operations and toxicity rates.
_BASELINE_METRICS = [names.VOLUME, names.ERROR_RATE, names.LATENCY_P50, names.LATENCY_P95, names.LATENCY_P99,
                     names.TTFT_P50, names.TOKENS_IN, names.TOKENS_OUT, names.COST, names.COST_PER_CALL,
                     names.OUTPUT_CHARS, names.REFUSAL_RATE, names.TOXICITY_OUTPUT, names.TOXICITY_INPUT]


@dataclass(frozen=True)
class AnalysisSettings:
    """How windows are analyzed (read from ``LLMSIGHT_*`` by :meth:`from_env`)."""

    reference: str = "trailing"  # or "baseline"
    reference_s: int = 3600
    baseline: tuple[datetime, datetime] | None = None
    sample: int = 500
    drift_min_n: int = 20
    horizon_sample: int = 3000  # texts per side of the hourly and daily drift tests (cached embeddings only)
    hold_s: int = 86400  # longest a trailing reference stays held behind a run of drift evidence

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
                   drift_min_n=config.resolve(settings.DRIFT_MIN_N, strict=True),
                   horizon_sample=config.resolve(settings.DRIFT_HORIZON_SAMPLE, strict=True),
                   hold_s=config.resolve(settings.DRIFT_HOLD_SECONDS, strict=True))


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
    def analyze(self, window: Window, segments: list[dict[str, str]] | None = None) -> list[MetricRow]:
        """The metric rows of ``window`` for ``segments`` (None: every segment with calls in it).

        A segment's rows never depend on which other segments are analysed in the same call (each
        batched read returns per segment exactly what it would read alone), so a window's segments
        can be split between workers. A failing segment or signal is logged and left out.
        """
        started = time.perf_counter()
        if segments is None:
            segments = segments_in(self.client, window)
        else:
            segments = [dict(zip(SEGMENT_KEYS, key, strict=True))
                        for key in sorted({key_of(s) for s in segments})]
        rows: list[MetricRow] = []
        try:
            inputs = self._read(window, segments)
        except Exception:
            self.failures += 1
            log.exception("scheduler: window %s: reading %d segments failed", window, len(segments))
            return rows
        vectors = self._embed(inputs)
        for item in inputs:
            if self._stopping:
                break
            rows.extend(self._segment(window, item, vectors))
        log.info("scheduler: window %s: %d segments, %d metric rows in %.0f ms", window, len(segments),
                 len(rows), (time.perf_counter() - started) * 1000)
        return rows

    def reference(self, window: Window, segment: dict[str, str]) -> tuple[Period, tuple[str, ...]]:
        """The reference period of a segment and whether it is the segment's own traffic or its feature's."""
        period = self._periods(window, [segment], self._evidence(window, [segment]))[key_of(segment)]
        own = count_calls_many(self.client, period, [segment], SEGMENT_KEYS).get(key_of(segment), 0)
        return period, (SEGMENT_KEYS if own >= self.settings.drift_min_n else FEATURE_KEYS)

    def _periods(self, window: Window, segments: list[dict[str, str]],
                 evidence: dict[Key, dict[str, Any]] | None = None) -> dict[Key, Period]:
        cut = (window.start, window.end)
        if self.settings.reference == "baseline":
            if self.settings.baseline is not None:
                return {key_of(s): Period(*self.settings.baseline, exclude=cut) for s in segments}
            starts = feature_starts(self.client, segments)
            periods = {}
            for segment in segments:
                first = starts.get(key_of(segment, FEATURE_KEYS)) or window.start
                periods[key_of(segment)] = Period(first, first + timedelta(seconds=self.settings.reference_s),
                                                  exclude=cut)
            return periods
        # At least the horizon's length, ending where the segment's run of drift evidence began.
        length = timedelta(seconds=max(self.settings.reference_s, ROLLUPS.get(window.granularity, 0)))
        periods = {}
        for segment in segments:
            end = window.start
            for state in ((evidence or {}).get(key_of(segment)) or {}).values():
                if state.reference_end is not None and state.reference_end < end:
                    end = state.reference_end
            periods[key_of(segment)] = Period(end - length, end)
        return periods

    def _evidence(self, window: Window, segments: list[dict[str, str]]) -> dict[Key, dict[str, Any]]:
        """Each segment's drift evidence before this window (per drift metric), from the stored rows."""
        from llmsight.analyzers.drift import EvidenceState, evidence_step

        since = window.start - timedelta(seconds=self.settings.hold_s)
        stored = latest_details_many(self.client, list(EVIDENCE_METRICS.values()), window.granularity,
                                     window.start, since, segments)
        result: dict[Key, dict[str, Any]] = {}
        for segment in segments:
            rows = stored.get(key_of(segment), {})
            states = {}
            for drift_metric, evidence_metric in EVIDENCE_METRICS.items():
                # A run older than the hold is dropped here already, so the reference moves on.
                states[drift_metric] = evidence_step(EvidenceState.from_details(rows.get(evidence_metric)), None,
                                                     window.start, 1.0, hold_s=self.settings.hold_s)
            result[key_of(segment)] = states
        return result

    def _read(self, window: Window, segments: list[dict[str, str]]) -> list[_Inputs]:
        """Everything the segments' signals read, a few queries per window (not per segment)."""
        settings = self.settings
        now = Period(window.start, window.end)
        current = read_calls_many(self.client, now, segments, SEGMENT_KEYS, settings.sample)
        feedback = read_feedback_many(self.client, now, segments, SEGMENT_KEYS)
        evidence = self._evidence(window, segments)
        periods = self._periods(window, segments, evidence)
        by_period: dict[Period, list[dict[str, str]]] = {}
        for segment in segments:
            by_period.setdefault(periods[key_of(segment)], []).append(segment)
        inputs = {key_of(s): _Inputs(s, current.get(key_of(s)) or Calls(), periods[key_of(s)], SEGMENT_KEYS,
                                     feedback.get(key_of(s), []), evidence=evidence.get(key_of(s), {}))
                  for s in segments}
        horizon = window.granularity in ROLLUPS
        if horizon:
            # The longer horizons test a larger sample spread over the period (cached vectors only).
            spread = read_texts_stratified_many(self.client, now, segments, SEGMENT_KEYS, settings.horizon_sample)
            for key, item in inputs.items():
                item.drift_current = spread.get(key)
        for period, members in by_period.items():
            own = count_calls_many(self.client, period, members, SEGMENT_KEYS)
            for segment in members:
                if own.get(key_of(segment), 0) < settings.drift_min_n:
                    inputs[key_of(segment)].keys = FEATURE_KEYS
        groups: dict[tuple[Period, tuple[str, ...]], list[_Inputs]] = {}
        for item in inputs.values():
            groups.setdefault((item.period, item.keys), []).append(item)
        for (period, keys), members in groups.items():
            means = reference_means_many(self.client, _BASELINE_METRICS, period, [m.segment for m in members], keys)
            drifting = [m.segment for m in members if len(m.calls.sample_inputs) >= settings.drift_min_n]
            pool = self._reference_pool(window, period)
            if horizon or settings.reference == "baseline":
                reference = read_calls_many(self.client, period, drifting, keys, settings.sample, numbers=False)
            else:
                reference = self._resampled_reference(window, pool, drifting, keys)
            spread_ref = {}
            if horizon:
                # A held hourly reference: drawn afresh for each window (salted by it) from the day before
                # the run, not the one hour whose luck started the run (see analyzers/drift.py).
                held = period.end < window.start and settings.reference != "baseline"
                if held:
                    pool = self._held_horizon_pool(period, members)
                spread_ref = read_texts_stratified_many(
                    self.client, pool if held else period, drifting, keys, settings.horizon_sample,
                    salt=int(window.start.timestamp()) if held else None)
            judged = [m.segment for m in members if m.feedback]
            reference_feedback = read_feedback_many(self.client, period, judged, keys)
            for item in members:
                group = key_of(item.segment, keys)
                item.baselines = means.get(group, {})
                item.pool = pool if settings.reference != "baseline" else period
                item.reference = reference.get(group) or Calls()
                item.reference_feedback = reference_feedback.get(group, [])
                if horizon:
                    item.drift_reference = spread_ref.get(group)
        return list(inputs.values())

    def _reference_pool(self, window: Window, period: Period) -> Period:
        """Where a base window's trailing reference is drawn from: the reference period, or, while a
        run of evidence holds it (it ends before the window), :data:`HELD_POOL_FACTOR` times as long
        a stretch before the run."""
        if period.end >= window.start:
            return period
        return Period(period.end - HELD_POOL_FACTOR * (period.end - period.start), period.end)

    def _held_horizon_pool(self, period: Period, members: list[_Inputs]) -> Period:
        """Where a held hourly or daily reference is drawn from: :data:`HELD_HORIZON_POOL` before the
        run, from the feature's first traffic at the earliest (an empty stretch would starve the
        per-bucket draw)."""
        start = period.end - HELD_HORIZON_POOL
        firsts = [f for f in feature_starts(self.client, [m.segment for m in members]).values() if f is not None]
        if firsts:
            start = max(start, min(min(firsts), period.start))
        return Period(start, period.end)

    def _resampled_reference(self, window: Window, pool: Period, segments: list[dict[str, str]],
                             keys: tuple[str, ...]) -> dict[Key, Calls]:
        """A base window's trailing reference: ``sample`` texts drawn afresh for this window (seeded by
        the window and segment, so a rerun draws the same) from up to ``horizon_sample`` texts spread
        over the pool, the texts the base windows sampled (their vectors are stored).

        Drawn afresh, consecutive windows share the pool's composition, not one sample of it: with
        the same hash-ordered 500 texts reused by sixty 1-minute windows, each test carried that
        sample's luck and the z-values were strongly correlated (see :mod:`llmsight.analyzers.drift`)."""
        import zlib

        if not segments:
            return {}
        window_s = int((window.end - window.start).total_seconds())
        spread = read_texts_stratified_many(self.client, pool, segments, keys, self.settings.horizon_sample,
                                            bucket_s=max(1, window_s))
        result = {}
        for key, calls in spread.items():
            n = len(calls.sample_inputs)
            rng = np.random.default_rng([int(window.start.timestamp()), zlib.crc32("/".join(key).encode())])
            chosen = np.sort(rng.choice(n, min(n, self.settings.sample), replace=False)) if n else []
            result[key] = Calls(n=calls.n, sample_trace_ids=[calls.sample_trace_ids[i] for i in chosen],
                                sample_inputs=[calls.sample_inputs[i] for i in chosen],
                                sample_outputs=[calls.sample_outputs[i] for i in chosen])
        return result

    def _embed(self, inputs: list[_Inputs]) -> dict[str, np.ndarray]:
        """Every text the window's signals embed, in one call to the embedding cache: each distinct
        text (prompts, outputs, their references, the toxicity pass's sentences) once."""
        texts: dict[str, None] = {}
        minimum = self.settings.drift_min_n
        for item in inputs:
            calls = item.calls
            texts.update(dict.fromkeys(calls.sample_outputs))
            texts.update(dict.fromkeys(calls.sample_inputs))
            if (item.drift_current is None and len(calls.sample_inputs) >= minimum
                    and len(item.reference.sample_inputs) >= minimum):
                texts.update(dict.fromkeys(item.reference.sample_inputs))
                texts.update(dict.fromkeys(item.reference.sample_outputs))
        if self._scores_embeddings():
            for item in inputs:
                for sample in (item.calls.sample_outputs, item.calls.sample_inputs):
                    texts.update(dict.fromkeys(self.toxicity.sentences_to_embed(sample)))
        if not texts:
            return {}
        distinct = list(texts)
        return dict(zip(distinct, self.embeddings.encode(distinct), strict=True))

    def _scores_embeddings(self) -> bool:
        return bool(getattr(self.toxicity, "uses_embeddings", False))

    def _segment(self, window: Window, item: _Inputs, vectors: dict[str, np.ndarray]) -> list[MetricRow]:
        rows: list[MetricRow] = []
        scope = {"reference": {"from": item.period.start, "to": item.period.end,
                               "scope": "segment" if item.keys == SEGMENT_KEYS else "feature"}}
        if item.pool is not None and item.pool != item.period:
            scope["reference"]["drawn_from"] = {"from": item.pool.start, "to": item.pool.end}
        steps = (("operations", lambda: self._operations(window, item)),
                 ("toxicity", lambda: self._toxicity_rows(window, item, vectors)),
                 ("acceptance", lambda: self._acceptance(window, item, scope)),
                 ("drift", lambda: self._drift(window, item, scope, vectors)))
        for name, compute in steps:
            try:
                rows.extend(compute())
            except Exception:
                self.failures += 1
                log.exception("scheduler: window %s segment %s: %s failed", window,
                              "/".join(item.segment.values()), name)
        return rows

    def _operations(self, window: Window, item: _Inputs) -> list[MetricRow]:
        from llmsight.analyzers import operations

        figures = operations.window_figures(item.calls)
        return [MetricRow(window, item.segment, metric, value, n, baseline=item.baselines.get(metric))
                for metric, (value, n) in figures.items()]

    def _toxicity_rows(self, window: Window, item: _Inputs, vectors: dict[str, np.ndarray]) -> list[MetricRow]:
        rows = []
        calls = item.calls
        for metric, texts in ((names.TOXICITY_OUTPUT, calls.sample_outputs), (names.TOXICITY_INPUT, calls.sample_inputs)):
            if not texts:
                continue
            embedded = _stack(vectors, texts)
            if self._scores_embeddings():
                probabilities = np.asarray(self.toxicity.score_embeddings(embedded, texts, sentence_vectors=vectors))
            else:
                probabilities = np.asarray(self.toxicity.score_embeddings(embedded, texts))
            toxic = np.asarray(self.toxicity.is_toxic(probabilities))
            # The kind of each flagged text (hate, abuse, sexism, threat, profanity), when the scorer says.
            flagged = np.flatnonzero(toxic)
            kinds = dict(zip(flagged.tolist(), self.toxicity.categorise([texts[i] for i in flagged])
                             if hasattr(self.toxicity, "categorise") and len(flagged) else [], strict=False))
            order = np.argsort(-probabilities, kind="stable")[:_EXAMPLES]
            examples = [{"trace_id": calls.sample_trace_ids[i], "text": texts[i][:500],
                         "score": round(float(probabilities[i]), 4), **({"category": kinds[i]} if i in kinds else {})}
                        for i in order if toxic[i]]
            categories: dict[str, int] = {}
            for kind in kinds.values():
                categories[kind] = categories.get(kind, 0) + 1
            rows.append(MetricRow(window, item.segment, metric, float(toxic.mean()), len(texts),
                                  baseline=item.baselines.get(metric), threshold=float(self.toxicity.threshold),
                                  details={"examples": examples, "toxic": int(toxic.sum()), "categories": categories}))
        return rows

    def _acceptance(self, window: Window, item: _Inputs, scope: dict[str, Any]) -> list[MetricRow]:
        from llmsight.analyzers import acceptance

        if not item.feedback:
            return []
        now, before = acceptance.summarize(item.feedback), acceptance.summarize(item.reference_feedback)
        return acceptance_rows(window, item.segment, now, acceptance.compare(before, now), item.feedback, scope)

    def _drift(self, window: Window, item: _Inputs, scope: dict[str, Any],
               vectors: dict[str, np.ndarray]) -> list[MetricRow]:
        from llmsight.analyzers.drift import (
            HOLD_FRACTION,
            HOLD_FRACTIONS,
            embedding_drift,
            evidence_step,
            evidence_z,
            horizon_budget,
            horizon_limit,
        )

        minimum = self.settings.drift_min_n
        if item.drift_current is not None:
            calls, reference = item.drift_current, item.drift_reference or Calls()
        else:
            calls, reference = item.calls, item.reference
        if len(calls.sample_inputs) < minimum or len(reference.sample_inputs) < minimum:
            return []
        window_s = (window.end - window.start).total_seconds()
        limit = horizon_limit(window.granularity, window_s)
        # Windows whose trailing references overlap are correlated: the calibration's batches span them.
        span = reference_span(item.period, window_s)
        rows = []
        for metric, cur_texts, ref_texts in ((names.DRIFT_INPUT, calls.sample_inputs, reference.sample_inputs),
                                             (names.DRIFT_OUTPUT, calls.sample_outputs, reference.sample_outputs)):
            trace_ids = calls.sample_trace_ids
            if item.drift_current is not None:
                cur, kept = self._cached(cur_texts)
                cur_texts, trace_ids = [cur_texts[i] for i in kept], [trace_ids[i] for i in kept]
                ref, kept = self._cached(ref_texts)
                ref_texts = [ref_texts[i] for i in kept]
                if len(cur_texts) < minimum or len(ref_texts) < minimum:
                    continue
            else:
                cur = _stack(vectors, cur_texts)
                ref = _stack(vectors, ref_texts)
            result = embedding_drift(ref, cur)
            # The score's normal tail refines p beyond the permutation floor, fully only for large samples:
            # on a 37-text window a chance count gave z = 8 (one false alarm on the no-shift stream). A small
            # window's z stops at SMALL_SAMPLE_Z_MAX, so it needs windows after it to reach the alarm level
            # (h >= 5.8 at every horizon), as a real shift gives and chance seldom does.
            z = evidence_z(result.p_value, result.score, (result.details or {}).get("permutations"), result.method)
            if z is not None and min(len(cur), len(ref)) < REFINE_MIN_N:
                z = min(z, SMALL_SAMPLE_Z_MAX)
            before = item.evidence.get(metric) or _fresh_evidence()
            if item.drift_current is None and max(item.reference.n, len(ref)) < REFERENCE_MIN_RATIO * len(cur):
                # A reference pool hardly larger than the window (a feature's first hour) is luck that every
                # window drawing from it shares: its tests do not count, and no run holds it.
                z, before = None, before.restarted()
            state = evidence_step(before, z, window.start, limit, hold_s=self.settings.hold_s, span=span,
                                  hold_fraction=HOLD_FRACTIONS.get(window.granularity, HOLD_FRACTION))
            # Topics are explained when this test or the evidence points at a change (they cost more
            # than the test): the grown topic is what the drift alert shows.
            explain = (bool(result.drifted) or (result.p_value is not None and result.p_value < EXPLAIN_BELOW_P)
                       or state.cusum >= limit / 2)
            details = dict(scope)
            details.update(_drift_details(result, ref, cur, ref_texts, cur_texts, trace_ids, explain=explain))
            rows.append(MetricRow(window, item.segment, metric, float(result.score), len(cur_texts),
                                  p_value=result.p_value, threshold=result.threshold, details=details))
            evidence = {**scope, **state.as_details(), "method": "cusum", "drifted": state.alarm,
                        "limit": limit, "k": 0.5, "z": None if z is None else round(z, 4),
                        "z_calibrated": None if z is None else round(before.calibration.standardise(z), 4),
                        "span": span,
                        "horizon": window.granularity,
                        "false_alarms_per_week": round(horizon_budget(window.granularity), 6),
                        "test": {"score": result.score, "threshold": result.threshold, "p_value": result.p_value,
                                 "n_ref": len(ref_texts), "n_cur": len(cur_texts)}}
            for key in ("grown_topic", "examples"):
                if key in details:
                    evidence[key] = details[key]
            if state.alarm and state.since is not None and state.since < window.start:
                # The alarm rests on every window since the run began: name what grew over all of them
                # (a 5% topic is three texts of a 60-text window, a hundred over the run).
                try:
                    evidence.update(self._run_topic(window, item, state.since, metric))
                except Exception:  # the explanation is a help, never a reason to lose the evidence
                    log.warning("scheduler: drift run explanation failed", exc_info=True)
            rows.append(MetricRow(window, item.segment, EVIDENCE_METRICS[metric], round(state.cusum / limit, 6),
                                  len(cur_texts), p_value=result.p_value, threshold=1.0, details=evidence))
        return rows

    def _run_topic(self, window: Window, item: _Inputs, since: datetime, metric: str) -> dict[str, Any]:
        """The grown topic of a whole run of evidence: the texts from ``since`` to the window's end
        against as many of the (held) reference period's, stored vectors only, up to
        :data:`RUN_TOPIC_SAMPLE` a side spread over each period. The sides are cut to the same size:
        the neighbour regions that find a new topic are calibrated for balanced samples (with
        3,000 texts against 500 a chance region outgrew the new topic)."""
        from llmsight.analyzers import topics

        run = read_texts_stratified_many(self.client, Period(since, window.end), [item.segment], SEGMENT_KEYS,
                                         RUN_TOPIC_SAMPLE).get(key_of(item.segment))
        before = read_texts_stratified_many(self.client, item.pool or item.period, [item.segment], item.keys,
                                            RUN_TOPIC_SAMPLE).get(key_of(item.segment, item.keys))
        if run is None or before is None:
            return {}
        pick = (lambda calls: calls.sample_inputs) if metric == names.DRIFT_INPUT else (lambda calls: calls.sample_outputs)
        cur, kept = self._cached(pick(run))
        cur_texts, trace_ids = [pick(run)[i] for i in kept], [run.sample_trace_ids[i] for i in kept]
        ref, kept = self._cached(pick(before))
        ref_texts = [pick(before)[i] for i in kept]
        size = min(len(cur_texts), len(ref_texts))
        if size < self.settings.drift_min_n:
            return {}
        rng = np.random.default_rng(int(window.start.timestamp()))
        take_cur = np.sort(rng.choice(len(cur_texts), size, replace=False))
        take_ref = np.sort(rng.choice(len(ref_texts), size, replace=False))
        cur_texts, trace_ids = [cur_texts[i] for i in take_cur], [trace_ids[i] for i in take_cur]
        ref_texts = [ref_texts[i] for i in take_ref]
        explained = topics.explain_drift(ref[take_ref], cur[take_cur], ref_texts, cur_texts,
                                         n_examples=_TOPIC_EXAMPLES)
        grown = grown_topic(explained, cur_texts, trace_ids)
        if grown is None:
            return {}
        grown["over"] = {"from": since, "to": window.end, "n_ref": size, "n_cur": size}
        return {"grown_topic": grown, "examples": grown["examples"]}

    def _cached(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """The stored vectors of ``texts`` and the positions that have one: the longer horizons embed nothing.

        An embedder without a store behind it (a unit test's) is asked directly.
        """
        cache = self.embeddings
        embedder = getattr(cache, "embedder", None)
        if embedder is None or not hasattr(cache, "client"):
            return np.asarray(cache.encode(texts), dtype=np.float32), list(range(len(texts)))
        from llmsight.analyzers.embeddings import text_hash

        model = embedder.name
        keys = [text_hash(model, t) for t in texts]
        found: dict[str, np.ndarray] = {}
        distinct = list(dict.fromkeys(keys))
        for start in range(0, len(distinct), 2000):
            result = self.client.query(
                "SELECT text_hash, any(vector) FROM embeddings WHERE model = {model:String} "
                "AND text_hash IN {keys:Array(String)} GROUP BY text_hash",
                parameters={"model": model, "keys": distinct[start:start + 2000]})
            for key, vector in result.result_rows:
                found[key] = np.asarray(vector, dtype=np.float32)
        kept = [i for i, key in enumerate(keys) if key in found]
        if not kept:
            return np.zeros((0, 1), dtype=np.float32), []
        return np.stack([found[keys[i]] for i in kept]), kept


def reference_span(period: Period, window_s: float) -> int:
    """How many windows a reference period spans, plus one: the reach of the correlation between
    the tests of windows that share (part of) a trailing reference."""
    from llmsight.analyzers.drift import MAX_SPAN

    length = (period.end - period.start).total_seconds()
    return int(min(MAX_SPAN, max(1, round(length / max(window_s, 1.0))) + 1))


def _fresh_evidence() -> Any:
    from llmsight.analyzers.drift import EvidenceState

    return EvidenceState()


@dataclass
class _Inputs:
    """What one segment's signals read for a window: its calls and feedback, its reference and baselines."""

    segment: dict[str, str]
    calls: Calls
    period: Period
    keys: tuple[str, ...]
    feedback: list[tuple[str, int | None, float | None, bool]]
    reference: Calls = field(default_factory=Calls)
    reference_feedback: list[tuple[str, int | None, float | None, bool]] = field(default_factory=list)
    baselines: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)  # drift metric -> EvidenceState before the window
    drift_current: Calls | None = None  # the longer horizons' drift sample (None: the window's own sample)
    drift_reference: Calls | None = None
    pool: Period | None = None  # where the drift reference's texts were drawn from (None: the period)


def _stack(vectors: dict[str, np.ndarray], texts: list[str]) -> np.ndarray:
    """The rows of ``texts`` (at least one) from the window's embedded texts."""
    return np.stack([vectors[t] for t in texts])


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
                   trace_ids: list[str], *, explain: bool = True) -> dict[str, Any]:
    details: dict[str, Any] = {"method": result.method, "drifted": bool(result.drifted)}
    extra = getattr(result, "details", None)
    if isinstance(extra, dict):
        # Timings vary run to run; rows must not (a rerun writes identical rows).
        details.update({k: v for k, v in extra.items() if k not in ("ms", "seconds", "elapsed_ms")})
    details["examples"] = [{"trace_id": t, "text": x[:300]} for t, x in list(zip(trace_ids, cur_texts, strict=True))[:_EXAMPLES]]
    if not explain:
        return details
    try:
        from llmsight.analyzers import topics

        explained = topics.explain_drift(ref, cur, ref_texts, cur_texts, n_examples=_TOPIC_EXAMPLES)
        details["topics"] = explained
        grown = grown_topic(explained, cur_texts, trace_ids)
        if grown is not None:
            details["grown_topic"] = grown
            details["examples"] = grown["examples"]  # the evidence is the topic that grew, not any prompts
    except Exception:  # the explanation is a help, never a reason to lose the score
        log.warning("scheduler: drift explanation failed", exc_info=True)
    return details


def grown_topic(explained: dict[str, Any], cur_texts: list[str], trace_ids: list[str]) -> dict[str, Any] | None:
    """The drift evidence an on-call engineer reads: the topic that grew most (a new region first),
    its share before and after with 95% intervals, and up to five of its texts with their trace ids."""
    grown = (explained or {}).get("grown") or []
    if not grown:
        return None
    top = grown[0]
    rows = [i for i in top.get("example_rows") or [] if 0 <= i < len(cur_texts)][:_TOPIC_EXAMPLES]
    return {"label": top["label"], "share_before": top["share_ref"], "share_after": top["share_cur"],
            "share_before_ci": top.get("share_ref_ci"), "share_after_ci": top.get("share_cur_ci"),
            "kind": top.get("kind"), "z": top.get("z"),
            "examples": [{"trace_id": trace_ids[i], "text": cur_texts[i][:300]} for i in rows]}
