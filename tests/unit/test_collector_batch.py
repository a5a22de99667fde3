"""Validation and batching: every bad kind of message becomes a dead letter with its reason and
position; good ones become rows of the right table; source URLs parse as the SDK's do."""

from __future__ import annotations

import json
import uuid

import pytest

from llmsight.collector.batch import (
    BAD_JSON,
    BAD_SCHEMA,
    TOO_LARGE,
    TORN,
    UNCONVERTIBLE,
    UNKNOWN_VERSION,
    Batch,
    Chunk,
)
from llmsight.collector.source import make_token, source_from_url
from llmsight.errors import ConfigError
from llmsight.store.rows import EVENT_COLUMNS, FEEDBACK_COLUMNS

CALL_ID = "0b6b4b0e-8d59-4c1e-9a43-4a3b8f0c9d11"
FEEDBACK_ID = "5f7c1f0a-1b2c-4d3e-8f9a-0a1b2c3d4e5f"


def call(**overrides: object) -> bytes:
    event = {"type": "llm_call", "schema_version": 1, "event_id": CALL_ID, "trace_id": "t1",
             "ts": "2026-11-20T10:00:00.000000Z", "service": "bank", "name": "answer", "latency_ms": 12.5,
             "input": "hi", "output": "hello", "tags": {"tier": "gold"}}
    event.update(overrides)
    return json.dumps(event).encode()


def feedback() -> bytes:
    return json.dumps({"type": "feedback", "schema_version": 1, "event_id": FEEDBACK_ID, "trace_id": "t1",
                       "ts": "2026-11-20T10:00:01Z", "accepted": False}).encode()


def test_good_messages_become_rows_of_their_table() -> None:
    batch = Batch(max_message_bytes=10_000)
    batch.add(Chunk("kafka://llm/2/", [40, 41], [call(), feedback()]))
    assert len(batch) == 2 and batch.dead_letters == []
    assert batch.n_events == 1 and batch.n_feedback == 1
    event = {name: column[0] for name, column in zip(EVENT_COLUMNS, batch.event_columns(), strict=True)}
    assert uuid.UUID(event["event_id"]) == uuid.UUID(CALL_ID)
    assert event["source"] == "kafka://llm/2/40"
    assert event["tags"] == {"tier": "gold"}
    fb = {name: column[0] for name, column in zip(FEEDBACK_COLUMNS, batch.feedback_columns(), strict=True)}
    assert fb["accepted"] == 0 and fb["source"] == "kafka://llm/2/41"


@pytest.mark.parametrize(("raw", "kind", "reason"), [
    (b'{"type": "llm_call", ', BAD_JSON, "bad JSON: "),
    (b"\xff\xfe not utf-8", BAD_JSON, "bad JSON: "),
    (b"[1, 2]", BAD_SCHEMA, "event must be a JSON object, got list"),
    (call(schema_version=99), UNKNOWN_VERSION, "unknown schema_version 99"),
    (call(service=None), BAD_SCHEMA, "llm_call: missing required field 'service'"),
    (call(latency_ms="fast"), BAD_SCHEMA, "llm_call: field 'latency_ms' must be int or float, got str"),
    (call(event_id="not-a-uuid"), BAD_SCHEMA, "llm_call: event_id must be a UUID"),
    (call(input="half a pair: \ud83d"), UNCONVERTIBLE, "text holds a lone UTF-16 surrogate"),
])
def test_each_bad_kind_is_a_dead_letter_with_its_reason(raw: bytes, kind: str, reason: str) -> None:
    batch = Batch(max_message_bytes=10_000)
    batch.add(Chunk("file:///spool/a.jsonl:", [6, 7, 8], [call(), raw, feedback()]))
    assert batch.n_events == 1 and batch.n_feedback == 1  # the good neighbours are kept
    [dead] = batch.dead_letters
    assert dead.kind == kind
    assert dead.reason.startswith(reason), dead.reason
    assert dead.where == "file:///spool/a.jsonl:7"
    assert dead.raw == raw


def test_an_oversized_message_keeps_its_first_bytes_and_says_why() -> None:
    big = call(input="x" * 500)
    batch = Batch(max_message_bytes=100)
    batch.add(Chunk("kafka://llm/0/", [9], [big]))
    [dead] = batch.dead_letters
    assert dead.kind == TOO_LARGE
    assert dead.reason.startswith(f"message of {len(big)} bytes exceeds the limit of 100 bytes")
    assert dead.raw == big[:100]
    assert batch.nbytes == len(big)


def test_an_empty_kafka_value_and_a_torn_line_are_dead_letters() -> None:
    batch = Batch(max_message_bytes=1000)
    batch.add(Chunk("kafka://llm/0/", [3], [None]))
    batch.add(Chunk("file:///s/x.jsonl:", [12], [b'{"type": "ll'], broken="torn line"))
    assert [(d.kind, d.where, d.raw) for d in batch.dead_letters] == [
        (BAD_JSON, "kafka://llm/0/3", b""), (TORN, "file:///s/x.jsonl:12", b'{"type": "ll')]
    assert batch.dead_letters[1].reason == "torn line"
    assert len(batch) == 2


def test_tokens_name_the_ranges_in_a_stable_order_and_stay_short() -> None:
    assert make_token(["t-1-5-9", "t-0-3-4"]) == "t-0-3-4_t-1-5-9"
    long = make_token([f"topic-{p}-1000000-2000000" for p in range(20)])
    assert long.startswith("sha1-") and len(long) == 45
    assert long == make_token([f"topic-{p}-1000000-2000000" for p in reversed(range(20))])


@pytest.mark.parametrize("url", ["kafka:///topic", "kafka://host:9092/", "kafka://host/topic",
                                 "file://", "s3://bucket/x", "localhost:9092"])
def test_bad_source_urls_fail_with_the_accepted_forms(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        source_from_url(url)
    assert "kafka://" in str(info.value) or "file://" in str(info.value)


def test_a_file_url_is_a_spool_source(tmp_path) -> None:
    source = source_from_url(f"file://{tmp_path}/spool")
    try:
        assert source.url == f"file://{tmp_path}/spool"
        assert (tmp_path / "spool" / ".collector").is_dir()
    finally:
        source.close()

