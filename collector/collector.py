"""The collector loop: read a source, batch, validate, insert into ClickHouse, then commit.

At least once, exactly once in the tables:

* a batch closes at ``LLMSIGHT_COLLECTOR_BATCH_EVENTS`` messages, ``..._BATCH_SECONDS`` of age or
  ``..._BATCH_BYTES`` of raw data, whichever comes first;
* its rows go to ``events``, ``feedback`` and ``dead_letters`` with an
  ``insert_deduplication_token`` named after the source range, and only then is the source
  position committed; a batch replayed after a crash carries the same token and is dropped by
  ClickHouse, and ``ReplacingMergeTree`` folds any other copy by ``event_id``;
* a writer thread inserts batch N while batch N+1 is read and validated (chdb and the server
  work without the GIL); commits stay in source order, always from the collector's thread;
* while ClickHouse is down the batch is retried with exponential backoff; nothing is committed
  and nothing more is read, so memory stays at two batches at most;
* a batch the store *answers and refuses* (a data error, not a connection, timeout, memory, parts
  or missing-table error, see :func:`store_down`) ``BISECT_AFTER`` times in a row, while it still
  answers ``SELECT 1``, is inserted by halves, recursively, each half with a token of its own
  (``<token>/<table>/<from>-<to>``, so a bisection interrupted by an outage resumes deduplicated);
  a row the store refuses alone becomes a ``rejected`` dead letter with the store's reason and
  its raw message, and the batch is committed: ingestion moves on;
* ``stop_event`` (SIGTERM in the CLI) finishes the batch in hand, commits it and returns;
* if an error escapes, whatever is not committed is forgotten, so ``run()`` may be called again.

``Collector(source, client).run(stop_event)`` is what ``llmsight up`` runs in a thread.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec

from llmsight import config
from llmsight.collector import settings
from llmsight.collector.batch import REJECTED, Batch, DeadLetter
from llmsight.collector.observability import CollectorMetrics, HealthServer
from llmsight.collector.source import Checkpoint, Source
from llmsight.store import settings as store_settings
from llmsight.store.rows import (
    DEAD_LETTER_COLUMNS,
    DEAD_LETTER_KIND_COLUMN,
    EVENT_COLUMNS,
    FEEDBACK_COLUMNS,
    HEARTBEAT_COLUMNS,
    PRODUCER_ID_COLUMN,
)

log = logging.getLogger("llmsight.collector")

_IDLE_POLL_S = 0.5  # how long an empty collector waits on the source per loop turn
_FIRST_RETRY_S = 0.2
_STOP_GRACE_S = 10.0  # after a stop request, how long a failing insert is still retried
_STALL_S = 60.0  # /healthz fails when the loop has not turned for this long
# How ClickHouse reads the JSON columns: timestamps as msgspec writes them (ISO 8601 with "Z"), and
# floats exactly as written (the default fast parser may differ from Python in the last digit).
_JSON_INPUT = {"date_time_input_format": "best_effort", "precise_float_parsing": 1}
_json_columns = msgspec.json.Encoder().encode
# Python collects its youngest generation every 700 new container objects; reading a batch makes
# ~10 per message (kafka-python's records), so with the default the collector ran a collection
# every 70 messages, each also scanning what the batch holds. While it runs, the threshold is raised.
_GC_YOUNG_THRESHOLD = 50_000
# Failed attempts the store answered with a data error before a batch is inserted by halves.
BISECT_AFTER = 3
_EVENT_INSERT = [*EVENT_COLUMNS, PRODUCER_ID_COLUMN]
_FEEDBACK_INSERT = [*FEEDBACK_COLUMNS, PRODUCER_ID_COLUMN]
_DEAD_LETTER_INSERT = [*DEAD_LETTER_COLUMNS, DEAD_LETTER_KIND_COLUMN]
# ClickHouse error codes that say the store (or the table) cannot take writes now, whatever the rows:
# retried for ever, never bisected. Any other error the server answers with is about the data.
TRANSIENT_CODES = frozenset({
    3, 16, 32, 47, 60, 74, 75, 76, 81, 101, 102, 159, 164, 173, 202, 203, 209, 210, 225, 236, 241, 242,
    243, 252, 279, 285, 286, 319, 394, 425, 439, 497, 516, 999, 1000, 1001,
})
_CODE = re.compile(r"Code: (\d+)")


@dataclass
class CollectorStats:
    """What a collector has done so far (a snapshot; see :meth:`Collector.stats`)."""

    messages: int = 0  # read from the source
    events: int = 0  # llm_call rows inserted
    feedback: int = 0  # feedback rows inserted
    heartbeats: int = 0  # producer_heartbeats rows inserted
    dead_letters: int = 0  # rows inserted into dead_letters (or, with dead_letters off, not stored)
    rejected: int = 0  # rows the store refused alone, sent to dead_letters (bisection)
    bisected_batches: int = 0  # batches the store kept refusing, inserted by halves
    batches: int = 0  # batches inserted and committed
    insert_errors: int = 0  # failed insert attempts (each retried)
    commit_errors: int = 0  # failed commits (the batch is replayed and deduplicated)
    dropped_batches: int = 0  # uncommitted batches given up; they are read again
    revoke_flushes: int = 0  # batches inserted because their partitions were being revoked
    last_batch_ms: float = 0.0
    lag: int | None = None
    store_up: bool = True
    running: bool = False
    dead_letter_kinds: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Collector:
    """Moves messages from ``source`` into the store behind ``client`` (a clickhouse-connect client)."""

    def __init__(self, source: Source, client: Any, *, batch_events: int | None = None,
                 batch_seconds: float | None = None, batch_bytes: int | None = None,
                 max_message_bytes: int | None = None, retry_max_s: float | None = None,
                 http_port: int | None = None, metrics: CollectorMetrics | None = None,
                 retention_days: int | None = None, dead_letters: bool = True) -> None:
        self.source = source
        self.client = client
        self.batch_events = config.resolve(settings.COLLECTOR_BATCH_EVENTS, batch_events, strict=True)
        self.batch_seconds = config.resolve(settings.COLLECTOR_BATCH_SECONDS, batch_seconds, strict=True)
        self.batch_bytes = config.resolve(settings.COLLECTOR_BATCH_BYTES, batch_bytes, strict=True)
        self.max_message_bytes = config.resolve(settings.COLLECTOR_MAX_MESSAGE_BYTES, max_message_bytes,
                                                strict=True)
        self.retry_max_s = config.resolve(settings.COLLECTOR_RETRY_MAX_S, retry_max_s, strict=True)
        self.http_port = config.resolve(settings.COLLECTOR_HTTP_PORT, http_port, strict=True)
        self.retention_days = config.resolve(store_settings.RETENTION_DAYS, retention_days, strict=True)
        # False for a replay of dead letters: what fails again is already there (counted, not stored).
        self.store_dead_letters = dead_letters
        self.metrics = metrics or CollectorMetrics()
        self._stats = CollectorStats()
        self._stats_lock = threading.Lock()
        self._batch = self._new_batch()
        self._inflight: _InFlight | None = None
        # One writer thread per run: chdb and the server do their part of an insert without the
        # GIL, so writing batch N overlaps reading and validating batch N+1.
        self._writer: ThreadPoolExecutor | None = None
        self._column_types: dict[str, list[str]] = {}
        self._closed = False
        self._flushing = False
        self._stop: threading.Event = threading.Event()
        self._beat = time.monotonic()
        self._last_flush_at: float | None = None
        self._http: HealthServer | None = None
        self._stop_grace_s = _STOP_GRACE_S
        source.on_revoke = self._on_revoke

    # -- public API -------------------------------------------------------------------------------
    def run(self, stop_event: threading.Event) -> CollectorStats:
        """Collect until ``stop_event`` is set; then insert and commit the batch in hand, and return."""
        self._stop = stop_event
        with self._running():
            while not stop_event.is_set():
                self._step()
            self._flush()
            self._settle()
        return self.stats()

    def run_until_idle(self, stop_event: threading.Event | None = None,
                       timeout_s: float | None = None) -> CollectorStats:
        """Collect until the source has nothing new (or ``stop_event``/``timeout_s``), then return."""
        self._stop = stop_event or threading.Event()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._running():
            while not self._stop.is_set():
                if deadline is not None and time.monotonic() > deadline:
                    log.warning("collector: not idle after %.0f s; stopping", timeout_s)
                    break
                self._step(idle_poll_s=0.1)
                if self.source.idle():
                    if not self._batch and self._inflight is None:
                        break
                    self._flush()
                    self._settle()
            self._flush()
            self._settle()
        return self.stats()

    def stats(self) -> CollectorStats:
        """A copy of the counters, safe to read from any thread."""
        with self._stats_lock:
            return CollectorStats(**asdict(self._stats))

    def healthy(self) -> bool:
        return self._stats.running and time.monotonic() - self._beat < _STALL_S + self.batch_seconds

    def ready(self) -> bool:
        return self.healthy() and self._stats.store_up

    # -- the loop ---------------------------------------------------------------------------------
    def _new_batch(self) -> Batch:
        return Batch(self.max_message_bytes, retention_days=self.retention_days)

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        if self._closed:
            raise RuntimeError("collector: closed; make a new Collector (and source)")
        if self.http_port and self._http is None:
            self._http = HealthServer(self.http_port, self.metrics, self.healthy, self.ready)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmsight-collector-insert")
        _raise_gc_threshold()
        self._set(running=True)
        log.info("collector: reading %s (batches of %d messages / %.1f s / %d bytes)",
                 self.source.url, self.batch_events, self.batch_seconds, self.batch_bytes)
        failed = True
        try:
            yield
            failed = False
        finally:
            self._set(running=False)
            self._writer.shutdown(wait=True)
            _restore_gc_threshold()
            if failed:
                # An error escaped the loop: forget what is not committed, so that calling run()
                # again (llmsight up restarts its collector thread) reads it again.
                self._inflight = None
                self._batch = self._new_batch()
                self.source.rewind()
            if not failed or self._stop.is_set():
                self.close()
            s = self.stats()
            log.info("collector: stopped after %d messages: %d events, %d feedback, %d dead letters "
                     "in %d batches", s.messages, s.events, s.feedback, s.dead_letters, s.batches)

    def close(self) -> None:
        """Release the source and the HTTP port (run() does it when it returns normally)."""
        if self._closed:
            return
        self._closed = True
        self.source.close()
        if self._http is not None:
            self._http.close()
            self._http = None

    def _step(self, idle_poll_s: float = _IDLE_POLL_S) -> None:
        self._beat = time.monotonic()
        batch = self._batch
        # Short polls even when the batch may wait longer: a stop request is seen within one.
        if batch:
            timeout = min(idle_poll_s, max(0.0, self.batch_seconds - batch.age(self._beat)))
        else:
            timeout = idle_poll_s
        chunks = self.source.poll(timeout, self.batch_events - len(batch), self.batch_bytes - batch.nbytes)
        # A rebalance inside poll() may have inserted the batch and started a new one: the new
        # messages belong to that one (adding them to the old object would commit them unstored).
        batch = self._batch
        if chunks and not batch:
            batch.generation = self.source.generation
        received = 0
        for chunk in chunks:
            batch.add(chunk)
            received += len(chunk.values)
        if received:
            self.metrics.messages.inc(received)
            with self._stats_lock:
                self._stats.messages += received
        if self._inflight is not None and self._inflight.future.done():
            self._settle()  # commit as soon as the insert is done; retry here if it failed
            batch = self._batch
        if batch and (len(batch) >= self.batch_events or batch.nbytes >= self.batch_bytes
                      or batch.age() >= self.batch_seconds):
            self._flush()
        elif not chunks:
            self._update_lag()

    def _flush(self) -> None:
        """Seal the batch in hand and start inserting it in the background.

        The previous batch is settled (inserted and committed) first, so commits stay in source
        order; meanwhile the next batch is read and validated while this one is being written.
        """
        batch = self._batch
        if not batch:
            return
        checkpoint = self.source.checkpoint()
        self._batch = self._new_batch()
        if checkpoint is None:  # cannot happen with a well-behaved source; never insert unnamed data
            log.error("collector: a batch of %d messages had no source range; dropped", len(batch))
            return
        if not self._settle():
            # The batch before this one was given up: committing this one would skip it.
            self.source.rewind()
            return
        assert self._writer is not None  # only called while running
        self._inflight = _InFlight(batch, checkpoint, self._writer.submit(self._insert, batch, checkpoint))

    def _settle(self) -> bool:
        """Wait for the batch being inserted; retry it here if that failed; then commit it.

        False when the batch had to be given up (then nothing read after it may be committed).
        """
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return True
        batch, checkpoint = inflight.batch, inflight.checkpoint
        self._flushing = True
        try:
            try:
                inflight.future.result()
                stored = True
            except Exception as exc:
                self._insert_failed(batch, checkpoint, exc, _FIRST_RETRY_S)
                stored = self._wait(_FIRST_RETRY_S, batch) and self._insert_with_retry(batch, checkpoint, exc)
            if stored and self.source.generation != batch.generation:
                stored = False  # inserted, but its partitions moved meanwhile: their owner replays
        finally:
            self._flushing = False
        if not stored:
            self._give_up(batch)
            return False
        try:
            self.source.commit(checkpoint)
        except Exception:
            self.metrics.commit_errors.inc()
            self._set(commit_errors=self._stats.commit_errors + 1)
        self._update_lag()
        return True

    def _give_up(self, batch: Batch) -> None:
        """Forget an uncommitted batch and everything read after it: it all gets read again."""
        self._batch = self._new_batch()
        self.source.rewind()
        self.metrics.dropped_batches.inc()
        self._set(dropped_batches=self._stats.dropped_batches + 1)

    def _insert_with_retry(self, batch: Batch, checkpoint: Checkpoint, first: Exception | None = None) -> bool:
        """Retry a failed insert with exponential backoff until it succeeds or must be given up.

        A store that is down is retried for ever (nothing is lost); a batch the store keeps
        refusing while it answers is bisected after ``BISECT_AFTER`` refusals.
        """
        delay = min(_FIRST_RETRY_S * 2, self.retry_max_s)
        stop_deadline: float | None = None
        refusals = 0 if first is None or store_down(first) else 1
        while True:
            try:
                self._insert(batch, checkpoint)
                return True
            except Exception as exc:  # any store failure: retry; the batch stays in memory
                refusals = 0 if store_down(exc) else refusals + 1
                if refusals >= BISECT_AFTER and not batch.bisect and self._store_answers():
                    log.warning("collector: the store refused the batch of %d messages (%s) %d times while "
                                "answering queries (%s); inserting it by halves, rows refused alone go to "
                                "dead_letters", len(batch), checkpoint.token, refusals, _short(exc))
                    batch.bisect = True
                    self._set(bisected_batches=self._stats.bisected_batches + 1)
                    continue
                self._insert_failed(batch, checkpoint, exc, delay)
            if self._stop.is_set():
                stop_deadline = stop_deadline or time.monotonic() + self._stop_grace_s
                if time.monotonic() >= stop_deadline:
                    log.error("collector: stopping with %d uncommitted messages (store unreachable); "
                              "they will be read again", len(batch))
                    return False
            if not self._wait(delay, batch):
                return False
            delay = min(delay * 2, self.retry_max_s)

    def _insert_failed(self, batch: Batch, checkpoint: Checkpoint, exc: Exception, delay: float) -> None:
        self.metrics.insert_errors.inc()
        self.metrics.store_up.set(0)
        with self._stats_lock:
            self._stats.insert_errors += 1
            self._stats.store_up = False
        log.warning("collector: insert of %d messages (%s) failed: %s; retrying in %.1f s, "
                    "nothing committed", len(batch), checkpoint.token, _short(exc), delay)

    def _wait(self, seconds: float, batch: Batch) -> bool:
        """Sleep before a retry, keeping the source alive; False when the batch became stale."""
        end = time.monotonic() + seconds
        while True:
            self._beat = time.monotonic()
            self.source.keepalive()
            if self.source.generation != batch.generation:
                log.warning("collector: partitions moved while the store was down; dropping %d "
                            "uncommitted messages, their new owner reads them again", len(batch))
                return False
            remaining = end - time.monotonic()
            if remaining <= 0:
                return True
            if self._stop.is_set():  # stopping: retry soon, within the grace period
                time.sleep(min(0.5, remaining))
                return True
            self._stop.wait(min(1.0, remaining))

    def _store_answers(self) -> bool:
        try:
            self.client.query("SELECT 1")
            return True
        except Exception as exc:
            log.warning("collector: the store does not answer (%s); retrying the batch as it is", _short(exc))
            return False

    def _insert(self, batch: Batch, checkpoint: Checkpoint) -> None:
        started = time.perf_counter()
        # The token names the source range; ClickHouse drops a block whose token it has seen, and
        # tokens are per table, so one token serves all the inserts.
        # Only rows inside the batch's ts window are stored (the rest are dead letters), so the rows
        # span at most that window's months: a cap that bounds the partitions a batch can create
        # and that a batch never exceeds.
        settings = {"insert_deduplication_token": checkpoint.token,
                    "max_partitions_per_insert_block": batch.partition_cap}
        n_events, n_feedback, n_beats = batch.n_events, batch.n_feedback, batch.n_heartbeats
        if batch.bisect:
            batch.rejected, batch.rejected_by_table = [], {}  # an interrupted bisection starts again
        insert = self._insert_bisecting if batch.bisect else self._insert_rows
        if n_events:
            insert(batch, "events", _EVENT_INSERT, [*batch.event_columns(), batch.event_producers()], settings)
        if n_feedback:
            insert(batch, "feedback", _FEEDBACK_INSERT, [*batch.feedback_columns(), batch.feedback_producers()],
                   settings)
        if n_beats:
            insert(batch, "producer_heartbeats", HEARTBEAT_COLUMNS, batch.heartbeat_columns(), settings)
        dead = batch.dead_letters
        if dead and self.store_dead_letters:
            dead_settings = settings
            if batch.rejected:  # not the dead letters an earlier attempt may have stored
                dead_settings = {**settings, "insert_deduplication_token": f"{checkpoint.token}/bisected"}
            self._insert_native("dead_letters", _DEAD_LETTER_INSERT,
                                 [[d.where for d in dead], [d.reason for d in dead], [d.raw for d in dead],
                                  [d.kind for d in dead]], dead_settings)
        elapsed = time.perf_counter() - started
        self._record(batch, elapsed)
        log.info("collector: batch of %d inserted in %.0f ms (%d events, %d feedback, %d heartbeats, "
                 "%d dead letters)", len(batch), elapsed * 1000, n_events - _rejected(batch, "events"),
                 n_feedback - _rejected(batch, "feedback"), n_beats - _rejected(batch, "producer_heartbeats"),
                 len(dead))

    def _insert_rows(self, batch: Batch, table: str, columns: list[str], data: list[list[Any]],
                     settings: dict[str, Any]) -> None:
        self._insert_json(table, columns, data, settings)

    def _insert_bisecting(self, batch: Batch, table: str, columns: list[str], data: list[list[Any]],
                          settings: dict[str, Any]) -> None:
        """Insert ``data`` by halves; a row refused alone becomes a ``rejected`` dead letter.

        A store that stops answering meanwhile raises out of here, and the whole batch is retried.
        """
        token = settings["insert_deduplication_token"]
        raws = batch.raws(table)
        sources = data[columns.index("source")]
        pending = [(0, len(data[0]))]
        while pending:
            lo, hi = pending.pop()
            part = data if (lo, hi) == (0, len(data[0])) else [column[lo:hi] for column in data]
            try:
                self._insert_json(table, columns, part, {**settings, "insert_deduplication_token": f"{token}/{table}/{lo}-{hi}"})
                continue
            except Exception as exc:
                if store_down(exc):
                    raise
                if hi - lo == 1:
                    batch.rejected.append(DeadLetter(sources[lo], REJECTED, f"{table}: the store rejected this row: "
                                                     f"{_short(exc, 1000)}", bytes(raws[lo])))
                    batch.rejected_by_table[table] = batch.rejected_by_table.get(table, 0) + 1
                    log.warning("collector: the store rejected one %s row from %s; sent to dead_letters: %s",
                                table, sources[lo], _short(exc))
                    continue
            middle = (lo + hi) // 2
            pending += [(middle, hi), (lo, middle)]  # the first half first

    def _insert_json(self, table: str, columns: list[str], data: list[list[Any]],
                     settings: dict[str, Any]) -> None:
        """Insert ``data`` (one list per column) into ``table`` as one JSON document.

        msgspec writes it in C and ClickHouse parses it in C++ without the GIL: clickhouse-connect's
        Native encoder is Python, and held the GIL for a third of each insert, slowing the thread
        reading the next batch. The stored values are the same (test_collector_json_insert.py).
        A batch msgspec cannot write (a str holding a lone surrogate) goes the Native way.
        """
        try:
            payload = _json_columns(data)
        except (msgspec.EncodeError, UnicodeEncodeError, TypeError) as exc:
            log.warning("collector: %s batch not writable as JSON (%s); inserting it as Native", table, exc)
            self._insert_native(table, columns, data, settings)
            return
        self.client.raw_insert(table, columns, payload, settings={**settings, **_JSON_INPUT},
                               fmt="JSONCompactColumns")

    def _insert_native(self, table: str, columns: list[str], data: list[list[Any]],
                       settings: dict[str, Any]) -> None:
        """Insert through clickhouse-connect's Native encoder (dead letters: arbitrary bytes, which
        JSON cannot carry)."""
        # Without the column types, clickhouse-connect asks the store (DESCRIBE TABLE) before every
        # insert: one extra query per table and batch. They are asked once per collector instead.
        types = self._column_types.get(table)
        if types is None:
            context = self.client.create_insert_context(table, columns)
            types = self._column_types[table] = [t.name for t in context.column_types]
        self.client.insert(table, data, column_names=columns, column_type_names=types, column_oriented=True,
                           settings=settings)

    def _record(self, batch: Batch, elapsed: float) -> None:
        m = self.metrics
        m.batch_seconds.observe(elapsed)
        m.batches.inc()
        m.store_up.set(1)
        n_events = batch.n_events - _rejected(batch, "events")
        n_feedback = batch.n_feedback - _rejected(batch, "feedback")
        n_beats = batch.n_heartbeats - _rejected(batch, "producer_heartbeats")
        dead_letters = batch.dead_letters
        m.rows.labels("events").inc(n_events)
        m.rows.labels("feedback").inc(n_feedback)
        m.rows.labels("producer_heartbeats").inc(n_beats)
        if self.store_dead_letters:
            m.rows.labels("dead_letters").inc(len(dead_letters))
        kinds: dict[str, int] = {}
        for dead in dead_letters:
            m.dead_letters.labels(dead.kind).inc()
            kinds[dead.kind] = kinds.get(dead.kind, 0) + 1
            log.debug("collector: dead letter from %s: %s", dead.where, dead.reason)
        now = time.monotonic()
        if self._last_flush_at is not None and now > self._last_flush_at:
            m.rows_per_second.set(len(batch) / (now - self._last_flush_at))
        self._last_flush_at = now
        with self._stats_lock:
            s = self._stats
            s.events += n_events
            s.feedback += n_feedback
            s.heartbeats += n_beats
            s.dead_letters += len(dead_letters)
            s.rejected += len(batch.rejected)
            for kind, count in kinds.items():
                s.dead_letter_kinds[kind] = s.dead_letter_kinds.get(kind, 0) + count
            s.batches += 1
            s.last_batch_ms = elapsed * 1000
            s.store_up = True

    def _update_lag(self) -> None:
        lag = self.source.lag()
        self.metrics.lag.set(-1 if lag is None else lag)
        self._set(lag=lag)

    def _set(self, **values: Any) -> None:
        with self._stats_lock:
            for key, value in values.items():
                setattr(self._stats, key, value)

    # -- rebalances (called from inside source.poll) ----------------------------------------------
    def _on_revoke(self, lost: bool) -> Checkpoint | None:
        """Partitions are leaving: insert what is held and hand back the checkpoint to commit.

        Runs inside ``source.poll()`` (kafka-python's IO thread, while the collector's thread
        waits in poll), so nothing else touches the batches meanwhile.
        """
        if self._flushing:  # inside a retry: the retry loop sees the new generation and gives up
            return None
        inflight, self._inflight = self._inflight, None
        batch = self._batch
        self._batch = self._new_batch()
        checkpoint = self.source.checkpoint() if batch else None
        done: Checkpoint | None = None
        if inflight is not None:
            try:
                inflight.future.result()
                done = inflight.checkpoint
            except Exception as exc:
                self._revoke_insert_failed(exc, len(inflight.batch) + len(batch))
                return None  # nothing after a failed batch may be committed
        if lost:
            dropped = len(batch) + (len(inflight.batch) if inflight else 0)
            if dropped:
                log.warning("collector: dropping %d uncommitted messages of lost partitions", dropped)
                self.metrics.dropped_batches.inc()
                self._set(dropped_batches=self._stats.dropped_batches + 1)
            return None
        if batch and checkpoint is not None:
            try:
                self._insert(batch, checkpoint)
                done = checkpoint if done is None else done.merged(checkpoint)
                self._set(revoke_flushes=self._stats.revoke_flushes + 1)
            except Exception as exc:
                self._revoke_insert_failed(exc, len(batch))
        return done

    def _revoke_insert_failed(self, exc: Exception, messages: int) -> None:
        self.metrics.insert_errors.inc()
        log.warning("collector: insert before a rebalance failed (%s); %d messages will be replayed "
                    "by the partitions' next owner", _short(exc), messages)
        self._set(insert_errors=self._stats.insert_errors + 1, store_up=False)


# The GC threshold is the process's: with several collectors running at once (N in one process,
# or `llmsight up`), the first to start raises it and the last to stop restores it.
_gc_lock = threading.Lock()
_gc_running = 0
_gc_saved: tuple[int, ...] = ()


def _raise_gc_threshold() -> None:
    global _gc_running, _gc_saved
    with _gc_lock:
        if _gc_running == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(max(_gc_saved[0], _GC_YOUNG_THRESHOLD), *_gc_saved[1:])
        _gc_running += 1


def _restore_gc_threshold() -> None:
    global _gc_running
    with _gc_lock:
        _gc_running -= 1
        if _gc_running == 0:
            gc.set_threshold(*_gc_saved)


@dataclass
class _InFlight:
    batch: Batch
    checkpoint: Checkpoint
    future: Future[None]


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "..."


def _rejected(batch: Batch, table: str) -> int:
    return batch.rejected_by_table.get(table, 0)


def store_down(exc: BaseException) -> bool:
    """True when ``exc`` says the store cannot take writes now, whatever the rows (retry for ever);
    False when the store answered and refused the data (a batch refused so is bisected).

    A refusal is an error the server answered with (clickhouse-connect's ``DatabaseError``, not an
    ``OperationalError``, which is a connection failure) whose ClickHouse code is not one of
    :data:`TRANSIENT_CODES` (timeouts, memory, too many parts, read-only, unknown table or column,
    access, Keeper, ...). Anything else, or an error without a code, counts as the store being down.
    """
    try:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
    except ImportError:  # pragma: no cover - the server extra is installed wherever the collector runs
        return True
    if not isinstance(exc, DatabaseError) or isinstance(exc, OperationalError):
        return True
    code = getattr(exc, "code", None)
    if not isinstance(code, int):
        found = _CODE.search(str(exc))
        code = int(found.group(1)) if found else None
    return code is None or code in TRANSIENT_CODES
