"""The event schema shared by the SDK (which writes events) and the collector (which validates them).

Events are JSON objects with a ``type`` and a ``schema_version``. Three types exist:

* ``llm_call`` — one monitored call: what went in, what came out, how long it took, what it cost.
* ``feedback`` — what the user did with an answer, tied to the call by ``trace_id``.
* ``heartbeat`` — a producer's (one SDK process's) cumulative counters, sent now and then, so the loss
  audit can compare what each producer sent with what the store holds.

``validate`` returns a normalised copy of an event or raises :class:`SchemaError` whose message
says which field is wrong; the collector turns that message into a dead letter's reason.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from typing import Any

from llmsight.errors import SchemaError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

LLM_CALL = "llm_call"
FEEDBACK = "feedback"
HEARTBEAT = "heartbeat"

_STR = (str,)
_NUM = (int, float)
_OPT_STR = (str, type(None))
_OPT_NUM = (int, float, type(None))
_OPT_INT = (int, type(None))
_INT = (int,)
_OPT_BOOL = (bool, type(None))

# field -> (accepted types, required)
LLM_CALL_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "event_id": (_STR, True),
    "trace_id": (_STR, True),
    "parent_id": (_OPT_STR, False),
    "ts": (_STR, True),
    "service": (_STR, True),
    "environment": (_STR, False),
    "name": (_STR, True),
    "model": (_OPT_STR, False),
    "prompt_version": (_OPT_STR, False),
    "input": (_OPT_STR, False),
    "output": (_OPT_STR, False),
    "error": (_OPT_STR, False),
    "error_type": (_OPT_STR, False),
    "latency_ms": (_NUM, True),
    "ttft_ms": (_OPT_NUM, False),
    "tokens_in": (_OPT_INT, False),
    "tokens_out": (_OPT_INT, False),
    "cost_usd": (_OPT_NUM, False),
    "user_id": (_OPT_STR, False),
    "session_id": (_OPT_STR, False),
    "tags": ((dict, type(None)), False),
    "metadata": ((dict, type(None)), False),
    "truncated": (_OPT_BOOL, False),
}

FEEDBACK_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "event_id": (_STR, True),
    "trace_id": (_STR, True),
    "ts": (_STR, True),
    "accepted": (_OPT_BOOL, False),
    "score": (_OPT_NUM, False),
    "comment": (_OPT_STR, False),
    "edited_output": (_OPT_STR, False),
    "user_id": (_OPT_STR, False),
}

# Counters are cumulative since the producer started (a new producer_id after a restart or fork), so a
# lost heartbeat loses nothing: the next one carries the totals. ``sent`` counts llm_call and feedback
# events acknowledged by the sink, heartbeats excluded.
HEARTBEAT_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "event_id": (_STR, True),
    "ts": (_STR, True),
    "producer_id": (_STR, True),
    "service": (_STR, True),
    "environment": (_STR, False),
    "host": (_OPT_STR, False),
    "pid": (_OPT_INT, False),
    "started_at": (_OPT_STR, False),
    "sent": (_INT, True),
    "dropped": (_INT, True),
    "spilled": (_INT, True),
    "failed": (_INT, True),
}

FIELDS_BY_TYPE = {LLM_CALL: LLM_CALL_FIELDS, FEEDBACK: FEEDBACK_FIELDS, HEARTBEAT: HEARTBEAT_FIELDS}


def parse_ts(value: str) -> datetime:
    """Parse an event timestamp (ISO 8601; a naive one is taken as UTC) to an aware UTC datetime."""
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def validate(event: Any) -> dict[str, Any]:
    """Check one decoded event against the schema and return it normalised.

    Raises :class:`SchemaError` with a reason a person can act on.
    """
    if not isinstance(event, dict):
        raise SchemaError(f"event must be a JSON object, got {type(event).__name__}")
    version = event.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise SchemaError(f"schema_version must be an integer, got {version!r}")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise SchemaError(f"unknown schema_version {version} (supported: {sorted(SUPPORTED_SCHEMA_VERSIONS)})")
    kind = event.get("type")
    fields = FIELDS_BY_TYPE.get(kind)  # type: ignore[arg-type]
    if fields is None:
        raise SchemaError(f"unknown event type {kind!r} (expected {LLM_CALL!r}, {FEEDBACK!r} or {HEARTBEAT!r})")
    out: dict[str, Any] = {"type": kind, "schema_version": version}
    for name, (types, required) in fields.items():
        if name not in event or event[name] is None:
            if required:
                raise SchemaError(f"{kind}: missing required field {name!r}")
            out[name] = None
            continue
        value = event[name]
        # bool is an int in Python; only accept it where bool is meant.
        if isinstance(value, bool) and bool not in types:
            raise SchemaError(f"{kind}: field {name!r} must be {_type_names(types)}, got bool")
        if not isinstance(value, types):
            raise SchemaError(f"{kind}: field {name!r} must be {_type_names(types)}, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SchemaError(f"{kind}: field {name!r} must be finite, got {value!r}")
        out[name] = value
    try:
        uuid.UUID(out["event_id"])
    except ValueError:
        raise SchemaError(f"{kind}: event_id must be a UUID, got {out['event_id']!r}") from None
    try:
        out["ts"] = parse_ts(out["ts"])
    except ValueError:
        raise SchemaError(f"{kind}: ts must be an ISO 8601 timestamp, got {out['ts']!r}") from None
    if kind == HEARTBEAT:
        negative = [k for k in ("sent", "dropped", "spilled", "failed") if out[k] < 0]
        if negative:
            raise SchemaError(f"{kind}: counters must not be negative: {', '.join(negative)}")
    if kind == LLM_CALL and out["latency_ms"] < 0:
        raise SchemaError(f"{kind}: latency_ms must not be negative, got {out['latency_ms']!r}")
    return out


def _type_names(types: tuple[type, ...]) -> str:
    names = ["null" if t is type(None) else t.__name__ for t in types]
    return " or ".join(names)
