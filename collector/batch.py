"""One batch of messages on its way to ClickHouse: decoded, validated and split by table.

Every message ends up in exactly one of three lists: ``events`` (llm_call rows), ``feedback``
rows, or ``dead_letters`` (the raw bytes, the reason and where the message came from). A bad
message never raises out of :meth:`Batch.add`: the collector's loop must never stop on one.

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
from llmsight.errors import SchemaError
from llmsight.schema import LLM_CALL, validate

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


class Batch:
    """Messages accumulated since the last insert, validated and split by table."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self.calls: list[dict[str, Any]] = []  # validated llm_call events
        self.call_sources: list[str] = []
        self.feedback: list[dict[str, Any]] = []  # validated feedback events
        self.feedback_sources: list[str] = []
        self.dead_letters: list[DeadLetter] = []
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

    def event_columns(self) -> list[list[Any]]:
        return event_columns(self.calls, self.call_sources)

    def feedback_columns(self) -> list[list[Any]]:
        return feedback_columns(self.feedback, self.feedback_sources)

    def add(self, chunk: Chunk) -> None:
        """Validate each message of ``chunk`` and file it under its table or as a dead letter."""
        if not chunk.values:
            return
        if self.opened_at is None:
            self.opened_at = time.monotonic()
        if chunk.broken is not None:
            for position, raw in zip(chunk.positions, chunk.values, strict=True):
                self._dead(chunk.prefix, position, TORN, chunk.broken, raw or b"")
                self.nbytes += len(raw or b"")
            self.messages += len(chunk.values)
            return
        # Local names: this loop runs once per message and dominates the collector's CPU.
        decode, check, prefix, limit = _decode, validate, chunk.prefix, self.max_message_bytes
        calls, call_sources = self.calls.append, self.call_sources.append
        feedback, feedback_sources = self.feedback.append, self.feedback_sources.append
        nbytes = 0
        for position, raw in zip(chunk.positions, chunk.values, strict=True):
            if raw is None:
                self._dead(prefix, position, BAD_JSON, "empty message (no value)", b"")
                continue
            size = len(raw)
            nbytes += size
            if size > limit:
                self._dead(prefix, position, TOO_LARGE,
                           f"message of {size} bytes exceeds the limit of {limit} bytes "
                           f"(LLMSIGHT_COLLECTOR_MAX_MESSAGE_BYTES); raw keeps the first {limit} bytes",
                           bytes(raw[:limit]))
                continue
            try:
                # The SDK writes UTF-8; decoding first skips json.loads' encoding detection.
                decoded = decode(raw.decode("utf-8"))
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                self._dead(prefix, position, BAD_JSON, f"bad JSON: {exc}", raw)
                continue
            try:
                event = check(decoded)
            except SchemaError as exc:
                self._dead(prefix, position, BAD_SCHEMA, str(exc), raw)
                continue
            if b"\\u" in raw and _has_lone_surrogate(decoded):
                # JSON may escape half a UTF-16 pair; such text cannot be written as UTF-8 and
                # would fail the whole insert forever.
                self._dead(prefix, position, UNCONVERTIBLE, "text holds a lone UTF-16 surrogate "
                           "(an escaped half of a character pair), which UTF-8 cannot encode", raw)
                continue
            if event["type"] == LLM_CALL:
                calls(event)
                call_sources(prefix + str(position))
            else:
                feedback(event)
                feedback_sources(prefix + str(position))
        self.messages += len(chunk.values)
        self.nbytes += nbytes

    def _dead(self, prefix: str, position: int, kind: str, reason: str, raw: bytes) -> None:
        self.dead_letters.append(DeadLetter(prefix + str(position), kind, reason, bytes(raw)))


_decode = json.JSONDecoder().decode


def _has_lone_surrogate(decoded: Any) -> bool:
    try:
        json.dumps(decoded, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
