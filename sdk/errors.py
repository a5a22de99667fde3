"""The errors llmsight raises. The SDK never raises them into the host app; the services do.

Hierarchy::

    LlmsightError
    ├── ConfigError            a setting or argument has a value that cannot work
    ├── StoreError             the ClickHouse store cannot be reached or used
    │   └── StoreLockedError   another process holds the chdb data directory
    ├── SchemaError            an event does not match the event schema
    └── SinkError              a sink URL is malformed or its target cannot be used
"""

from __future__ import annotations

import re


class LlmsightError(Exception):
    """Base class of every llmsight error."""


class ConfigError(LlmsightError):
    """A setting or argument has a value that cannot work; the message says how to fix it."""


class StoreError(LlmsightError):
    """The ClickHouse store cannot be reached or used."""


class StoreLockedError(StoreError):
    """Another process holds the chdb data directory (chdb allows one process per directory)."""


class SchemaError(LlmsightError):
    """An event does not match the event schema."""


class SinkError(LlmsightError):
    """A sink URL is malformed or its target cannot be used."""


def masked_url(raw: str) -> str:
    """``raw`` with the password of a ``scheme://user:password@host`` URL replaced by ``***``: every message
    that shows a store, sink or broker URL goes through this, so a secret never reaches a log or a terminal."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]+@", r"\1***@", raw)
