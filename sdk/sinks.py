"""Where the worker sends encoded events: the ``file://`` spool, Kafka, or memory (for tests).

A sink receives batches of ``(key, line)`` pairs (the key is the trace id, the line one encoded
event ending in ``"\\n"``) in the worker thread only, never in the caller's thread. It counts
what it did in the shared :class:`Stats`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from llmsight.errors import SinkError, masked_url
from llmsight.guard import warn_every
from llmsight.spool import SpoolWriter, enforce_cap

log = logging.getLogger("llmsight")

Batch = list[tuple[str, bytes]]

# CPython lets a busy thread keep the GIL for the 5 ms switch interval; the SDK's threads give it
# back much sooner so a host thread never waits long behind event building or Kafka sends.
YIELD_AFTER_S = 0.0004
YIELD_SLEEP_S = 0.00005


CAP_CHECK_EVERY_S = 5.0


class Pacer:
    """Call :meth:`tick` inside long loops: it sleeps briefly once ``YIELD_AFTER_S`` of work has passed."""

    __slots__ = ("_since",)

    # Set by the worker while the host waits in flush() or shutdown(): then nobody needs the GIL
    # back quickly, and yielding would only slow the flush down.
    hurry = False

    def __init__(self) -> None:
        self._since = time.perf_counter()

    def tick(self) -> None:
        if not Pacer.hurry and time.perf_counter() - self._since > YIELD_AFTER_S:
            time.sleep(YIELD_SLEEP_S)  # a real sleep: releasing the GIL for 0 s hands nothing over
            self._since = time.perf_counter()

    def restart(self) -> None:
        self._since = time.perf_counter()


class Stats:
    """The counters behind ``llmsight.stats()``; incremented from the worker and Kafka's I/O thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0  # events handed to their destination (spool written, or acknowledged by Kafka)
        self.dropped = 0  # events discarded: queue full, or oldest spill data removed by the byte cap
        self.spilled = 0  # events written to the local spill spool while Kafka was unreachable
        self.failed = 0  # events that could not be built or written anywhere

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"sent": self.sent, "dropped": self.dropped, "spilled": self.spilled, "failed": self.failed}


class Sink:
    """Base class: override :meth:`send`; the rest are no-ops by default."""

    busy = False  # True asks the worker to wake often (the Kafka sink while it replays its spill)

    def send(self, batch: Batch, stats: Stats) -> None:
        raise NotImplementedError

    def tick(self, stats: Stats) -> None:
        """Called by the worker each time it wakes, after sending (retries, replays, health checks)."""

    def flush(self, timeout: float, stats: Stats) -> bool:
        """Make everything sent so far durable or delivered; True if done within ``timeout``."""
        return True

    def close(self, timeout: float, stats: Stats) -> None:
        """Flush and release resources; the sink is not used again."""

    def after_fork(self) -> None:
        """Forget state inherited from the parent (open files, connections) without touching it."""


_HEARTBEAT_PREFIX = b'{"type":"heartbeat"'


def is_heartbeat(line: bytes) -> bool:
    """True for an encoded ``heartbeat`` event (the encoder writes ``type`` first, compactly)."""
    return line.startswith(_HEARTBEAT_PREFIX)


def events_in(batch: Batch) -> int:
    """The llm_call and feedback events of a batch: what ``sent``, ``spilled`` and ``failed`` count."""
    return sum(1 for _, line in batch if not line.startswith(_HEARTBEAT_PREFIX))


class FileSink(Sink):
    """The ``file://`` spool sink (see :mod:`llmsight.spool` for the format).

    The spool directory is capped at ``max_bytes`` for all the processes that share it: at the first
    write, after a segment closes, and after every 1/32 of the cap written (at most every
    ``CAP_CHECK_EVERY_S``), the sink lists the directory and deletes the oldest closed segments past
    the cap, counting their events as dropped.
    """

    def __init__(self, directory: str, segment_bytes: int, fsync: str, max_bytes: int = 1 << 30) -> None:
        self.writer = SpoolWriter(directory, segment_bytes, fsync, on_closed=self._closed)
        self.max_bytes = max_bytes
        self._written = 0  # bytes written since the cap was last checked
        self._check = True  # check at the first write: others may have filled the directory
        self._checked_at = 0.0

    def _closed(self, path: Any, size: int) -> None:
        self._check = True

    def send(self, batch: Batch, stats: Stats) -> None:
        lines = [line for _, line in batch]
        try:
            self.writer.write(lines)
        except OSError as exc:
            count = events_in(batch)
            stats.add(failed=count)
            warn_every(f"spool {self.writer.directory}", "spool write to %s failed, %d events lost: %s",
                       self.writer.directory, count, exc)
            return
        stats.add(sent=events_in(batch))
        self._written += sum(len(line) for line in lines)
        if self._check or (self._written >= max(1, self.max_bytes // 32)
                           and time.monotonic() >= self._checked_at + CAP_CHECK_EVERY_S):
            self._enforce_cap(stats)

    def _enforce_cap(self, stats: Stats) -> None:
        self._check, self._written, self._checked_at = False, 0, time.monotonic()
        try:
            dropped, removed = enforce_cap(self.writer.directory, self.max_bytes, pace=Pacer().tick)
        except OSError as exc:
            warn_every(f"spool cap {self.writer.directory}", "cannot check the spool cap in %s: %s",
                       self.writer.directory, exc)
            return
        if removed:
            stats.add(dropped=dropped)
            warn_every(f"spool full {self.writer.directory}",
                       "spool %s over %d bytes; dropped %d events in its %d oldest segments",
                       self.writer.directory, self.max_bytes, dropped, len(removed))

    def close(self, timeout: float, stats: Stats) -> None:
        self.writer.close()

    def after_fork(self) -> None:
        self.writer.forget()


class MemorySink(Sink):
    """Keeps decoded events in ``self.events`` (for tests, like OpenTelemetry's InMemorySpanExporter);
    heartbeats go to ``self.heartbeats``."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.lines: list[bytes] = []
        self.keys: list[str] = []

    def send(self, batch: Batch, stats: Stats) -> None:
        for key, line in batch:
            if is_heartbeat(line):
                self.heartbeats.append(json.loads(line))
                continue
            self.keys.append(key)
            self.lines.append(line)
            self.events.append(json.loads(line))
        stats.add(sent=events_in(batch))


def spool_path(url: str) -> str:
    """The directory of a ``file://`` URL: ``file://~/x`` and ``file:///abs/x`` both work."""
    rest = url[len("file://"):]
    if not rest:
        raise SinkError(f"sink URL {masked_url(url)!r} has no path; expected file:///path/to/spool")
    return os.path.expanduser(unquote(rest))


def parse_kafka_url(url: str) -> tuple[list[str], str]:
    """(bootstrap servers, topic) of ``kafka://host:9092[,host2:9092]/topic``."""
    parts = urlsplit(url)
    servers = [s.strip() for s in parts.netloc.split(",") if s.strip()]
    topic = parts.path.strip("/")
    if not servers or not topic:
        raise SinkError(f"sink URL {masked_url(url)!r} must look like kafka://host:9092[,host2:9092]/topic")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise SinkError(f"sink URL {masked_url(url)!r}: {server!r} must be host:port")
    return servers, topic


def make_sink(url: str, *, segment_bytes: int, fsync: str, spill_dir: str, spill_max_bytes: int,
              spool_max_bytes: int = 1 << 30) -> Sink:
    """Build the sink for a URL; raises :class:`SinkError` for a malformed one (init falls back)."""
    if url.startswith("file://"):
        return FileSink(spool_path(url), segment_bytes, fsync, spool_max_bytes)
    if url.startswith("kafka://"):
        from llmsight.kafka_sink import KafkaSink

        servers, topic = parse_kafka_url(url)
        kafka: Sink = KafkaSink(servers, topic, spill_dir=spill_dir, spill_max_bytes=spill_max_bytes,
                         segment_bytes=segment_bytes, fsync=fsync)
        return kafka
    raise SinkError(f"unknown sink URL {masked_url(url)!r}; expected kafka://host:9092/topic or file:///path/to/spool")
