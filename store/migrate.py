"""SQL migrations: numbered files in ``migrations/``, applied once each, recorded in ``schema_migrations``.

``render`` turns a migration into statements for a single node or, with a cluster name, into
``Replicated*MergeTree`` tables ``ON CLUSTER`` behind ``Distributed`` tables.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from llmsight import config
from llmsight.store import cluster as cluster_sql
from llmsight.store import settings

log = logging.getLogger("llmsight.store")

MIGRATIONS_TABLE = "schema_migrations"


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


def migrate(client: Any, *, ttl_days: int | None = None, cluster: str | None = None) -> list[str]:
    """Apply every migration not yet recorded; return the names applied (empty when up to date)."""
    database = client.database
    if cluster:
        # connect() created the database on one node only; every node needs it.
        client.command(f"CREATE DATABASE IF NOT EXISTS `{database}` {cluster_sql.on_cluster(cluster)}")
    client.command(migrations_table_ddl(database, cluster))
    done = applied_versions(client)
    applied = []
    for migration in load_migrations():
        if migration.version in done:
            continue
        started = time.perf_counter()
        for statement in render(migration, database, ttl_days=ttl_days, cluster=cluster):
            client.command(statement)
        client.insert(MIGRATIONS_TABLE, [[migration.version, migration.name]], column_names=["version", "name"])
        log.info("store: migration %s applied in %.0f ms", migration.name, (time.perf_counter() - started) * 1000)
        applied.append(migration.name)
    return applied
