"""Writing mapped events to the sink, synchronously: a request is answered 200 only after this returns.

* ``kafka://``: a kafka-python producer of its own (``acks=all``, idempotent, keyed by trace id, the SDK's
  compression and security settings). :meth:`KafkaWriter.write` waits for every record's acknowledgement.
  Unlike the SDK's sink it never spills to a local disk: a pod's disk is not durable, and the exporter
  that sent the request still holds the data and retries. A record the broker refuses (too large,
  invalid) is rejected alone; anything else fails the whole request.
* ``file://``: the SDK's spool writer (fsync after each batch); a spool over ``LLMSIGHT_SPOOL_MAX_BYTES``
  refuses new writes (429) instead of deleting old segments, as the SDK would.

Failures are :class:`Busy` (slow or full: 429 / RESOURCE_EXHAUSTED) or :class:`Unavailable` (the sink is
down: 503 / UNAVAILABLE), each with the seconds a client should wait.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from llmsight import config
from llmsight.kafka_sink import compression_type, record_error
from llmsight.sinks import parse_kafka_url, spool_path
from llmsight.spool import SpoolWriter

log = logging.getLogger("llmsight.otlp")

Batch = list[tuple[str, bytes]]
RETRY_AFTER_S = 2


class Busy(Exception):
    """The sink is slow or full: try again later (429 / RESOURCE_EXHAUSTED)."""

    retry_after = RETRY_AFTER_S


class Unavailable(Exception):
    """The sink cannot be reached: try again later (503 / UNAVAILABLE)."""

    retry_after = RETRY_AFTER_S


class Writer:
    ready = True

    def write(self, batch: Batch, timeout: float) -> tuple[int, str]:
        """Write ``batch`` durably; returns (records refused for good, a message). Raises Busy or Unavailable."""
        raise NotImplementedError

    def close(self, timeout: float) -> None:
        pass


class KafkaWriter(Writer):
    def __init__(self, url: str, *, max_in_flight: int, linger_ms: int = 2) -> None:
        self.servers, self.topic = parse_kafka_url(url)
        self.max_in_flight = max_in_flight
        self.linger_ms = linger_ms
        self._producer: Any = None
        self._lock = threading.Lock()
        self._in_flight = 0
        self._next_connect = 0.0
        self._partitions = 0  # of the topic, as last seen in the producer's metadata
        self._partitions_at = 0.0
        self._compression = compression_type(config.resolve(config.KAFKA_COMPRESSION, strict=True))
        self._security = config.kafka_security_options(strict=True)
        self._connect()

    @property
    def ready(self) -> bool:  # type: ignore[override]
        """Connected to Kafka; when not, try again (at most once a second): /readyz must see a broker
        that came back even while no request arrives, since an unready pod gets no traffic."""
        return (self._producer or self._connect()) is not None

    def _connect(self) -> Any:
        with self._lock:
            if self._producer is not None:
                return self._producer
            if time.monotonic() < self._next_connect:
                return None
            self._next_connect = time.monotonic() + 1.0
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(
                bootstrap_servers=self.servers, client_id=f"llmsight-otlp-{os.getpid()}", acks="all",
                enable_idempotence=True, compression_type=self._compression, linger_ms=self.linger_ms,
                batch_size=512 * 1024, max_block_ms=1000, request_timeout_ms=10_000, delivery_timeout_ms=30_000,
                retry_backoff_ms=100, reconnect_backoff_ms=50, reconnect_backoff_max_ms=1000,
                max_request_size=4 * 1024 * 1024, **self._security)
        except Exception as exc:
            log.warning("otlp: cannot connect to kafka %s: %s", ",".join(self.servers), exc)
            return None
        with self._lock:
            if self._producer is None:
                self._producer = producer
                log.info("otlp: writing to kafka %s topic %s", ",".join(self.servers), self.topic)
                return producer
        producer.close(timeout=0)
        return self._producer

    def _done(self, *_: Any) -> None:
        with self._lock:
            self._in_flight -= 1

    def _partition_count(self, producer: Any) -> int:
        """The topic's partitions (re-read every 30 s; 0 while unknown)."""
        now = time.monotonic()
        if now >= self._partitions_at:
            self._partitions_at = now + 30.0
            try:
                self._partitions = len(producer.partitions_for(self.topic) or ())
            except Exception:
                self._partitions = 0
        return self._partitions

    @staticmethod
    def _partition(key: str, count: int) -> int | None:
        """The partition of a record keyed by a trace id: from its last 8 hex digits (random in W3C ids, in
        64-bit ids padded with zeros in front, and in AWS X-Ray ids, whose first 8 are a time), so that
        kafka-python does not hash the 32-byte key in pure Python (~20 us a record). Every record of a
        trace still goes to one partition, in order. Other keys: kafka-python's partitioner."""
        if count and len(key) == 32:
            try:
                return int(key[-8:], 16) % count
            except ValueError:
                return None
        return None

    def write(self, batch: Batch, timeout: float) -> tuple[int, str]:
        if not batch:
            return 0, ""
        producer = self._producer or self._connect()
        if producer is None:
            raise Unavailable(f"kafka {','.join(self.servers)} is unreachable")
        with self._lock:
            if self._in_flight + len(batch) > self.max_in_flight and self._in_flight > 0:
                raise Busy(f"{self._in_flight} events are waiting for kafka's acknowledgement")
            self._in_flight += len(batch)
        deadline = time.monotonic() + timeout
        futures: list[Any] = []
        try:
            try:
                count = self._partition_count(producer)
                send = producer.send
                topic = self.topic
                for key, line in batch:
                    futures.append(send(topic, value=line, key=key.encode("utf-8"),
                                        partition=self._partition(key, count)))
            except Exception as exc:
                if record_error(exc):
                    raise Unavailable(f"kafka refused a record: {exc!r}") from None
                raise Busy(f"kafka did not take the records in time ({type(exc).__name__})") from None
            refused = 0
            message = ""
            for future in futures:
                try:
                    # A done future answers as get() would, without get()'s timer: once the first record of a
                    # produce batch is acknowledged, so are the others.
                    if not future.is_done:
                        future.get(timeout=max(0.001, deadline - time.monotonic()))
                    elif future.failed():
                        raise future.exception
                except Exception as exc:
                    if record_error(exc):
                        refused += 1
                        message = f"kafka refused {refused} record(s): {type(exc).__name__}"
                        continue
                    if type(exc).__name__ == "KafkaTimeoutError" or not future.is_done:
                        raise Busy(f"kafka did not acknowledge within {timeout:g} s") from None
                    raise Unavailable(f"kafka write failed: {type(exc).__name__}: {str(exc)[:200]}") from None
            return refused, message
        finally:
            # Records acknowledged (or failed) leave the in-flight count now; those still on their way
            # (a request that gave up waiting) leave it when Kafka answers. One callback a record only then.
            pending = [f for f in futures if not f.is_done]
            with self._lock:
                self._in_flight -= len(batch) - len(pending)
            for future in pending:
                future.add_both(self._done)

    def close(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=timeout)
            except Exception as exc:
                log.warning("otlp: closing the kafka producer: %r", exc)


class SpoolFileWriter(Writer):
    """The ``file://`` spool: what ``write`` returns is on disk (fsync'd per batch by default)."""

    CHECK_EVERY_S = 1.0

    def __init__(self, url: str) -> None:
        self.directory = Path(spool_path(url))
        self.max_bytes = config.resolve(config.SPOOL_MAX_BYTES, strict=True)
        fsync = config.resolve(config.SPOOL_FSYNC, strict=True)
        self._writer = SpoolWriter(self.directory, config.resolve(config.SPOOL_SEGMENT_BYTES, strict=True),
                                   "batch" if fsync == "never" else fsync)
        self._lock = threading.Lock()
        self._used = 0
        self._checked = 0.0

    def _over_cap(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= self.CHECK_EVERY_S:
            self._checked = now
            try:
                self._used = sum(entry.stat().st_size for entry in os.scandir(self.directory) if entry.is_file())
            except OSError:
                self._used = 0
        return self._used > self.max_bytes

    def write(self, batch: Batch, timeout: float) -> tuple[int, str]:
        if not batch:
            return 0, ""
        if not self._lock.acquire(timeout=timeout):
            raise Busy(f"the spool {self.directory} is busy")
        try:
            if self._over_cap():
                raise Busy(f"the spool {self.directory} is over LLMSIGHT_SPOOL_MAX_BYTES ({self.max_bytes} bytes)")
            lines = [line for _, line in batch]
            try:
                self._writer.write(lines)
            except OSError as exc:
                raise Unavailable(f"cannot write the spool {self.directory}: {exc}") from None
            self._used += sum(len(line) for line in lines)
        finally:
            self._lock.release()
        return 0, ""

    def close(self, timeout: float) -> None:
        with self._lock:
            self._writer.close()


def make_writer(url: str, *, max_in_flight: int) -> Writer:
    if url.startswith("kafka://"):
        return KafkaWriter(url, max_in_flight=max_in_flight)
    if url.startswith("file://"):
        return SpoolFileWriter(url)
    from llmsight.errors import SinkError

    raise SinkError(f"unknown sink URL {url!r}; expected kafka://host:9092/topic or file:///path/to/spool")
