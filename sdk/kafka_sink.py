"""The ``kafka://`` sink: an idempotent kafka-python producer, with a local spill while Kafka is away.

* The producer is created lazily in the worker thread (its constructor connects to the broker,
  which must never happen on the host's call path), with ``acks=all``, idempotence, lz4 or gzip
  compression, and the trace id as the key (all events of a trace land on one partition).
* Kafka is judged unreachable when a TCP connect to every bootstrap server fails, or when sent
  events have waited ``STALL_S`` without any acknowledgement. Then new events go to the spill
  spool (``LLMSIGHT_SPILL_DIR/<topic>``, the same segment format as the ``file://`` sink),
  capped at ``LLMSIGHT_SPILL_MAX_BYTES``: past the cap the oldest segment is deleted and its
  events counted as dropped.
* Events already handed to the producer stay there: it retries them itself (for up to
  ``delivery_timeout_ms``) and its idempotence keeps those retries from duplicating. Only
  events the producer gives up on are spilled.
* A record the broker refuses (too large, invalid: :func:`record_error`) is dropped and counted as
  failed, and the records behind it go on; only connection-level failures spill.
* The spill cap also holds for all processes of the host together: while spilling, at most every
  ``RESCAN_EVERY_S``, the directory is listed and the oldest closed segments of any process on this
  host deleted (and counted). Between listings only this process's own spill is checked.
* When a TCP probe succeeds again, the spill is replayed oldest first; a segment is deleted
  once every event in it is acknowledged (or, if the broker fails again, re-spilled).
* The sink keeps its own spill segments (paths, order, sizes) in memory: only this process
  writes, claims, replays and deletes segments named with its pid, so the directory is listed
  once at start (spill of an earlier process with this pid) and then every ``RESCAN_EVERY_S``
  while Kafka is reachable, to claim the spill of processes that died since.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmsight import config
from llmsight.guard import guard, warn_every
from llmsight.sinks import Batch, Pacer, Sink, Stats, events_in, is_heartbeat
from llmsight.spool import (
    CLOSED_SUFFIX,
    SpoolWriter,
    enforce_cap,
    hostname,
    list_segments,
    parse_base,
    pid_alive,
    read_lines,
)

log = logging.getLogger("llmsight")

STALL_S = 3.0  # sent events unacknowledged this long: treat Kafka as unreachable
PROBE_EVERY_S = 0.5  # while unreachable, how often to try a TCP connect
PROBE_TIMEOUT_S = 0.25
MAX_IN_FLIGHT = 50_000  # events handed to the producer and not yet acknowledged
REPLAY_SLICE_S = 0.2  # longest stretch of replay per worker wake-up
RESCAN_EVERY_S = 5.0  # while reachable, how often to list the spill directory for dead processes' spill


def compression_type(choice: str) -> str | None:
    """kafka-python's ``compression_type`` for ``LLMSIGHT_KAFKA_COMPRESSION`` (``auto``: lz4 when installed)."""
    if choice == "none":
        return None
    if choice != "auto":
        return choice
    try:
        import lz4.frame  # noqa: F401

        return "lz4"
    except ImportError:
        return "gzip"


# Errors about one record, not about the connection: the broker (or the client, before sending)
# refuses this record and would refuse it again, so it is dropped and counted as failed, never spilled.
_RECORD_ERRORS = ("MessageSizeTooLargeError", "RecordTooLargeError", "InvalidRecordError", "CorruptRecordError",
                  "CorruptRecordException", "RecordListTooLargeError", "UnsupportedForMessageFormatError",
                  "InvalidTimestampError")


def record_error(exc: Any) -> bool:
    """True if ``exc`` rejects one record (too large, invalid), False for connection-level failures."""
    if exc is None:
        return False
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names.intersection(_RECORD_ERRORS)) or isinstance(exc, (TypeError, ValueError, AssertionError))


_CLAIMED_SEQ = 500_000  # seq numbers of claimed segments start here, apart from the writer's own
_TRACE_FIELD = b'"trace_id":"'


def _trace_key(line: bytes) -> str:
    """The trace id of an encoded event, found without parsing it (the encoder writes compact JSON)."""
    at = line.find(_TRACE_FIELD)
    if at < 0:
        return ""
    start = at + len(_TRACE_FIELD)
    end = line.find(b'"', start)
    return line[start:end].decode("utf-8", "replace") if end > start else ""


class _Replay:
    """One spill segment being replayed: lines still to submit and acknowledgements still due."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: Iterator[tuple[int, int, bytes]] | None = read_lines(path)
        self.pending = 0


class KafkaSink(Sink):  # type: ignore[misc]
    def __init__(self, servers: list[str], topic: str, *, spill_dir: str, spill_max_bytes: int,
                 segment_bytes: int, fsync: str) -> None:
        self.servers = servers
        self.topic = topic
        self.spill_dir = Path(os.path.expanduser(spill_dir)) / topic
        self.spill_max_bytes = spill_max_bytes
        # Small spill segments, so that the byte cap drops old data in small steps.
        spill_segment = max(64 * 1024, min(segment_bytes, spill_max_bytes // 16))
        self._spill = SpoolWriter(self.spill_dir, spill_segment, fsync, on_closed=self._segment_closed)
        self._compression = compression_type(config.resolve(config.KAFKA_COMPRESSION))
        self._fresh()

    def _fresh(self) -> None:
        self._producer: Any = None
        self._reachable = False
        self._next_probe = 0.0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last_ack = time.monotonic()
        self._given_up: list[tuple[str, bytes]] = []  # failed deliveries, spilled by the worker thread
        self._replay: _Replay | None = None
        self._stats: Stats | None = None
        # This process's spill segments other than the active one, oldest first: path -> (bytes,
        # replayable). None until the directory is first listed. Replayable is False only for an
        # ``.open`` segment left by an earlier process with this pid (never replayed, as before,
        # but counted against the cap).
        self._segments: dict[Path, tuple[int, bool]] | None = None
        self._segment_bytes = 0  # the sum of their sizes
        self._rescan_at = 0.0  # when _own_segments lists the directory again
        # While spilling, the directory is listed for the shared cap at most every RESCAN_EVERY_S (this
        # process's own segments are capped at once, from the in-memory view).
        self._shared_check_at = time.monotonic() + RESCAN_EVERY_S

    @property
    def busy(self) -> bool:
        """True while there is spill to replay, so the worker wakes often."""
        if not self._reachable:
            return False
        # Not listed yet: wake soon, the next tick lists it.
        return self._replay is not None or self._segments is None or self._spill_has_data()

    # -- the worker's calls --------------------------------------------------------------------------

    def send(self, batch: Batch, stats: Stats) -> None:
        self._stats = stats
        if not self._check_reachable():
            self._spill_lines(batch, stats)
            return
        if self._in_flight >= MAX_IN_FLIGHT:  # Kafka is slower than the app: keep the excess on disk
            self._spill_lines(batch, stats)
            return
        pacer = Pacer()
        for i, (key, line) in enumerate(batch):
            try:
                self._produce(key, line, None)
            except Exception as exc:
                if record_error(exc):  # this record only: the ones behind it go on
                    self._record_failed(line, exc, stats)
                    continue
                log.warning("llmsight: kafka send failed (%r); spilling the rest of the batch", exc)
                self._reachable = False
                self._spill_lines(batch[i:], stats)
                return
            pacer.tick()

    def tick(self, stats: Stats) -> None:
        self._stats = stats
        self._spill_given_up(stats)
        if self._check_reachable():
            self._replay_some(time.monotonic() + REPLAY_SLICE_S)

    def flush(self, timeout: float, stats: Stats) -> bool:
        """Replay the spill and wait for every acknowledgement; if Kafka is away, True once all is spilled."""
        self._stats = stats
        deadline = time.monotonic() + timeout
        self._rescan_at = 0.0  # a flush also replays the spill of processes that died meanwhile
        while True:
            self._spill_given_up(stats)
            if not self._check_reachable():
                return self._in_flight == 0 and not self._given_up  # all of it on disk
            self._replay_some(deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self._producer.flush(timeout=min(remaining, 1.0))
            except Exception:  # KafkaTimeoutError: not everything acknowledged yet
                pass
            self._spill_given_up(stats)
            if self._in_flight == 0 and self._replay is None and not self._spill_has_data():
                return True
            if time.monotonic() >= deadline:
                return False

    def close(self, timeout: float, stats: Stats) -> None:
        deadline = time.monotonic() + timeout
        with guard("kafka flush at close"):
            self.flush(timeout * 0.6, stats)
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=max(0.0, min(deadline - time.monotonic(), timeout * 0.3)))
            except Exception:
                # kafka-python's close() flushes first and, when that times out, raises without
                # closing; stop its sender, which fails the batches still pending.
                with guard("force-closing the kafka producer"):
                    producer._sender.force_close()
            # A forced close fails what was still in flight; wait briefly for those callbacks,
            # then keep those events on disk for the next process to replay.
            while self._in_flight > 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        self._spill_given_up(stats)
        with guard("closing the spill"):
            self._spill.close()

    def after_fork(self) -> None:
        # The parent's producer threads do not exist here; drop the object without closing it.
        self._spill.forget()
        self._fresh()

    # -- internals -------------------------------------------------------------------------------------

    def _check_reachable(self) -> bool:
        now = time.monotonic()
        if self._reachable:
            if self._in_flight > 0 and now - self._last_ack > STALL_S:
                log.warning("llmsight: kafka %s has not acknowledged anything for %.0f s; spilling to %s",
                            ",".join(self.servers), STALL_S, self.spill_dir)
                self._reachable = False
                self._next_probe = now + PROBE_EVERY_S
            return self._reachable
        if now < self._next_probe:
            return False
        self._next_probe = now + PROBE_EVERY_S
        if not self._probe():
            return False
        if self._producer is None and not self._connect():
            return False
        self._reachable = True
        self._last_ack = time.monotonic()
        log.info("llmsight: kafka %s reachable", ",".join(self.servers))
        return True

    def _probe(self) -> bool:
        for server in self.servers:
            host, _, port = server.rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
                    return True
            except OSError:
                continue
        return False

    def _connect(self) -> bool:
        from kafka import KafkaProducer

        options: dict[str, Any] = {
            "bootstrap_servers": self.servers,
            "client_id": f"llmsight-{os.getpid()}",
            "acks": "all",
            "enable_idempotence": True,
            "compression_type": self._compression,
            "linger_ms": 20,
            "batch_size": 256 * 1024,
            "max_block_ms": 2000,
            "request_timeout_ms": 10_000,
            "delivery_timeout_ms": 120_000,
            "retry_backoff_ms": 100,
            "reconnect_backoff_ms": 50,
            "reconnect_backoff_max_ms": 1000,  # notice a returning broker within a second
            "bootstrap_timeout_ms": 5000,
        }
        options.update(config.kafka_security_options())
        try:
            producer = KafkaProducer(**options)
        except TypeError:  # an older kafka-python without some of these options
            for key in ("bootstrap_timeout_ms", "delivery_timeout_ms", "enable_idempotence"):
                options.pop(key, None)
            try:
                producer = KafkaProducer(**options)
            except Exception as exc:
                log.warning("llmsight: cannot create the kafka producer: %r", exc)
                return False
        except Exception as exc:
            log.warning("llmsight: cannot create the kafka producer: %r", exc)
            return False
        # kafka-python closes producers from its own atexit hook, which would run before ours
        # (atexit is last-in, first-out) and leave our exit flush without a producer.
        unregister = getattr(producer, "_unregister_cleanup", None)
        if callable(unregister):
            unregister()
        self._producer = producer
        return True

    def _produce(self, key: str, line: bytes, replay: _Replay | None) -> None:
        future = self._producer.send(self.topic, value=line, key=key.encode("utf-8"))
        with self._lock:
            if self._in_flight == 0:
                self._last_ack = time.monotonic()  # the stall clock starts with the first unacknowledged event
            self._in_flight += 1
            if replay is not None:
                replay.pending += 1
        future.add_callback(self._acked, replay, is_heartbeat(line))
        future.add_errback(self._gave_up, key, line, replay)

    def _acked(self, replay: _Replay | None, heartbeat: bool, _metadata: Any = None) -> None:
        with self._lock:
            self._in_flight -= 1
            self._last_ack = time.monotonic()
            if replay is not None:
                replay.pending -= 1
        if self._stats is not None and not heartbeat:
            self._stats.add(sent=1)

    def _gave_up(self, key: str, line: bytes, replay: _Replay | None, exc: Any = None) -> None:
        with self._lock:
            self._in_flight -= 1
            if replay is not None:
                replay.pending -= 1
            if not record_error(exc):  # the broker's or the network's fault: spill and retry later
                self._given_up.append((key, line))
                return
        # The broker refused this record (too large, invalid): retrying cannot help.
        if self._stats is not None:
            self._record_failed(line, exc, self._stats)

    def _record_failed(self, line: bytes, exc: Any, stats: Stats) -> None:
        if not is_heartbeat(line):
            stats.add(failed=1)
        warn_every(f"kafka record {type(exc).__name__}", "kafka refused an event of %d bytes (%r); dropped, "
                   "counted as failed", len(line), exc)

    def _spill_given_up(self, stats: Stats) -> None:
        if not self._given_up:
            return
        with self._lock:
            failed, self._given_up = self._given_up, []
        log.warning("llmsight: kafka gave up on %d events; spilling them", len(failed))
        self._spill_lines(failed, stats)

    def _spill_lines(self, batch: Batch, stats: Stats) -> None:
        lines = [line for _, line in batch]
        try:
            self._spill.write(lines)
        except OSError as exc:
            stats.add(failed=events_in(batch))
            warn_every(f"spill {self.spill_dir}", "spill to %s failed, %d events lost: %s", self.spill_dir,
                       events_in(batch), exc)
            return
        stats.add(spilled=events_in(batch))
        self._enforce_cap(stats)
        if time.monotonic() >= self._shared_check_at:
            self._enforce_shared_cap(stats)

    def _enforce_shared_cap(self, stats: Stats) -> None:
        """The cap holds for all processes on this host together: delete the oldest closed segments of
        any of them (not the one this process is replaying)."""
        self._shared_check_at = time.monotonic() + RESCAN_EVERY_S
        protect = frozenset({self._replay.path}) if self._replay is not None else frozenset()
        try:
            dropped, removed = enforce_cap(self.spill_dir, self.spill_max_bytes, protect=protect,
                                           this_host_only=True, pace=Pacer().tick)
        except OSError as exc:
            warn_every(f"spill cap {self.spill_dir}", "cannot check the spill cap in %s: %s", self.spill_dir, exc)
            return
        for path in removed:
            self._segment_gone(path)
        if removed:
            stats.add(dropped=dropped)
            warn_every(f"spill full {self.spill_dir}", "spill %s over %d bytes (all processes); dropped %d "
                       "oldest events", self.spill_dir, self.spill_max_bytes, dropped)

    def _scan(self, claim: bool) -> None:
        """List the spill directory into the in-memory view of this process's segments.

        With ``claim``, closed segments of dead processes on this host are claimed first, by
        renaming them to this pid (rename is atomic, so two processes never replay the same
        segment). Other hosts' spill (a shared disk) and live processes' spill are left alone.
        """
        mine, here = os.getpid(), hostname()
        active = self._spill.active_path
        found: list[tuple[Path, bool]] = []
        for segment in list_segments(self.spill_dir):
            parsed = parse_base(segment.base)
            if parsed is None or segment.path == active:
                continue
            created, host, pid, seq = parsed
            if host != here:
                continue
            if pid == mine:
                found.append((segment.path, segment.closed))
                continue
            if not claim or not segment.closed or pid_alive(pid):
                continue
            claimed = segment.path.with_name(f"{created:013d}-{host}-{mine}-{_CLAIMED_SEQ + seq % _CLAIMED_SEQ:06d}{CLOSED_SUFFIX}")
            try:
                os.rename(segment.path, claimed)
            except OSError:
                continue  # another process claimed it first
            log.info("llmsight: claimed spill segment %s of a dead process", segment.path.name)
            found.append((claimed, True))
        segments: dict[Path, tuple[int, bool]] = {}
        for path, replayable in sorted(found, key=lambda item: item[0].name):
            try:
                segments[path] = (path.stat().st_size, replayable)
            except OSError:
                continue
        self._segments = segments
        self._segment_bytes = sum(size for size, _ in segments.values())
        if claim:
            self._rescan_at = time.monotonic() + RESCAN_EVERY_S

    def _view(self) -> dict[Path, tuple[int, bool]]:
        if self._segments is None:
            self._scan(claim=False)  # the cap alone needs no claiming
        assert self._segments is not None
        return self._segments

    def _segment_closed(self, path: Path, size: int) -> None:
        """The spill writer closed a segment: add it to the view (without listing the directory)."""
        segments = self._segments
        if segments is None or path in segments:
            return  # not listed yet: the first listing finds it
        newest = next(reversed(segments), None)
        segments[path] = (size, True)
        self._segment_bytes += size
        if newest is not None and path.name < newest.name:  # a clock step back: keep the order by name
            self._segments = dict(sorted(segments.items(), key=lambda item: item[0].name))

    def _segment_gone(self, path: Path) -> None:
        if self._segments is not None and path in self._segments:
            self._segment_bytes -= self._segments.pop(path)[0]

    def _own_segments(self) -> list[Path]:
        """Closed spill segments this process may replay, oldest first: its own, and those of dead
        processes on this host, claimed when the directory is listed (at most every ``RESCAN_EVERY_S``)."""
        if self._segments is None or time.monotonic() >= self._rescan_at:
            self._scan(claim=True)
        return [path for path, (_, replayable) in self._view().items() if replayable]

    def _spill_has_data(self) -> bool:
        if self._spill.active_path is not None:
            return True
        return any(replayable for _, replayable in (self._segments or {}).values())

    def _enforce_cap(self, stats: Stats) -> None:
        """Keep this process's spill under the cap by deleting its oldest closed segments.

        Only this process's own segments count and are deleted: another process may still be
        writing or replaying its own.
        """
        segments = self._view()
        total = self._segment_bytes + self._spill.active_bytes
        if total <= self.spill_max_bytes:
            return
        replaying = self._replay.path if self._replay is not None else None
        for path, (size, _) in list(segments.items()):
            if total <= self.spill_max_bytes:
                break
            if path == replaying:
                continue
            try:
                with open(path, "rb") as handle:
                    lost = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
                os.remove(path)
            except FileNotFoundError:
                self._segment_gone(path)  # removed behind our back: nothing to drop
                total -= size
                continue
            except OSError:
                continue
            self._segment_gone(path)
            total -= size
            stats.add(dropped=lost)
            warn_every(f"spill full {self.spill_dir}", "spill over %d bytes; dropped %d oldest events",
                       self.spill_max_bytes, lost)

    def _replay_some(self, deadline: float) -> None:
        pacer = Pacer()
        while time.monotonic() < deadline and self._reachable:
            replay = self._replay
            if replay is None:
                if self._spill.active_path is not None:
                    self._spill.rotate()  # close the active spill segment so it can be replayed
                paths = self._own_segments()
                if not paths:
                    return
                path = paths[0]
                replay = self._replay = _Replay(path)
                log.info("llmsight: replaying spilled events from %s", path.name)
            if replay.lines is not None:
                if self._in_flight >= MAX_IN_FLIGHT:
                    return
                try:
                    item = next(replay.lines, None)
                except FileNotFoundError:  # removed behind our back: the view was stale
                    log.warning("llmsight: spill segment %s vanished before its replay", replay.path.name)
                    self._segment_gone(replay.path)
                    self._rescan_at = 0.0
                    replay.lines = None
                    continue
                if item is None:
                    replay.lines = None
                    continue
                try:
                    self._produce(_trace_key(item[2]), item[2], replay)
                except Exception as exc:
                    if record_error(exc):
                        if self._stats is not None:
                            self._record_failed(item[2], exc, self._stats)
                        continue
                    log.warning("llmsight: kafka replay send failed (%r)", exc)
                    self._reachable = False
                    replay.lines = None  # what was not submitted is re-spilled below
                    self._respill_rest(replay, item)
                    return
                pacer.tick()
                continue
            if replay.pending > 0:
                return  # wait for the acknowledgements
            try:
                os.remove(replay.path)
            except OSError:
                pass
            self._segment_gone(replay.path)
            self._replay = None

    def _respill_rest(self, replay: _Replay, first: tuple[int, int, bytes]) -> None:
        rest = [first[2] + b"\n"]
        rest.extend(raw + b"\n" for _, _, raw in read_lines(replay.path, first[1]))
        try:
            self._spill.write(rest)
        except OSError as exc:
            warn_every(f"spill {self.spill_dir}", "re-spilling %d events failed: %s", len(rest), exc)


__all__ = ["KafkaSink"]
