"""Column lists of the tables and the conversion of a validated event into a row."""

from __future__ import annotations

import json
import uuid
from typing import Any

EVENT_COLUMNS = [
    "event_id", "trace_id", "parent_id", "ts", "service", "environment", "name", "model",
    "prompt_version", "input", "output", "error", "error_type", "latency_ms", "ttft_ms",
    "tokens_in", "tokens_out", "cost_usd", "user_id", "session_id", "tags", "metadata",
    "truncated", "source",
]
FEEDBACK_COLUMNS = [
    "event_id", "trace_id", "ts", "accepted", "score", "comment", "edited_output", "user_id", "source",
]
DEAD_LETTER_COLUMNS = ["source", "reason", "raw"]
METRIC_COLUMNS = [
    "window_start", "window_end", "granularity", "service", "name", "model", "prompt_version",
    "metric", "value", "n", "baseline", "p_value", "threshold", "details",
]
ALERT_COLUMNS = [
    "alert_id", "rule", "metric", "severity", "state", "service", "name", "model", "prompt_version",
    "value", "threshold", "baseline", "p_value", "window_start", "evidence", "acked_by", "ack_note",
    "changed_at",
]
EMBEDDING_COLUMNS = ["model", "text_hash", "vector"]


def _u32(value: Any) -> int | None:
    if value is None:
        return None
    return max(0, min(int(value), 0xFFFFFFFF))


def event_row(event: dict[str, Any], source: str) -> list[Any]:
    """One ``events`` row, in :data:`EVENT_COLUMNS` order, from an event that passed ``schema.validate``."""
    tags = event.get("tags") or {}
    return [
        uuid.UUID(event["event_id"]),
        event["trace_id"],
        event.get("parent_id") or "",
        event["ts"],
        event["service"],
        event.get("environment") or "",
        event["name"],
        event.get("model") or "",
        event.get("prompt_version") or "",
        event.get("input") or "",
        event.get("output") or "",
        event.get("error") or "",
        event.get("error_type") or "",
        float(event["latency_ms"]),
        None if event.get("ttft_ms") is None else float(event["ttft_ms"]),
        _u32(event.get("tokens_in")),
        _u32(event.get("tokens_out")),
        None if event.get("cost_usd") is None else float(event["cost_usd"]),
        event.get("user_id") or "",
        event.get("session_id") or "",
        {str(k): str(v) for k, v in tags.items()},
        json.dumps(event["metadata"], ensure_ascii=False) if event.get("metadata") else "",
        1 if event.get("truncated") else 0,
        source,
    ]


def feedback_row(event: dict[str, Any], source: str) -> list[Any]:
    """One ``feedback`` row, in :data:`FEEDBACK_COLUMNS` order."""
    accepted = event.get("accepted")
    return [
        uuid.UUID(event["event_id"]),
        event["trace_id"],
        event["ts"],
        None if accepted is None else int(bool(accepted)),
        None if event.get("score") is None else float(event["score"]),
        event.get("comment") or "",
        event.get("edited_output") or "",
        event.get("user_id") or "",
        source,
    ]


# -- Added by migration 0006 (the loss audit and dead-letter kinds) -------------------------------
# The collector inserts these beside the columns above: ``producer_id`` on events and feedback (the
# SDK process that sent the row; '' when the event carried none), ``kind`` on dead letters (why, as
# a short label: bad_json, bad_schema, unknown_schema_version, ts_out_of_range, rejected, ...).
PRODUCER_ID_COLUMN = "producer_id"
DEAD_LETTER_KIND_COLUMN = "kind"
HEARTBEAT_COLUMNS = [
    "event_id", "ts", "producer_id", "service", "environment", "host", "pid", "started_at",
    "sent", "dropped", "spilled", "failed", "source",
]


def heartbeat_row(event: dict[str, Any], source: str) -> list[Any]:
    """One ``producer_heartbeats`` row, in :data:`HEARTBEAT_COLUMNS` order, from a validated heartbeat."""
    return [
        uuid.UUID(event["event_id"]),
        event["ts"],
        event["producer_id"],
        event["service"],
        event.get("environment") or "",
        event.get("host") or "",
        _u32(event.get("pid")) or 0,
        event.get("started_at") or "",
        int(event["sent"]),
        int(event["dropped"]),
        int(event["spilled"]),
        int(event["failed"]),
        source,
    ]
