"""An export run before the week's feedback grace ends (Tuesday 00:00 UTC) counts feedback until the moment
it runs and says it is provisional; feedback arriving later changes the rerun after the grace, whose
figures are final: two reruns after the grace write the same bytes."""

from __future__ import annotations

import csv
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from llmsight import store
from llmsight.review.export import export_week
from llmsight.review.weeks import FEEDBACK_GRACE, IsoWeek

# Inside the store's retention (rows past their TTL vanish from FINAL reads): the week before last.
WEEK = IsoWeek.containing(datetime.now(timezone.utc) - timedelta(days=14))
GRACE_END = WEEK.end + FEEDBACK_GRACE
EARLY = WEEK.end + timedelta(hours=6)  # Monday 06:00 UTC, when the weekly job used to run
SEGMENT = {"service": "bank-bot", "name": "answer", "model": "gpt-4o-mini", "prompt_version": "v1"}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _trace(n: int) -> str:
    return f"{n:032x}"


def _call(n: int, at: datetime) -> list[Any]:
    return store.event_row({"event_id": str(uuid.UUID(int=1000 + n)), "trace_id": _trace(n), "ts": _iso(at),
                            **SEGMENT, "input": f"question {n}", "output": f"answer {n}", "latency_ms": 100.0 + n},
                           "test")


def _verdict(n: int, at: datetime, accepted: bool) -> list[Any]:
    return store.feedback_row({"event_id": str(uuid.UUID(int=2000 + n)), "trace_id": _trace(n), "ts": _iso(at),
                               "accepted": accepted, "score": None, "comment": ""}, "test")


def _export(client: Any, out: Path, now: datetime | None) -> Path:
    export_week(client, WEEK, out, sample_size=50, topics_by_week=False, now=now)
    return out / WEEK.label


def _read(folder: Path) -> tuple[dict[str, Any], dict[str, str], int, str]:
    """export.json, the review sample's accepted column by trace, the week's judged calls, report.html."""
    with (folder / "review_sample.csv").open(newline="", encoding="utf-8") as f:
        sample = {row["trace_id"]: row["accepted"] for row in csv.DictReader(f)}
    with (folder / "segments.csv").open(newline="", encoding="utf-8") as f:
        judged = int(next(csv.DictReader(f))["feedback_judged"] or 0)
    return (json.loads((folder / "export.json").read_text(encoding="utf-8")), sample, judged,
            (folder / "report.html").read_text(encoding="utf-8"))


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def week_with_late_feedback(store_client: Any) -> Any:
    """Six calls of the week; verdicts inside the week, in the grace before and after Monday 06:00, and
    after the grace. (The verdict given Monday 20:00 is inserted by the test, after the early export.)"""
    start = WEEK.start
    calls = {1: start + timedelta(days=2), 2: WEEK.end - timedelta(hours=1), 3: start + timedelta(days=5),
             4: start + timedelta(days=4), 5: start + timedelta(days=3), 6: start + timedelta(days=1)}
    store_client.insert("events", [_call(n, at) for n, at in sorted(calls.items())], column_names=store.EVENT_COLUMNS)
    store_client.insert("feedback", [
        _verdict(1, calls[1] + timedelta(minutes=2), True),             # in the week
        _verdict(2, WEEK.end + timedelta(hours=5), False),              # Monday 05:00: before the early export
        _verdict(3, WEEK.end + timedelta(hours=12), False),             # Monday 12:00 (stored early: a fast clock)
        _verdict(5, GRACE_END + timedelta(hours=1), False),             # Tuesday 01:00: after the grace
    ], column_names=store.FEEDBACK_COLUMNS)
    return store_client


def test_an_early_export_is_provisional_and_the_rerun_after_the_grace_is_final(week_with_late_feedback, tmp_path):
    client = week_with_late_feedback
    early = _export(client, tmp_path / "early", EARLY)
    info, sample, judged, html = _read(early)
    assert info["provisional"] is True
    assert info["feedback_until"] == _iso(EARLY) and info["feedback_grace_end"] == _iso(GRACE_END)
    statement = (f"Provisional: feedback counted until {EARLY:%Y-%m-%d} 06:00:00 UTC; the grace period for late "
                 f"feedback ends {GRACE_END:%Y-%m-%d} 00:00:00 UTC; rerun the export after it for final figures.")
    assert info["feedback"] == statement
    assert html.index(statement) < html.index('<section id="overview">')
    assert f'<p class="provisional" id="feedback-cutoff">{statement}</p>' in html  # the red box
    # Only verdicts given before 06:00 count, even the one stored already with a later time.
    assert sample == {_trace(1): "1", _trace(2): "0", _trace(3): "", _trace(4): "", _trace(5): "", _trace(6): ""}
    assert judged == 2

    # The cutoff is explicit: a verdict arriving later does not change an export as of 06:00.
    client.insert("feedback", [_verdict(4, WEEK.end + timedelta(hours=20), True)], column_names=store.FEEDBACK_COLUMNS)
    assert _bytes(_export(client, tmp_path / "early-again", EARLY)) == _bytes(early)

    final = _export(client, tmp_path / "final", None)
    info, sample, judged, html = _read(final)
    assert info["provisional"] is False and info["feedback_until"] == _iso(GRACE_END)
    assert "Provisional" not in html and 'class="provisional"' not in html
    assert f"Final: feedback counted until {GRACE_END:%Y-%m-%d} 00:00:00 UTC" in html
    assert sample == {_trace(1): "1", _trace(2): "0", _trace(3): "0", _trace(4): "1", _trace(5): "", _trace(6): ""}
    assert judged == 4
    # Rerun at the very end of the grace and again now: the same bytes, file for file.
    assert _bytes(_export(client, tmp_path / "at-grace-end", GRACE_END)) == _bytes(final)


def test_an_export_of_a_week_still_running_cuts_its_raw_feedback_at_the_same_moment(store_client, tmp_path):
    friday = WEEK.start + timedelta(days=4, hours=12)
    store_client.insert("events", [_call(n, WEEK.start + timedelta(days=n)) for n in range(6)],
                        column_names=store.EVENT_COLUMNS)
    store_client.insert("feedback", [_verdict(n, WEEK.start + timedelta(days=n, hours=1), True) for n in range(6)],
                        column_names=store.FEEDBACK_COLUMNS)
    export_week(store_client, WEEK, tmp_path, formats="parquet", now=friday)
    folder = tmp_path / WEEK.label
    assert pq.read_table(folder / "feedback.parquet").column("trace_id").to_pylist() == [_trace(n) for n in range(5)]
    assert pq.read_table(folder / "events.parquet").num_rows == 6
    assert json.loads((folder / "export.json").read_text(encoding="utf-8"))["feedback_until"] == _iso(friday)
