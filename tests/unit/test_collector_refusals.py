"""A store that is down against a store that refuses rows (issue 15, item 8), on a fake store: a store
that is down, or answers with a transient error, is retried for ever and nothing becomes a dead
letter; only a data error repeated while the store answers ``SELECT 1`` leads to bisection."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from llmsight.collector import Collector
from llmsight.collector import collector as collector_module
from llmsight.collector.batch import Batch, Chunk, months_spanned, ts_window
from llmsight.collector.collector import store_down
from llmsight.collector.spool_source import SpoolSource
from llmsight.spool import hostname

TS = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Fails the first ``failures`` inserts with ``error`` (then takes them); ``up`` answers SELECT 1."""

    def __init__(self, error: Exception, failures: int, up: bool = True) -> None:
        self.error, self.failures, self.up = error, failures, up
        self.rows: dict[str, int] = {}
        self.attempts = 0

    def _attempt(self, table: str, n: int) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        self.rows[table] = self.rows.get(table, 0) + n

    def raw_insert(self, table: str, column_names: list[str], insert_block: bytes, *, settings: dict[str, Any],
                   fmt: str) -> None:
        self._attempt(table, len(json.loads(insert_block)[0]))

    def insert(self, table: str, data: Any, *, column_names: list[str], column_oriented: bool,
               settings: dict[str, Any], column_type_names: list[str] | None = None) -> None:
        self._attempt(table, len(data[0]))

    def create_insert_context(self, table: str, column_names: list[str]) -> Any:
        return SimpleNamespace(column_types=[SimpleNamespace(name="String") for _ in column_names])

    def query(self, sql: str) -> Any:
        if not self.up:
            raise OperationalError("connection refused")
        return SimpleNamespace(result_rows=[[1]])


def source(tmp_path: Path, n: int) -> SpoolSource:
    lines = [json.dumps({"type": "llm_call", "schema_version": 1, "event_id": str(uuid.uuid4()), "trace_id": f"t{i}",
                         "ts": TS, "service": "s", "name": "n", "latency_ms": 1.0}).encode() + b"\n" for i in range(n)]
    (tmp_path / f"1700000000000-{hostname()}-4194999-000001.jsonl").write_bytes(b"".join(lines))
    return SpoolSource(tmp_path)


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch) -> None:
    monkeypatch.setattr(collector_module, "_FIRST_RETRY_S", 0.001)


REFUSED = DatabaseError("Code: 469. DB::Exception: Constraint `c` is violated at row 1. (VIOLATED_CONSTRAINT)")


@pytest.mark.parametrize(("error", "up"), [
    (ConnectionError("store down"), False),
    (OperationalError("HTTPDriver for http://ch:8123 received ClickHouse error"), True),
    (DatabaseError("Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)"), True),
    (DatabaseError("Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS)"), True),
    (DatabaseError("Code: 60. DB::Exception: Table db.events does not exist. (UNKNOWN_TABLE)"), True),
    (REFUSED, False),  # a refusal while SELECT 1 fails: the store is down after all
])
def test_a_store_that_is_down_is_retried_and_nothing_becomes_a_dead_letter(tmp_path, error, up) -> None:
    store = Store(error, failures=8, up=up)
    stats = Collector(source(tmp_path, 10), store, http_port=0, retry_max_s=0.01).run_until_idle(timeout_s=30)
    assert store.rows == {"events": 10}
    assert (stats.events, stats.dead_letters, stats.rejected, stats.bisected_batches) == (10, 0, 0, 0)
    assert stats.insert_errors == 8


def test_a_refusal_repeated_while_the_store_answers_is_bisected(tmp_path) -> None:
    # Refused 3 times as a whole (BISECT_AFTER), then as 0-16, 0-8, 0-4, 0-2 and 0-1: row 0 is refused
    # alone and becomes a dead letter; every other half is taken.
    store = Store(REFUSED, failures=3 + 5)
    stats = Collector(source(tmp_path, 16), store, http_port=0, retry_max_s=0.01).run_until_idle(timeout_s=30)
    assert (stats.bisected_batches, stats.rejected, stats.events) == (1, 1, 15)
    assert store.rows == {"events": 15, "dead_letters": 1}


def test_store_down_classifies_errors() -> None:
    assert store_down(ConnectionError()) and store_down(OSError()) and store_down(OperationalError("x"))
    assert store_down(DatabaseError("no code at all"))
    assert not store_down(REFUSED)
    assert not store_down(DatabaseError("Code: 27. DB::Exception: Cannot parse input (CANNOT_PARSE_INPUT_ASSERTION_FAILED)"))


def test_the_partition_cap_covers_the_months_of_the_ts_window() -> None:
    at = datetime(2026, 12, 4, tzinfo=timezone.utc)
    assert months_spanned(ts_window(90, at)) == 4  # 2026-09-05 .. 2026-12-05: Sep, Oct, Nov, Dec
    assert months_spanned(ts_window(90, datetime(2026, 12, 31, 12, tzinfo=timezone.utc))) == 4  # Oct .. 2027-01
    assert months_spanned(ts_window(3650, at)) == 121
    batch = Batch(10_000, ts_window(90, at))
    assert batch.partition_cap == 4


def test_a_heartbeat_is_a_row_of_its_own_table() -> None:
    beat = {"type": "heartbeat", "schema_version": 1, "event_id": str(uuid.uuid4()), "ts": TS, "producer_id": "p1",
            "service": "s", "host": "h", "pid": 7, "sent": 10, "dropped": 1, "spilled": 2, "failed": 3}
    batch = Batch(10_000)
    # Today a heartbeat raised out of Batch.add (it was built as a Feedback struct) and stopped the loop.
    batch.add(Chunk("f:", [1, 2, 3], [json.dumps(beat).encode(), json.dumps({**beat, "sent": -1}).encode(),
                                      json.dumps({**beat, "sent": "10"}).encode()]))
    assert batch.n_heartbeats == 1 and batch.n_events == batch.n_feedback == 0
    columns = batch.heartbeat_columns()
    assert [c[0] for c in columns[2:12]] == ["p1", "s", "", "h", 7, "", 10, 1, 2, 3]
    assert [d.reason for d in batch.dead_letters][0] == "heartbeat: counters must not be negative: sent"
    assert batch.dead_letters[1].kind == "bad_schema"


def test_the_ts_window_is_taken_when_the_first_message_arrives(monkeypatch) -> None:
    # An idle collector's empty batch may be days old: its window must not be.
    import llmsight.collector.batch as batch_module

    old = datetime.now(timezone.utc) - timedelta(days=3)
    monkeypatch.setattr(batch_module, "ts_window", lambda days=None, now=None: (
        (now or old) - timedelta(days=days or 90), (now or old) + timedelta(days=1)))
    batch = Batch(10_000, retention_days=90)  # made "3 days ago"
    monkeypatch.setattr(batch_module, "ts_window", lambda days=None, now=None: ts_window(days, now))
    fresh = json.dumps({"type": "llm_call", "schema_version": 1, "event_id": str(uuid.uuid4()), "trace_id": "t",
                        "ts": TS, "service": "s", "name": "n", "latency_ms": 1.0}).encode()
    batch.add(Chunk("f:", [1], [fresh]))
    assert batch.n_events == 1 and batch.dead_letters == []
