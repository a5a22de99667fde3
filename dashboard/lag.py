"""The banner every page shows when analysis is more than two windows behind.

Falling behind must never be silent: the figures on screen would look calm while the newest
windows are simply not analysed yet. The lag is read from the store
(:func:`llmsight.store.queries.analysis_lag`), so the banner shows even when no analyzer runs.
"""

from __future__ import annotations

import datetime as dt
import logging

import streamlit as st

from llmsight.dashboard.data import q

log = logging.getLogger("llmsight.dashboard")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def banner(now: dt.datetime | None = None) -> None:
    """A warning above the page when analysis is behind; nothing when it keeps up or cannot be read."""
    moment = now or dt.datetime.now(dt.timezone.utc)
    moment = moment.replace(second=moment.second // 10 * 10, microsecond=0)  # shared by reruns for 10 s
    try:
        lag = q("analysis_lag", moment)
    except Exception:  # an old store without the progress table, or an unreachable one: the page says so
        log.debug("dashboard: analysis lag unavailable", exc_info=True)
        return
    if lag.behind:
        st.warning(f"**Analysis is {lag.windows} windows behind**: the newest analysed window ended "
                   f"{_age(lag.seconds)} ago and {lag.unfinished} planned windows wait for a worker. Figures "
                   "and alerts for the time since are missing or late. Add analyzer replicas "
                   "(LLMSIGHT_ANALYSIS_QUEUE) or cores, or check that the analyzers run.",
                   icon=":material/hourglass_top:")
