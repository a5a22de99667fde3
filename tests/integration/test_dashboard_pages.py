"""Every dashboard page rendered by streamlit.testing's AppTest on a seeded chdb store.

AppTest runs the page script in this process, so the dashboard reads the test process's chdb path
(the ``store_url`` fixture) with this test's database. The seeded figures are small and exact, so
each assert checks a number the page computed, not just that it ran.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import uuid

import pytest
from streamlit.testing.v1 import AppTest

from llmsight.dashboard.text import plain
from llmsight.store import ALERT_COLUMNS, EVENT_COLUMNS, FEEDBACK_COLUMNS, METRIC_COLUMNS, queries

SEG_A = ("support-bot", "answer", "model-a", "v1")
SEG_B = ("search", "answer", "model-b", "v2")


def drift_explanation() -> dict[str, object]:
    """A real explanation from the analyzers' explain_drift: card-fee questions appear, transfers fade."""
    import numpy as np

    from llmsight.analyzers.topics import explain_drift

    fees, transfers = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    reference = np.stack([transfers] * 8 + [fees] * 2)
    current = np.stack([transfers] * 2 + [fees] * 8)
    ref_texts = ["Where is my bank transfer?"] * 8 + ["Why a fee on my cash withdrawal?"] * 2
    cur_texts = ["Where is my bank transfer?"] * 2 + ["Why a fee on my cash withdrawal?"] * 8
    return {"method": "mmd", "drifted": True,
            "topics": explain_drift(reference, current, ref_texts, cur_texts, n_clusters=2)}


def metric(window: dt.datetime, segment: tuple[str, ...], name: str, value: float, n: int,
           threshold: float | None = None, details: str = "", granularity: str = "1h") -> list[object]:
    row = dict(window_start=window, window_end=window + dt.timedelta(hours=1), granularity=granularity,
               service=segment[0], name=segment[1], model=segment[2], prompt_version=segment[3], metric=name,
               value=value, n=n, baseline=None, p_value=None, threshold=threshold, details=details)
    return [row[c] for c in METRIC_COLUMNS]


def event(ts: dt.datetime, segment: tuple[str, ...], trace_id: str, prompt: str, output: str,
          error: str = "", environment: str = "production") -> list[object]:
    row = dict(event_id=uuid.uuid4(), trace_id=trace_id, parent_id="", ts=ts, service=segment[0],
               environment=environment, name=segment[1], model=segment[2], prompt_version=segment[3],
               input=prompt, output=output, error=error, error_type="Timeout" if error else "", latency_ms=420.0,
               ttft_ms=80.0, tokens_in=12, tokens_out=30, cost_usd=0.0021, user_id="u1", session_id="s1",
               tags={}, metadata="", truncated=0, source="test")
    return [row[c] for c in EVENT_COLUMNS]


def alert(alert_id: str, state: str, segment: tuple[str, ...], changed: dt.datetime, rule: str) -> list[object]:
    row = dict(alert_id=alert_id, rule=rule, metric="drift_input", severity="critical", state=state,
               service=segment[0], name=segment[1], model=segment[2], prompt_version=segment[3], value=0.2,
               threshold=0.1, baseline=0.04, p_value=0.001, window_start=changed.replace(second=0, microsecond=0),
               evidence=json.dumps({"examples": [{"trace_id": "t-b1", "text": "Why a fee on my withdrawal?"}]}),
               acked_by="", ack_note="", changed_at=changed)
    return [row[c] for c in ALERT_COLUMNS]


# AppTest leaves server.address unset, which means every interface (and a login): these pages listen
# on localhost; the login has its own tests.
pytestmark = pytest.mark.usefixtures("streamlit_on_localhost")


@pytest.fixture
def seeded(store_client, store_url, store_database, monkeypatch):
    """A store with two segments: A (support-bot) steady, B (search, prompt v2) drifting and rejected."""
    view = queries.view_for("24h")
    now = queries.now()
    current = view.end - dt.timedelta(hours=3)
    older = view.start - dt.timedelta(hours=5)
    rows = [
        metric(current, SEG_A, "volume", 300, 300), metric(current, SEG_B, "volume", 100, 100),
        metric(older, SEG_A, "volume", 200, 200),
        metric(current, SEG_A, "error_rate", 0.02, 300), metric(current, SEG_B, "error_rate", 0.10, 100),
        metric(current, SEG_A, "latency_p95_ms", 500, 300), metric(current, SEG_B, "latency_p95_ms", 900, 100),
        metric(current, SEG_A, "cost_usd", 1.5, 300), metric(current, SEG_B, "cost_usd", 0.5, 100),
        metric(current, SEG_A, "acceptance_rate", 0.8, 50), metric(current, SEG_B, "acceptance_rate", 0.5, 50),
        metric(older, SEG_A, "acceptance_rate", 0.9, 100),
        metric(current, SEG_A, "toxicity_rate_output", 0.01, 300),
        metric(current, SEG_B, "toxicity_rate_output", 0.07, 100),
        metric(current, SEG_B, "toxicity_rate_input", 0.02, 100),
        metric(current, SEG_A, "drift_input", 0.05, 300, 0.1, json.dumps({"topics": []})),
        metric(current, SEG_B, "drift_input", 0.2, 100, 0.1, json.dumps(drift_explanation())),
    ]
    store_client.insert("metrics", rows, column_names=METRIC_COLUMNS)
    calls = [
        event(now - dt.timedelta(hours=1), SEG_A, "t-a1", "How do I reset my PIN?", "Open Card settings."),
        event(now - dt.timedelta(hours=2), SEG_A, "t-a2", "I want a refund for order 7", "Refund requested."),
        event(now - dt.timedelta(hours=2), SEG_B, "t-b1", "Why a fee on my withdrawal?", "", error="timed out"),
        event(now - dt.timedelta(hours=4), SEG_B, "t-b2", "Search my invoices", "Here are 3 invoices.",
              environment="staging"),
    ] + [event(now - dt.timedelta(hours=6, minutes=i), SEG_A, f"t-r{i}", f"Question number {i} about cards",
               f"Answer {i}") for i in range(10)] + [
        event(view.start - dt.timedelta(hours=2, minutes=i), SEG_A, f"t-old{i}", f"Older question {i} on loans",
              f"Old answer {i}") for i in range(10)]
    store_client.insert("events", calls, column_names=EVENT_COLUMNS)
    feedback = [
        [uuid.uuid4(), "t-a2", now - dt.timedelta(hours=1), 0, 1.0, "wrong refund amount", "", "u1", "test"],
        [uuid.uuid4(), "t-a1", now - dt.timedelta(hours=1), 1, 5.0, "", "", "u1", "test"],
    ]
    store_client.insert("feedback", feedback, column_names=FEEDBACK_COLUMNS)
    alerts = [
        alert("al-b", "firing", SEG_B, now - dt.timedelta(minutes=30), "drift_input_rule"),
        alert("al-a", "pending", SEG_A, now - dt.timedelta(minutes=20), "error_rate_rule"),
        alert("al-r", "pending", SEG_A, now - dt.timedelta(hours=5), "latency_rule"),
        alert("al-r", "resolved", SEG_A, now - dt.timedelta(hours=4), "latency_rule"),
    ]
    store_client.insert("alerts", alerts, column_names=ALERT_COLUMNS)
    monkeypatch.setenv("LLMSIGHT_CLICKHOUSE_URL", f"{store_url}?database={store_database}")
    return store_client


def page(name: str, **params: str | list[str]) -> AppTest:
    app = AppTest.from_string(f"from llmsight.dashboard.app import run_page\nrun_page({name!r})",
                              default_timeout=240)
    for key, value in params.items():
        app.query_params[key] = value
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def frame(app: AppTest, *columns: str, index: int = 0):
    """The ``index``-th dataframe shown that has these columns."""
    found = [df.value for df in app.dataframe if set(columns) <= set(df.value.columns)]
    assert len(found) > index, f"no dataframe #{index} with columns {columns}"
    return found[index]


def charts(app: AppTest) -> list:
    return app.get("vega_lite_chart")


def metrics_shown(app: AppTest) -> dict[str, tuple[str, str | None]]:
    return {m.label: (m.value, m.delta) for m in app.metric}


def test_overview_shows_the_seeded_figures_against_the_baseline(seeded):
    app = page("overview")
    shown = metrics_shown(app)
    assert shown["Volume"] == ("400", "+100.0% vs baseline")
    assert shown["Error rate"][0] == "4.0%"  # (0.02*300 + 0.10*100) / 400
    assert shown["p95 latency"][0] == "600 ms"  # volume-weighted
    assert shown["Cost"][0] == "$2.00"
    assert shown["Acceptance"] == ("65.0%", "-27.8% vs baseline")  # 0.65 against 0.9
    assert shown["Toxicity rate"][0] == "2.5%"
    assert shown["Drift status"][0] == "1 of 2"
    banner = app.error[0].value
    assert banner.startswith("1 firing, 1 pending")
    assert "drift_input_rule" in banner and "error_rate_rule" in banner and "latency_rule" not in banner
    drifted = app.dataframe[0].value
    assert drifted["segment"].tolist() == ["search/answer/model-b/v2"]


def test_overview_filters_come_from_the_url_and_go_back_to_it(seeded):
    app = page("overview", service="search")
    shown = metrics_shown(app)
    assert shown["Volume"][0] == "100"
    assert shown["Error rate"][0] == "10.0%"
    assert shown["Drift status"][0] == "1 of 1"
    assert app.query_params["service"] == "search"  # AppTest gives single values as str
    assert app.query_params["range"] == "24h"
    assert app.sidebar.multiselect(key="filter_service").value == ["search"]


def test_overview_environment_filter_counts_raw_calls(seeded):
    app = page("overview", environment="staging")
    assert metrics_shown(app)["Volume"][0] == "1"
    assert any("computed from the raw calls" in c.value for c in app.caption)


def seed_vectors(client, texts: list[str], axis: int) -> None:
    """Unit vectors along ``axis`` for these texts, stored as the analyzers would (model name, text hash)."""
    import numpy as np

    from llmsight.analyzers.embeddings import Embedder, text_hash
    from llmsight.store import EMBEDDING_COLUMNS

    name = Embedder().name
    rows = []
    for i, text in enumerate(texts):
        vector = np.zeros(384, dtype=np.float32)
        vector[axis] = 1.0
        vector[10 + i] = 0.05  # a little spread, so PCA has a second component
        rows.append([name, text_hash(name, text), vector.tolist()])
    client.insert("embeddings", rows, column_names=EMBEDDING_COLUMNS)


def test_drift_page_shows_scores_status_topics_and_the_sample_map(seeded):
    import pyarrow as pa

    reference = [f"Older question {i} on loans" for i in range(10)]
    current = [r[0] for r in seeded.query(
        "SELECT input FROM events WHERE ts >= now64() - INTERVAL 20 HOUR").result_rows]
    seed_vectors(seeded, reference, 0)
    seed_vectors(seeded, current, 1)
    app = page("drift")
    status = frame(app, "segment", "drifted")
    assert sorted(zip(status["segment"], status["drifted"], strict=True)) == [
        ("search/answer/model-b/v2", True), ("support-bot/answer/model-a/v1", False)]
    topics = frame(app, "topic", "direction")
    expected = drift_explanation()["topics"]
    assert topics["direction"].tolist() == ["grew", "shrank"]
    assert topics["topic"].tolist() == [expected["grown"][0]["label"], expected["shrunk"][0]["label"]]
    assert topics["change"].tolist() == [0.6, -0.6]
    assert topics["examples"].iloc[0].startswith("Why a fee on my cash withdrawal?")
    score_chart, sample_map = charts(app)
    spec = json.loads(sample_map.proto.spec)
    assert {t["field"] for t in spec["encoding"]["tooltip"]} == {"period", "text", "segment"}
    caption = next(c.value for c in app.caption if "embedded and projected" in c.value)
    assert caption.startswith("10 reference and 14 current inputs")
    assert caption.endswith("24 of 24 vectors came from the analyzers' embeddings table.")
    points = pa.ipc.open_stream(sample_map.proto.datasets[0].data.data).read_all().to_pandas()
    # The stored vectors put the two periods on opposite sides of the first component.
    sides = points.groupby("period")["pc1"].agg(["min", "max"])
    assert sides.loc["reference", "max"] < 0 < sides.loc["current", "min"] or \
        sides.loc["current", "max"] < 0 < sides.loc["reference", "min"]
    assert sorted(points.loc[points["period"] == "reference", "text"]) == sorted(reference)


def test_feedback_page_shows_acceptance_with_wilson_intervals_and_worst_calls(seeded):
    app = page("feedback")
    totals = frame(app, "prompt_version", "low", "high")
    by_version = {r.prompt_version: r for r in totals.itertuples()}
    assert by_version["v1"].n == 50 and by_version["v1"].accepted == 40
    assert round(by_version["v1"].low, 4) == 0.6696 and round(by_version["v1"].high, 4) == 0.8876
    assert by_version["v2"].accepted == 25
    worst = frame(app, "feedback_ts", "comment")
    assert worst["trace_id"].tolist() == ["t-a2", "t-a1"]
    assert worst["comment"].iloc[0] == "wrong refund amount"


def test_alerts_page_lists_states_and_acknowledges_with_a_note(seeded):
    app = page("alerts")
    assert [t.label for t in app.tabs] == ["Firing (1)", "Pending (1)", "Resolved (1)"]
    listed = [frame(app, "rule", "state", index=i) for i in range(3)]
    assert [(f["state"].tolist(), f["rule"].tolist()) for f in listed] == [
        (["firing"], ["drift_input_rule"]), (["pending"], ["error_rate_rule"]), (["resolved"], ["latency_rule"])]
    choice = app.selectbox(key="alert_choice")
    label = next(o for o in choice.options if "al-b" in o)
    choice.select(label).run()
    # No "Acknowledged by" box: the name comes from the login (on localhost, the server's own user).
    assert not [t for t in app.text_input if t.key == "ack_by"]
    by = f"{getpass.getuser()}@localhost"
    app.text_area(key="ack_note").input("rolling back prompt v2")
    app.button[0].click().run()
    assert not app.exception
    assert any(s.value.startswith(f"Acknowledged by {plain(by)}") for s in app.success)
    rows = seeded.query("SELECT acked_by, ack_note, state FROM alerts WHERE alert_id = 'al-b' "
                        "ORDER BY changed_at DESC LIMIT 1").result_rows
    assert rows == [(by, "rolling back prompt v2", "firing")]


def test_traces_page_searches_and_opens_a_trace(seeded):
    app = page("traces")
    assert len(frame(app, "trace_id", "latency_ms")) == 14  # every call in the last 24 h
    app.text_input(key="trace_search").input("REFUND").run()
    results = frame(app, "trace_id", "latency_ms")
    assert results["trace_id"].tolist() == ["t-a2"]
    app.text_input(key="trace_id_input").input("t-a2").run()
    assert not app.exception
    assert app.query_params["trace"] == "t-a2"
    texts = {t.label: t.value for t in app.text_area}
    assert texts["Prompt"] == "I want a refund for order 7"
    assert texts["Output"] == "Refund requested."
    feedback = frame(app, "accepted", "comment")
    assert feedback["comment"].tolist() == ["wrong refund amount"]
    app.text_input(key="trace_search").input("")
    app.checkbox(key="trace_errors").check().run()
    assert frame(app, "trace_id", "latency_ms")["trace_id"].tolist() == ["t-b1"]


def test_safety_page_shows_toxicity_rates(seeded):
    app = page("safety")
    shown = metrics_shown(app)
    assert shown["Toxicity rate of outputs"][0] == "2.5%"
    assert shown["Toxicity rate of inputs"][0] == "2.0%"
    assert len(charts(app)) == 1


def test_export_page_runs_the_weekly_export_and_offers_the_files(seeded, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMSIGHT_EXPORT_DIR", str(tmp_path))
    # One reading of the clock for both the week and its count (Python's clock then the server's
    # now64() named different weeks when read either side of Monday 01:00 UTC).
    moment = queries.now() - dt.timedelta(hours=1)
    week = "{}-W{:02d}".format(*moment.isocalendar()[:2])
    in_week = seeded.query(
        "SELECT count() FROM events WHERE toYearWeek(ts, 3) = toYearWeek({moment:DateTime64(6, 'UTC')}, 3)",
        parameters={"moment": moment},
    ).result_rows[0][0]
    app = page("export")
    app.text_input(key="export_week").input(week)
    app.multiselect(key="export_formats").set_value(["parquet", "html"])
    app.button[0].click().run(timeout=120)
    assert not app.exception, [e.value for e in app.exception]
    written = sorted(p.name for p in (tmp_path / week).iterdir())
    assert "events.parquet" in written and "report.html" in written
    assert app.success[0].value.startswith(f"Export of {week}: {len(written)} files")
    # The week is this one (or last, up to Monday 01:00): its feedback grace is not over yet.
    assert app.warning[0].value.startswith("Provisional: feedback counted until ")
    listing = frame(app, "file", "bytes")
    assert sorted(listing["file"]) == written
    rows = next(c.value for c in app.caption if c.value.startswith("Rows: "))
    assert f"events {in_week:,}" in rows
    assert sorted(b.proto.label for b in app.get("link_button")) == sorted(f"Download {n}" for n in written)
    assert app.button(key="export_zip").label == "Prepare a zip of all the files"


@pytest.fixture
def listening_everywhere():
    from streamlit import config

    config.set_option("server.address", "0.0.0.0")
    yield
    config.set_option("server.address", "127.0.0.1")


def test_beyond_localhost_the_pages_need_the_password(seeded, listening_everywhere, monkeypatch):
    monkeypatch.setenv("LLMSIGHT_DASHBOARD_PASSWORD", "s3cret-'\"")
    app = AppTest.from_string("from llmsight.dashboard.app import run_page\nrun_page('overview')", default_timeout=240)
    app.run()
    assert not app.metric  # nothing shown before the login
    app.text_input[0].input("wrong")
    app.button[0].click().run()
    assert [e.value for e in app.error] == ["Wrong password."]
    assert not app.metric
    app.text_input[0].input("s3cret-'\"")
    app.button[0].click().run()
    assert not app.exception
    assert metrics_shown(app)["Volume"][0] == "400"


def test_beyond_localhost_without_a_login_nothing_is_shown(seeded, listening_everywhere, monkeypatch):
    monkeypatch.delenv("LLMSIGHT_DASHBOARD_PASSWORD", raising=False)
    app = page("overview")
    assert not app.metric
    assert "no login configured" in app.error[0].value
