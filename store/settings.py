"""The store's settings: where ClickHouse is, its cluster and how long rows live.

Each is a :class:`llmsight.config.Setting` in the one registry (:data:`llmsight.config.SETTINGS`);
the service reads it with ``config.resolve(setting, strict=True)`` and fails fast on a bad value.
"""

from __future__ import annotations

from llmsight.config import define, parse_positive_int, parse_str, parse_text

CLICKHOUSE_URL = define("LLMSIGHT_CLICKHOUSE_URL", "chdb://~/.llmsight/db", parse_str,
                         "The store: chdb:///path (in-process, the default) or http(s)://user:pass@host:8123/db.", "store")

CLICKHOUSE_CLUSTER = define("LLMSIGHT_CLICKHOUSE_CLUSTER", "", parse_text,
                             "ClickHouse cluster name: migrations create Replicated tables ON CLUSTER.", "store")

RETENTION_DAYS = define("LLMSIGHT_RETENTION_DAYS", 90, parse_positive_int,
                         "Days every table keeps its rows (events, feedback, dead letters, metrics, alerts, embeddings, ...); "
                         "a change applies to the TTLs at the next `llmsight db migrate`.", "store")
