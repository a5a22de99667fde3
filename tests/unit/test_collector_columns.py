"""The collector's column builder stores exactly what store.rows.event_row/feedback_row would."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from llmsight.collector.columns import event_columns, feedback_columns
from llmsight.collector.decode import fast_decode, from_validated
from llmsight.schema import validate
from llmsight.store.rows import EVENT_COLUMNS, FEEDBACK_COLUMNS, event_row, feedback_row

CALLS: list[dict[str, Any]] = [
    {"event_id": "0b6b4b0e-8d59-4c1e-9a43-4a3b8f0c9d11", "trace_id": "t", "ts": "2026-11-20T10:00:00Z",
     "service": "s", "name": "n", "latency_ms": 3},
    {"event_id": "{0B6B4B0E-8D59-4C1E-9A43-4A3B8F0C9D12}", "trace_id": "t2", "parent_id": "p",
     "ts": "2026-11-20T10:00:00.123456+02:00", "service": "s", "environment": "prod", "name": "n",
     "model": "m", "prompt_version": "v2", "input": "é ü 漢", "output": "o", "error": "boom",
     "error_type": "ValueError", "latency_ms": 12.75, "ttft_ms": 4, "tokens_in": -5,
     "tokens_out": 2**40, "cost_usd": 1, "user_id": "u", "session_id": "x",
     "tags": {"tier": "gold", "n": 3, "flag": True}, "metadata": {"k": [1, "ü"]}, "truncated": True},
    {"event_id": "0b6b4b0e8d594c1e9a434a3b8f0c9d13", "trace_id": "t3", "ts": "2026-11-20T10:00:00",
     "service": "s", "name": "n", "latency_ms": 0.5, "tags": {}, "metadata": {}, "truncated": False,
     "tokens_in": 7, "cost_usd": 0.25},
]
FEEDBACK: list[dict[str, Any]] = [
    {"event_id": "5f7c1f0a-1b2c-4d3e-8f9a-0a1b2c3d4e5f", "trace_id": "t", "ts": "2026-11-20T10:00:01Z"},
    {"event_id": "5f7c1f0a-1b2c-4d3e-8f9a-0a1b2c3d4e60", "trace_id": "t", "ts": "2026-11-20T10:00:01Z",
     "accepted": True, "score": 4, "comment": "ok", "edited_output": "better", "user_id": "u"},
    {"event_id": "5f7c1f0a-1b2c-4d3e-8f9a-0a1b2c3d4e61", "trace_id": "t", "ts": "2026-11-20T10:00:01Z",
     "accepted": False, "score": 0.5},
]


def normalise(value: Any) -> Any:
    return value if not isinstance(value, uuid.UUID) else str(value)


@pytest.mark.parametrize(("kind", "raw", "build", "row", "names"), [
    ("llm_call", CALLS, event_columns, event_row, EVENT_COLUMNS),
    ("feedback", FEEDBACK, feedback_columns, feedback_row, FEEDBACK_COLUMNS),
])
def test_columns_hold_the_values_of_the_reference_rows(kind, raw, build, row, names) -> None:
    events = [validate({"type": kind, "schema_version": 1, **e}) for e in raw]
    sources = [f"kafka://t/0/{i}" for i in range(len(events))]
    expected = list(zip(*[row(e, s) for e, s in zip(events, sources, strict=True)], strict=True))
    # The same events through the slow path (validate) and, where it vouches, the fast one.
    slow = [from_validated(e) for e in events]
    fast = [fast_decode(json.dumps({"type": kind, "schema_version": 1, **e}).encode()) for e in raw]
    # Only the braces and no-hyphen UUID spellings take the slow path.
    assert [f is not None for f in fast] == [len(e["event_id"]) == 36 for e in raw]
    fast = [f if f is not None else s for f, s in zip(fast, slow, strict=True)]
    for structs in (slow, fast):
        columns = build(structs, sources)
        assert len(columns) == len(names)
        for name, got, want in zip(names, columns, expected, strict=True):
            got_values = [normalise(v) for v in got]
            want_values = [normalise(v) for v in want]
            assert got_values == want_values, name
            assert [type(v) for v in got_values] == [type(v) for v in want_values], name
