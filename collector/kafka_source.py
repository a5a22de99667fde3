"""The Kafka source: a kafka-python consumer group with manual commits.

* Offsets are committed only after the collector's insert succeeded (at-least-once).
* On a rebalance, the listener asks the collector to insert what it holds and commits those
  offsets before the partitions go to another member; if the member was evicted instead
  (partitions *lost*), the collector drops its batch and the new owner replays it.
* The dedup token of a batch is ``topic-partition-firstoffset-lastoffset`` per partition, so a
  batch replayed after a crash is dropped by ClickHouse, and ``ReplacingMergeTree`` folds
  whatever else comes twice by ``event_id``.

kafka-python 3 runs the rebalance listener on its IO thread, where blocking consumer calls such
as ``commit()`` are refused; the listener is therefore an ``AsyncConsumerRebalanceListener`` that
awaits ``commit_async``. Listeners only run inside ``poll()``/``close()``, which the collector's
own thread calls, so the collector's batch is never touched by two threads at once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from llmsight import config
from llmsight.collector import settings
from llmsight.collector.batch import Chunk
from llmsight.collector.source import Checkpoint, Source, make_token
from llmsight.errors import ConfigError, SinkError

log = logging.getLogger("llmsight.collector")

try:  # kafka-python checks each record batch's CRC32C; in pure Python that costs ~7x the throughput.
    import crc32c as _crc32c  # noqa: F401

    _FAST_CRC = True
except ImportError:
    _FAST_CRC = False

# kafka-python's position(), committed() and end_offsets() block without limit by default (a
# position whose offset reset is still in flight can wait for ever); the collector's loop must
# not, so each call gets this bound and an unknown answer is treated as "not known yet".
_CALL_TIMEOUT_MS = 5000


class KafkaSource(Source):
    """Reads ``topic`` as a member of the consumer group ``group_id``."""

    def __init__(self, bootstrap: list[str], topic: str, *, group_id: str | None = None,
                 max_poll_records: int | None = None, **consumer_options: Any) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self.group_id = group_id or config.resolve(settings.COLLECTOR_GROUP, strict=True)
        self.url = f"kafka://{','.join(bootstrap)}/{topic}"
        session_ms = int(config.resolve(settings.COLLECTOR_SESSION_TIMEOUT_S, strict=True) * 1000)
        options: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "group_id": self.group_id,
            "client_id": "llmsight-collector",
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "bootstrap_timeout_ms": 10_000,
            "session_timeout_ms": session_ms,
            "heartbeat_interval_ms": min(3000, session_ms // 3),  # fail fast on a wrong address instead of after 30 s
            "max_poll_records": max_poll_records or config.resolve(settings.COLLECTOR_BATCH_EVENTS, strict=True),
            # Big fetches: fewer round trips per batch; the collector's batch bounds what it keeps.
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
            "fetch_max_bytes": 64 * 1024 * 1024,
        }
        options.update(config.kafka_security_options(strict=True))
        options.update(consumer_options)
        if not _FAST_CRC and options.get("check_crcs", True):
            log.warning("collector: the crc32c package is missing, so kafka-python checks CRCs in pure "
                        "Python (several times slower): pip install crc32c")
        self._options = options
        self._session_s = session_ms / 1000
        self._rebalance_since: float | None = None  # a join began and has not assigned partitions yet
        self._consumer = self._join()
        self._ranges: dict[TopicPartition, list[int]] = {}  # polled, not yet sealed: [first, last]
        self._next: dict[TopicPartition, int] = {}  # next offset to poll, as far as we know
        self._committed: dict[TopicPartition, int] = {}  # what this member committed last
        self._generation = 0
        self._last_poll_empty = False

    def _join(self) -> KafkaConsumer:
        """A consumer of the topic, subscribed as a member of the group."""
        topic, bootstrap = self.topic, self.bootstrap
        try:
            consumer = KafkaConsumer(**self._options)
        except KafkaError as exc:
            raise SinkError(f"collector: cannot connect to Kafka at {','.join(bootstrap)}: {exc}") from None
        except (TypeError, ValueError) as exc:  # an unknown or bad consumer option
            raise ConfigError(f"collector: bad Kafka consumer option: {exc}") from None
        # Learn the topic's partitions before joining the group. Without this the first join has
        # no metadata, assigns nothing, and a second join follows at once when the metadata
        # arrives; under CPU load kafka-python 3.0.12 sometimes never finishes that second join
        # (the member reads nothing until it is restarted: 11 of 60 starts on a busy 2-core
        # machine, 0 of 60 with this call first; scripts/collector-start-race measures it).
        try:
            partitions = consumer.partitions_for_topic(topic)
        except KafkaError as exc:
            consumer.close(autocommit=False, timeout_ms=1000)
            raise SinkError(f"collector: cannot read the metadata of topic {topic!r} at "
                            f"{','.join(bootstrap)}: {exc}") from None
        if not partitions:
            log.warning("collector: topic %r has no partitions yet (not created?); joining the group "
                        "and waiting for it", topic)
        consumer.subscribe([topic], listener=_Listener(self))
        return consumer

    def _rejoin_if_stuck(self) -> None:
        """Replace a consumer whose group join has not finished within the session timeout.

        The same kafka-python 3.0.12 defect can strike at any later rebalance (after a missed
        heartbeat on a busy machine, say): the member then holds no partitions and never gets
        any. By the session timeout the broker has given up on such a member anyway, so a new
        consumer joins in its place and reads on from the committed offsets.
        """
        since = self._rebalance_since
        if since is None or time.monotonic() - since < self._session_s:
            return
        log.warning("collector: the group join of %s has not finished in %.0f s; joining again with a "
                    "new consumer", self.topic, time.monotonic() - since)
        try:
            self._consumer.close(autocommit=False, timeout_ms=1000)
        except Exception:  # the old member is gone either way; its partitions were revoked or lost
            log.debug("collector: closing the stuck consumer failed", exc_info=True)
        self._partitions_changed()
        self._rebalance_since = time.monotonic()
        self._consumer = self._join()

    # -- reading ----------------------------------------------------------------------------------
    def poll(self, timeout_s: float, max_messages: int, max_bytes: int) -> list[Chunk]:
        self._rejoin_if_stuck()
        polled = self._consumer.poll(timeout_ms=max(0, int(timeout_s * 1000)), max_records=max_messages)
        chunks = []
        for tp, records in polled.items():
            if not records:
                continue
            offsets = [r.offset for r in records]
            chunks.append(Chunk(f"kafka://{tp.topic}/{tp.partition}/", offsets, [r.value for r in records]))
            span = self._ranges.get(tp)
            if span is None:
                self._ranges[tp] = [offsets[0], offsets[-1]]
            else:
                span[1] = offsets[-1]
            self._next[tp] = offsets[-1] + 1
        self._last_poll_empty = not chunks
        return chunks

    def checkpoint(self) -> Checkpoint | None:
        if not self._ranges:
            return None
        ranges = [f"{tp.topic}-{tp.partition}-{first}-{last}" for tp, (first, last) in self._ranges.items()]
        offsets = {tp: last + 1 for tp, (_first, last) in self._ranges.items()}
        self._ranges = {}
        return Checkpoint(make_token(ranges), offsets, ranges)

    def commit(self, checkpoint: Checkpoint) -> None:
        try:
            self._consumer.commit(_offsets(checkpoint))
            self._committed.update(checkpoint.state)
        except KafkaError as exc:
            # The partitions moved on (a rebalance won the race): their new owner replays from the
            # last commit, and dedup removes what this member already inserted.
            log.warning("collector: offset commit of %s failed (%s); the batch will be replayed and "
                        "deduplicated", ",".join(checkpoint.ranges), exc)
            raise

    def rewind(self) -> None:
        """Go back to the last committed offset of every assigned partition: batches already
        sealed but not committed are read again too (committing a later one would skip them)."""
        assigned = self._consumer.assignment()
        for tp in assigned:
            offset = self._committed.get(tp)
            if offset is None:
                try:
                    offset = self._consumer.committed(tp, timeout_ms=_CALL_TIMEOUT_MS)
                except KafkaError as exc:
                    # Not knowing loses nothing: replaying from the start is folded by dedup.
                    log.warning("collector: committed offset of %s unknown (%s); reading it again from "
                                "the start", _names([tp]), exc)
                    offset = None
            if offset is None:
                self._consumer.seek_to_beginning(tp)  # never committed: auto_offset_reset=earliest
                self._next.pop(tp, None)
            else:
                self._consumer.seek(tp, offset)
                self._next[tp] = offset
        self._ranges = {}

    # -- state ------------------------------------------------------------------------------------
    def idle(self) -> bool:
        if not self._last_poll_empty:
            return False
        lag = self.lag(exact=True)
        return lag == 0

    def lag(self, exact: bool = False) -> int | None:
        assigned = self._consumer.assignment()
        if not assigned:
            return None
        try:
            if exact:
                ends = self._consumer.end_offsets(list(assigned), timeout_ms=_CALL_TIMEOUT_MS)
            else:  # the high watermark kafka-python saw in its last fetch response: no round trip
                ends = {tp: self._consumer.highwater(tp) for tp in assigned}
            total = 0
            for tp in assigned:
                end = ends.get(tp)
                if end is None:
                    return None
                position = self._next.get(tp)
                if position is None:
                    position = self._consumer.position(tp, timeout_ms=_CALL_TIMEOUT_MS) if exact else None
                if position is None:
                    return None
                total += max(0, end - position)
            return total
        except KafkaError:
            log.debug("collector: lag unknown", exc_info=True)
            return None

    @property
    def generation(self) -> int:
        return self._generation

    def keepalive(self) -> None:
        # kafka-python heartbeats from its IO thread, but a member that stops calling poll() for
        # max_poll_interval_ms leaves the group; poll paused partitions to stay in it.
        assigned = self._consumer.assignment()
        if assigned:
            self._consumer.pause(*assigned)
        try:
            self._consumer.poll(timeout_ms=0)
        finally:
            still = self._consumer.assignment()
            if still:
                self._consumer.resume(*still)

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False, timeout_ms=5000)
        except Exception:  # closing is best effort: the offsets are already committed
            log.debug("collector: consumer close failed", exc_info=True)

    # -- rebalances -------------------------------------------------------------------------------
    def _partitions_changed(self) -> None:
        self._generation += 1
        self._ranges = {}
        self._next = {}
        self._committed = {}  # a later owner may have moved them on


def _offsets(checkpoint: Checkpoint) -> dict[TopicPartition, OffsetAndMetadata]:
    return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in checkpoint.state.items()}


class _Listener(AsyncConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        source = self.source
        source._rebalance_since = source._rebalance_since or time.monotonic()
        checkpoint = source.on_revoke(False) if source.on_revoke is not None else None
        source._partitions_changed()
        if checkpoint is not None:
            try:
                await source._consumer.commit_async(_offsets(checkpoint))
                log.info("collector: partitions %s revoked; committed %s", _names(revoked),
                         ",".join(checkpoint.ranges))
            except KafkaError as exc:
                log.warning("collector: commit on revoke failed (%s); the new owner replays and dedup "
                            "removes the copies", exc)
        else:
            log.info("collector: partitions %s revoked", _names(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.source._rebalance_since = None
        log.info("collector: partitions %s assigned", _names(assigned))

    async def on_partitions_lost(self, lost: Any) -> None:
        source = self.source
        source._rebalance_since = source._rebalance_since or time.monotonic()
        if source.on_revoke is not None:
            source.on_revoke(True)
        source._partitions_changed()
        log.warning("collector: partitions %s lost (evicted from the group); uncommitted messages "
                    "will be replayed by their new owner", _names(lost))


def _names(partitions: Any) -> str:
    return ",".join(f"{tp.topic}/{tp.partition}" for tp in sorted(partitions)) or "-"
