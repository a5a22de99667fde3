"""The pages' door to the store: every query goes through one short-TTL cache.

The cache key is the store URL, the query's name and its arguments (the :class:`queries.Filters`
included), so two people looking at the same view share one run of the query. The client comes
from :func:`llmsight.store.connect`, which caches chdb clients per process: inside ``llmsight up``
the page scripts reuse the collector's and scheduler's client on the one chdb data directory.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import streamlit as st

from llmsight import config, store
from llmsight.dashboard import queries

log = logging.getLogger("llmsight.dashboard")

CACHE_TTL_S = config.resolve(config.DASHBOARD_CACHE_TTL_S, strict=True)


def store_url() -> str:
    """The store URL the dashboard reads (LLMSIGHT_CLICKHOUSE_URL, read on every run so tests can point it)."""
    return config.resolve(config.CLICKHOUSE_URL, strict=True)


def client() -> Any:
    return store.connect(store_url())


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=1024)
def _cached(url: str, query: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]) -> Any:
    started = time.perf_counter()
    result = getattr(queries, query)(store.connect(url), *args, **dict(kwargs))
    log.debug("dashboard: %s in %.0f ms", query, (time.perf_counter() - started) * 1000)
    return result


def q(query: str, *args: Any, **kwargs: Any) -> Any:
    """Run ``queries.<query>(client, *args, **kwargs)`` through the cache."""
    return _cached(store_url(), query, args, tuple(sorted(kwargs.items())))


def forget() -> None:
    """Drop cached results, after the dashboard itself wrote something (an acknowledgement)."""
    _cached.clear()
