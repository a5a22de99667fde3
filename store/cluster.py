"""How a migration's statements change on a ClickHouse cluster (``LLMSIGHT_CLICKHOUSE_CLUSTER``).

On one node a table is one ``*MergeTree`` table. On a cluster each table becomes two, so that
the collector and every reader keep using the plain table names:

* ``<table>_local``: a ``Replicated*MergeTree`` table created ``ON CLUSTER``, one copy per
  replica, holding that shard's rows;
* ``<table>``: a ``Distributed`` table in front of it, created ``ON CLUSTER`` too, which
  routes inserts to a shard and fans reads out to all shards.

The sharding key keeps every copy of a row on one shard, because ``ReplacingMergeTree`` only
removes duplicates within a shard: events and feedback are sharded by ``event_id`` (the dedup
key), metrics by their whole key (later versions replace earlier ones), embeddings by the
text hash. Tables without duplicates (dead letters) spread at random.

``ALTER TABLE ... ADD/DROP/MODIFY/RENAME COLUMN`` in later migrations is applied to both
tables (local first, so the Distributed table never names a column the shards lack); other
``ALTER``s (TTL, settings, mutations) go to the local table only, where the data is.
"""

from __future__ import annotations

import re

from llmsight.errors import ConfigError

LOCAL_SUFFIX = "_local"

# Replicated tables keep their replicas in sync through (Zoo)Keeper at this path; {shard},
# {replica}, {database} and {table} are ClickHouse macros filled in on each server.
ZK_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
# schema_migrations is replicated to every node of every shard (no {shard} in its path), so
# `llmsight db migrate` sees the same record whichever node the load balancer picks. The replica
# name gets the shard too: many clusters reuse replica names (r1, r2) in every shard.
ZK_PATH_ALL_NODES = "'/clickhouse/tables/all/{database}/{table}', '{shard}-{replica}'"

# Sharding keys of the tables that 0001_init.sql creates; see the module docstring for why.
SHARDING_KEYS = {
    "events": "cityHash64(event_id)",
    "feedback": "cityHash64(event_id)",
    "embeddings": "cityHash64(model, text_hash)",
    "metrics": "cityHash64(metric, granularity, service, name, model, prompt_version, window_start)",
    "alerts": "cityHash64(alert_id)",
    "dead_letters": "rand()",
}

_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_CREATE = re.compile(
    r"^CREATE TABLE (?P<ine>IF NOT EXISTS )?(?P<db>`[^`]+`)\.(?P<table>\w+) (?P<on>ON CLUSTER `[^`]+`)"
    r"(?P<body>\s*\(.*)$",
    re.DOTALL,
)
_ENGINE = re.compile(r"ENGINE\s*=\s*(?P<engine>Replicated(?P<family>\w*)MergeTree)\b")
_ORDER_BY = re.compile(r"^ORDER BY (?P<key>.+?)\s*$", re.MULTILINE)
_ALTER = re.compile(
    r"^ALTER TABLE (?P<db>`[^`]+`)\.(?P<table>\w+) (?P<on>ON CLUSTER `[^`]+`)(?P<rest>\s.*)$", re.DOTALL
)
_VERSIONED = re.compile(r"ReplicatedReplacingMergeTree\((?!')")
_COLUMN_CHANGE = re.compile(r"^\s*(ADD|DROP|MODIFY|RENAME|COMMENT) COLUMN\b", re.IGNORECASE)


def check_cluster_name(cluster: str) -> str:
    """Return the cluster name, or raise :class:`ConfigError` when it cannot be a ClickHouse cluster."""
    if not _CLUSTER_NAME.match(cluster):
        raise ConfigError(
            f"LLMSIGHT_CLICKHOUSE_CLUSTER={cluster!r}: expected a cluster name from the servers' "
            "remote_servers configuration (letters, digits, '_', '.', '-')"
        )
    return cluster


def on_cluster(cluster: str) -> str:
    return f"ON CLUSTER `{check_cluster_name(cluster)}`"


def replicated_engines() -> dict[str, str]:
    """The engine placeholders of the migration files, filled with their Replicated variants."""
    return {
        "replacing": f"ReplicatedReplacingMergeTree({ZK_PATH})",
        "merge_tree": f"ReplicatedMergeTree({ZK_PATH})",
        # Followed by "(version_column)" in the SQL; distribute() puts the path in front of it.
        "replacing_versioned": "ReplicatedReplacingMergeTree",
    }


def distribute(statement: str, cluster: str) -> list[str]:
    """One rendered statement (already ``ON CLUSTER``, Replicated engines) as cluster statements."""
    # A versioned engine arrives as "ReplicatedReplacingMergeTree(computed_at)": add the path.
    statement = _VERSIONED.sub(f"ReplicatedReplacingMergeTree({ZK_PATH}, ", statement)
    create = _CREATE.match(statement)
    if create and _ENGINE.search(create["body"]):
        return _local_and_distributed(create, cluster)
    alter = _ALTER.match(statement)
    if alter:
        local = f"ALTER TABLE {alter['db']}.{alter['table']}{LOCAL_SUFFIX} {alter['on']}{alter['rest']}"
        if _COLUMN_CHANGE.match(alter["rest"]):
            return [local, statement]
        return [local]
    return [statement]


def _local_and_distributed(create: re.Match[str], cluster: str) -> list[str]:
    db, table, clause = create["db"], create["table"], create["on"]
    ine = create["ine"] or ""
    local_table = f"{table}{LOCAL_SUFFIX}"
    local = f"CREATE TABLE {ine}{db}.{local_table} {clause}{create['body']}"
    key = SHARDING_KEYS.get(table) or _default_sharding_key(create["body"])
    front = (
        f"CREATE TABLE {ine}{db}.{table} {clause} AS {db}.{local_table} "
        f"ENGINE = Distributed('{cluster}', '{db.strip('`')}', '{local_table}', {key})"
    )
    return [local, front]


def _default_sharding_key(body: str) -> str:
    """For a table added later: rows with equal sorting keys share a shard, so dedup still works."""
    engine = _ENGINE.search(body)
    order = _ORDER_BY.search(body)
    if engine is None or order is None or not engine["family"]:
        return "rand()"
    key = order["key"].strip()
    if key.startswith("(") and key.endswith(")"):
        key = key[1:-1]
    return f"cityHash64({key})"
