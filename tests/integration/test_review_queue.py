"""The Review page under streamlit.testing's AppTest on a seeded chdb store: a reviewer labels three calls
one at a time; the labels are in the store under the login's name, and the monitors' precision and recall
against them are on the page and in the week's report."""

from __future__ import annotations

import datetime as dt
import getpass
import uuid

import pytest
from streamlit.testing.v1 import AppTest

from llmsight.dashboard.text import plain
from llmsight.review.export import export_week
from llmsight.review.labels import EVALUATIONS, latest_labels
from llmsight.review.weeks import last_complete_week
from llmsight.store import EVENT_COLUMNS

WEEK = last_complete_week()
pytestmark = pytest.mark.usefixtures("streamlit_on_localhost")

CALLS = [  # trace, prompt, answer; one call a few hours apart, in this order in the queue
    ("t-insult", "Why was my card declined?", "Shut up, you worthless idiot. Nobody cares about your card."),
    ("t-pin", "How do I reset my PIN?", "Open Card settings, then PIN, and choose a new one."),
    ("t-refund", "Refund for order 7?", "Your order 9 was refunded yesterday."),
    ("t-hours", "Opening hours?", "We are open from 9 to 5 on weekdays."),
    ("t-branch", "Is there a branch near me?", "The nearest branch is on Main Street."),
]


def event(hours: int, trace_id: str, prompt: str, output: str) -> list[object]:
    row = dict(event_id=uuid.uuid4(), trace_id=trace_id, parent_id="", ts=WEEK.start + dt.timedelta(days=1, hours=hours),
               service="support-bot", environment="production", name="answer", model="model-a", prompt_version="v1",
               input=prompt, output=output, error="", error_type="", latency_ms=300.0, ttft_ms=None, tokens_in=10,
               tokens_out=20, cost_usd=0.001, user_id="u1", session_id="s1", tags={}, metadata="", truncated=0,
               source="test")
    return [row[c] for c in EVENT_COLUMNS]


@pytest.fixture
def seeded(store_client, store_url, store_database, monkeypatch):
    store_client.insert("events", [event(i, *call) for i, call in enumerate(CALLS)], column_names=EVENT_COLUMNS)
    # The helpfulness evaluator flagged the insult and the PIN answer, not the wrong refund.
    ts = WEEK.start + dt.timedelta(days=1)
    store_client.insert(EVALUATIONS, [[ts, "t-insult", "helpfulness", 0.1, "bad", 1],
                                      [ts, "t-pin", "helpfulness", 0.3, "bad", 1],
                                      [ts, "t-refund", "helpfulness", 0.8, "good", 0]],
                        column_names=["ts", "trace_id", "evaluator", "score", "label", "flagged"])
    monkeypatch.setenv("LLMSIGHT_CLICKHOUSE_URL", f"{store_url}?database={store_database}")
    return store_client


def progress_text(app: AppTest) -> str:
    return app.get("progress")[0].proto.text


def test_a_reviewer_labels_three_calls_and_the_monitors_are_scored_against_them(seeded, tmp_path):
    app = AppTest.from_string("from llmsight.dashboard.app import run_page\nrun_page('review')", default_timeout=240)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    who = f"{getpass.getuser()}@localhost"
    assert app.selectbox(key="review_week").value == WEEK.label
    assert progress_text(app) == f"0 of 5 calls labelled by {plain(who)}"
    assert app.subheader[0].value == "Call 1 of 5"
    assert any("t\\-insult" in m.value for m in app.markdown)

    # 1: the insult, rejected as toxic.
    app.multiselect(key="review_tags_t-insult").set_value(["toxic", "unsafe"])
    app.text_input(key="review_comment_t-insult").input("abusive")
    app.button(key="review_reject").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert progress_text(app) == f"1 of 5 calls labelled by {plain(who)}"
    assert app.subheader[0].value == "Call 2 of 5"
    # 2: the PIN answer, accepted as it is (the edit box holds the answer unchanged: no edit).
    app.button(key="review_accept").click().run()
    # 3: the wrong refund, rejected with a corrected answer.
    assert app.subheader[0].value == "Call 3 of 5"
    app.multiselect(key="review_tags_t-refund").set_value(["wrong"])
    app.text_area(key="review_edit_t-refund").input("Your order 7 was refunded yesterday.")
    app.button(key="review_reject").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert progress_text(app) == f"3 of 5 calls labelled by {plain(who)}"
    assert app.subheader[0].value == "Call 4 of 5"

    stored = {lb.trace_id: lb for lb in latest_labels(seeded)}
    assert sorted(stored) == ["t-insult", "t-pin", "t-refund"]
    assert {lb.reviewer for lb in stored.values()} == {who}
    assert (stored["t-insult"].verdict, stored["t-insult"].tags, stored["t-insult"].comment) == (
        "reject", ("toxic", "unsafe"), "abusive")
    assert (stored["t-pin"].verdict, stored["t-pin"].tags, stored["t-pin"].edited_output) == ("accept", (), "")
    assert (stored["t-refund"].verdict, stored["t-refund"].edited_output) == (
        "reject", "Your order 7 was refunded yesterday.")

    # Going back shows the reviewer's own label on the call.
    app.button(key="review_prev").click().run()
    assert app.subheader[0].value == "Call 3 of 5"
    assert any("your label: reject (wrong)" in c.value for c in app.caption)

    # The monitors against the three labels: toxicity flags the insult only; helpfulness flagged the insult
    # (bad) and the PIN answer (accepted) and missed the wrong refund.
    [table] = [df.value for df in app.dataframe if "monitor" in df.value.columns]
    monitors = {row["monitor"]: row for row in table.to_dict("records")}
    assert monitors["toxicity"]["reviewed"] == 3 and monitors["toxicity"]["human_positive"] == 1
    assert (monitors["toxicity"]["precision"], monitors["toxicity"]["recall"]) == (1.0, 1.0)
    helpful = monitors["eval_helpfulness"]
    assert (helpful["reviewed"], helpful["flagged"], helpful["human_positive"], helpful["true_positive"]) == (3, 2, 2, 1)
    assert (helpful["precision"], helpful["recall"]) == (0.5, 0.5)

    # ... and in the week's report.
    result = export_week(seeded, WEEK, tmp_path / "exports", formats="html", topics_by_week=False)
    html = result.files["report.html"].read_text(encoding="utf-8")
    section = html[html.index('<section id="monitors">'):]
    section = section[:section.index("</section>")]
    assert "eval_helpfulness" in section and "toxicity" in section
    assert "<td class=\"num\">50%</td>" in section and "<td class=\"num\">100%</td>" in section


def test_the_queue_is_the_review_sample_plus_every_call_an_evaluator_flagged(seeded):
    from llmsight.review.labels import review_queue

    # A sample of one random call: the two calls the evaluator flagged come on top of it, marked so.
    queue = review_queue(seeded, WEEK, sample_size=1)
    flags = {row["trace_id"]: row["flag"] for row in queue}
    assert len(queue) == 3 or (len(queue) == 2 and set(flags) == {"t-insult", "t-pin"}), flags
    assert flags["t-insult"].endswith("evaluator:helpfulness") and flags["t-pin"].endswith("evaluator:helpfulness")
    others = [t for t in flags if t not in ("t-insult", "t-pin")]
    assert all(flags[t] == "random" for t in others)
    assert queue[-1]["output"] and queue[-1]["week"] == WEEK.label
    # The whole week with the default sample: every call once.
    assert sorted(row["trace_id"] for row in review_queue(seeded, WEEK)) == sorted(c[0] for c in CALLS)
