"""One batch of messages on its way to ClickHouse: decoded, validated and split by table.

Every message ends up in exactly one place: the ``events`` columns (llm_call), the ``feedback``
columns, the ``producer_heartbeats`` columns, or ``dead_letters`` (the raw bytes, the reason, its
kind and where the message came from). A bad message never raises out of :meth:`Batch.add`: the
collector's loop must never stop on one. Decoding is ``collector.decode``'s fast path, with
``schema.validate()`` deciding the rest.

Nothing is stored that the store would drop or that would live for decades: an event whose ``ts``
lies outside ``[now − LLMSIGHT_RETENTION_DAYS, now + 1 day]`` (the window is fixed when the batch
opens) is a ``ts_out_of_range`` dead letter, so a batch spans at most :attr:`Batch.partition_cap`
monthly partitions, which the insert passes as ClickHouse's ``max_partitions_per_insert_block``.
An event of a ``schema_version`` this collector does not know is an ``unknown_schema_version`` dead
letter (``llmsight dead-letters replay`` re-submits it after an upgrade).

Each stored row keeps its raw message, so a row the store rejects can become a dead letter
(``rejected``) when the collector bisects a batch the store keeps refusing.

A batch closes at a count, an age or a size, whichever comes first (see ``Collector``), so
the memory it holds is bounded by ``LLMSIGHT_COLLECTOR_BATCH_BYTES`` plus the decoded rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from llmsight import config
from llmsight.collector.columns import event_columns, feedback_columns, heartbeat_columns, producer_column
from llmsight.collector.decode import Heartbeat, LlmCall, fast_decode, slow_decode, unknown_version
from llmsight.errors import SchemaError
from llmsight.schema import SUPPORTED_SCHEMA_VERSIONS as SUPPORTED
from llmsight.store import settings as store_settings

# Dead-letter kinds, the label of the collector's dead-letter counter.
BAD_JSON = "bad_json"
BAD_SCHEMA = "bad_schema"
TOO_LARGE = "too_large"
TORN = "torn_line"
UNCONVERTIBLE = "unconvertible"
UNKNOWN_VERSION = "unknown_schema_version"
TS_OUT_OF_RANGE = "ts_out_of_range"
REJECTED = "rejected"  # the store refused the row alone (see Collector: bisection)

FUTURE_SLACK = timedelta(days=1)  # how far ahead of the collector's clock an event's ts may be


def ts_window(retention_days: int | None = None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The ``ts`` range stored now: ``[now − retention, now + 1 day]``."""
    days = retention_days if retention_days is not None else config.resolve(store_settings.RETENTION_DAYS, strict=True)
    now = now or datetime.now(timezone.utc)
    return now - timedelta(days=days), now + FUTURE_SLACK


def months_spanned(window: tuple[datetime, datetime]) -> int:
    """Monthly partitions (``toYYYYMM(ts)``) that rows inside ``window`` can fall into."""
    lo, hi = window
    return (hi.year - lo.year) * 12 + hi.month - lo.month + 1


@dataclass
class Chunk:
    """Consecutive raw messages from one place of a source (a Kafka partition, a spool segment).

    ``prefix + str(position)`` names where a message came from, e.g. ``kafka://topic/3/`` + ``1234``
    or ``file:///spool/x.jsonl:`` + ``17``; it is built only for rows that need it.
    """

    prefix: str
    positions: Sequence[int]
    values: Sequence[bytes | None]
    broken: str | None = None  # set when the source already knows these are bad: the dead-letter reason


@dataclass(frozen=True)
class DeadLetter:
    where: str
    kind: str
    reason: str
    raw: bytes


@dataclass
class Decoded:
    """One chunk, validated: the rows of each table as columns, and the dead letters.

    ``*_raw`` hold each row's raw message (in row order), for a row the store may reject;
    ``*_producers`` the ``producer_id`` column that follows the events and feedback columns.
    """

    events: list[list[Any]]
    feedback: list[list[Any]]
    dead_letters: list[DeadLetter]
    n_events: int
    n_feedback: int
    heartbeats: list[list[Any]] = field(default_factory=list)
    n_heartbeats: int = 0
    events_raw: list[bytes] = field(default_factory=list)
    feedback_raw: list[bytes] = field(default_factory=list)
    heartbeats_raw: list[bytes] = field(default_factory=list)
    event_producers: list[str] = field(default_factory=list)
    feedback_producers: list[str] = field(default_factory=list)


def decode_chunk(chunk: Chunk, max_message_bytes: int,
                 window: tuple[datetime, datetime] | None = None) -> Decoded:
    """Validate each message of ``chunk`` and file it under its table or as a dead letter.

    With ``window``, an event whose ``ts`` lies outside it is a ``ts_out_of_range`` dead letter.
    """
    dead: list[DeadLetter] = []
    prefix = chunk.prefix
    if chunk.broken is not None:
        for position, raw in zip(chunk.positions, chunk.values, strict=True):
            dead.append(DeadLetter(prefix + str(position), TORN, chunk.broken, bytes(raw or b"")))
        return Decoded([], [], dead, 0, 0)
    # Local names: this loop runs once per message and dominates the collector's CPU.
    fast, limit = fast_decode, max_message_bytes
    lo, hi = window if window is not None else (None, None)
    calls: list[Any] = []
    call_sources: list[str] = []
    call_raw: list[bytes] = []
    feedback: list[Any] = []
    feedback_sources: list[str] = []
    feedback_raw: list[bytes] = []
    beats: list[Any] = []
    beat_sources: list[str] = []
    beat_raw: list[bytes] = []
    for position, raw in zip(chunk.positions, chunk.values, strict=True):
        if raw is None:
            dead.append(DeadLetter(prefix + str(position), BAD_JSON, "empty message (no value)", b""))
            continue
        size = len(raw)
        if size > limit:
            dead.append(DeadLetter(prefix + str(position), TOO_LARGE,
                                   f"message of {size} bytes exceeds the limit of {limit} bytes "
                                   f"(LLMSIGHT_COLLECTOR_MAX_MESSAGE_BYTES); raw keeps the first {limit} bytes",
                                   bytes(raw[:limit])))
            continue
        event = fast(raw)
        if event is None:  # not vouched for: json + validate() decide, and say why
            try:
                decoded, event = slow_decode(raw)
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                dead.append(DeadLetter(prefix + str(position), BAD_JSON, f"bad JSON: {exc}", bytes(raw)))
                continue
            except TypeError as exc:  # validate() failing to word its reason; never stop the loop on it
                dead.append(DeadLetter(prefix + str(position), BAD_SCHEMA, f"invalid event ({exc})", bytes(raw)))
                continue
            except SchemaError as exc:
                version = unknown_version(decoded_or_none(raw))
                if version is not None:
                    dead.append(DeadLetter(prefix + str(position), UNKNOWN_VERSION,
                                           f"{exc}; this collector stores schema_version "
                                           f"{', '.join(map(str, sorted(SUPPORTED)))}: upgrade it, then "
                                           f"`llmsight dead-letters replay --reason {UNKNOWN_VERSION}`",
                                           bytes(raw)))
                else:
                    dead.append(DeadLetter(prefix + str(position), BAD_SCHEMA, str(exc), bytes(raw)))
                continue
            if b"\\u" in raw and _has_lone_surrogate(decoded):
                # JSON may escape half a UTF-16 pair; such text cannot be written as UTF-8 and
                # would fail the whole insert forever.
                dead.append(DeadLetter(prefix + str(position), UNCONVERTIBLE,
                                       "text holds a lone UTF-16 surrogate (an escaped half of a character "
                                       "pair), which UTF-8 cannot encode", bytes(raw)))
                continue
        if lo is not None and not lo <= event.ts <= hi:
            dead.append(DeadLetter(prefix + str(position), TS_OUT_OF_RANGE, _ts_reason(event.ts, lo, hi),
                                   bytes(raw)))
            continue
        kind = type(event)
        if kind is LlmCall:
            calls.append(event)
            call_sources.append(prefix + str(position))
            call_raw.append(raw)
        elif kind is Heartbeat:
            beats.append(event)
            beat_sources.append(prefix + str(position))
            beat_raw.append(raw)
        else:
            feedback.append(event)
            feedback_sources.append(prefix + str(position))
            feedback_raw.append(raw)
    return Decoded(event_columns(calls, call_sources) if calls else [],
                   feedback_columns(feedback, feedback_sources) if feedback else [],
                   dead, len(calls), len(feedback),
                   heartbeat_columns(beats, beat_sources) if beats else [], len(beats),
                   call_raw, feedback_raw, beat_raw, producer_column(calls), producer_column(feedback))


def _ts_reason(ts: datetime, lo: datetime, hi: datetime) -> str:
    days = (hi - FUTURE_SLACK - lo).days
    side = (f"older than the retention (now − {days} days, LLMSIGHT_RETENTION_DAYS): the TTL would drop it"
            if ts < lo else "more than 1 day ahead of the collector's clock: a producer's clock is wrong")
    return (f"ts {ts.isoformat()} is outside the stored range [{lo.isoformat(timespec='seconds')}, "
            f"{hi.isoformat(timespec='seconds')}]: {side}")


def decoded_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


class Batch:
    """Messages accumulated since the last insert, validated and split by table."""

    def __init__(self, max_message_bytes: int, window: tuple[datetime, datetime] | None = None, *,
                 retention_days: int | None = None) -> None:
        self.max_message_bytes = max_message_bytes
        # Without a fixed window, the window is taken when the first message arrives (an idle
        # collector's empty batch may be hours old by then).
        self._fixed_window = window
        self.retention_days = retention_days
        self.window = window or ts_window(retention_days)
        self.rejected: list[DeadLetter] = []  # rows the store refused alone (bisection)
        self.rejected_by_table: dict[str, int] = {}
        self.bisect = False  # the store kept rejecting this batch: insert it by halves
        self._parts: list[Decoded] = []
        self.messages = 0
        self.nbytes = 0
        self.opened_at: float | None = None  # monotonic time of the first message
        self.generation = 0  # the source's generation when the batch began (see Source.generation)

    def __len__(self) -> int:
        return self.messages

    def age(self, now: float | None = None) -> float:
        if self.opened_at is None:
            return 0.0
        return (time.monotonic() if now is None else now) - self.opened_at

    def add(self, chunk: Chunk) -> None:
        """Validate the messages of ``chunk`` and keep them, as rows or dead letters."""
        if not chunk.values:
            return
        if self.opened_at is None:
            self.opened_at = time.monotonic()
            if self._fixed_window is None:
                self.window = ts_window(self.retention_days)
        self.messages += len(chunk.values)
        self.nbytes += sum(len(v) for v in chunk.values if v is not None)
        self._parts.append(decode_chunk(chunk, self.max_message_bytes, self.window))

    @property
    def partition_cap(self) -> int:
        """Monthly partitions this batch's rows can span (its ts window's months)."""
        return months_spanned(self.window)

    @property
    def n_events(self) -> int:
        return sum(p.n_events for p in self._parts)

    @property
    def n_feedback(self) -> int:
        return sum(p.n_feedback for p in self._parts)

    @property
    def n_heartbeats(self) -> int:
        return sum(p.n_heartbeats for p in self._parts)

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [d for p in self._parts for d in p.dead_letters] + self.rejected

    def event_columns(self) -> list[list[Any]]:
        return _concat([p.events for p in self._parts if p.n_events])

    def feedback_columns(self) -> list[list[Any]]:
        return _concat([p.feedback for p in self._parts if p.n_feedback])

    def event_producers(self) -> list[str]:
        """The ``producer_id`` of each events row."""
        return [v for p in self._parts for v in p.event_producers]

    def feedback_producers(self) -> list[str]:
        return [v for p in self._parts for v in p.feedback_producers]

    def heartbeat_columns(self) -> list[list[Any]]:
        return _concat([p.heartbeats for p in self._parts if p.n_heartbeats])

    def raws(self, table: str) -> list[bytes]:
        """The raw message of each row of ``table`` (events, feedback, producer_heartbeats), in row order."""
        name = {"events": "events_raw", "feedback": "feedback_raw", "producer_heartbeats": "heartbeats_raw"}[table]
        return [r for p in self._parts for r in getattr(p, name)]


def _concat(parts: list[list[list[Any]]]) -> list[list[Any]]:
    if len(parts) == 1:
        return parts[0]
    columns: list[list[Any]] = [[] for _ in parts[0]] if parts else []
    for part in parts:
        for column, values in zip(columns, part, strict=True):
            column.extend(values)
    return columns


def _has_lone_surrogate(decoded: Any) -> bool:
    try:
        json.dumps(decoded, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
