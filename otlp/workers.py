"""Mapping trace requests in worker processes, so that one receiver uses more than one core.

A receiver is one Python process: reading protobuf, mapping, redacting and encoding a span cost about
as much CPU as kafka-python's send of the event, and the GIL keeps all of it on one core.
``LLMSIGHT_OTLP_WORKERS`` worker processes (``auto``: one per usable CPU, at most 4, none on one CPU)
take the first part: a trace request's bytes go to a worker, which parses and maps them
(:func:`map_request`, the same code the receiver runs in-process) and sends back the encoded events;
the receiver process keeps what needs one place: the HTTP and gRPC servers, the join of content log
records with their spans (:mod:`llmsight.otlp.join`), the Kafka producer and the answer.

* The workers are spawned (never forked: the receiver has threads) in the background when the service
  starts; until they answer, and whenever the pool breaks (a worker killed), requests are mapped
  in-process and a new pool is started, so a request never waits for a pool or fails because of one.
* A worker returns the :class:`~llmsight.otlp.mapping.Span` itself only for calls still lacking
  their input or output (the join holds those); when content records wait in the join for a call
  the worker mapped without them, the receiver maps that request again in-process with them.
* A payload a worker cannot read raises :class:`~llmsight.otlp.decode.BadRequest` back in the
  receiver (400 and a dead letter, as in-process); a worker that does not answer within the write
  timeout makes the request :class:`~llmsight.otlp.writer.Busy` (429, retried by the exporter).
* Logs (content records, evaluations) are mapped in-process: they touch the join.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from llmsight.otlp import decode
from llmsight.otlp.mapping import EVALUATION_EVENT, Mapper, Span, is_llm_call
from llmsight.otlp.writer import Batch, Busy

log = logging.getLogger("llmsight.otlp")

MAX_AUTO_WORKERS = 4


@dataclass
class Call:
    """One mapped LLM call: where its line is in the batch, its ids, whether it has its content, and
    (in-process, or when it lacks content) the span it was mapped from."""

    index: int
    trace_id: str
    span_id: str
    complete: bool
    span: Span | None


@dataclass
class Mapped:
    """A trace request mapped: the events to write and what to count and report."""

    batch: Batch = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    feedback: int = 0
    received: int = 0
    skipped: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)


def map_request(mapper: Mapper, request: Any, keep_spans: bool = True) -> Mapped:
    """Every span of ``request``: feedback from its evaluation events, an ``llm_call`` if it is one;
    a span that cannot be mapped is rejected alone. ``keep_spans=False`` keeps only the spans of calls
    without their content (what a worker sends back)."""
    out = Mapped()
    batch = out.batch
    for span in decode.spans(request):
        out.received += 1
        if isinstance(span, decode.InvalidItem):
            out.rejected += 1
            out.reasons.append(str(span))
            continue
        try:
            for event in span.events:
                if event.name == EVALUATION_EVENT:
                    item = mapper.feedback(event)
                    if item is not None:
                        batch.append(item)
                        out.feedback += 1
            if is_llm_call(span):
                key, line, complete = mapper.llm_call_with_content(span)
                out.calls.append(Call(len(batch), span.trace_id, span.span_id, complete,
                                      span if keep_spans or not complete else None))
                batch.append((key, line))
            else:
                out.skipped += 1
        except Exception as exc:  # a bug or a value nobody foresaw: this span only
            log.warning("otlp: cannot map span %r: %r", span.name[:80], exc)
            out.rejected += 1
            out.reasons.append(f"span {span.name[:80]!r} could not be mapped: {type(exc).__name__}")
    return out


def usable_cpus(cgroup: str = "/sys/fs/cgroup/cpu.max") -> int:
    """CPUs this process may use: its affinity, within a container's CPU limit (cgroup v2 ``cpu.max``),
    which a pod's ``resources.limits.cpu`` sets and the affinity does not show."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        with open(cgroup, encoding="ascii") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max" and int(period) > 0:
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))  # rounded up: 1.5 CPUs is 2
    except (OSError, ValueError):
        pass
    return cpus


def worker_count(setting: Any, cpus: int | None = None) -> int:
    """``LLMSIGHT_OTLP_WORKERS`` as a number: ``auto`` is one per usable CPU (at most 4), 0 on one CPU."""
    if setting != "auto":
        return int(setting)
    cpus = usable_cpus() if cpus is None else cpus
    return 0 if cpus < 2 else min(cpus, MAX_AUTO_WORKERS)


# -- in the worker process ----------------------------------------------------------------------------

_mapper: Mapper | None = None


def _init(arguments: dict[str, Any]) -> None:
    global _mapper
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the receiver, which stops its workers
    _mapper = Mapper(**arguments)


def _hello(delay: float) -> int:
    time.sleep(delay)  # long enough that each warm-up call goes to a worker of its own
    return os.getpid()


def _map_traces(data: bytes, content_type: str) -> Mapped:
    assert _mapper is not None
    return map_request(_mapper, decode.parse_traces(data, content_type), keep_spans=False)


# -- in the receiver --------------------------------------------------------------------------------------


class Pool:
    """``workers`` spawned processes that map trace requests; :meth:`map` returns None while there is
    no usable pool (the caller maps in-process)."""

    def __init__(self, workers: int, arguments: dict[str, Any]) -> None:
        self.workers = workers
        self._arguments = arguments
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._starting = False
        self._closed = False
        self.pids: list[int] = []
        self.restarts = 0
        try:
            pickle.dumps(arguments)
        except Exception as exc:  # e.g. a redactor that is a lambda: it cannot reach another process
            log.warning("otlp: mapping stays in-process (LLMSIGHT_OTLP_WORKERS=%d): the mapper's settings "
                        "cannot be sent to a worker process: %r", workers, exc)
            self.workers = 0

    @property
    def ready(self) -> bool:
        return self._executor is not None

    def start(self) -> Pool:
        """Spawn the workers in the background."""
        with self._lock:
            if self.workers <= 0 or self._closed or self._starting or self._executor is not None:
                return self
            self._starting = True
        threading.Thread(target=self._spawn, name="otlp-workers", daemon=True).start()
        return self

    def _spawn(self) -> None:
        executor: ProcessPoolExecutor | None = None
        try:
            executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_init, initargs=(self._arguments,))
            calls = [executor.submit(_hello, 0.2) for _ in range(self.workers)]
            pids = sorted({call.result(timeout=120) for call in calls})
        except Exception as exc:
            log.warning("otlp: the mapping workers did not start (%r); mapping in-process", exc)
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            with self._lock:
                self._starting = False
            return
        with self._lock:
            self._starting = False
            if self._closed:
                executor.shutdown(wait=False, cancel_futures=True)
                return
            self._executor = executor
            self.pids = pids
        log.info("otlp: %d mapping worker processes ready (pids %s)", len(pids), ", ".join(map(str, pids)))

    def _broken(self, executor: ProcessPoolExecutor, why: str) -> None:
        with self._lock:
            if self._executor is not executor:
                return  # another request saw it first
            self._executor = None
            self.restarts += 1
        log.warning("otlp: the mapping worker pool broke (%s); mapping in-process until a new one is up", why)
        executor.shutdown(wait=False, cancel_futures=True)
        self.start()

    def map(self, data: bytes, content_type: str, timeout: float) -> Mapped | None:
        """The request mapped by a worker; None if there is no pool or it broke (map it in-process).
        Raises :class:`~llmsight.otlp.decode.BadRequest` for a payload the worker cannot read and
        :class:`~llmsight.otlp.writer.Busy` when no worker answered within ``timeout``."""
        executor = self._executor
        if executor is None:
            return None
        try:
            future = executor.submit(_map_traces, data, content_type)
        except (BrokenProcessPool, RuntimeError) as exc:
            self._broken(executor, repr(exc))
            return None
        try:
            result: Mapped = future.result(timeout=timeout)
            return result
        except decode.BadRequest:
            raise
        except FuturesTimeout:
            future.cancel()
            raise Busy(f"the mapping workers did not answer within {timeout:g} s") from None
        except BrokenProcessPool as exc:
            self._broken(executor, repr(exc))
            return None
        except Exception as exc:  # a result that could not come back, a bug: this request in-process
            log.warning("otlp: a mapping worker failed (%r); mapping this request in-process", exc)
            return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
