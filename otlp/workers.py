"""Mapping trace requests in worker processes, so that one receiver uses more than one core.

A receiver is one Python process: reading protobuf, mapping, redacting and encoding a span cost about
as much CPU as kafka-python's send of the event, and the GIL keeps all of it on one core.
``LLMSIGHT_OTLP_WORKERS`` worker processes (``auto``: one per usable CPU, at most 4, none on one CPU)
take the first part: a trace request's bytes go to a worker, which parses and maps them
(:func:`map_request`, the same code the receiver runs in-process) and sends back the encoded events;
the receiver process keeps what needs one place: the HTTP and gRPC servers, the join of content log
records with their spans (:mod:`llmsight.otlp.join`), the Kafka producer and the answer.

* Each worker is a fresh ``python -c`` process (never forked: the receiver has threads; not
  multiprocessing, which would import the embedding app's main module again in each) that reads
  pickled requests on its stdin and writes pickled results on a copy of its stdout, one at a time; a
  request takes an idle worker. They start in the background when the service starts; until one
  answers, requests are mapped in-process. A worker that dies is replaced (that request is mapped
  in-process); one that does not answer within the write timeout is killed and replaced, and the
  request is :class:`~llmsight.otlp.writer.Busy` (429, retried by the exporter).
* A worker returns the :class:`~llmsight.otlp.mapping.Span` itself only for calls still lacking
  their input or output (the join holds those); when content records wait in the join for a call
  the worker mapped without them, the receiver maps that request again in-process with them.
* A payload a worker cannot read raises :class:`~llmsight.otlp.decode.BadRequest` back in the
  receiver (400 and a dead letter, as in-process).
* Logs (content records, evaluations) are mapped in-process: they touch the join.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO

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

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled with its calls as tuples (a worker sends one back per request): half the time of
        pickling each :class:`Call` as an object."""
        calls = [(c.index, c.trace_id, c.span_id, c.complete, c.span) for c in self.calls]
        return _unpickle_mapped, (self.batch, calls, self.feedback, self.received, self.skipped, self.rejected,
                                  self.reasons)


def _unpickle_mapped(batch: Batch, calls: list[tuple[Any, ...]], *counts: Any) -> Mapped:
    return Mapped(batch, [Call(*call) for call in calls], *counts)


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


# -- the pipe protocol: a 4-byte big-endian length, then a pickle ---------------------------------------

_LENGTH = struct.Struct(">I")
_WORKER_CODE = "from llmsight.otlp.workers import serve; serve()"


class _Dead(Exception):
    """The worker's pipe closed: it is gone."""


PIPE_BYTES = 1 << 20  # a request (~130 KB for 100 spans) or its result (~180 KB) in one write, one read


def _widen(fd: int) -> None:
    """Make a pipe hold PIPE_BYTES (Linux; 64 KB by default): fewer writes that block until the other
    side reads, each a switch between the processes. Where it cannot, the pipe stays as it is."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def _write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(_LENGTH.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise _Dead("the worker closed its pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None) -> Any:
    (size,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size, deadline))
    return pickle.loads(_read_exactly(fd, size, deadline))


# -- in the worker process ----------------------------------------------------------------------------


def serve(stdin: BinaryIO | None = None) -> None:
    """A worker's loop: the mapper's arguments, then (bytes, content type) -> ("ok", Mapped) /
    ("bad", BadRequest) / ("error", text), until the receiver closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the receiver, which stops its workers
    out = os.dup(1)  # results go to the pipe that was stdout; anything printed goes to stderr instead
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    fd = (stdin or sys.stdin.buffer).fileno()
    try:
        mapper = Mapper(**_read_frame(fd, None))
        _write_frame(out, pickle.dumps(("ready", os.getpid())))
        while True:
            data, content_type = _read_frame(fd, None)
            result: tuple[str, Any]
            try:
                result = ("ok", map_request(mapper, decode.parse_traces(data, content_type), keep_spans=False))
            except decode.BadRequest as exc:
                result = ("bad", exc)
            except Exception as exc:  # a bug: the receiver maps this request itself
                result = ("error", repr(exc)[:500])
            try:
                payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                payload = pickle.dumps(("error", f"cannot send the result back: {exc!r}"[:500]))
            _write_frame(out, payload)
    except (_Dead, BrokenPipeError):
        return  # the receiver is gone or stopping


# -- in the receiver --------------------------------------------------------------------------------------


class _Worker:
    def __init__(self, arguments: bytes) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _WORKER_CODE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, bufsize=0, close_fds=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.pid = self.process.pid
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        for fd in (self._in, self._out):
            _widen(fd)
        _write_frame(self._in, arguments)

    def hello(self, timeout: float) -> None:
        status, _ = _read_frame(self._out, time.monotonic() + timeout)
        if status != "ready":
            raise _Dead(f"the worker said {status!r}")

    def call(self, data: bytes, content_type: str, timeout: float) -> tuple[str, Any]:
        try:
            _write_frame(self._in, pickle.dumps((data, content_type), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError as exc:  # BrokenPipeError: it died
            raise _Dead(repr(exc)) from None
        result: tuple[str, Any] = _read_frame(self._out, time.monotonic() + timeout)
        return result

    def stop(self, timeout: float = 2.0) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                if pipe is not None:
                    pipe.close()  # stdin closed: the worker's loop ends
            except OSError:
                pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class Pool:
    """``workers`` processes that map trace requests; :meth:`map` returns None while none is up (the
    caller maps in-process)."""

    def __init__(self, workers: int, arguments: dict[str, Any]) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._closed = False
        self._started = False
        self.restarts = 0
        self._arguments = b""
        try:
            self._arguments = pickle.dumps(arguments)
        except Exception as exc:  # e.g. a redactor that is a lambda: it cannot reach another process
            log.warning("otlp: mapping stays in-process (LLMSIGHT_OTLP_WORKERS=%d): the mapper's settings "
                        "cannot be sent to a worker process: %r", workers, exc)
            self.workers = 0

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return sorted(worker.pid for worker in self._all)

    @property
    def live(self) -> int:
        """Workers up (started and answered)."""
        with self._lock:
            return len(self._all)

    @property
    def ready(self) -> bool:
        return bool(self._all)

    def start(self) -> Pool:
        """Start the workers in the background."""
        with self._lock:
            if self.workers <= 0 or self._closed or self._started:
                return self
            self._started = True
        for _ in range(self.workers):
            self._spawn_later()
        return self

    def _spawn_later(self) -> None:
        threading.Thread(target=self._spawn, name="otlp-worker-start", daemon=True).start()

    def _spawn(self) -> None:
        worker = None
        try:
            worker = _Worker(self._arguments)
            worker.hello(120.0)
        except Exception as exc:
            log.warning("otlp: a mapping worker did not start (%r); mapping in-process meanwhile", exc)
            if worker is not None:
                worker.process.kill()
            return
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                self._all.add(worker)
        if closed:
            worker.stop()
            return
        self._idle.put(worker)
        log.info("otlp: mapping worker %d ready", worker.pid)

    def _replace(self, worker: _Worker, why: str) -> None:
        with self._lock:
            self._all.discard(worker)
            self.restarts += 1
            closed = self._closed
        log.warning("otlp: mapping worker %d %s; starting another (requests are mapped in-process meanwhile)",
                    worker.pid, why)
        worker.process.kill()
        try:
            worker.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if not closed:
            self._spawn_later()

    def map(self, data: bytes, content_type: str, timeout: float) -> Mapped | None:
        """The request mapped by a worker; None if none is up or it died meanwhile (map it in-process).
        Raises :class:`~llmsight.otlp.decode.BadRequest` for a payload the worker cannot read and
        :class:`~llmsight.otlp.writer.Busy` when no worker answered within ``timeout``."""
        if not self._all:
            return None
        deadline = time.monotonic() + timeout
        try:
            worker = self._idle.get(timeout=timeout)
        except queue.Empty:
            raise Busy(f"every mapping worker stayed busy for {timeout:g} s") from None
        try:
            status, value = worker.call(data, content_type, max(0.001, deadline - time.monotonic()))
        except _Dead as exc:
            self._replace(worker, f"is gone ({exc})")
            return None
        except TimeoutError:
            self._replace(worker, f"did not answer within {timeout:g} s")
            raise Busy(f"the mapping worker did not answer within {timeout:g} s") from None
        except Exception as exc:  # a result that cannot be read: this worker is out of step
            self._replace(worker, f"sent what cannot be read ({exc!r})")
            return None
        self._idle.put(worker)
        if status == "ok":
            mapped: Mapped = value
            return mapped
        if status == "bad":
            raise value
        log.warning("otlp: a mapping worker failed (%s); mapping this request in-process", value)
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.stop()
