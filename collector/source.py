"""What the collector reads from: the interface every source implements, and the URL factory.

A source hands out :class:`~llmsight.collector.batch.Chunk`s and remembers how far it has read.
:meth:`Source.checkpoint` seals what was read since the last checkpoint; the collector inserts
the batch and only then calls :meth:`Source.commit` with it (at-least-once). The checkpoint's
``token`` names the exact source range, so a replayed batch reuses the token and ClickHouse
drops it again (``insert_deduplication_token``).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmsight.collector.batch import Chunk
from llmsight.errors import ConfigError, SinkError, masked_url

# ClickHouse keeps dedup tokens in memory; a batch that spans many partitions gets a hash instead.
_MAX_TOKEN_CHARS = 200


@dataclass
class Checkpoint:
    """The source range a batch covers: ``token`` for dedup, ``state`` for the source's commit."""

    token: str
    state: Any = None
    ranges: list[str] = field(default_factory=list)

    def merged(self, later: Checkpoint) -> Checkpoint:
        """This checkpoint followed by ``later``: committing it commits both."""
        state = {**self.state, **later.state}  # later positions win
        ranges = self.ranges + later.ranges
        return Checkpoint(make_token(ranges), state, ranges)


def make_token(ranges: list[str]) -> str:
    """One dedup token from the ranges a batch covers, e.g. ``topic-3-100-4099``."""
    token = "_".join(sorted(ranges))
    if len(token) > _MAX_TOKEN_CHARS:
        token = "sha1-" + hashlib.sha1(token.encode()).hexdigest()
    return token


class Source(ABC):
    """A stream of raw messages with positions the collector commits after each insert."""

    url: str

    # Called by a Kafka source when partitions are taken away: with lost=False the collector
    # inserts what it holds and returns the checkpoint to commit before they go; with lost=True
    # (evicted, nothing may be committed) it drops its batch and returns None.
    on_revoke: Callable[[bool], Checkpoint | None] | None = None

    @abstractmethod
    def poll(self, timeout_s: float, max_messages: int, max_bytes: int) -> list[Chunk]:
        """Up to ``max_messages`` new messages, waiting at most ``timeout_s`` for the first."""

    @abstractmethod
    def checkpoint(self) -> Checkpoint | None:
        """Seal what was polled since the last checkpoint (None when nothing was)."""

    @abstractmethod
    def commit(self, checkpoint: Checkpoint) -> None:
        """Record that ``checkpoint``'s messages are safely stored."""

    @abstractmethod
    def rewind(self) -> None:
        """Forget what was polled but not committed: it will be read again."""

    @abstractmethod
    def idle(self) -> bool:
        """True when everything available now has been polled."""

    def lag(self) -> int | None:
        """Messages (Kafka) or bytes (spool) not yet polled, when known."""
        return None

    def keepalive(self) -> None:
        """Called while inserts are retried, so the source stays alive without reading more."""
        return None

    @property
    def generation(self) -> int:
        """Changes whenever uncommitted positions became invalid (a Kafka rebalance)."""
        return 0

    def close(self) -> None:
        """Release the source (after the last commit)."""
        return None


def source_from_url(url: str, **options: Any) -> Source:
    """A source for a sink URL: ``kafka://host:port[,host:port]/topic`` or ``file:///path/to/spool``.

    The URLs are parsed as the SDK's sinks parse them. ``options`` go to the source's
    constructor (``group_id`` for Kafka, for instance). Raises :class:`ConfigError` on a URL
    that cannot work.
    """
    from llmsight.sinks import parse_kafka_url, spool_path

    if url.startswith("kafka://"):
        from llmsight.collector.kafka_source import KafkaSource

        try:
            servers, topic = parse_kafka_url(url)
        except SinkError as exc:
            raise ConfigError(f"collector source: {exc}") from None
        return KafkaSource(servers, topic, **options)
    if url.startswith("file://"):
        from llmsight.collector.spool_source import SpoolSource

        try:
            directory = spool_path(url)
        except SinkError as exc:
            raise ConfigError(f"collector source: {exc}") from None
        return SpoolSource(directory, **options)
    raise ConfigError(
        f"collector source {masked_url(url)!r}: unknown scheme; "
        "use kafka://host:9092[,host2:9092]/topic or file:///path/to/spool"
    )
