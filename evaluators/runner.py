"""One window at a time: sample the calls, run the evaluators, write verdicts and metric rows.

:meth:`EvaluatorRunner.run_window` for a base window:

1. reads a deterministic sample of each segment's calls (``ORDER BY cityHash64(event_id)``, the
   largest ``sample_per_segment`` of the evaluators; each evaluator takes the first N of it, so a
   rerun reads the same calls);
2. runs the offline evaluators (relevance reads the prompt and answer vectors through the analyzers'
   :class:`EmbeddingCache`, which embeds only texts it has not seen);
3. runs the judges in a thread pool of ``concurrency`` threads per judge with a deadline
   (``deadline_s``): calls not done by then are dropped, and the next run does not repeat calls that
   already have a verdict, so judges never spend twice on a call;
4. writes one ``evaluations`` row per verdict (a rerun replaces its rows), then the
   ``eval_<evaluator>`` metric rows of the window, aggregated from the table.

Rollup windows (1h, 1d) only aggregate the table. Errors (malformed answers, failed calls) and
skipped calls (daily cap, open circuit, deadline) are counted in :class:`RunReport` and in the metric
rows' details; nothing is written for them and they never stop the run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import numpy as np

from llmsight.analyzers.windows import (
    BASE_GRANULARITY,
    ROLLUPS,
    MetricRow,
    Window,
    due_windows,
    segments_in,
    write_metrics,
)
from llmsight.evaluators import offline
from llmsight.evaluators.config import Evaluator
from llmsight.evaluators.judge import Judge, JudgeError
from llmsight.evaluators.offline import Verdict
from llmsight.store.names import EVAL_PREFIX, SEGMENT_KEYS
from llmsight.store.times import utc

log = logging.getLogger("llmsight.evaluators")

EVALUATION_COLUMNS = ["ts", "trace_id", "event_id", "evaluator", "kind", "score", "label", "flagged", "reason",
                      *SEGMENT_KEYS, "tokens", "cost_usd", "evaluated_at"]


@dataclass(frozen=True)
class Call:
    """One sampled call: what the evaluators read."""

    ts: datetime
    trace_id: str
    event_id: str
    segment: dict[str, str]
    input: str
    output: str
    metadata: str


@dataclass
class RunReport:
    """What one window's run did, per evaluator: verdicts written, flagged, errors and skips by kind."""

    window: Window
    evaluated: Counter[str] = field(default_factory=Counter)
    flagged: Counter[str] = field(default_factory=Counter)
    problems: dict[str, Counter[str]] = field(default_factory=dict)
    metric_rows: int = 0
    seconds: float = 0.0

    def problem(self, evaluator: str, kind: str) -> None:
        self.problems.setdefault(evaluator, Counter())[kind] += 1


def _in_window(window: Window) -> tuple[str, dict[str, Any]]:
    return ("ts >= {w_start:DateTime64(3, 'UTC')} AND ts < {w_end:DateTime64(3, 'UTC')}",
            {"w_start": window.start, "w_end": window.end})


def sample_calls(client: Any, window: Window, segments: list[dict[str, str]], per_segment: int) -> dict[tuple[str, ...], list[Call]]:
    """Up to ``per_segment`` calls without an error per segment, the same on every run."""
    if not segments or per_segment < 1:
        return {}
    where, params = _in_window(window)
    keys = ", ".join(SEGMENT_KEYS)
    wanted = sorted({tuple(s[k] for k in SEGMENT_KEYS) for s in segments})
    rows = client.query(
        f"SELECT {keys}, ts, trace_id, toString(event_id), input, output, metadata FROM events FINAL "
        f"WHERE {where} AND error = '' AND ({keys}) IN {{w_keys:Array(Tuple(String, String, String, String))}} "
        f"ORDER BY cityHash64(event_id), event_id LIMIT {int(per_segment)} BY {keys}",
        parameters={**params, "w_keys": wanted}).result_rows
    found: dict[tuple[str, ...], list[Call]] = {}
    width = len(SEGMENT_KEYS)
    for row in rows:
        key = tuple(row[:width])
        found.setdefault(key, []).append(Call(utc(row[width]), row[width + 1], row[width + 2],
                                              dict(zip(SEGMENT_KEYS, key, strict=True)), row[width + 3],
                                              row[width + 4], row[width + 5]))
    return found


def context_of(call: Call, key: str) -> str:
    """The context a groundedness judge checks against: ``metadata[key]`` (text, or JSON of anything else)."""
    try:
        metadata = json.loads(call.metadata) if call.metadata.strip() else {}
    except ValueError:
        return ""
    value = metadata.get(key, "") if isinstance(metadata, dict) else ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class EvaluatorRunner:
    """Runs the configured evaluators window by window (see the module docstring)."""

    def __init__(self, client: Any, evaluators: list[Evaluator], *, embeddings: Any = None,
                 judges: dict[str, Judge] | None = None) -> None:
        self.client = client
        self.evaluators = [e for e in evaluators if e.enabled]
        self._embeddings = embeddings
        self.judges: dict[str, Judge] = judges if judges is not None else {
            e.name: Judge(e, spent_today=self._spent_reader(e.name)) for e in self.evaluators if e.kind == "judge"}
        self._last: dict[str, datetime | None] = {}
        self._stopping = threading.Event()

    # -- reading -----------------------------------------------------------------------------------
    @property
    def embeddings(self) -> Any:
        if self._embeddings is None:
            from llmsight.analyzers.embeddings import Embedder, EmbeddingCache

            self._embeddings = EmbeddingCache(self.client, Embedder())
        return self._embeddings

    def _spent_reader(self, evaluator: str) -> Any:
        def spent(day: date) -> tuple[int, float]:
            row = self.client.query(
                "SELECT sum(tokens), sum(cost_usd) FROM evaluations FINAL WHERE evaluator = {e:String} "
                "AND toDate(evaluated_at) = {d:Date}", parameters={"e": evaluator, "d": day}).result_rows[0]
            return int(row[0] or 0), float(row[1] or 0.0)
        return spent

    def _judged(self, window: Window) -> set[tuple[str, str]]:
        names = [e.name for e in self.evaluators if e.kind == "judge"]
        if not names:
            return set()
        where, params = _in_window(window)
        rows = self.client.query(
            f"SELECT evaluator, toString(event_id) FROM evaluations FINAL WHERE {where} "
            "AND evaluator IN {names:Array(String)}", parameters={**params, "names": names}).result_rows
        return {(r[0], r[1]) for r in rows}

    # -- one window --------------------------------------------------------------------------------
    def run_window(self, window: Window, now: datetime | None = None) -> RunReport:
        """Evaluate a base window's sample (a rollup only aggregates), write the rows; returns the report."""
        started = time.perf_counter()
        report = RunReport(window)
        if window.granularity == BASE_GRANULARITY and self.evaluators:
            segments = segments_in(self.client, window)
            largest = max(e.sample_per_segment for e in self.evaluators)
            calls = sample_calls(self.client, window, segments, largest)
            rows: list[list[Any]] = []
            evaluated_at = (now or datetime.now(timezone.utc)).replace(tzinfo=None)
            for evaluator in self.evaluators:
                if self._stopping.is_set():
                    break
                chosen = [call for key, group in sorted(calls.items()) if evaluator.matches(group[0].segment)
                          for call in group[:evaluator.sample_per_segment]]
                if not chosen:
                    continue
                if evaluator.kind == "judge":
                    verdicts = self._run_judge(evaluator, chosen, window, report)
                else:
                    verdicts = self._run_offline(evaluator, chosen)
                for call, verdict in verdicts:
                    rows.append(self._row(evaluator, call, verdict, evaluated_at))
                    report.evaluated[evaluator.name] += 1
                    report.flagged[evaluator.name] += int(verdict.flagged)
            if rows and not self._stopping.is_set():
                self.client.insert("evaluations", rows, column_names=EVALUATION_COLUMNS)
        if not self._stopping.is_set():
            metric_rows = aggregate(self.client, window, report)
            write_metrics(self.client, metric_rows)
            report.metric_rows = len(metric_rows)
        report.seconds = time.perf_counter() - started
        if report.evaluated or report.problems:
            log.info("evaluators: %s: %d verdicts (%d flagged), %d metric rows, problems %s in %.1f s", window,
                     sum(report.evaluated.values()), sum(report.flagged.values()), report.metric_rows,
                     {k: dict(v) for k, v in report.problems.items()} or "none", report.seconds)
        return report

    @staticmethod
    def _row(evaluator: Evaluator, call: Call, verdict: Verdict, evaluated_at: datetime) -> list[Any]:
        score = None if verdict.score is None else min(1.0, max(0.0, float(verdict.score)))
        return [call.ts, call.trace_id, call.event_id, evaluator.name, evaluator.kind, score, verdict.label,
                int(verdict.flagged), verdict.reason[:1000], *(call.segment[k] for k in SEGMENT_KEYS),
                int(verdict.tokens), float(verdict.cost_usd), evaluated_at]

    def _run_offline(self, evaluator: Evaluator, calls: list[Call]) -> list[tuple[Call, Verdict]]:
        check = evaluator.check
        if check == "relevance":
            cosines = relevance_cosines(self.embeddings, [c.input for c in calls], [c.output for c in calls])
            return [(c, offline.relevance(float(cos), min_cosine=evaluator.min_cosine,
                                          flag_below=evaluator.flag_below)) for c, cos in zip(calls, cosines, strict=True)]
        if check == "empty_or_truncated":
            return [(c, offline.empty_or_truncated(c.output, c.metadata, min_chars=evaluator.min_chars)) for c in calls]
        if check == "language_mismatch":
            return [(c, offline.language_mismatch(c.input, c.output)) for c in calls]
        return [(c, offline.pii_leak(c.output)) for c in calls]

    def _run_judge(self, evaluator: Evaluator, calls: list[Call], window: Window,
                   report: RunReport) -> list[tuple[Call, Verdict]]:
        judge = self.judges[evaluator.name]
        assert evaluator.judge is not None
        done = self._judged(window)
        todo = [c for c in calls if (evaluator.name, c.event_id) not in done]
        deadline = time.monotonic() + evaluator.judge.deadline_s
        results: list[tuple[Call, Verdict]] = []
        pool = ThreadPoolExecutor(max_workers=evaluator.judge.concurrency, thread_name_prefix=f"judge-{evaluator.name}")
        try:
            futures: dict[Future[Verdict], Call] = {
                pool.submit(judge.judge, c.input, c.output, context_of(c, evaluator.context_key), deadline): c
                for c in todo}
            pending = set(futures)
            while pending and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                finished, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
                for future in finished:
                    try:
                        results.append((futures[future], future.result()))
                    except JudgeError as exc:
                        report.problem(evaluator.name, getattr(exc, "kind", "failed"))
                        log.debug("evaluators: %s on %s: %s", evaluator.name, futures[future].trace_id, exc)
                    except Exception as exc:  # a bug or an unexpected client error: counted, never raised
                        report.problem(evaluator.name, "failed")
                        log.warning("evaluators: %s on %s failed: %r", evaluator.name, futures[future].trace_id, exc)
            for _ in pending:
                report.problem(evaluator.name, "deadline")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return results

    # -- the schedule ------------------------------------------------------------------------------
    def run_due(self, now: datetime | None = None, *, window_s: int = 60, lag_s: float = 20.0,
                catchup: int = 60) -> list[RunReport]:
        """Every base window and rollup closed since the last one evaluated, oldest first."""
        now = now or datetime.now(timezone.utc)
        reports: list[RunReport] = []
        for granularity, seconds, most in ((BASE_GRANULARITY, window_s, catchup), ("1h", ROLLUPS["1h"], 24),
                                           ("1d", ROLLUPS["1d"], 7)):
            if granularity not in self._last:
                self._last[granularity] = last_evaluated(self.client, granularity)
            for window in due_windows(self._last[granularity], now, seconds, lag_s, most, granularity):
                if self._stopping.is_set():
                    return reports
                reports.append(self.run_window(window, now))
                self._last[granularity] = window.start
        return reports

    def pause(self) -> None:
        """Stop at the next evaluator or window (the coordinator lost its role); :meth:`resume` undoes it."""
        self._stopping.set()

    def resume(self) -> None:
        """Run again, resuming from the store (another process may have evaluated since)."""
        self._last = {}
        self._stopping.clear()

    def stop(self) -> None:
        self._stopping.set()
        for judge in self.judges.values():
            judge.close()


def relevance_cosines(embeddings: Any, prompts: list[str], outputs: list[str]) -> np.ndarray:
    """Cosine of each prompt with its answer, on unit vectors from the embedding cache (one lookup)."""
    if not prompts:
        return np.zeros(0)
    vectors = np.asarray(embeddings.encode(list(prompts) + list(outputs)), dtype=np.float32)
    first, second = vectors[:len(prompts)], vectors[len(prompts):]
    return np.asarray(np.einsum("ij,ij->i", first, second), dtype=float)


def aggregate(client: Any, window: Window, report: RunReport | None = None) -> list[MetricRow]:
    """The ``eval_<evaluator>`` metric rows of a window and its segments, from the ``evaluations`` table."""
    where, params = _in_window(window)
    keys = ", ".join(SEGMENT_KEYS)
    rows = client.query(
        f"SELECT evaluator, {keys}, avgOrNull(score), countIf(score IS NOT NULL), count(), sum(flagged) "
        f"FROM evaluations FINAL WHERE {where} GROUP BY evaluator, {keys} ORDER BY evaluator, {keys}",
        parameters=params).result_rows
    metric_rows = []
    for evaluator, *rest in rows:
        segment = dict(zip(SEGMENT_KEYS, rest[:4], strict=True))
        mean, scored, total, flagged = rest[4:]
        if mean is None:
            continue  # nothing decided (a language check on names and code only)
        details: dict[str, Any] = {"evaluated": int(total), "flagged": int(flagged),
                                   "flagged_rate": round(int(flagged) / int(total), 6)}
        if report is not None and evaluator in report.problems:
            details["problems"] = dict(report.problems[evaluator])
        metric_rows.append(MetricRow(window, segment, f"{EVAL_PREFIX}{evaluator}", float(mean), int(scored),
                                     details=details))
    return metric_rows


def last_evaluated(client: Any, granularity: str) -> datetime | None:
    """The newest window with evaluator metrics (where the job resumes after a restart)."""
    row = client.query(
        "SELECT max(window_start), count() FROM metrics WHERE granularity = {g:String} AND startsWith(metric, {p:String})",
        parameters={"g": granularity, "p": EVAL_PREFIX}).result_rows[0]
    return utc(row[0]) if row[1] else None
