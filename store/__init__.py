"""The ClickHouse store: what every other room reads and writes through.

* ``client``: the client factory (``chdb://`` in-process or ``http(s)://`` server), ``migrate`` and
  ``migrations/``: the schema; ``rows``: the column lists writers and readers share;
* ``names``: metric names and the segment keys (the ``metrics`` table's contract);
* ``queries``: the reads shared by several rooms (the dashboard's pages, the bench, alerting's latest
  alert state), parameterised; ``times``: UTC and the text forms of a time;
* ``settings``: ``LLMSIGHT_CLICKHOUSE_URL``, the cluster and the retention.

The store imports only the SDK's schema, errors and settings registry (``pyproject.toml``'s
import-linter contracts); every other room imports it.
"""

from llmsight.store.client import StoreURL, close_all, connect, parse_url
from llmsight.store.migrate import load_migrations, migrate, render
from llmsight.store.rows import (
    ALERT_COLUMNS,
    DEAD_LETTER_COLUMNS,
    EMBEDDING_COLUMNS,
    EVENT_COLUMNS,
    FEEDBACK_COLUMNS,
    METRIC_COLUMNS,
    event_row,
    feedback_row,
)

__all__ = [
    "ALERT_COLUMNS", "DEAD_LETTER_COLUMNS", "EMBEDDING_COLUMNS", "EVENT_COLUMNS", "FEEDBACK_COLUMNS",
    "METRIC_COLUMNS", "StoreURL", "close_all", "connect", "event_row", "feedback_row",
    "load_migrations", "migrate", "parse_url", "render",
]
