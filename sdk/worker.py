"""The background worker: one daemon thread, a bounded queue, batches by count or time.

Modelled on OpenTelemetry's ``BatchProcessor`` and Sentry's ``worker.py``:

* The host thread only appends a small record (its arguments and result already cut to the text
  cap) with its approximate size to a deque; past ``LLMSIGHT_QUEUE_SIZE`` records or about
  ``LLMSIGHT_QUEUE_MAX_BYTES``, the oldest record falls out and is counted as dropped. The host
  never waits for the worker (host threads share only a short lock among themselves).
* Every ``LLMSIGHT_HEARTBEAT_S``, after each flush and before closing, the worker sends a
  ``heartbeat`` event with the cumulative counters (the loss audit).
* A released lock wakes the thread when a batch is full; otherwise it wakes every flush interval.
* Building events (rendering, redaction, JSON) happens here, off the host's call path.
* The thread gives the GIL back every ``sinks.YIELD_AFTER_S`` of work so a host thread never waits
  behind a long batch (CPython would otherwise let us hold it for the 5 ms switch interval).
* ``flush(timeout)`` and ``shutdown(timeout)`` have deadlines; nothing here waits forever.
* After ``os.fork()`` the child calls :meth:`Worker.reset_after_fork`: a fresh queue, fresh
  locks and no thread (a new one starts on the child's first event).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from llmsight.guard import guard, internal_error
from llmsight.sinks import Pacer, Sink, Stats

log = logging.getLogger("llmsight")

Builder = Callable[[Any], "tuple[str, bytes] | None"]


Heartbeat = Callable[[dict[str, int]], "tuple[str, bytes]"]


class Worker:
    def __init__(self, sink: Sink, build: Builder, *, queue_size: int, batch_size: int, flush_interval: float,
                 max_bytes: int = 64 * 1024 * 1024, heartbeat: Heartbeat | None = None,
                 heartbeat_s: float = 60.0) -> None:
        self.sink = sink
        self._build = build
        self._maxlen = queue_size
        self._max_bytes = max_bytes
        self._batch_size = batch_size
        self._interval = flush_interval
        self._heartbeat = heartbeat
        self._heartbeat_s = heartbeat_s
        self._fresh_state()

    def _fresh_state(self) -> None:
        # Records and their approximate bytes wait in two deques side by side (a (record, size) pair
        # would be one more object per call for the host's garbage collector to count and traverse:
        # issue 15, the broker-down worst call). The host appends the size first, then the record, and
        # past either bound drops the oldest record, then a size; the worker pops a record, then a size.
        # So whoever pops a record finds a size behind it; under a race the two sides may swap two sizes,
        # which leaves the totals exact. Byte counts are kept per side (one writer each), so the level is
        # bytes_in - bytes_out - bytes_evicted without a lock shared with the worker.
        self._queue: deque[Any] = deque()
        self._sizes: deque[int] = deque()
        self._submit_lock = threading.Lock()  # host threads among themselves; never held by the worker
        self._bytes_in = 0
        self._bytes_evicted = 0
        self._bytes_out = 0
        self._next_heartbeat = time.monotonic() + self._heartbeat_s
        # A lock used as a binary semaphore: the worker blocks acquiring it, the host wakes it with
        # release(). Unlike Event.set(), release() never waits for a lock the worker may hold, so
        # the host thread never gives up the GIL (and then waits to get it back) to wake us.
        self._wake_lock = threading.Lock()
        self._wake_lock.acquire()
        self._wake_pending = False
        self._cond = threading.Condition(threading.Lock())
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._queue_dropped = 0
        self._flush_requested = 0
        self._flush_done = 0
        self._flush_ok = True
        self._flush_deadline = 0.0
        self._stopping = False
        self._stopped = False
        self.stats = Stats()

    # -- the host's side (must stay cheap and never block) -----------------------------------------

    def submit(self, record: Any, size: int = 512) -> None:
        queue = self._queue
        lock = self._submit_lock
        lock.acquire()  # not ``with``: its __enter__/__exit__ calls cost more than the rest of submit
        try:
            self._sizes.append(size)
            queue.append(record)
            self._bytes_in += size
            if len(queue) > self._maxlen or self._bytes_in - self._bytes_out - self._bytes_evicted > self._max_bytes:
                self._evict(queue)
        finally:
            lock.release()
        if not self._wake_pending and len(queue) >= self._batch_size:
            self._wake()
        if self._thread is None:
            self.start()

    def _evict(self, queue: deque[Any]) -> None:
        """Past either bound, drop the oldest records and count them (the caller holds the submit lock)."""
        while len(queue) > self._maxlen or (
                len(queue) > 1 and self._bytes_in - self._bytes_out - self._bytes_evicted > self._max_bytes):
            try:
                queue.popleft()
            except IndexError:  # the worker took them meanwhile
                break
            self._queue_dropped += 1
            try:
                self._bytes_evicted += self._sizes.popleft()
            except IndexError:  # cannot happen (a size goes in before its record); never raise into the host
                pass

    def start(self) -> None:
        """Start the thread (``init`` does, so that the host's first call does not wait for it)."""
        with self._start_lock:
            if self._thread is not None or self._stopped:
                return
            thread = threading.Thread(target=self._run, name="llmsight-worker", daemon=True)
            thread.start()
            self._thread = thread

    def counters(self) -> dict[str, int]:
        counts: dict[str, int] = self.stats.snapshot()
        counts["dropped"] += self._queue_dropped
        return counts

    @property
    def queued_bytes(self) -> int:
        """Approximate bytes of the records waiting in the queue."""
        return self._bytes_in - self._bytes_out - self._bytes_evicted

    def _send_heartbeat(self) -> None:
        """Send this producer's cumulative counters (the loss audit's ``heartbeat`` event)."""
        if self._heartbeat is None:
            return
        self._next_heartbeat = time.monotonic() + self._heartbeat_s
        with guard("sending a heartbeat"):
            self.sink.send([self._heartbeat(self.counters())], self.stats)

    def flush(self, timeout: float) -> bool:
        """Hand everything queued so far to the sink and flush it; True if done within ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        thread = self._thread
        if thread is None or not thread.is_alive():
            return not self._queue
        with self._cond:
            self._flush_requested += 1
            ticket = self._flush_requested
            self._flush_deadline = deadline
        self._wake()
        with self._cond:
            while self._flush_done < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not thread.is_alive():
                    return False
                self._cond.wait(remaining)
            return self._flush_ok

    def shutdown(self, timeout: float) -> bool:
        """Flush, close the sink and stop the thread, all within ``timeout``; True if clean."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._start_lock:
            self._stopped = True
            thread = self._thread
        if thread is None or not thread.is_alive():
            if self._queue:
                return False
            with guard("closing the sink"):
                self.sink.close(max(0.0, deadline - time.monotonic()), self.stats)
            return True
        with self._cond:
            self._flush_deadline = deadline
            self._stopping = True
        self._wake()
        thread.join(max(0.0, deadline - time.monotonic()))
        return not thread.is_alive() and not self._queue

    def _wake(self) -> None:
        self._wake_pending = True
        try:
            self._wake_lock.release()
        except RuntimeError:  # already released: the worker is awake or about to be
            pass

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's queue, locks, thread and sink state."""
        self._fresh_state()
        with guard("resetting the sink after fork"):
            self.sink.after_fork()

    # -- the worker thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        log.debug("llmsight: worker started")
        while True:
            try:
                self._wake_lock.acquire(timeout=0.02 if self.sink.busy else self._interval)
                self._wake_pending = False
                self._drain()
                if self._heartbeat is not None and time.monotonic() >= self._next_heartbeat:
                    self._send_heartbeat()
                with guard("sink housekeeping"):
                    self.sink.tick(self.stats)
                if self._flush_requested > self._flush_done:
                    self._answer_flush()
                if self._stopping:
                    Pacer.hurry = True
                    self._drain()
                    if self._heartbeat is not None:
                        with guard("flushing before the last heartbeat"):
                            self.sink.flush(max(0.0, self._flush_deadline - time.monotonic()) * 0.5, self.stats)
                        self._send_heartbeat()
                    with guard("closing the sink"):
                        self.sink.close(max(0.0, self._flush_deadline - time.monotonic()), self.stats)
                    Pacer.hurry = False
                    log.debug("llmsight: worker stopped, %s", self.counters())
                    return
            except Exception as exc:  # the loop itself must survive anything
                internal_error("worker loop", exc)
                time.sleep(0.1)

    def _answer_flush(self) -> None:
        with self._cond:
            ticket = self._flush_requested
            deadline = self._flush_deadline
        Pacer.hurry = True
        try:
            self._drain()
            ok = False
            with guard("flushing the sink"):
                ok = self.sink.flush(max(0.0, deadline - time.monotonic()), self.stats)
            if self._heartbeat is not None:
                self._send_heartbeat()  # the counters as of this flush
                with guard("flushing the heartbeat"):
                    self.sink.flush(max(0.0, deadline - time.monotonic()), self.stats)
        finally:
            Pacer.hurry = False
        with self._cond:
            self._flush_done = ticket
            self._flush_ok = ok and not self._queue
            self._cond.notify_all()

    def _drain(self) -> None:
        """Build and send everything queued, a batch at a time."""
        queue = self._queue
        pacer = Pacer()
        while queue:
            batch: list[tuple[str, bytes]] = []
            failed = 0
            while queue and len(batch) < self._batch_size:
                try:
                    record = queue.popleft()
                except IndexError:
                    break
                try:
                    self._bytes_out += self._sizes.popleft()
                except IndexError:  # cannot happen: a size goes in before its record
                    pass
                try:
                    built = self._build(record)
                    if built is not None:
                        batch.append(built)
                except Exception as exc:
                    failed += 1
                    internal_error("building an event", exc)
                pacer.tick()
            if failed:
                self.stats.add(failed=failed)
            if batch:
                with guard("sending a batch"):
                    self.sink.send(batch, self.stats)
                pacer.restart()
