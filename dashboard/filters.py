"""The sidebar filters, kept in the URL's query parameters so a view can be shared by its link.

``?range=24h&service=checkout&model=gpt-4o&prompt_version=v2&environment=production`` (a filter
may repeat for several values). The time range always ends now: a live refresh moves it forward.
Without ``range`` in the URL the view opens on a range that fits the data
(:func:`llmsight.store.queries.fitting_range`): a demo a few minutes old opens on the last 15 minutes,
a store whose newest call is days old on the range that reaches it, anything else on 24 h.
"""

from __future__ import annotations

import datetime as dt

import streamlit as st

from llmsight.dashboard import data
from llmsight.store.queries import DEFAULT_RANGE, RANGES, Filters, fitting_range, now, view_for

SEGMENT_PARAMS = (
    ("service", "services", "Service"),
    ("model", "models", "Model"),
    ("prompt_version", "prompt_versions", "Prompt version"),
    ("environment", "environments", "Environment"),
)

def default_range() -> str:
    """The range that fits the data (read once a minute through the cache); 24 h when the store cannot say."""
    try:
        minute = now().replace(second=0, microsecond=0)
        return fitting_range(*data.q("data_ages", minute))
    except Exception:  # an unreachable store must not hide the page's own error message
        return DEFAULT_RANGE


def filters_from_params(at: dt.datetime | None = None) -> Filters:
    """The current view, from the URL's query parameters."""
    params = st.query_params
    values = {field: tuple(params.get_all(param)) for param, field, _label in SEGMENT_PARAMS}
    return view_for(params.get("range") or default_range(), at, **values)


def sidebar() -> Filters:
    """Draw the filter widgets, write their values back to the URL, and return the view."""
    params = st.query_params
    st.sidebar.header("Filters")
    current_range = params.get("range") or default_range()
    if current_range not in RANGES:
        current_range = DEFAULT_RANGE
    chosen_range = st.sidebar.selectbox("Time range", list(RANGES), index=list(RANGES).index(current_range),
                                        key="filter_range")
    params["range"] = chosen_range
    try:
        # Rounded to the minute so the cached result is shared between reruns.
        minute = now().replace(second=0, microsecond=0)
        choices = data.q("segment_values", minute - RANGES["30d"], minute - RANGES["24h"])
    except Exception as exc:  # an unreachable store must not hide the page's own error message
        st.sidebar.warning(f"Filter values unavailable: {exc}")
        choices = {field: [] for _param, field, _label in SEGMENT_PARAMS}
    for param, field, label in SEGMENT_PARAMS:
        selected = params.get_all(param)
        # A shared link may name a value not seen lately: keep it selectable.
        options = sorted(set(choices.get(field, [])) | set(selected))
        picked = st.sidebar.multiselect(label, options, default=selected, key=f"filter_{param}")
        params[param] = picked
    f = filters_from_params()
    st.sidebar.caption(f"{f.start:%Y-%m-%d %H:%M} to {f.end:%Y-%m-%d %H:%M} UTC; baseline: the "
                       f"{chosen_range} before. Metric rows have no environment: that filter applies to raw calls.")
    return f



