"""The dashboard's queries treat every filter value as data: hostile values neither break the SQL
nor change what it does; a row whose segment really has such a value is found by it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from llmsight.store import ALERT_COLUMNS, EVENT_COLUMNS, METRIC_COLUMNS, queries

HOSTILE = [
    "x'; DROP TABLE events; --",
    "\\' OR 1=1 --",
    "back\\slash\\",
    "}{start:String}",
    "') UNION ALL SELECT * FROM system.tables --",
    "ünï'cødé \u202e 😀 \"quoted\"",
    "`backtick`; SELECT 1",
]
# Noon UTC yesterday, not a fixed date: rows older than the store's retention (90 days) vanish on a merge,
# so a fixed date would start failing 90 days after it (the 10-day-old trace first).
NOW = dt.datetime.combine(dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1), dt.time(12))


def _event(service: str, text: str) -> list[object]:
    row = dict(event_id=uuid.uuid4(), trace_id=f"trace-{service}", parent_id="", ts=NOW - dt.timedelta(minutes=5),
               service=service, environment=service, name=service, model=service, prompt_version=service,
               input=text, output=text, error="", error_type="", latency_ms=100.0, ttft_ms=None, tokens_in=1,
               tokens_out=1, cost_usd=0.001, user_id="", session_id="", tags={}, metadata="", truncated=0,
               source="test")
    return [row[c] for c in EVENT_COLUMNS]


@pytest.fixture
def hostile_store(store_client):
    events = [_event(value, f"text of {value}") for value in HOSTILE] + [_event("plain", "plain text")]
    store_client.insert("events", events, column_names=EVENT_COLUMNS)
    metrics = []
    for value in HOSTILE + ["plain"]:
        row = dict(window_start=NOW - dt.timedelta(minutes=10), window_end=NOW - dt.timedelta(minutes=9),
                   granularity="1m", service=value, name=value, model=value, prompt_version=value, metric="volume",
                   value=1.0, n=1, baseline=None, p_value=None, threshold=None, details="")
        metrics.append([row[c] for c in METRIC_COLUMNS])
    store_client.insert("metrics", metrics, column_names=METRIC_COLUMNS)
    alert = dict(alert_id=HOSTILE[0], rule=HOSTILE[1], metric="volume", severity="warning", state="firing",
                 service=HOSTILE[0], name=HOSTILE[0], model=HOSTILE[0], prompt_version=HOSTILE[0], value=1.0, threshold=0.5, baseline=None,
                 p_value=None, window_start=NOW, evidence="{}", acked_by="", ack_note="", changed_at=NOW)
    store_client.insert("alerts", [[alert[c] for c in ALERT_COLUMNS]], column_names=ALERT_COLUMNS)
    return store_client


def _view(value: str) -> queries.Filters:
    return queries.Filters(NOW - dt.timedelta(hours=1), NOW, services=(value,), models=(value,),
                           prompt_versions=(value,), environments=(value,), names=(value,))


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_filter_values_select_exactly_their_own_rows(hostile_store, value):
    view = _view(value)
    found = queries.search_traces(hostile_store, view, text=value, trace_id=f"trace-{value}")
    assert found["service"].tolist() == [value]
    assert found["input"].tolist() == [f"text of {value}"]
    assert queries.event_series(hostile_store, view, 3600)["n"].tolist() == [1]
    series = queries.metric_series(hostile_store, view, ("volume",), 3600)
    assert series["n"].tolist() == [1]
    assert queries.trace_calls(hostile_store, f"trace-{value}")["service"].tolist() == [value]
    assert queries.sample_texts(hostile_store, view, "input", 10)["text"].tolist() == [f"text of {value}"]
    alerts = queries.alert_states(hostile_store, view)
    assert alerts["alert_id"].tolist() == ([HOSTILE[0]] if value == HOSTILE[0] else [])
    assert queries.alert_history(hostile_store, value)["state"].tolist() == (
        ["firing"] if value == HOSTILE[0] else [])
    # Nothing was dropped or rewritten along the way.
    assert hostile_store.query("SELECT count() FROM events").result_rows == [(len(HOSTILE) + 1,)]


def test_hostile_values_that_match_nothing_return_nothing(hostile_store):
    view = _view("nobody' OR '1'='1")
    assert queries.search_traces(hostile_store, view).empty
    assert queries.metric_series(hostile_store, view, ("volume",), 3600).empty
    assert queries.worst_rated(hostile_store, view).empty
    assert queries.latest_by_segment(hostile_store, view, ("volume",)).empty
    assert queries.stored_embeddings(hostile_store, "m' OR 1=1 --", ["a'", "b\\"]) == {}
    assert hostile_store.query("SELECT count() FROM events").result_rows == [(len(HOSTILE) + 1,)]


def test_no_query_builds_a_value_into_its_sql_text(hostile_store):
    """Every SQL text the queries send, with every filter set to a hostile value, contains none of them."""
    sent: list[str] = []

    class Recording:
        def __init__(self, client):
            self.client = client

        def query_df(self, sql, parameters=None):
            sent.append(sql)
            return self.client.query_df(sql, parameters=parameters)

        def query(self, sql, parameters=None):
            sent.append(sql)
            return self.client.query(sql, parameters=parameters)

    client = Recording(hostile_store)
    marker = "x'; DROP TABLE events; --"
    view = _view(marker)
    queries.segment_values(client, NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=1))
    queries.metric_series(client, view, ("volume",), 60)
    queries.segment_series(client, view, ("volume",))
    queries.latest_by_segment(client, view, ("volume",), with_details=True)
    queries.acceptance_by_version(client, view, 60)
    queries.event_series(client, view, 60)
    queries.sample_texts(client, view, "output", 5)
    queries.stored_embeddings(client, marker, [marker])
    queries.search_traces(client, view, text=marker, trace_id=marker, only_errors=True)
    queries.trace_calls(client, marker, NOW)
    queries.trace_feedback(client, marker)
    queries.worst_rated(client, view)
    queries.alert_states(client, view)
    queries.alert_history(client, marker)
    queries.metric_examples(client, view, ("volume",))
    queries.trace_evidence(client, marker, NOW, ("volume",))
    assert len(sent) >= 17  # one per call, plus a count and the DESCRIBE of empty results
    assert not [sql for sql in sent if "DROP" in sql or marker in sql]


def test_trace_search_walks_back_slice_by_slice_and_keeps_the_newest_first(store_client):
    ages = [dt.timedelta(minutes=30), dt.timedelta(hours=3), dt.timedelta(hours=3, minutes=1), dt.timedelta(days=2),
            dt.timedelta(days=10), dt.timedelta(days=40)]
    rows = []
    for i, age in enumerate(ages):
        row = _event("svc", f"refund question {i}")
        row[EVENT_COLUMNS.index("ts")] = NOW - age
        row[EVENT_COLUMNS.index("trace_id")] = f"t{i}"
        rows.append(row)
    store_client.insert("events", rows, column_names=EVENT_COLUMNS)
    month = queries.Filters(NOW - dt.timedelta(days=30), NOW)
    assert queries.search_traces(store_client, month, limit=3)["trace_id"].tolist() == ["t0", "t1", "t2"]
    assert queries.search_traces(store_client, month, text="REFUND", limit=10)["trace_id"].tolist() == [
        "t0", "t1", "t2", "t3", "t4"]
    assert queries.search_traces(store_client, month, text="question 3")["trace_id"].tolist() == ["t3"]
    assert queries.search_traces(store_client, month, text="nowhere").empty
    day = queries.Filters(NOW - dt.timedelta(hours=4), NOW)
    assert queries.search_traces(store_client, day)["trace_id"].tolist() == ["t0", "t1", "t2"]
