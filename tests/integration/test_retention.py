"""Retention on real chdb: every table has a TTL, and a changed LLMSIGHT_RETENTION_DAYS reaches the
tables at the next migrate (rows past the new retention leave), then migrate is quiet again."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from llmsight import store
from llmsight.alerts.engine import ALERT_STATE_COLUMNS

migrate_module = importlib.import_module("llmsight.store.migrate")
NOW = datetime.now(timezone.utc)


def _ttls(client: Any) -> dict[str, str]:
    rows = client.query("SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase()").result_rows
    return {name: m.group(1) if (m := re.search(r"\bTTL (.+?)(?: SETTINGS |$)", sql)) else "" for name, sql in rows}


def _event(days_ago: float) -> list[Any]:
    ts = NOW - timedelta(days=days_ago)
    return store.event_row({"event_id": str(uuid.uuid4()), "trace_id": uuid.uuid4().hex, "ts": ts, "service": "s",
                            "name": "n", "latency_ms": 1.0, "input": f"{days_ago} days ago"}, "test")


def _alert(days_ago: float) -> list[Any]:
    at = NOW - timedelta(days=days_ago)
    return [f"a{days_ago}", "r", "m", "warning", "firing", "s", "n", "", "", 0.2, 0.1, None, None, at, "{}", "", "",
            at, "firing", "1m", 1, 0, at, at, None, "", ""]


def _wait_for(condition: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def test_every_table_with_rows_of_users_or_analysis_has_a_ttl_of_the_retention(store_client: Any) -> None:
    ttls = _ttls(store_client)
    for table in ("events", "feedback", "metrics", "alerts", "embeddings", "dead_letters", "alert_silences"):
        assert "toIntervalDay(90)" in ttls[table], (table, ttls[table])
    # Everything migrate() would re-render is what the tables have.
    assert {t for t, ttl in ttls.items() if "toIntervalDay(90)" in ttl} == set(migrate_module.retention_ttls())


def test_a_changed_retention_reaches_every_table_at_the_next_migrate(store_client: Any) -> None:
    client = store_client
    client.insert("events", [_event(40), _event(5)], column_names=store.EVENT_COLUMNS)
    client.insert("alerts", [_alert(40), _alert(5)], column_names=ALERT_STATE_COLUMNS)
    assert store.migrate(client) == []  # 90 days, as recorded

    assert store.migrate(client, ttl_days=30) == ["retention 30 days (was 90)"]
    ttls = _ttls(client)
    for table in migrate_module.retention_ttls():
        assert "toIntervalDay(30)" in ttls[table], (table, ttls[table])
    # MODIFY TTL materialises the new TTL: the 40-day-old rows leave, the recent ones stay.
    assert _wait_for(lambda: client.query("SELECT count() FROM events").result_rows[0][0] == 1)
    assert _wait_for(lambda: client.query("SELECT count() FROM alerts").result_rows[0][0] == 1)
    assert client.query("SELECT input FROM events").result_rows == [("5 days ago",)]
    assert store.migrate(client, ttl_days=30) == []


def test_cli_migrate_follows_llmsight_retention_days(tmp_path: Any) -> None:
    env = {**os.environ, "LLMSIGHT_CLICKHOUSE_URL": f"chdb://{tmp_path}/db"}
    cli = [sys.executable, "-m", "llmsight.cli.app", "db", "migrate"]

    def run(**extra: str) -> str:
        result = subprocess.run(cli, capture_output=True, text=True, env={**env, **extra}, timeout=180)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "applied 0001_init" in run()
    changed = run(LLMSIGHT_RETENTION_DAYS="45")
    assert "retention 45 days (was 90)" in changed, changed
    assert "is up to date" in run(LLMSIGHT_RETENTION_DAYS="45")


def test_migrate_on_an_up_to_date_store_writes_nothing_so_a_read_only_user_may_run_it(
        store_client: Any, store_url: str, store_database: str) -> None:
    """The dashboard calls migrate() at start-up; with a read-mostly ClickHouse user that must not fail."""
    import clickhouse_connect

    read_only = clickhouse_connect.get_client(dsn=store.parse_url(store_url).dsn, database=store_database,
                                              settings={"readonly": 1})
    assert store.migrate(read_only) == []
    # A pending change needs a user that may alter tables: the read-only one is refused, nothing half-done.
    try:
        store.migrate(read_only, ttl_days=30)
    except Exception as exc:
        assert "readonly" in str(exc).lower()
    else:
        raise AssertionError("a read-only user changed the TTLs")
    assert "toIntervalDay(90)" in _ttls(store_client)["events"]
