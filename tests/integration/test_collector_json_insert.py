"""The collector writes events and feedback as JSON columns; on chdb the stored rows must equal
what clickhouse-connect's Native insert of the same columns stores (the way dead letters and the
fallback go), value for value, on the awkward cases: timestamps with offsets and sub-millisecond
digits, floats at the edges, unicode and control characters, maps with non-string values,
metadata objects, clamped token counts, nulls."""

from __future__ import annotations

import json
import random
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from llmsight.collector import collector as collector_module
from llmsight.collector.batch import Batch, Chunk
from llmsight.collector.collector import Collector
from llmsight.collector.spool_source import SpoolSource
from llmsight.store.rows import EVENT_COLUMNS, FEEDBACK_COLUMNS

# Yesterday, not a fixed date: rows past the store's 90-day TTL vanish on a merge.
DAY = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()


def _call(i: int, **fields: Any) -> bytes:
    event = {"type": "llm_call", "schema_version": 1, "event_id": f"00000000-0000-4000-8000-{i:012d}",
             "trace_id": f"t{i}", "ts": f"{DAY}T10:00:00.123999Z", "service": "s", "name": "n",
             "latency_ms": 1.5}
    event.update(fields)
    return json.dumps(event, ensure_ascii=False).encode()


def _feedback(i: int, **fields: Any) -> bytes:
    event = {"type": "feedback", "schema_version": 1, "event_id": f"10000000-0000-4000-8000-{i:012d}",
             "trace_id": f"t{i}", "ts": f"{DAY}T10:00:01Z"}
    event.update(fields)
    return json.dumps(event, ensure_ascii=False).encode()


AWKWARD = [
    _call(1),
    _call(2, ts=f"{DAY}T12:00:00.9999995+02:00", latency_ms=0.1 + 0.2, ttft_ms=1e-300,
          cost_usd=1.7976931348623157e308, tokens_in=2**40, tokens_out=-5),
    _call(3, input='héllo \u0000 \t\n "q" \\ 🙂 \u2028', output="x" * 20_000,
          tags={"a": 1, "b": True, "c": None, "é": "ü"}, metadata={"k": [1, 2, {"z": None}], "u": "ü"},
          truncated=True, model="gpt-4o-mini", prompt_version="v2", environment="prod"),
    _call(4, ts=f"{DAY}T10:00:00", latency_ms=3, user_id="", session_id=None, error="boom",
          error_type="E", parent_id="p"),
    _call(5, ts=f"{DAY}T10:00:00.0005Z", latency_ms=5e-324, ttft_ms=None, tokens_in=0),
    # Floats over the whole range: each must come back bit for bit.
    *(_call(100 + i, latency_ms=abs(struct.unpack("<d", random.Random(i).randbytes(8))[0]) % 1e300,
            cost_usd=random.Random(-i).random() * 10 ** random.Random(i).randint(-12, 3))
      for i in range(200)),
    _feedback(1, accepted=True, score=0.1 + 0.7, comment="gut 👍", user_id="u"),
    _feedback(2, accepted=False, edited_output="line1\nline2\t\"x\""),
    _feedback(3, score=-1.0, ts=f"{DAY}T10:00:01.5-05:00"),
]


def _stored(client: Any, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    names = ", ".join(columns)
    return client.query(f"SELECT {names} FROM {table} ORDER BY event_id").result_rows


def test_json_columns_store_what_the_native_insert_stores(store_client: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    batch = Batch(1 << 20)
    batch.add(Chunk("kafka://t/0/", range(len(AWKWARD)), AWKWARD))
    assert (batch.n_events, batch.n_feedback, batch.dead_letters) == (205, 3, [])
    for table in ("events", "feedback"):
        ddl = store_client.query(f"SHOW CREATE TABLE {table}").result_rows[0][0]
        store_client.command(ddl.replace(f".{table}\n", f".{table}_native\n", 1))
    collector = Collector(SpoolSource(tmp_path / "spool"), store_client, http_port=0)
    settings = {"insert_deduplication_token": "json"}
    inserted: list[str] = []
    raw_insert = store_client.raw_insert
    monkeypatch.setattr(store_client, "raw_insert", lambda table, *a, **k: (inserted.append(table),
                                                                             raw_insert(table, *a, **k)))
    collector._insert_json("events", EVENT_COLUMNS, batch.event_columns(), settings)
    collector._insert_json("feedback", FEEDBACK_COLUMNS, batch.feedback_columns(), settings)
    assert inserted == ["events", "feedback"]  # both went the JSON way

    def unwritable(_data: Any) -> bytes:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    # The fallback: what msgspec cannot write goes through clickhouse-connect's Native insert.
    monkeypatch.setattr(collector_module, "_json_columns", unwritable)
    collector._insert_json("events_native", EVENT_COLUMNS, batch.event_columns(), settings)
    collector._insert_json("feedback_native", FEEDBACK_COLUMNS, batch.feedback_columns(), settings)
    assert inserted == ["events", "feedback"]

    events = _stored(store_client, "events", EVENT_COLUMNS)
    feedback = _stored(store_client, "feedback", FEEDBACK_COLUMNS)
    assert len(events) == 205 and len(feedback) == 3
    assert events == _stored(store_client, "events_native", EVENT_COLUMNS)
    assert feedback == _stored(store_client, "feedback_native", FEEDBACK_COLUMNS)
    by_trace = {row[1]: dict(zip(EVENT_COLUMNS, row, strict=True)) for row in events}
    assert by_trace["t2"]["ts"].replace(tzinfo=None).isoformat() == f"{DAY}T10:00:00.999000"
    assert (by_trace["t2"]["tokens_in"], by_trace["t2"]["tokens_out"]) == (0xFFFFFFFF, 0)
    assert by_trace["t2"]["latency_ms"] == 0.1 + 0.2
    assert by_trace["t3"]["tags"] == {"a": "1", "b": "True", "c": "None", "é": "ü"}
    assert json.loads(by_trace["t3"]["metadata"]) == {"k": [1, 2, {"z": None}], "u": "ü"}
    assert by_trace["t3"]["input"] == 'héllo \u0000 \t\n "q" \\ 🙂 \u2028'
    assert by_trace["t4"]["ts"].replace(tzinfo=None).isoformat() == f"{DAY}T10:00:00"
