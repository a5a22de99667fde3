"""The dashboard's banner when analysis falls behind, rendered by streamlit.testing's AppTest on real chdb."""

from __future__ import annotations

import datetime as dt

import pytest
from streamlit.testing.v1 import AppTest

from llmsight.analyzers.windows import Window, floor_time
from llmsight.scheduler.progress import EVALUATED, PLANNED, record_window

pytestmark = pytest.mark.usefixtures("streamlit_on_localhost")


def overview() -> AppTest:
    app = AppTest.from_string("from llmsight.dashboard.app import run_page\nrun_page('overview')", default_timeout=240)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def banners(app: AppTest) -> list[str]:
    return [w.value for w in app.warning if "Analysis is" in w.value]


@pytest.fixture
def pointed(store_client, store_url, store_database, monkeypatch):
    monkeypatch.setenv("LLMSIGHT_CLICKHOUSE_URL", f"{store_url}?database={store_database}")
    return store_client


def windows_until(end: dt.datetime, count: int) -> list[Window]:
    return [Window(end - dt.timedelta(minutes=i + 1), end - dt.timedelta(minutes=i)) for i in range(count)]


def test_a_banner_says_how_far_behind_analysis_is(pointed):
    now = dt.datetime.now(dt.timezone.utc)
    newest = floor_time(now, 60) - dt.timedelta(minutes=5)  # analysed up to five minutes ago...
    for window in windows_until(newest, 3):
        record_window(pointed, window, 1, EVALUATED, window.end)
    for window in windows_until(floor_time(now, 60) - dt.timedelta(minutes=1), 4):  # ...the next four wait
        record_window(pointed, window, 2, PLANNED, window.end)
    shown = banners(overview())
    assert len(shown) == 1
    assert "Analysis is 5 windows behind" in shown[0] or "Analysis is 6 windows behind" in shown[0]
    assert "4 planned windows wait for a worker" in shown[0]


def test_no_banner_while_analysis_keeps_up(pointed):
    now = dt.datetime.now(dt.timezone.utc)
    for window in windows_until(floor_time(now, 60), 3):  # the newest window ended less than a minute ago
        record_window(pointed, window, 1, EVALUATED, window.end)
    assert banners(overview()) == []
