"""On-call screens under streamlit.testing's AppTest on a real chdb store: a drift alert made by the real
alert engine shows the topic that grew (label, shares with intervals, five examples) with the score beside
its own critical value and the p-value apart; every overview card says how it changed against the
baseline; sparklines span the selected range or say there is not enough history; Traces lead with time,
segment, prompt and output; a store holding a few minutes of calls opens on the last 15 minutes."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from llmsight.alerts.engine import AlertEngine
from llmsight.alerts.rules import parse_rules
from llmsight.store import EVENT_COLUMNS, METRIC_COLUMNS, queries
from tests.integration.test_dashboard_pages import (  # noqa: F401  (seeded is a fixture)
    SEG_B,
    drift_explanation,
    event,
    metric,
    metrics_shown,
    page,
    seeded,
)

pytestmark = pytest.mark.usefixtures("streamlit_on_localhost")

GROWN = {"label": "fee cash withdrawal", "share_before": 0.021, "share_after": 0.094,
         "share_before_ci": [0.012, 0.036], "share_after_ci": [0.078, 0.112],
         "examples": [{"trace_id": f"t-fee{i}", "text": f"Why was I charged a fee on cash withdrawal {i}?"}
                      for i in range(5)]}
DRIFT_RULES = parse_rules("""
rules:
  - {name: input-drift, metric: drift_input, comparison: significant, direction: any, warning: 0.01,
     critical: 0.002, for: 1, min_samples: 40}
""", "test")


def drift_alert(client, details: dict, minutes_ago: int = 10) -> str:
    """A drift alert written by the real engine from a drift metric row (score 22.5, critical value 4.07)."""
    window = queries.now().replace(second=0, microsecond=0, tzinfo=dt.timezone.utc) - dt.timedelta(minutes=minutes_ago)
    row = {"service": SEG_B[0], "name": SEG_B[1], "model": SEG_B[2], "prompt_version": SEG_B[3],
           "metric": "drift_input", "value": 22.5, "n": 500, "baseline": None, "p_value": 0.0004,
           "threshold": 4.07, "details": json.dumps(details)}
    [(state, transition)] = AlertEngine(client, DRIFT_RULES).evaluate(window, [row], now=window)
    assert transition == "firing"
    return state.alert_id


def open_alert(app, alert_id: str):
    choice = app.selectbox(key="alert_choice")
    choice.select(next(o for o in choice.options if alert_id in o)).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_the_drift_alert_evidence_shows_the_grown_topic_and_the_score_beside_its_own_critical_value(seeded):  # noqa: F811
    alert_id = drift_alert(seeded, {"grown_topic": GROWN, "topics": drift_explanation()["topics"],
                                    "examples": [{"trace_id": "r-1", "text": "an ordinary prompt"}]})
    app = open_alert(page("alerts"), alert_id)
    changed = next(m.value for m in app.markdown if m.value.startswith("**What changed:**"))
    assert "*fee cash withdrawal*" in changed
    assert "2.1% [1.2–3.6%] → 9.4% [7.8–11.2%]" in changed
    examples = next(df.value for df in app.dataframe if list(df.value.columns) == ["trace_id", "text"])
    assert examples["trace_id"].tolist() == [f"t-fee{i}" for i in range(5)]
    assert "ordinary prompt" not in examples["text"].str.cat()
    shown = metrics_shown(app)
    assert shown["score"][0] == "22.5" and shown["critical value of the score"][0] == "4.07"
    assert shown["p-value"][0] == "0.0004" and shown["alerts at p ≤"][0] == "0.002"
    assert "threshold" not in shown  # the p-value level never poses as the score's threshold
    assert any(c.value.replace("\\", "").startswith(f"Incident {alert_id}-") for c in app.caption)


def test_before_the_analyzers_write_grown_topic_the_first_grown_topic_is_shown(seeded):  # noqa: F811
    explained = drift_explanation()
    alert_id = drift_alert(seeded, explained)
    app = open_alert(page("alerts"), alert_id)
    changed = next(m.value for m in app.markdown if m.value.startswith("**What changed:**"))
    assert f"*{explained['topics']['grown'][0]['label']}*" in changed and "→ 80.0%" in changed
    examples = next(df.value for df in app.dataframe if list(df.value.columns) == ["trace_id", "text"])
    assert examples["text"].iloc[0] == "Why a fee on my cash withdrawal?"


def test_every_overview_card_says_how_it_changed_against_the_baseline(seeded):  # noqa: F811
    app = page("overview")
    shown = metrics_shown(app)
    assert set(shown) == {"Volume", "Error rate", "p95 latency", "Cost", "Acceptance", "Toxicity rate",
                          "Drift status"}
    assert all(delta for _value, delta in shown.values()), shown
    assert shown["Volume"][1] == "+100.0% vs baseline"
    assert shown["Error rate"][1] == "no baseline: no data in the range before"  # the seed has none before
    assert shown["Drift status"][1] == "no baseline: no drift test in the range before"
    # One bucket of history: no empty sparkline box, a sentence instead.
    assert not any(m.proto.chart_data for m in app.metric)
    notes = [c.value for c in app.caption if c.value.startswith("Not enough history")]
    assert len(notes) == 7


def test_sparklines_span_the_selected_range(seeded):  # noqa: F811
    view = queries.view_for("24h")
    step = dt.timedelta(seconds=queries.bucket_seconds(view.span))
    rows = [metric(view.end - step * k, SEG_B, "volume", 10 * k, 10 * k) for k in (5, 6, 7)]
    seeded.insert("metrics", rows, column_names=METRIC_COLUMNS)
    app = page("overview", range="24h")
    volume = next(m for m in app.metric if m.label == "Volume")
    line = list(volume.proto.chart_data)
    assert len(line) == view.span // step == 24  # every bucket of the 24 h range, not just the ones with rows
    assert line[-7:-4] == [70.0, 60.0, 50.0] and line[-4] == 0.0 and line[0] == 0.0  # empty buckets count 0


def test_traces_lead_with_time_segment_prompt_and_output(seeded):  # noqa: F811
    app = page("traces")
    listing = next(df.value for df in app.dataframe if "trace_id" in df.value.columns)
    assert list(listing.columns[:4]) == ["time", "segment", "prompt", "output"]
    refund = listing[listing["trace_id"] == "t-a2"].iloc[0]
    assert (refund["segment"], refund["prompt"], refund["output"]) == (
        "support-bot/answer/model-a/v1", "I want a refund for order 7", "Refund requested.")


def test_a_store_with_minutes_of_calls_opens_on_the_last_15_minutes(store_client, store_url, store_database,
                                                                      monkeypatch):
    now = queries.now()
    calls = [event(now - dt.timedelta(minutes=m), SEG_B, f"t-{m}", f"question {m}", "answer") for m in (1, 4, 9)]
    store_client.insert("events", calls, column_names=EVENT_COLUMNS)
    monkeypatch.setenv("LLMSIGHT_CLICKHOUSE_URL", f"{store_url}?database={store_database}")
    app = page("overview")
    assert app.query_params["range"] == "15m"
    assert metrics_shown(app)["Volume"][0] == "3"  # from the raw calls: the analyzers have not run
    # A range in the URL wins.
    assert page("overview", range="6h").query_params["range"] == "6h"
