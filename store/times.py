"""Time helpers every room shares: UTC normalisation and the few text forms llmsight writes.

One home for them, so that a timestamp reads the same in a metric row, an alert, a notification,
the weekly export and the dashboard:

* :func:`utc` makes a datetime timezone-aware UTC (naive values from ClickHouse are UTC);
* :func:`iso_s` / :func:`iso_ms`: ISO 8601 with ``Z``, to the second or the millisecond (JSON, files);
* :func:`sql_time`: the ``YYYY-MM-DD HH:MM:SS`` text a ``{name:String}`` query parameter carries
  into ``toDateTime64(..., 3, 'UTC')`` (see :func:`between`);
* :func:`utc_text`: the form people read (``2026-11-23 00:00:00 UTC``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import overload


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (a naive one is taken as UTC); None stays None."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def iso_s(value: datetime) -> str:
    """``2026-11-23T10:15:00Z``."""
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(value: datetime | None) -> str | None:
    """``2026-11-23T10:15:00.123Z``; None stays None."""
    if value is None:
        return None
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def sql_time(value: datetime) -> str:
    """``2026-11-23 10:15:00`` in UTC: a time as a ClickHouse query parameter."""
    return utc(value).strftime("%Y-%m-%d %H:%M:%S")


def utc_text(value: datetime) -> str:
    """``2026-11-23 10:15:00 UTC``: a time as people read it."""
    return utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def between(column: str, start_param: str = "start", end_param: str = "end") -> str:
    """A SQL condition ``start <= column < end`` on two ``{...:String}`` parameters (see :func:`sql_time`)."""
    return (f"{column} >= toDateTime64({{{start_param}:String}}, 3, 'UTC') "
            f"AND {column} < toDateTime64({{{end_param}:String}}, 3, 'UTC')")
