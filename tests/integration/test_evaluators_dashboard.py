"""The Evaluators section of the Feedback page under streamlit.testing's AppTest on a seeded chdb store:
eval_* metric rows and evaluations verdicts go in, and the page shows the figures they make (latest window,
mean against the period before, flagged share, the chart, the lowest-scored calls as plain text); with no
scores it says whether an evaluator is on and how to turn one on."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from streamlit.testing.v1 import AppTest

from llmsight.dashboard.text import plain
from llmsight.store import EVENT_COLUMNS, METRIC_COLUMNS, queries

pytestmark = pytest.mark.usefixtures("streamlit_on_localhost")

SEG_A = ("support-bot", "answer", "model-a", "v1")
SEG_B = ("search", "answer", "model-b", "v2")
HOSTILE_REASON = "Insults the user **loudly**, see [proof](http://evil.example/x.png)"
LONG_OUTPUT = "Shut up. " + "x" * 400


def metric(window: dt.datetime, segment: tuple[str, ...], name: str, value: float, n: int, evaluated: int,
           flagged: int, granularity: str = "1h") -> list[object]:
    step = {"1h": dt.timedelta(hours=1), "1m": dt.timedelta(minutes=1)}[granularity]
    details = json.dumps({"evaluated": evaluated, "flagged": flagged, "flagged_rate": flagged / evaluated})
    row = dict(window_start=window, window_end=window + step, granularity=granularity, service=segment[0],
               name=segment[1], model=segment[2], prompt_version=segment[3], metric=name, value=value, n=n,
               baseline=None, p_value=None, threshold=None, details=details)
    return [row[c] for c in METRIC_COLUMNS]


def event(ts: dt.datetime, segment: tuple[str, ...], trace_id: str, event_id: uuid.UUID, output: str) -> list[object]:
    row = dict(event_id=event_id, trace_id=trace_id, parent_id="", ts=ts, service=segment[0],
               environment="production", name=segment[1], model=segment[2], prompt_version=segment[3],
               input="A question", output=output, error="", error_type="", latency_ms=300.0, ttft_ms=None,
               tokens_in=10, tokens_out=20, cost_usd=0.001, user_id="u1", session_id="s1", tags={}, metadata="",
               truncated=0, source="test")
    return [row[c] for c in EVENT_COLUMNS]


@pytest.fixture
def store(store_client, store_url, store_database, monkeypatch):
    monkeypatch.setenv("LLMSIGHT_CLICKHOUSE_URL", f"{store_url}?database={store_database}")
    monkeypatch.delenv("LLMSIGHT_EVALUATORS_FILE", raising=False)
    return store_client


@pytest.fixture
def seeded(store):
    view = queries.view_for("24h")
    hour = view.end.replace(minute=0, second=0, microsecond=0)
    rows = [
        # helpfulness on A: 0.8 then 0.6 this range (10 scored each), 0.9 the day before -> mean 0.7, -0.20
        metric(hour - dt.timedelta(hours=5), SEG_A, "eval_helpfulness", 0.8, 10, 10, 1),
        metric(hour - dt.timedelta(hours=2), SEG_A, "eval_helpfulness", 0.6, 10, 10, 4),
        metric(view.start - dt.timedelta(hours=5), SEG_A, "eval_helpfulness", 0.9, 20, 20, 0),
        # the same calls at 1m: another granularity, which must not be counted twice
        metric(hour - dt.timedelta(hours=2), SEG_A, "eval_helpfulness", 0.0, 10, 10, 10, granularity="1m"),
        # relevance on B, this range only: no period before to compare with
        metric(hour - dt.timedelta(hours=3), SEG_B, "eval_relevance", 0.95, 30, 40, 2),
        # not an evaluator's metric
        metric(hour - dt.timedelta(hours=3), SEG_B, "acceptance_rate", 0.1, 30, 30, 0),
    ]
    store.insert("metrics", rows, column_names=METRIC_COLUMNS)
    ts = hour - dt.timedelta(hours=2)
    ids = {t: uuid.uuid4() for t in ("t-insult", "t-vague", "t-good", "t-search")}
    store.insert("events", [event(ts, SEG_A, "t-insult", ids["t-insult"], LONG_OUTPUT),
                            event(ts, SEG_A, "t-vague", ids["t-vague"], "Maybe, maybe not."),
                            event(ts, SEG_A, "t-good", ids["t-good"], "Open Card settings, then PIN."),
                            event(ts, SEG_B, "t-search", ids["t-search"], "Here are 3 invoices.")],
                 column_names=EVENT_COLUMNS)
    columns = ["ts", "trace_id", "event_id", "evaluator", "kind", "score", "label", "flagged", "reason", "service",
               "name", "model", "prompt_version"]
    store.insert("evaluations", [
        [ts, "t-insult", ids["t-insult"], "helpfulness", "judge", 0.0, "bad", 1, HOSTILE_REASON, *SEG_A],
        [ts, "t-vague", ids["t-vague"], "helpfulness", "judge", 0.25, "poor", 1, "Does not answer.", *SEG_A],
        [ts, "t-good", ids["t-good"], "helpfulness", "judge", 1.0, "good", 0, "Clear steps.", *SEG_A],
        [ts, "t-search", ids["t-search"], "relevance", "offline", 0.5, "", 0, "", *SEG_B],
        # outside the range: never shown
        [view.start - dt.timedelta(hours=3), "t-old", uuid.uuid4(), "helpfulness", "judge", 0.0, "bad", 1,
         "old", *SEG_A],
    ], column_names=columns)
    return store


def feedback_page(**params: str | list[str]) -> AppTest:
    app = AppTest.from_string("from llmsight.dashboard.app import run_page\nrun_page('feedback')",
                              default_timeout=240)
    app.query_params["range"] = "24h"
    for key, value in params.items():
        app.query_params[key] = value
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def scores(app: AppTest):
    found = [df.value for df in app.dataframe if {"evaluator", "flagged_share"} <= set(df.value.columns)]
    assert len(found) == 1
    return found[0]


def test_the_feedback_page_shows_each_evaluators_scores_against_the_period_before(seeded):
    app = feedback_page()
    table = scores(app)
    by_key = {(r.evaluator, r.segment): r for r in table.itertuples()}
    assert set(by_key) == {("helpfulness", "support-bot/answer/model-a/v1"), ("relevance", "search/answer/model-b/v2")}
    helpful = by_key[("helpfulness", "support-bot/answer/model-a/v1")]
    assert helpful.latest == pytest.approx(0.6)
    assert helpful.mean == pytest.approx(0.7)  # the 1m rows of the same calls were not added in
    assert helpful.previous == pytest.approx(0.9)
    assert helpful.change == pytest.approx(-0.2)
    assert helpful.flagged_share == pytest.approx(5 / 20)
    assert (helpful.scored, helpful.evaluated) == (20, 20)
    relevance = by_key[("relevance", "search/answer/model-b/v2")]
    assert relevance.mean == pytest.approx(0.95) and relevance.flagged_share == pytest.approx(2 / 40)
    assert relevance.previous != relevance.previous and relevance.change != relevance.change  # NaN: nothing before
    captions = " ".join(c.value for c in app.caption)
    assert f"Changes: helpfulness on {plain('support-bot/answer/model-a/v1')} -0.20." in captions

    chart = [c for c in app.get("vega_lite_chart") if "mean score (1 = best)" in c.proto.spec]
    assert len(chart) == 1

    # The lowest-scored verdicts of the range, worst first, as text: the hostile reason stays literal.
    shown = [m.value for m in app.markdown if "· trace " in m.value]
    assert [s.split("· trace ")[1] for s in shown] == [plain(t) for t in ("t-insult", "t-vague", "t-search", "t-good")]
    assert shown[0].startswith("**0.00** · helpfulness · bad · flagged")
    assert f"Reason: {plain(HOSTILE_REASON)}" in captions
    assert "**loudly**" not in captions and "](http" not in captions
    texts = [t.value for t in app.text]
    assert LONG_OUTPUT[:300] + "…" in texts
    assert "Maybe, maybe not." in texts


def test_the_segment_filters_apply_to_scores_and_calls(seeded):
    app = feedback_page(service="search")
    table = scores(app)
    assert table["evaluator"].tolist() == ["relevance"]
    shown = [m.value for m in app.markdown if "· trace " in m.value]
    assert len(shown) == 1 and shown[0].endswith(plain("t-search"))


def test_without_scores_it_says_whether_an_evaluator_is_on_and_how_to_turn_one_on(store):
    app = feedback_page()
    info = " ".join(i.value for i in app.info)
    assert "none is on" in info and "`LLMSIGHT_EVALUATORS_FILE`" in info and "`analyzers.evaluators`" in info
    assert not [df for df in app.dataframe if "evaluator" in df.value.columns]

    # Scores ten days ago, none in the last 24 h: the evaluator is named, and the range is the reason.
    store.insert("metrics", [metric(queries.now() - dt.timedelta(days=10), SEG_A, "eval_relevance", 0.9, 5, 5, 0)],
                 column_names=METRIC_COLUMNS)
    info = " ".join(i.value for i in feedback_page().info)
    assert "scored calls in the last 30 days: relevance" in info and "none is on" not in info
