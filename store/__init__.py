"""The ClickHouse store: client factory, migrations and the row shapes shared by writers and readers."""

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
