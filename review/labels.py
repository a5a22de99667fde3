"""Reviewers' labels on calls: what they are, how they are stored, and the queue they are given from.

A label (:class:`Label`) is a reviewer's verdict on one call (``accept`` or ``reject``), tags from
:data:`TAGS`, an edited answer and a comment. Labels are written to ``review_labels`` (migration
0010) by the dashboard's review queue and by ``llmsight review import``; the latest label per
(trace, reviewer) wins (:func:`latest_labels`).

The queue (:func:`review_queue`) is the week's review sample, drawn exactly as the weekly export
draws it (every call flagged toxic or rejected by its user, plus a stratified random sample), plus
every call of the week an evaluator flagged (``evaluations.flagged = 1``, written by the online
evaluators; a store without that table simply has none).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from llmsight.errors import ConfigError
from llmsight.review.weeks import IsoWeek
from llmsight.store.times import between, iso_ms, sql_time

log = logging.getLogger("llmsight.review.labels")

TABLE = "review_labels"
EVALUATIONS = "evaluations"  # the online evaluators' per-call results (issue 20 part A)
VERDICTS = ("accept", "reject")
TAGS = ("wrong", "off-topic", "toxic", "unsafe", "refusal")
LABEL_COLUMNS = ["trace_id", "reviewer", "labelled_at", "event_id", "verdict", "tags", "edited_output", "comment",
                 "source"]
SOURCES = ("dashboard", "import")

# What a reviewer may write in a spreadsheet's verdict column, and what it means.
_VERDICT_WORDS = {
    "accept": "accept", "accepted": "accept", "ok": "accept", "good": "accept", "yes": "accept", "y": "accept",
    "1": "accept", "pass": "accept",
    "reject": "reject", "rejected": "reject", "bad": "reject", "no": "reject", "n": "reject", "0": "reject",
    "fail": "reject",
}


def parse_verdict(text: str) -> str:
    """``accept`` or ``reject`` from a reviewer's word for it; ValueError for anything else."""
    word = text.strip().lower()
    if word not in _VERDICT_WORDS:
        raise ValueError(f"verdict {text!r} is neither accept nor reject (accept, ok, yes, 1 / reject, bad, no, 0)")
    return _VERDICT_WORDS[word]


def parse_tags(text: str | Iterable[str]) -> tuple[str, ...]:
    """Tags from ``"wrong; toxic"`` (commas, semicolons or spaces) or a list, in :data:`TAGS` order;
    ValueError naming the unknown ones."""
    items = text.replace(";", ",").replace(" ", ",").split(",") if isinstance(text, str) else list(text)
    words = {w.strip().lower() for w in items if w and w.strip()}
    words = {"off-topic" if w in ("offtopic", "off_topic") else w for w in words}
    unknown = sorted(words - set(TAGS))
    if unknown:
        raise ValueError(f"unknown tag(s) {', '.join(unknown)}: choose from {', '.join(TAGS)}")
    return tuple(t for t in TAGS if t in words)


@dataclass(frozen=True)
class Label:
    """One reviewer's label on one call."""

    trace_id: str
    reviewer: str
    verdict: str
    tags: tuple[str, ...] = ()
    edited_output: str = ""
    comment: str = ""
    event_id: str = ""
    source: str = "dashboard"
    labelled_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        if not self.trace_id.strip():
            raise ValueError("a label needs the call's trace id")
        if not self.reviewer.strip():
            raise ValueError("a label needs the reviewer's name")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is neither accept nor reject")
        if set(self.tags) - set(TAGS):
            raise ValueError(f"unknown tag(s) {', '.join(sorted(set(self.tags) - set(TAGS)))}")
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")

    def row(self) -> list[Any]:
        return [self.trace_id, self.reviewer, self.labelled_at, self.event_id, self.verdict, list(self.tags),
                self.edited_output, self.comment, self.source]


def save_labels(client: Any, labels: Sequence[Label]) -> int:
    """Write ``labels`` in one insert (one block: all of them or, on an error, none); returns how many."""
    if not labels:
        return 0
    client.insert(TABLE, [label.row() for label in labels], column_names=LABEL_COLUMNS)
    log.info("review: %d label(s) saved (%s)", len(labels), ", ".join(sorted({lb.source for lb in labels})))
    return len(labels)


_LATEST = f"""
SELECT trace_id, reviewer, argMax(verdict, labelled_at), argMax(tags, labelled_at),
       argMax(edited_output, labelled_at), argMax(comment, labelled_at), max(labelled_at),
       argMax(event_id, labelled_at), argMax(source, labelled_at)
FROM {TABLE} WHERE {{where}} GROUP BY trace_id, reviewer ORDER BY trace_id, reviewer
"""


def latest_labels(client: Any, traces: Iterable[str] | None = None, reviewer: str | None = None) -> list[Label]:
    """The latest label per (trace, reviewer), of ``traces`` (all when None) and ``reviewer`` (any when None)."""
    conditions: list[str] = ["1"]
    params: dict[str, Any] = {}
    if traces is not None:
        conditions.append("has({traces:Array(String)}, trace_id)")
        params["traces"] = sorted(set(traces))
    if reviewer is not None:
        conditions.append("reviewer = {reviewer:String}")
        params["reviewer"] = reviewer
    rows = client.query(_LATEST.format(where=" AND ".join(conditions)), parameters=params).result_rows
    return [Label(trace, who, verdict, tuple(tags), edited, comment, event, source, at)
            for trace, who, verdict, tags, edited, comment, at, event, source in rows]


def labels_of_week(client: Any, week: IsoWeek) -> list[Label]:
    """The latest label per (trace, reviewer) on the calls made in ``week``."""
    rows = client.query(
        _LATEST.format(where=f"trace_id IN (SELECT trace_id FROM events WHERE {between('ts')})"),
        parameters={"start": sql_time(week.start), "end": sql_time(week.end)}).result_rows
    return [Label(trace, who, verdict, tuple(tags), edited, comment, event, source, at)
            for trace, who, verdict, tags, edited, comment, at, event, source in rows]


def has_table(client: Any, table: str) -> bool:
    """Whether ``table`` exists in the client's database (the evaluators' table may not, yet)."""
    rows = client.query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
                        parameters={"t": table}).result_rows
    return bool(rows and rows[0][0])


def evaluator_flags(client: Any, week: IsoWeek) -> dict[str, list[str]]:
    """trace id -> the evaluators that flagged it (``evaluations.flagged = 1``), for the calls of ``week``;
    empty when the store has no evaluations table."""
    if not has_table(client, EVALUATIONS):
        return {}
    rows = client.query(
        f"SELECT trace_id, groupUniqArray(evaluator) FROM {EVALUATIONS} WHERE flagged = 1 AND trace_id IN "
        f"(SELECT trace_id FROM events WHERE {between('ts')}) GROUP BY trace_id ORDER BY trace_id",
        parameters={"start": sql_time(week.start), "end": sql_time(week.end)}).result_rows
    return {str(trace): sorted(str(e) for e in evaluators) for trace, evaluators in rows}


def _calls(client: Any, week: IsoWeek, traces: list[str]) -> list[dict[str, Any]]:
    """The first call of each trace in ``week``, shaped like a review-sample row (texts redacted)."""
    from llmsight.redact import redact

    if not traces:
        return []
    rows = client.query(
        "SELECT trace_id, toString(argMin(event_id, ts)), min(ts), argMin(service, ts), argMin(name, ts), "
        "argMin(model, ts), argMin(prompt_version, ts), argMin(input, ts), argMin(output, ts), argMin(error, ts), "
        f"argMin(latency_ms, ts) FROM events FINAL WHERE {between('ts')} AND has({{traces:Array(String)}}, trace_id) "
        "GROUP BY trace_id ORDER BY min(ts), trace_id",
        parameters={"start": sql_time(week.start), "end": sql_time(week.end), "traces": sorted(traces)}).result_rows
    return [{"week": week.label, "flag": "", "trace_id": trace, "event_id": event, "ts": iso_ms(ts),
             "service": service, "name": name, "model": model, "prompt_version": version, "input": redact(text_in),
             "output": redact(text_out), "error": error, "latency_ms": round(float(latency), 3),
             "toxicity_score": "", "accepted": "", "score": "", "comment": ""}
            for trace, event, ts, service, name, model, version, text_in, text_out, error, latency in rows]


def review_queue(client: Any, week: IsoWeek, *, sample_size: int | None = None,
                 now: datetime | None = None) -> list[dict[str, Any]]:
    """The calls to review for ``week``: its review sample (as the weekly export draws it) then every
    other call an evaluator flagged; each row's ``flag`` says why it is there (``toxic``, ``rejected``,
    ``random``, ``evaluator:<name>``)."""
    from llmsight import config
    from llmsight.review import settings
    from llmsight.review.export import review_sample
    from llmsight.review.summary import toxic_scores
    from llmsight.review.weeks import feedback_cutoff

    size = config.resolve(settings.EXPORT_SAMPLE_SIZE, sample_size, strict=True)
    sample = review_sample(client, week, toxic_scores(client, week), size, feedback_until=feedback_cutoff(week, now))
    flags = evaluator_flags(client, week)
    queued = {row["trace_id"] for row in sample}
    for row in sample:
        if row["trace_id"] in flags:
            extra = "+".join(f"evaluator:{e}" for e in flags[row["trace_id"]])
            row["flag"] = extra if row["flag"] == "random" else f"{row['flag']}+{extra}"
    extra_rows = _calls(client, week, [t for t in flags if t not in queued])
    for row in extra_rows:
        row["flag"] = "+".join(f"evaluator:{e}" for e in flags[row["trace_id"]])
    log.info("review: queue for %s: %d sampled + %d flagged by evaluators", week.label, len(sample), len(extra_rows))
    return sample + extra_rows


def parse_reviewer(name: str | None) -> str:
    """A reviewer's name, stripped; a ConfigError when empty."""
    text = (name or "").strip()
    if not text:
        raise ConfigError("a reviewer's name is needed (--reviewer NAME)")
    return text
