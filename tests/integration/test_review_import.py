"""``llmsight review import`` on a real chdb store: the weekly export's review_sample.csv, filled in as a
spreadsheet would save it, comes back as labels; a file with bad rows imports nothing and names the rows."""

from __future__ import annotations

import csv
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmsight.review.export import REVIEW_COLUMNS, export_week
from llmsight.review.imports import ImportRejected, import_file
from llmsight.review.labels import latest_labels
from llmsight.review.weeks import last_complete_week
from llmsight.store import EVENT_COLUMNS

WEEK = last_complete_week()


def event(ts: dt.datetime, trace_id: str, prompt: str, output: str) -> list[object]:
    row = dict(event_id=uuid.uuid4(), trace_id=trace_id, parent_id="", ts=ts, service="support-bot",
               environment="production", name="answer", model="model-a", prompt_version="v1", input=prompt,
               output=output, error="", error_type="", latency_ms=300.0, ttft_ms=None, tokens_in=10, tokens_out=20,
               cost_usd=0.001, user_id="u1", session_id="s1", tags={}, metadata="", truncated=0, source="test")
    return [row[c] for c in EVENT_COLUMNS]


@pytest.fixture
def exported(store_client, tmp_path) -> tuple[object, Path]:
    """Six calls of the last complete week, two of them with formula-looking answers, exported as CSV."""
    start = WEEK.start + dt.timedelta(days=2)
    calls = [
        event(start, "t-formula", "What is 2+2?", "=2+2"),
        event(start + dt.timedelta(hours=1), "t-minus", "How cold is it?", "-5 degrees in Oslo"),
        event(start + dt.timedelta(hours=2), "t-plain", "Reset my PIN", "Open Card settings, then PIN."),
        event(start + dt.timedelta(hours=3), "t-wrong", "Refund for order 7?", "Your order 9 was refunded."),
        event(start + dt.timedelta(hours=4), "t-skip", "Opening hours?", "9 to 5."),
        event(start + dt.timedelta(hours=5), "t-skip2", "Branch near me?", "Main street."),
    ]
    store_client.insert("events", calls, column_names=EVENT_COLUMNS)
    result = export_week(store_client, WEEK, tmp_path / "exports", formats="csv", sample_size=10,
                         topics_by_week=False)
    return store_client, result.files["review_sample.csv"]


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write(path: Path, rows: list[dict[str, str]]) -> None:
    """As a spreadsheet saves CSV: the cells as they were shown, apostrophes included, CRLF line ends."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=REVIEW_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_a_filled_in_review_sample_round_trips_with_edits_and_formula_looking_cells(exported, tmp_path):
    client, sample = exported
    rows = {r["trace_id"]: r for r in read(sample)}
    assert rows["t-formula"]["output"] == "'=2+2"  # neutralised by the export
    assert rows["t-minus"]["output"] == "'-5 degrees in Oslo"
    rows["t-formula"].update(reviewer_verdict="accept", reviewer_notes="'=fine, though terse")
    rows["t-minus"].update(reviewer_verdict="reject", reviewer_tags="wrong",
                           reviewer_edited_output="'-12 degrees in Oslo", reviewer_notes="'@ops check the feed")
    rows["t-plain"].update(reviewer_verdict="OK")
    rows["t-wrong"].update(reviewer_verdict="bad", reviewer_tags="wrong; off-topic",
                           reviewer_edited_output="Order 7 was refunded on Monday.")
    filled = tmp_path / "filled.csv"
    write(filled, list(rows.values()))

    result = import_file(client, filled, "ana@example.com")

    assert (len(result.labels), result.skipped, result.rows) == (4, 2, 6)
    stored = {lb.trace_id: lb for lb in latest_labels(client)}
    assert sorted(stored) == ["t-formula", "t-minus", "t-plain", "t-wrong"]
    assert (stored["t-formula"].verdict, stored["t-formula"].comment) == ("accept", "=fine, though terse")
    minus = stored["t-minus"]
    assert (minus.verdict, minus.tags, minus.edited_output, minus.comment) == (
        "reject", ("wrong",), "-12 degrees in Oslo", "@ops check the feed")
    assert stored["t-plain"].verdict == "accept" and stored["t-plain"].edited_output == ""
    assert stored["t-wrong"].tags == ("wrong", "off-topic")
    assert stored["t-wrong"].edited_output == "Order 7 was refunded on Monday."
    assert {lb.reviewer for lb in stored.values()} == {"ana@example.com"}
    assert {lb.source for lb in stored.values()} == {"import"}
    assert stored["t-minus"].event_id == rows["t-minus"]["event_id"]

    # A second import by the same reviewer replaces their label: the latest wins.
    rows["t-plain"].update(reviewer_verdict="reject", reviewer_tags="refusal")
    write(filled, list(rows.values()))
    import_file(client, filled, "ana@example.com")
    again = {lb.trace_id: lb for lb in latest_labels(client)}
    assert (again["t-plain"].verdict, again["t-plain"].tags) == ("reject", ("refusal",))
    assert len(latest_labels(client)) == 4


def test_a_file_with_bad_rows_imports_nothing_and_names_every_bad_row(exported, tmp_path):
    client, sample = exported
    rows = read(sample)
    index = {r["trace_id"]: i for i, r in enumerate(rows)}  # spreadsheet row = index + 2
    rows[index["t-plain"]].update(reviewer_verdict="accept")  # good
    rows[index["t-formula"]].update(reviewer_verdict="maybe")  # bad verdict
    rows[index["t-minus"]].update(reviewer_tags="rude")  # tags but no verdict, and an unknown tag
    rows[index["t-wrong"]].update(trace_id="t-nowhere", reviewer_verdict="reject")  # not a call in the store
    rows.append({**rows[index["t-plain"]], "reviewer_verdict": "reject"})  # the same trace twice
    bad = tmp_path / "bad.csv"
    write(bad, rows)

    with pytest.raises(ImportRejected) as caught:
        import_file(client, bad, "ana@example.com")

    errors = caught.value.errors
    assert len(errors) == 4, errors
    text = "\n".join(errors)
    assert f"row {index['t-formula'] + 2} (trace t-formula): verdict 'maybe' is neither accept nor reject" in text
    minus = f"row {index['t-minus'] + 2} (trace t-minus)"
    assert minus in text and "reviewer_verdict is empty" in text and "unknown tag(s) rude" in text
    assert f"row {index['t-wrong'] + 2} (trace t-nowhere): trace_id is not a call in this store" in text
    assert f"row {len(rows) + 1} (trace t-plain): trace_id already given on row {index['t-plain'] + 2}" in text
    assert latest_labels(client) == []  # the good row was not stored either


def test_the_command_imports_and_its_error_lists_the_rows(exported, tmp_path, store_url, store_database, monkeypatch):
    from llmsight.cli.app import _build, explain

    client, sample = exported
    monkeypatch.setenv("LLMSIGHT_CLICKHOUSE_URL", f"{store_url}?database={store_database}")
    rows = read(sample)
    rows[0].update(reviewer_verdict="reject", reviewer_tags="toxic")
    rows[1].update(reviewer_verdict="perhaps")
    bad = tmp_path / "bad.csv"
    write(bad, rows)
    failed = CliRunner().invoke(_build(), ["review", "import", str(bad), "--reviewer", "bo"])
    assert isinstance(failed.exception, ImportRejected)
    message, code = explain(failed.exception)
    assert code == 2 and "nothing imported, 1 bad row(s)" in message and "row 3 " in message
    assert latest_labels(client) == []

    rows[1].update(reviewer_verdict="accept")
    good = tmp_path / "good.csv"
    write(good, rows)
    done = CliRunner().invoke(_build(), ["review", "import", str(good), "--reviewer", "bo", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output.strip().splitlines()[-1])["labels"] == 2
    assert {(lb.trace_id, lb.reviewer, lb.verdict) for lb in latest_labels(client)} == {
        (rows[0]["trace_id"], "bo", "reject"), (rows[1]["trace_id"], "bo", "accept")}


def test_a_file_that_is_not_a_review_sample_is_refused_clearly(store_client, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("name,score\nx,1\n", encoding="utf-8")
    with pytest.raises(ImportRejected, match="lacks the column\\(s\\) trace_id, reviewer_verdict"):
        import_file(store_client, other, "ana")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("trace_id,reviewer_verdict\nt\xe9,accept\n".encode("latin-1"))
    with pytest.raises(ImportRejected, match="not UTF-8"):
        import_file(store_client, latin, "ana")
