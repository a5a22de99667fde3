"""Migration 0006 (producer_heartbeats, producer_id, dead-letter kinds) on one node and on a cluster."""

from __future__ import annotations

import importlib
from typing import Any

migrate_module = importlib.import_module("llmsight.store.migrate")
AUDIT = next(m for m in migrate_module.load_migrations() if m.version == 6)


def test_0006_renders_for_a_cluster_with_a_sharding_key_that_keeps_duplicates_together(store_client: Any) -> None:
    statements = migrate_module.render(AUDIT, "llmsight", ttl_days=30, cluster="c1")
    local, front, *alters = statements
    assert "CREATE TABLE IF NOT EXISTS `llmsight`.producer_heartbeats_local ON CLUSTER `c1`" in local
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')" in local
    assert "TTL toDateTime(ts) + INTERVAL 30 DAY" in local
    # A heartbeat stored twice lands on one shard, where ReplacingMergeTree folds it.
    assert front.endswith("Distributed('c1', 'llmsight', 'producer_heartbeats_local', "
                          "cityHash64(producer_id, ts, event_id))")
    # Column changes go to the local table first, then the Distributed one.
    assert [a.split(" ON CLUSTER")[0] for a in alerts_of(alters)] == [
        "ALTER TABLE `llmsight`.events_local", "ALTER TABLE `llmsight`.events",
        "ALTER TABLE `llmsight`.feedback_local", "ALTER TABLE `llmsight`.feedback",
        "ALTER TABLE `llmsight`.dead_letters_local", "ALTER TABLE `llmsight`.dead_letters"]
    for statement in statements:  # chdb's parser takes each one
        assert store_client.query("EXPLAIN AST " + statement).result_rows[0][0].split()[0] in ("CreateQuery",
                                                                                                 "AlterQuery")


def alerts_of(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("ALTER")]


def test_0006_applied_on_one_node_gives_the_columns_the_collector_writes(store_client: Any) -> None:
    from llmsight.store.rows import DEAD_LETTER_KIND_COLUMN, HEARTBEAT_COLUMNS, PRODUCER_ID_COLUMN

    def columns(table: str) -> set[str]:
        return {r[0] for r in store_client.query(f"DESCRIBE TABLE {table}").result_rows}

    assert set(HEARTBEAT_COLUMNS) <= columns("producer_heartbeats")
    assert PRODUCER_ID_COLUMN in columns("events") and PRODUCER_ID_COLUMN in columns("feedback")
    assert DEAD_LETTER_KIND_COLUMN in columns("dead_letters")
