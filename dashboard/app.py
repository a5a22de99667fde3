"""The dashboard's entry: page config, login, filters, navigation and the live refresh.

``streamlit_app.py`` (the script Streamlit runs) calls :func:`main`. Tests call :func:`run_page`
through ``AppTest.from_string`` to render one page the same way, without the navigation menu.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from llmsight import config
from llmsight.dashboard import (
    alerts,
    audit,
    auth,
    drift,
    export,
    feedback,
    filters,
    lag,
    overview,
    review_queue,
    safety,
    settings,
    traces,
)
from llmsight.store.queries import Filters

REFRESH_S = config.resolve(settings.DASHBOARD_REFRESH_S, strict=True)


@dataclass(frozen=True)
class PageSpec:
    key: str
    title: str
    icon: str
    render: Callable[[Filters], None]
    live: bool  # refreshed on a timer; pages with forms are not, so typing is never interrupted


PAGES = {
    spec.key: spec
    for spec in (
        PageSpec("overview", "Overview", ":material/monitoring:", overview.render, True),
        PageSpec("drift", "Drift", ":material/scatter_plot:", drift.render, True),
        PageSpec("safety", "Safety", ":material/shield:", safety.render, True),
        PageSpec("feedback", "Feedback", ":material/thumb_up:", feedback.render, True),
        PageSpec("alerts", "Alerts", ":material/notifications:", alerts.render, False),
        PageSpec("traces", "Traces", ":material/search:", traces.render, False),
        PageSpec("export", "Export", ":material/download:", export.render, False),
        PageSpec("review", "Review", ":material/rate_review:", review_queue.render, False),
        PageSpec("audit", "Loss audit", ":material/fact_check:", audit.render, True),
    )
}


def _live_body(key: str) -> None:
    # Re-read the view on every tick, so the time range moves forward with the clock.
    PAGES[key].render(filters.filters_from_params())


def _body(key: str) -> None:
    spec = PAGES[key]
    view = filters.sidebar()
    lag.banner()
    live = st.sidebar.toggle("Live refresh", value=st.query_params.get("live", "1") != "0", key="live_toggle",
                             help=f"Re-run the page's queries every {REFRESH_S:g} s.")
    st.query_params["live"] = "1" if live else "0"
    if live and spec.live:
        st.fragment(_live_body, run_every=REFRESH_S)(key)
    else:
        spec.render(view)


def run_page(key: str) -> None:
    """Render one page with the login and the filters, without the navigation (for tests)."""
    st.set_page_config(page_title=f"llmsight · {PAGES[key].title}", layout="wide")
    auth.gate()
    _body(key)


def _page_function(key: str) -> Callable[[], None]:
    def page() -> None:
        _body(key)

    page.__name__ = f"page_{key}"
    page.__qualname__ = f"page_{key}"
    return page


def main() -> None:
    st.set_page_config(page_title="llmsight", page_icon=":material/monitoring:", layout="wide")
    auth.gate()
    # Every page has its own URL, /overview included: the root is a hidden page that moves to
    # /overview with the same filters (a default page is served at "/" only, so /overview was "Page not found").
    pages = {spec.key: st.Page(_page_function(spec.key), title=spec.title, icon=spec.icon, url_path=spec.key)
             for spec in PAGES.values()}
    home = st.Page(_home(pages["overview"]), title="Overview", url_path="home", default=True, visibility="hidden")
    navigation = st.navigation([home, *pages.values()])
    navigation.run()


def _home(overview: st.Page) -> Callable[[], None]:
    def page_home() -> None:
        params = {key: st.query_params.get_all(key) for key in st.query_params}
        st.switch_page(overview, query_params=params)

    return page_home
