"""SQL migrations: numbered files in ``migrations/``, applied once each, recorded in ``schema_migrations``.

``render`` turns a migration into statements for a single node or, with a cluster name, into
``Replicated*MergeTree`` tables ``ON CLUSTER`` behind ``Distributed`` tables.

**Retention.** The migrations render ``{ttl_days}`` with ``LLMSIGHT_RETENTION_DAYS`` once, when they
run. So that a changed retention reaches tables created long ago, :func:`migrate` records the
retention it applied (in the comment of ``schema_migrations``) and, when the setting differs from
the record, re-renders the TTL of every table whose TTL uses ``{ttl_days}`` (``ALTER TABLE ... MODIFY
TTL``; the TTL expressions are read from the migration files, see :func:`retention_ttls`).

**Read-only when up to date.** :func:`migrate` first reads what is applied; when nothing is pending
it sends no statement at all, so a component with a read-mostly ClickHouse user (the dashboard)
can call it at start-up.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from llmsight import config
from llmsight.store import cluster as cluster_sql
from llmsight.store import settings

log = logging.getLogger("llmsight.store")

MIGRATIONS_TABLE = "schema_migrations"
# The retention the TTLs were last rendered with, kept in the comment of schema_migrations.
RETENTION_COMMENT = "llmsight retention_days={days}"
_RETENTION_RECORD = re.compile(r"\bretention_days=(\d+)\b")
_TABLE = re.compile(r"^\s*(?:CREATE TABLE (?:IF NOT EXISTS )?|ALTER TABLE )\{db\}\.(?P<table>\w+)\b")
_TTL = re.compile(r"\bTTL\s+(?P<expr>.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Every migration shipped in the package, in version order."""
    found = []
    for entry in resources.files("llmsight.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append(Migration(version, entry.name[:-4], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def render(migration: Migration, database: str, *, ttl_days: int | None = None,
           cluster: str | None = None) -> list[str]:
    """The statements of one migration, with its placeholders filled in."""
    ttl = ttl_days if ttl_days is not None else config.resolve(settings.RETENTION_DAYS, strict=True)
    if cluster:
        # Replicated local tables behind Distributed ones; the rules live in store/cluster.py.
        on_cluster = cluster_sql.on_cluster(cluster)
        engines = cluster_sql.replicated_engines()
    else:
        on_cluster = ""
        engines = {"replacing": "ReplacingMergeTree", "merge_tree": "MergeTree",
                   "replacing_versioned": "ReplacingMergeTree"}
    sql = _strip_comments(migration.sql)
    filled = sql.format(db=f"`{database}`", ttl_days=int(ttl), on_cluster=on_cluster, **engines)
    statements = [stmt.strip() for stmt in filled.split(";") if stmt.strip()]
    if cluster:
        return [out for stmt in statements for out in cluster_sql.distribute(stmt, cluster)]
    return statements


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def migrations_table_ddl(database: str, cluster: str | None = None) -> str:
    """The table of applied migrations; on a cluster, one replicated copy on every node."""
    on = f" {cluster_sql.on_cluster(cluster)}" if cluster else ""
    engine = f"ReplicatedReplacingMergeTree({cluster_sql.ZK_PATH_ALL_NODES})" if cluster else "ReplacingMergeTree"
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.{MIGRATIONS_TABLE}{on} "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        f"ENGINE = {engine} ORDER BY version"
    )


def applied_versions(client: Any) -> set[int]:
    rows = client.query(f"SELECT version FROM {MIGRATIONS_TABLE}").result_rows
    return {int(r[0]) for r in rows}


def retention_ttls(migrations: list[Migration] | None = None) -> dict[str, str]:
    """Table -> its TTL expression (with the ``{ttl_days}`` placeholder), as ``migrations`` leave it.

    Only TTLs that use ``{ttl_days}`` follow the retention; a later ``MODIFY TTL`` replaces an
    earlier one. A table a later migration adds with such a TTL is covered without a change here.
    """
    ttls: dict[str, str] = {}
    for migration in migrations if migrations is not None else load_migrations():
        for statement in _strip_comments(migration.sql).split(";"):
            table, ttl = _TABLE.match(statement), _TTL.search(statement)
            if table and ttl and "{ttl_days}" in ttl["expr"]:
                ttls[table["table"]] = ttl["expr"]
    return ttls


def retention_statements(database: str, ttl_days: int, *, cluster: str | None = None,
                         tables: list[str] | None = None) -> list[str]:
    """``ALTER TABLE ... MODIFY TTL`` for every table that follows the retention (or only ``tables``);
    on a cluster, for the ``_local`` tables ``ON CLUSTER``, where the rows are."""
    sql = "".join(f"ALTER TABLE {{db}}.{table} {{on_cluster}} MODIFY TTL {expr};\n"
                  for table, expr in retention_ttls().items() if tables is None or table in tables)
    return render(Migration(0, "retention", sql), database, ttl_days=ttl_days, cluster=cluster) if sql else []


def recorded_state(client: Any) -> tuple[set[int] | None, int | None]:
    """(applied versions, recorded retention in days), read without writing anything;
    (None, None) when the store has no migrations table yet."""
    rows = client.query(
        "SELECT comment FROM system.tables WHERE database = currentDatabase() "
        f"AND name = '{MIGRATIONS_TABLE}'").result_rows
    if not rows:
        return None, None
    record = _RETENTION_RECORD.search(str(rows[0][0] or ""))
    return applied_versions(client), int(record.group(1)) if record else None


def migrate(client: Any, *, ttl_days: int | None = None, cluster: str | None = None) -> list[str]:
    """Apply every migration not yet recorded and bring the TTLs to the retention; return what was
    done: the names applied and, when the TTLs changed, ``retention N days (was M)``. Empty when up
    to date, and then nothing was written."""
    database = client.database
    ttl = int(ttl_days if ttl_days is not None else config.resolve(settings.RETENTION_DAYS, strict=True))
    done, recorded = recorded_state(client)
    todo = [m for m in load_migrations() if done is None or m.version not in done]
    if not todo and recorded == ttl:
        return []
    if cluster:
        # connect() created the database on one node only; every node needs it.
        client.command(f"CREATE DATABASE IF NOT EXISTS `{database}` {cluster_sql.on_cluster(cluster)}")
    client.command(migrations_table_ddl(database, cluster))
    applied = []
    for migration in todo:
        started = time.perf_counter()
        for statement in render(migration, database, ttl_days=ttl, cluster=cluster):
            client.command(statement)
        client.insert(MIGRATIONS_TABLE, [[migration.version, migration.name]], column_names=["version", "name"])
        log.info("store: migration %s applied in %.0f ms", migration.name, (time.perf_counter() - started) * 1000)
        applied.append(migration.name)
    if recorded != ttl:
        # Tables whose TTL a migration just rendered already have this retention; the others get it now.
        fresh = set(retention_ttls(todo))
        stale = [table for table in retention_ttls() if table not in fresh]
        statements = retention_statements(database, ttl, cluster=cluster, tables=stale)
        for statement in statements:
            client.command(statement)
        if statements:
            was = f"was {recorded}" if recorded is not None else "was not recorded"
            log.info("store: retention %d days (%s): TTL of %s updated", ttl, was, ", ".join(stale))
            applied.append(f"retention {ttl} days ({was})")
        on = f" {cluster_sql.on_cluster(cluster)}" if cluster else ""
        client.command(f"ALTER TABLE `{database}`.{MIGRATIONS_TABLE}{on} "
                       f"MODIFY COMMENT '{RETENTION_COMMENT.format(days=ttl)}'")
    return applied
