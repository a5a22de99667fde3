"""One batch of messages on its way to ClickHouse: decoded, validated and split by table.

Every message ends up in exactly one place: the ``events`` columns (llm_call), the ``feedback``
columns, or ``dead_letters`` (the raw bytes, the reason and where the message came from). A bad
message never raises out of :meth:`Batch.add`: the collector's loop must never stop on one.
Decoding is ``collector.decode``'s fast path, with ``schema.validate()`` deciding the rest.

A batch closes at a count, an age or a size, whichever comes first (see ``Collector``), so
the memory it holds is bounded by ``LLMSIGHT_COLLECTOR_BATCH_BYTES`` plus the decoded rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmsight.collector.columns import event_columns, feedback_columns
from llmsight.collector.decode import LlmCall, fast_decode, slow_decode
from llmsight.errors import SchemaError

# Dead-letter kinds, the label of the collector's dead-letter counter.
BAD_JSON = "bad_json"
BAD_SCHEMA = "bad_schema"
TOO_LARGE = "too_large"
TORN = "torn_line"
UNCONVERTIBLE = "unconvertible"


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
    """One chunk, validated: the rows of each table as columns, and the dead letters."""

    events: list[list[Any]]
    feedback: list[list[Any]]
    dead_letters: list[DeadLetter]
    n_events: int
    n_feedback: int


def decode_chunk(chunk: Chunk, max_message_bytes: int) -> Decoded:
    """Validate each message of ``chunk`` and file it under its table or as a dead letter."""
    dead: list[DeadLetter] = []
    prefix = chunk.prefix
    if chunk.broken is not None:
        for position, raw in zip(chunk.positions, chunk.values, strict=True):
            dead.append(DeadLetter(prefix + str(position), TORN, chunk.broken, bytes(raw or b"")))
        return Decoded([], [], dead, 0, 0)
    # Local names: this loop runs once per message and dominates the collector's CPU.
    fast, limit = fast_decode, max_message_bytes
    calls: list[Any] = []
    call_sources: list[str] = []
    feedback: list[Any] = []
    feedback_sources: list[str] = []
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
            except SchemaError as exc:
                dead.append(DeadLetter(prefix + str(position), BAD_SCHEMA, str(exc), bytes(raw)))
                continue
            if b"\\u" in raw and _has_lone_surrogate(decoded):
                # JSON may escape half a UTF-16 pair; such text cannot be written as UTF-8 and
                # would fail the whole insert forever.
                dead.append(DeadLetter(prefix + str(position), UNCONVERTIBLE,
                                       "text holds a lone UTF-16 surrogate (an escaped half of a character "
                                       "pair), which UTF-8 cannot encode", bytes(raw)))
                continue
        if type(event) is LlmCall:
            calls.append(event)
            call_sources.append(prefix + str(position))
        else:
            feedback.append(event)
            feedback_sources.append(prefix + str(position))
    return Decoded(event_columns(calls, call_sources) if calls else [],
                   feedback_columns(feedback, feedback_sources) if feedback else [],
                   dead, len(calls), len(feedback))


class Batch:
    """Messages accumulated since the last insert, validated and split by table."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
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
        self.messages += len(chunk.values)
        self.nbytes += sum(len(v) for v in chunk.values if v is not None)
        self._parts.append(decode_chunk(chunk, self.max_message_bytes))

    @property
    def n_events(self) -> int:
        return sum(p.n_events for p in self._parts)

    @property
    def n_feedback(self) -> int:
        return sum(p.n_feedback for p in self._parts)

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [d for p in self._parts for d in p.dead_letters]

    def event_columns(self) -> list[list[Any]]:
        return _concat([p.events for p in self._parts if p.n_events])

    def feedback_columns(self) -> list[list[Any]]:
        return _concat([p.feedback for p in self._parts if p.n_feedback])


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
