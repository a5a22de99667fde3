"""The store on real chdb: migrations, engines, codecs, TTL, dedup and the one-process lock."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, time, timedelta, timezone

from llmsight import store
from llmsight.store import EVENT_COLUMNS, event_row

# Yesterday, not a fixed date: rows past the 90-day TTL vanish on a merge, even from a plain count().
DAY = datetime.now(timezone.utc).date() - timedelta(days=1)

TABLES = {"events", "feedback", "embeddings", "metrics", "alerts", "alert_silences", "dead_letters",
          "analysis_windows", "analysis_units", "producer_heartbeats", "schema_migrations", "evaluations",
          "review_labels"}


def _event(i: int) -> dict:
    return {
        "event_id": str(uuid.UUID(int=i + 1)), "trace_id": f"tr{i}", "parent_id": None,
        "ts": datetime.combine(DAY, time(12, 0, i % 60), timezone.utc), "service": "svc",
        "environment": "prod", "name": "answer", "model": "m", "prompt_version": "v1",
        "input": f"question {i}", "output": "answer", "error": None, "error_type": None,
        "latency_ms": 12.5, "ttft_ms": None, "tokens_in": 3, "tokens_out": 5, "cost_usd": 0.001,
        "user_id": "u", "session_id": "s", "tags": {"k": "v"}, "metadata": {"a": 1}, "truncated": False,
    }


def test_migrate_is_idempotent_and_creates_the_tables(store_client):
    tables = {r[0] for r in store_client.query("SHOW TABLES").result_rows}
    assert tables == TABLES
    assert store.migrate(store_client) == []
    versions = store_client.query("SELECT count() FROM schema_migrations FINAL").result_rows[0][0]
    assert versions == len(store.load_migrations())


def test_engines_partitions_ttl_and_codecs(store_client):
    rows = store_client.query(
        "SELECT name, engine, partition_key, sorting_key, create_table_query FROM system.tables "
        "WHERE database = currentDatabase()"
    ).result_rows
    by_name = {r[0]: r for r in rows}
    for table in ("events", "feedback", "embeddings", "metrics"):
        assert by_name[table][1] == "ReplacingMergeTree"
    assert by_name["events"][2] == "toYYYYMM(ts)"
    assert by_name["events"][3] == "service, toDate(ts), event_id"
    assert "TTL toDateTime(ts) + toIntervalDay(90)" in by_name["events"][4]
    assert "non_replicated_deduplication_window = 10000" in by_name["events"][4]
    codecs = dict(store_client.query(
        "SELECT name, compression_codec FROM system.columns WHERE database = currentDatabase() AND table = 'events'"
    ).result_rows)
    for column in ("input", "output", "metadata"):
        assert codecs[column] == "CODEC(ZSTD(3))"


def test_a_replayed_batch_is_dropped_and_duplicates_vanish(store_client):
    rows = [event_row(_event(i), "test") for i in range(50)]
    token = {"insert_deduplication_token": "segment-0-50"}
    store_client.insert("events", rows, column_names=EVENT_COLUMNS, settings=token)
    store_client.insert("events", rows, column_names=EVENT_COLUMNS, settings=token)
    assert store_client.query("SELECT count() FROM events").result_rows[0][0] == 50
    # Without the token the rows land twice, and FINAL folds them by event_id.
    store_client.insert("events", rows[:10], column_names=EVENT_COLUMNS)
    assert store_client.query("SELECT count() FROM events").result_rows[0][0] == 60
    assert store_client.query("SELECT count() FROM events FINAL").result_rows[0][0] == 50


def test_a_second_process_gets_a_clear_error_naming_the_holder(store_client, store_url):
    code = f"from llmsight import store; store.connect({store_url!r}, 'other')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "StoreLockedError" in result.stderr
    assert f"in use by pid {os.getpid()}" in result.stderr
    assert "one process per data directory" in result.stderr


def test_cli_migrate_twice(tmp_path):
    env = {**os.environ, "LLMSIGHT_CLICKHOUSE_URL": f"chdb://{tmp_path}/db"}
    cli = [sys.executable, "-m", "llmsight.cli.app", "db", "migrate"]
    first = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_init" in first.stdout
    second = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "is up to date" in second.stdout


def test_cli_rejects_a_bad_url_with_an_actionable_message(tmp_path):
    env = {**os.environ, "LLMSIGHT_CLICKHOUSE_URL": "mysql://x"}
    result = subprocess.run([sys.executable, "-m", "llmsight.cli.app", "db", "migrate"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "unknown scheme 'mysql'" in result.stderr
