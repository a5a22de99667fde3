"""The pages' door to the store: every query goes through one short-TTL cache.

The cache key is the store URL, the query's name and its arguments (the :class:`~llmsight.store.queries.Filters`
included), so two people looking at the same view share one run of the query. The client comes
from :func:`llmsight.store.connect`, which caches chdb clients per process: inside ``llmsight up``
the page scripts reuse the collector's and scheduler's client on the one chdb data directory.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import pandas as pd
import streamlit as st

from llmsight import config, store
from llmsight.dashboard import settings
from llmsight.store import queries
from llmsight.store import settings as store_settings
from llmsight.store.names import SEGMENT_KEYS

log = logging.getLogger("llmsight.dashboard")

CACHE_TTL_S = config.resolve(settings.DASHBOARD_CACHE_TTL_S, strict=True)


def store_url() -> str:
    """The store URL the dashboard reads (LLMSIGHT_CLICKHOUSE_URL, read on every run so tests can point it)."""
    return config.resolve(store_settings.CLICKHOUSE_URL, strict=True)


def client() -> Any:
    return store.connect(store_url())


SILENCE_FRAME_COLUMNS = ["silence_id", "rule", "service", "name", "model", "prompt_version", "until", "left",
                         "created_by", "reason", "created_at"]


def active_silences(client: Any) -> pd.DataFrame:
    """The active alert silences, soonest to end first, with the time left (empty segment values match any)."""
    from llmsight.alerts.silences import load_silences, time_left

    now = dt.datetime.now(dt.timezone.utc)
    rows = [[s.silence_id, s.rule, *(s.segment.get(k, "") for k in SEGMENT_KEYS),
             s.until, time_left(s, now), s.created_by, s.reason, s.created_at] for s in load_silences(client, now)]
    return pd.DataFrame(rows, columns=SILENCE_FRAME_COLUMNS)


# Reads only the dashboard makes, through another room's API rather than SQL of its own.
DASHBOARD_READS = {"active_silences": active_silences}


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=1024)
def _cached(url: str, query: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]) -> Any:
    started = time.perf_counter()
    read = DASHBOARD_READS[query] if query in DASHBOARD_READS else getattr(queries, query)
    result = read(store.connect(url), *args, **dict(kwargs))
    log.debug("dashboard: %s in %.0f ms", query, (time.perf_counter() - started) * 1000)
    return result


def q(query: str, *args: Any, **kwargs: Any) -> Any:
    """Run ``llmsight.store.queries.<query>(client, *args, **kwargs)`` (or a read of :data:`DASHBOARD_READS`)
    through the cache."""
    return _cached(store_url(), query, args, tuple(sorted(kwargs.items())))


def forget() -> None:
    """Drop cached results, after the dashboard itself wrote something (an acknowledgement)."""
    _cached.clear()
