"""The alerts page's silences, rendered by streamlit.testing's AppTest on a chdb store: silence a firing
alert for 4 h with a reason, see it marked and listed, end it early."""

from __future__ import annotations

import datetime as dt
import getpass
import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from llmsight.alerts.silences import load_silences
from llmsight.store import ALERT_COLUMNS

FIRING = ("search", "answer", "model-b", "v2")
PENDING = ("support-bot", "answer", "model-a", "v1")


def alert(alert_id: str, state: str, segment: tuple[str, ...], changed: dt.datetime, rule: str) -> list[object]:
    row = dict(alert_id=alert_id, rule=rule, metric="toxicity_rate_output", severity="warning", state=state,
               service=segment[0], name=segment[1], model=segment[2], prompt_version=segment[3], value=0.2,
               threshold=0.05, baseline=0.01, p_value=None, window_start=changed.replace(second=0, microsecond=0),
               evidence=json.dumps({}), acked_by="", ack_note="", changed_at=changed)
    return [row[c] for c in ALERT_COLUMNS]


# AppTest leaves server.address unset, which means every interface (and a login): these pages listen
# on localhost; the login has its own tests.
pytestmark = pytest.mark.usefixtures("streamlit_on_localhost")


@pytest.fixture
def two_alerts(store_client, store_url, store_database, monkeypatch):
    now = dt.datetime.now(dt.timezone.utc)
    store_client.insert("alerts", [
        alert("al-f", "firing", FIRING, now - dt.timedelta(minutes=30), "output-toxicity"),
        alert("al-p", "pending", PENDING, now - dt.timedelta(minutes=20), "output-toxicity"),
    ], column_names=ALERT_COLUMNS)
    monkeypatch.setenv("LLMSIGHT_CLICKHOUSE_URL", f"{store_url}?database={store_database}")
    return store_client


def button(app: AppTest, label: str):
    return next(b for b in app.button if b.label == label)


def silenced_until(app: AppTest) -> dict[str, object]:
    """Rule/segment of each row of the Firing and Pending tabs' tables -> its silenced_until cell."""
    shown = {}
    for df in app.dataframe:
        if {"state", "silenced_until"} <= set(df.value.columns):
            for _, row in df.value.iterrows():
                shown[row["prompt_version"]] = row["silenced_until"]
    return shown


def test_silence_a_firing_alert_for_4h_see_it_listed_and_end_it(two_alerts):
    app = AppTest.from_string("from llmsight.dashboard.app import run_page\nrun_page('alerts')", default_timeout=240)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert "No active silences." in [c.value for c in app.caption]
    choice = app.selectbox(key="alert_choice")
    choice.select(next(o for o in choice.options if "al-f" in o)).run()
    assert app.radio(key="silence_for").options == ["1h", "4h", "24h"]
    app.radio(key="silence_for").set_value("4h")
    assert not [t for t in app.text_input if t.key in ("silence_by", "unsilence_by")]  # the login says who
    by = f"{getpass.getuser()}@localhost"
    app.text_input(key="silence_reason").input("rolling back prompt v2")
    before = dt.datetime.now(dt.timezone.utc)
    button(app, "Silence").click().run()
    after = dt.datetime.now(dt.timezone.utc)
    assert not app.exception, [e.value for e in app.exception]
    [made] = load_silences(two_alerts)
    assert (made.rule, made.segment, made.created_by, made.reason) == (
        "output-toxicity", dict(zip(("service", "name", "model", "prompt_version"), FIRING, strict=True)),
        by, "rolling back prompt v2")
    assert before + dt.timedelta(hours=4) <= made.until <= after + dt.timedelta(hours=4)
    assert [s.value for s in app.success] == [
        f"Silenced output-toxicity for 4h (until {made.until:%Y-%m-%d %H:%M} UTC) as {made.silence_id}."]
    listed = next(df.value for df in app.dataframe if "silence_id" in df.value.columns)
    assert listed[["silence_id", "prompt_version", "left", "created_by"]].values.tolist() == [
        [made.silence_id, "v2", "3h 59m", by]]

    app.run()  # the next run marks the silenced alert in the tables and in the chooser
    shown = silenced_until(app)
    assert pd.isna(shown["v1"])  # the pending alert on v1 is not silenced
    assert abs((shown["v2"] - made.until).total_seconds()) < 0.001
    assert [o for o in app.selectbox(key="alert_choice").options if o.endswith("· silenced")] == [
        next(o for o in app.selectbox(key="alert_choice").options if "al-f" in o)]

    button(app, "End silence now").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert f"Silence {made.silence_id} ended." in [s.value for s in app.success]
    assert load_silences(two_alerts) == []
    [ended] = load_silences(two_alerts, include_ended=True)
    assert ended.removed_by == by
