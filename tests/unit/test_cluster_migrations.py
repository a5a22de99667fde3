"""The cluster form of the migrations (LLMSIGHT_CLICKHOUSE_CLUSTER), checked on the rendered SQL.

No cluster is needed: the statements are rendered and inspected, and chdb's parser checks that
each one is valid ClickHouse SQL (``EXPLAIN AST``), without executing it.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest

from llmsight.errors import ConfigError
from llmsight.store import cluster as cluster_sql

migrate_module = importlib.import_module("llmsight.store.migrate")
Migration = migrate_module.Migration

TABLES = ("events", "feedback", "embeddings", "metrics", "alerts", "dead_letters")
INIT = next(m for m in migrate_module.load_migrations() if m.version == 1)
ZK = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"


def _render_init(cluster: str | None = "c1", database: str = "llmsight") -> list[str]:
    return migrate_module.render(INIT, database, ttl_days=30, cluster=cluster)


def _created(statement: str) -> str:
    match = re.match(r"CREATE TABLE IF NOT EXISTS `[^`]+`\.(\w+) ", statement)
    assert match, statement[:120]
    return match.group(1)


def _by_table(statements: list[str]) -> dict[str, str]:
    return {_created(s): s for s in statements}


def test_each_table_becomes_a_replicated_local_table_and_a_distributed_table_in_front() -> None:
    statements = _render_init()
    names = [_created(s) for s in statements]
    # The local table comes first: the Distributed table is created AS it.
    assert names == [n for t in TABLES for n in (f"{t}_local", t)]
    by_table = _by_table(statements)
    for table in TABLES:
        assert f"ENGINE = Distributed('c1', 'llmsight', '{table}_local', " in by_table[table]
        assert f" AS `llmsight`.{table}_local " in by_table[table]
        assert "Replicated" not in by_table[table]


def test_local_engines_are_the_replicated_variants_of_the_single_node_engines() -> None:
    single = _by_table(_render_init(cluster=None))
    local = _by_table(_render_init())
    expected = {
        "events": f"ReplicatedReplacingMergeTree({ZK})",
        "feedback": f"ReplicatedReplacingMergeTree({ZK})",
        "embeddings": f"ReplicatedReplacingMergeTree({ZK})",
        "metrics": f"ReplicatedReplacingMergeTree({ZK}, computed_at)",
        "alerts": f"ReplicatedMergeTree({ZK})",
        "dead_letters": f"ReplicatedMergeTree({ZK})",
    }
    for table, engine in expected.items():
        assert f"ENGINE = {engine}\n" in local[f"{table}_local"], table
        single_engine = re.search(r"ENGINE = (\w+)", single[table]).group(1)  # type: ignore[union-attr]
        assert engine.startswith("Replicated" + single_engine + "("), table


def test_every_cluster_statement_runs_on_the_cluster_and_no_single_node_statement_does() -> None:
    for statement in _render_init():
        assert re.match(r"CREATE TABLE IF NOT EXISTS `llmsight`\.\w+ ON CLUSTER `c1`\s", statement), statement[:100]
    for statement in _render_init(cluster=None):
        assert "ON CLUSTER" not in statement
        assert "Replicated" not in statement and "Distributed" not in statement and "_local" not in statement


def test_local_tables_keep_columns_order_partition_and_ttl_of_the_single_node_table() -> None:
    single = _by_table(_render_init(cluster=None))
    local = _by_table(_render_init())

    def without_engine(sql: str) -> str:
        body = sql.split("(", 1)[1]
        return re.sub(r"ENGINE = .*\n", "ENGINE\n", body)

    for table in TABLES:
        assert without_engine(local[f"{table}_local"]) == without_engine(single[table]), table


def test_sharding_keys_keep_duplicates_on_one_shard() -> None:
    by_table = _by_table(_render_init())
    keys = {t: re.search(r"Distributed\('c1', 'llmsight', '\w+', (.+)\)$", by_table[t]).group(1)  # type: ignore[union-attr]
            for t in TABLES}
    assert keys == {
        "events": "cityHash64(event_id)",
        "feedback": "cityHash64(event_id)",
        "embeddings": "cityHash64(model, text_hash)",
        "metrics": "cityHash64(metric, granularity, service, name, model, prompt_version, window_start)",
        "alerts": "cityHash64(alert_id)",
        "dead_letters": "rand()",
    }
    # ReplacingMergeTree only merges rows on the same shard: the key must come from the sorting key.
    for table in ("events", "feedback", "embeddings", "metrics"):
        order_by = re.search(r"^ORDER BY \((.+)\)$", by_table[f"{table}_local"], re.MULTILINE).group(1)  # type: ignore[union-attr]
        sort_columns = set(re.findall(r"\w+", order_by))
        key_columns = set(re.findall(r"\w+", keys[table])) - {"cityHash64"}
        assert key_columns <= sort_columns, (table, key_columns - sort_columns)


def test_database_name_and_cluster_name_are_quoted_where_they_appear() -> None:
    statements = migrate_module.render(INIT, "team_a", ttl_days=7, cluster="prod-eu.1")
    assert statements[0].startswith("CREATE TABLE IF NOT EXISTS `team_a`.events_local ON CLUSTER `prod-eu.1`\n(")
    assert statements[1].endswith("ENGINE = Distributed('prod-eu.1', 'team_a', 'events_local', cityHash64(event_id))")
    assert "INTERVAL 7 DAY" in statements[0]


@pytest.mark.parametrize("bad", ["c1`; DROP DATABASE x; --", "two words", "c'1", ""])
def test_a_cluster_name_that_could_break_the_sql_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="LLMSIGHT_CLICKHOUSE_CLUSTER"):
        cluster_sql.on_cluster(bad)


def test_later_migrations_alter_columns_on_both_tables_and_data_on_the_local_table_only() -> None:
    later = Migration(99, "0099_later", (
        "ALTER TABLE {db}.alerts {on_cluster} ADD COLUMN IF NOT EXISTS team String;\n"
        "ALTER TABLE {db}.events {on_cluster} MODIFY TTL toDateTime(ts) + INTERVAL {ttl_days} DAY;\n"
        "CREATE TABLE IF NOT EXISTS {db}.sessions {on_cluster} (session_id String, ts DateTime)\n"
        "ENGINE = {replacing}\nORDER BY (session_id, ts);\n"
        "CREATE TABLE IF NOT EXISTS {db}.audit {on_cluster} (ts DateTime, what String)\n"
        "ENGINE = {merge_tree}\nORDER BY ts;\n"
    ))
    statements = migrate_module.render(later, "db", ttl_days=10, cluster="c1")
    assert statements[0] == "ALTER TABLE `db`.alerts_local ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS team String"
    assert statements[1] == "ALTER TABLE `db`.alerts ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS team String"
    assert statements[2] == "ALTER TABLE `db`.events_local ON CLUSTER `c1` MODIFY TTL toDateTime(ts) + INTERVAL 10 DAY"
    assert [_created(s) for s in statements[3:]] == ["sessions_local", "sessions", "audit_local", "audit"]
    assert statements[4].endswith("Distributed('c1', 'db', 'sessions_local', cityHash64(session_id, ts))")
    assert statements[6].endswith("Distributed('c1', 'db', 'audit_local', rand())")
    assert len(statements) == 7


class RecordingClient:
    """Stands in for a ClickHouse cluster: records what migrate() sends (unit test only)."""

    def __init__(self, database: str, applied: list[int] | None = None, retention: int = 90) -> None:
        self.database = database
        self.commands: list[str] = []
        self.inserts: list[tuple[str, list[list[Any]]]] = []
        self._applied = applied or []
        self._retention = retention

    def command(self, sql: str) -> None:
        self.commands.append(sql)

    def query(self, sql: str) -> Any:
        if "FROM system.tables" in sql:  # the migrations table, with the retention in its comment
            rows = [(f"llmsight retention_days={self._retention}",)] if self._applied else []
        else:
            assert sql == "SELECT version FROM schema_migrations"
            rows = [(v,) for v in self._applied]
        return type("Result", (), {"result_rows": rows})()

    def insert(self, table: str, rows: list[list[Any]], column_names: list[str]) -> None:
        assert column_names == ["version", "name"]
        self.inserts.append((table, rows))


def test_migrate_on_a_cluster_creates_the_database_everywhere_and_a_replicated_migrations_table() -> None:
    client = RecordingClient("llmsight")
    applied = migrate_module.migrate(client, ttl_days=30, cluster="c1")
    assert applied == [m.name for m in migrate_module.load_migrations()]
    assert client.commands[0] == "CREATE DATABASE IF NOT EXISTS `llmsight` ON CLUSTER `c1`"
    assert client.commands[1] == (
        "CREATE TABLE IF NOT EXISTS `llmsight`.schema_migrations ON CLUSTER `c1` "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/{table}', '{shard}-{replica}') "
        "ORDER BY version"
    )
    assert client.commands[2:2 + 12] == _render_init()
    assert client.inserts[0] == ("schema_migrations", [[1, INIT.name]])


def test_migrate_on_a_cluster_skips_what_is_recorded_and_writes_nothing() -> None:
    # Nothing pending: not even CREATE ... IF NOT EXISTS, so a read-only user may call migrate().
    client = RecordingClient("llmsight", applied=[m.version for m in migrate_module.load_migrations()])
    assert migrate_module.migrate(client, cluster="c1") == []
    assert client.commands == [] and client.inserts == []


def test_a_changed_retention_modifies_the_ttls_of_the_local_tables_and_is_recorded() -> None:
    client = RecordingClient("llmsight", applied=[m.version for m in migrate_module.load_migrations()], retention=90)
    assert migrate_module.migrate(client, ttl_days=30, cluster="c1") == ["retention 30 days (was 90)"]
    ttl_tables = set(migrate_module.retention_ttls())
    assert {"events", "feedback", "metrics", "alerts", "embeddings", "dead_letters"} <= ttl_tables
    modified = [c for c in client.commands if " MODIFY TTL " in c]
    assert {re.match(r"ALTER TABLE `llmsight`\.(\w+)_local ON CLUSTER `c1` MODIFY TTL .+ \+ INTERVAL 30 DAY$", c)
            .group(1) for c in modified} == ttl_tables  # type: ignore[union-attr]
    assert client.commands[-1] == ("ALTER TABLE `llmsight`.schema_migrations ON CLUSTER `c1` "
                                   "MODIFY COMMENT 'llmsight retention_days=30'")
    assert client.inserts == []


def test_migrate_on_one_node_sends_no_cluster_clause() -> None:
    client = RecordingClient("llmsight")
    migrate_module.migrate(client, ttl_days=30)
    assert not any("ON CLUSTER" in c or "CREATE DATABASE" in c for c in client.commands)
    assert client.commands[0] == (
        "CREATE TABLE IF NOT EXISTS `llmsight`.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    assert client.commands[1:1 + 6] == _render_init(cluster=None)


def test_every_cluster_statement_is_valid_clickhouse_sql(store_client: Any) -> None:
    later = Migration(99, "0099_later", "ALTER TABLE {db}.alerts {on_cluster} ADD COLUMN team String;")
    statements = _render_init() + migrate_module.render(later, "llmsight", ttl_days=30, cluster="c1")
    statements.append(migrate_module.migrations_table_ddl("llmsight", "c1"))
    for statement in statements:
        root = store_client.query("EXPLAIN AST " + statement).result_rows[0][0]
        if statement.startswith("CREATE"):
            assert root.startswith(f"CreateQuery llmsight {_created(statement)} "), (root, statement[:100])
        else:
            assert root.startswith("AlterQuery"), (root, statement[:100])
