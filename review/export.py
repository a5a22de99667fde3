"""The weekly quality-review export: one ISO week of the store as Parquet, CSV and a self-contained HTML report.

``export_week(client, "2026-W47", out_dir)`` writes ``out_dir/2026-W47/``:

* ``events.parquet``, ``feedback.parquet``, ``metrics.parquet``, ``alerts.parquet``: the week's raw rows;
* ``review_sample.csv``: the calls people should label (every call flagged toxic or rejected by
  its user, plus a stratified random sample of the rest) with empty reviewer columns (``reviewer_verdict``,
  ``reviewer_tags``, ``reviewer_edited_output``, ``reviewer_notes``) that ``llmsight review import``
  reads back; the summary tables as CSV beside it;
* ``report.html``: the report (see :mod:`llmsight.review.html`);
* ``export.json``: the week's bounds and when its feedback was counted until (``feedback_until``).

The files hold users' texts: folders are created 0700 and files 0600, like the SDK's spool. A CSV cell
that a spreadsheet would run as a formula (one starting with ``= + - @``, a tab or a carriage return)
gets a leading apostrophe (:func:`csv_cell`), so opening the review sample never runs a user's text.

Feedback often comes after the call, so a call's verdict is looked for until ``FEEDBACK_GRACE``
after the week (Tuesday 00:00 UTC), but never past the moment the export runs: feedback is counted
while ``ts < feedback_until = min(week.end + FEEDBACK_GRACE, now)`` (:func:`feedback_cutoff`). An
export run after the grace is final; one run before it is provisional, and says so in
``export.json`` and at the top of ``report.html``; a rerun after the grace gives the final figures.

Rerunning a week after its grace gives byte-identical files: every read has a total order and is
cut at fixed times, the random sample's seed is derived from the week, and nothing records the time
of the export (a provisional export records ``feedback_until``, the moment it ran), and no reviewer
labelled one of the week's calls in between (the report's monitors section reads the labels stored when
it runs: :mod:`llmsight.review.precision`). The figures
(segments, acceptance, alerts, drift topics) are computed in :mod:`llmsight.review.summary`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from llmsight import config
from llmsight.errors import ConfigError
from llmsight.review import settings
from llmsight.review.weeks import (
    IsoWeek,
    feedback_cutoff,
    feedback_statement,
    last_complete_week,
    manifest,
    parse_week,
    week_seed,
)
from llmsight.store.times import between, iso_ms, sql_time

log = logging.getLogger("llmsight.review.export")

FORMATS = ("parquet", "csv", "html")
RAW_TABLES = ("events", "feedback", "metrics", "alerts")
MANIFEST = "export.json"
REVIEW_COLUMNS = [
    "week", "flag", "trace_id", "event_id", "ts", "service", "name", "model", "prompt_version",
    "input", "output", "error", "latency_ms", "toxicity_score", "accepted", "score", "comment",
    "reviewer_verdict", "reviewer_tags", "reviewer_edited_output", "reviewer_notes",
]
# The columns a reviewer fills in; ``llmsight review import`` reads them back (:mod:`llmsight.review.imports`).
REVIEWER_COLUMNS = ["reviewer_verdict", "reviewer_tags", "reviewer_edited_output", "reviewer_notes"]

Progress = Callable[[str, int, int], None]  # (step description, done, total)


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    items = [f.strip().lower() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    unknown = [f for f in items if f not in FORMATS]
    if unknown or not items:
        raise ConfigError(f"unknown export format(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in items)


# -- reading -----------------------------------------------------------------------------------------

# LowCardinality columns come back as plain strings whatever the server's Arrow defaults are.
_ARROW_SETTINGS = {"output_format_arrow_low_cardinality_as_dictionary": 0}

# Each raw table: the columns to write (UUIDs as text: not every Parquet reader knows Arrow's UUID
# type), the time column the week is cut on, and the total order that makes reruns byte-identical.
_RAW_SQL = {
    "events": ("toString(event_id) AS event_id, * EXCEPT (event_id)", "events FINAL", "ts",
               "ts, event_id"),
    "feedback": ("toString(event_id) AS event_id, * EXCEPT (event_id)", "feedback FINAL", "ts",
                 "ts, trace_id, event_id"),
    "metrics": ("*", "metrics FINAL", "window_start",
                "metric, granularity, service, name, model, prompt_version, window_start"),
    "alerts": ("*", "alerts", "changed_at", "changed_at, alert_id, transition"),
}


def read_raw(client: Any, table: str, start: datetime, end: datetime) -> Any:
    """One table's rows in ``[start, end)`` as an Arrow table, in a total order."""
    columns, source, time_column, order = _RAW_SQL[table]
    sql = f"SELECT {columns} FROM {source} WHERE {between(time_column)} ORDER BY {order}"
    return client.query_arrow(sql, parameters={"start": sql_time(start), "end": sql_time(end)}, settings=_ARROW_SETTINGS)


def _days(week: IsoWeek) -> list[tuple[datetime, datetime]]:
    return [(week.start + timedelta(days=d), week.start + timedelta(days=d + 1)) for d in range(7)]


def write_parquet(client: Any, table: str, week: IsoWeek, path: Path, progress: Progress | None = None,
                  until: datetime | None = None) -> int:
    """Write the week's rows of ``table`` to ``path`` one day at a time (memory stays bounded); returns rows.
    ``until`` cuts the rows earlier than the week's end (the feedback cutoff of a provisional export)."""
    import pyarrow.parquet as pq

    writer = None
    rows = 0
    try:
        for index, (start, end) in enumerate(_days(week)):
            if until is not None:
                end = max(start, min(end, until))
            chunk = read_raw(client, table, start, end)
            if writer is None:
                schema = chunk.schema
                # No pandas metadata and no wall-clock values: the file is a function of the rows.
                writer = pq.ParquetWriter(path, schema, compression="zstd", write_statistics=True)
            if chunk.num_rows:
                writer.write_table(chunk.cast(schema))
                rows += chunk.num_rows
            if progress:
                progress(f"{table}.parquet", index + 1, 7)
    finally:
        if writer is not None:
            writer.close()
    log.info("export: %s.parquet: %d rows", table, rows)
    return rows


# -- the review sample -------------------------------------------------------------------------------

_REVIEW_FIELDS = """e.trace_id, toString(e.event_id) AS event_id, e.ts, e.service, e.name, e.model, e.prompt_version,
       e.input, e.output, e.error, e.latency_ms, f.verdict, f.last_score, f.last_comment"""
# The week's calls with their user's latest verdict (looked for until feedback_until: FEEDBACK_GRACE after
# the week, or the moment the export runs if that is earlier).
_REVIEW_FROM = """
FROM (SELECT * FROM events FINAL WHERE {week}) AS e
LEFT JOIN (
    SELECT trace_id, argMax(accepted, ts) AS verdict, argMax(score, ts) AS last_score,
           argMax(comment, ts) AS last_comment
    FROM feedback FINAL WHERE {grace} GROUP BY trace_id
) AS f ON f.trace_id = e.trace_id
"""
# A call without feedback has a NULL verdict (join_use_nulls: not ClickHouse's default 0, "rejected"),
# and NULL must count as not flagged, or NOT _FLAGGED would drop those calls from the random sample.
_FLAGGED = "(has({toxic:Array(String)}, e.trace_id) OR ifNull(f.verdict = 0, 0))"
_JOIN_SETTINGS = {"join_use_nulls": 1}
_SEGMENT = "e.service, e.name, e.model, e.prompt_version"


def _review_sql(fields: str, where: str, tail: str) -> str:
    source = _REVIEW_FROM.format(week=between("ts"), grace=between("ts", "start", "feedback_until"))
    return f"SELECT {fields} {source} WHERE {where} {tail}"


def allocate(counts: dict[tuple[str, ...], int], size: int) -> dict[tuple[str, ...], int]:
    """Split ``size`` over the strata in proportion to their counts (largest remainder), at least one each
    while ``size`` allows, never more than a stratum holds."""
    total = sum(counts.values())
    if total == 0 or size <= 0:
        return {key: 0 for key in counts}
    size = min(size, total)
    keys = sorted(counts)
    quotas = {k: size * counts[k] / total for k in keys}
    alloc = {k: min(counts[k], int(quotas[k])) for k in keys}
    if size >= len(keys):
        for k in keys:
            if counts[k] and alloc[k] == 0:
                alloc[k] = 1
    by_remainder = sorted(keys, key=lambda k: (-(quotas[k] - int(quotas[k])), k))
    while sum(alloc.values()) < size:
        grew = False
        for k in by_remainder:
            if sum(alloc.values()) >= size:
                break
            if alloc[k] < counts[k]:
                alloc[k] += 1
                grew = True
        if not grew:
            break
    while sum(alloc.values()) > size:  # the at-least-one rule overshot: take back from the largest
        k = max(keys, key=lambda key: (alloc[key], key))
        alloc[k] -= 1
    return alloc


def review_sample(client: Any, week: IsoWeek, toxic_scores: dict[str, float], size: int,
                  feedback_until: datetime | None = None) -> list[dict[str, Any]]:
    """Every flagged call of the week (toxic output or input, or rejected by its user), then a stratified
    random sample of ``size`` other calls, one stratum per segment; seeded by the week. Verdicts count
    until ``feedback_until`` (default :func:`feedback_cutoff` now)."""
    from llmsight.redact import redact

    until = feedback_until or feedback_cutoff(week)
    params: dict[str, Any] = {"start": sql_time(week.start), "end": sql_time(week.end),
                              "feedback_until": sql_time(until), "toxic": sorted(toxic_scores),
                              "seed": week_seed(week)}
    flagged = client.query(_review_sql(_REVIEW_FIELDS, _FLAGGED, "ORDER BY e.ts, e.event_id"),
                           parameters=params, settings=_JOIN_SETTINGS).result_rows
    strata = client.query(
        _review_sql(f"{_SEGMENT}, count() AS n", f"NOT {_FLAGGED}", f"GROUP BY {_SEGMENT} ORDER BY {_SEGMENT}"),
        parameters=params, settings=_JOIN_SETTINGS,
    ).result_rows
    allocation = allocate({tuple(row[:4]): int(row[4]) for row in strata}, size)
    drawn = sorted((key, k) for key, k in allocation.items() if k > 0)
    sampled: list[tuple[Any, ...]] = []
    if drawn:
        # One pass over the week for every stratum (one query per stratum re-joined the whole week each
        # time): rank each stratum's calls by a hash of the event id salted with the week's seed (a
        # uniform, repeatable draw) and keep its first k. Strata are bound as tuples, so no separator
        # can collide with a segment's name; one not drawn from has index 0, and arr[0] is 0 in ClickHouse.
        quota = f"{{quotas:Array(UInt64)}}[indexOf({{strata:Array(Tuple(String, String, String, String))}}, ({_SEGMENT}))]"
        ranked = _review_sql(
            f"{_REVIEW_FIELDS}, {quota} AS quota, row_number() OVER (PARTITION BY {_SEGMENT} "
            f"ORDER BY cityHash64(toString(e.event_id), {{seed:UInt64}}), e.event_id) AS draw",
            f"NOT {_FLAGGED}", "")
        rows = client.query(
            f"SELECT * EXCEPT (quota, draw) FROM ({ranked}) WHERE draw <= quota",
            parameters={**params, "strata": [key for key, _ in drawn], "quotas": [k for _, k in drawn]},
            settings=_JOIN_SETTINGS,
        ).result_rows
        # Strata in key order, each stratum's calls by time: the order the per-stratum queries gave.
        sampled = sorted(rows, key=lambda r: (tuple(r[3:7]), r[2], r[1]))

    out = []
    for flag_kind, rows in (("flagged", flagged), ("random", sampled)):
        for (trace, event, ts, service, name, model, version, text_in, text_out, error, latency,
             accepted, score, comment) in rows:
            flags = []
            if trace in toxic_scores:
                flags.append("toxic")
            if accepted == 0:
                flags.append("rejected")
            out.append({
                "week": week.label, "flag": "+".join(flags) if flag_kind == "flagged" else "random",
                "trace_id": trace, "event_id": event, "ts": iso_ms(ts), "service": service, "name": name,
                "model": model, "prompt_version": version, "input": redact(text_in), "output": redact(text_out),
                "error": error, "latency_ms": round(float(latency), 3),
                "toxicity_score": "" if trace not in toxic_scores else round(toxic_scores[trace], 4),
                "accepted": "" if accepted is None else int(accepted),
                "score": "" if score is None else score, "comment": comment or "",
                **{column: "" for column in REVIEWER_COLUMNS},
            })
    log.info("export: review sample of %d flagged + %d random calls", len(flagged), len(sampled))
    return out


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` safe to open in a spreadsheet: text a spreadsheet would read as a formula gets a leading
    apostrophe (numbers are left alone)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents with mode 0700; ``path`` itself is made 0700 if it existed
    (the folders above it that existed are left as they are)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` (or keep it) with mode 0600 before it is written: writers that truncate keep the mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """CSV with a fixed column order and ``\\n`` line ends, so the bytes depend on the rows only; text a
    spreadsheet would run as a formula is neutralised (:func:`csv_cell`)."""
    # The writer quotes a cell holding a carriage return only when "\r" is in its line terminator: each
    # record is written with "\r\n" and ends with "\n" in the file.
    record = io.StringIO()
    writer = csv.DictWriter(record, fieldnames=columns, lineterminator="\r\n", extrasaction="ignore")
    with private_file(path).open("w", newline="", encoding="utf-8") as f:
        for row in [None, *rows]:
            record.seek(0)
            record.truncate()
            if row is None:
                writer.writeheader()
            else:
                writer.writerow({key: csv_cell(value) for key, value in row.items()})
            f.write(record.getvalue()[:-2] + "\n")


# -- the whole export --------------------------------------------------------------------------------

@dataclass
class ExportResult:
    week: IsoWeek
    directory: Path
    files: dict[str, Path] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    feedback_until: datetime | None = None  # feedback counted while ts < this (see feedback_cutoff)

    @property
    def provisional(self) -> bool:
        """True when the export ran before the week's feedback grace ended: rerun it after for final figures."""
        return self.feedback_until is not None and self.week.provisional(self.feedback_until)

    @property
    def feedback(self) -> str:
        return "" if self.feedback_until is None else feedback_statement(self.week, self.feedback_until)


def export_week(client: Any, week: IsoWeek | str | None, out_dir: str | Path, *,
                formats: str | Iterable[str] = FORMATS, sample_size: int | None = None,
                progress: Progress | None = None, evidently: bool = False, topics_by_week: bool = True,
                embedder: Any = None, now: datetime | None = None) -> ExportResult:
    """Export one ISO week (default: the last complete one) to ``out_dir/<week>/``.

    ``now`` (default: the clock, read once) picks the default week and cuts the feedback at
    :func:`feedback_cutoff`: before the week's grace is over the export is provisional and says so.

    ``topics_by_week`` clusters a sample of this week's and last week's inputs with the embedding
    model (``embedder``, default :class:`~llmsight.analyzers.embeddings.Embedder`) for the drift
    summary; without it the summary gathers the drift windows' own explanations only.
    ``evidently`` embeds Evidently's text drift report in the HTML: slower (tens of seconds), and
    that one section is not byte-identical between runs (Evidently stamps its own ids).
    """
    from llmsight.review import summary as export_summary

    started = time.monotonic()
    now = now or datetime.now(timezone.utc)
    week = week if isinstance(week, IsoWeek) else parse_week(week, now)
    chosen = parse_formats(formats)
    size = config.resolve(settings.EXPORT_SAMPLE_SIZE, sample_size, strict=True)
    directory = private_dir(Path(out_dir).expanduser() / week.label)
    until = feedback_cutoff(week, now)
    result = ExportResult(week, directory, feedback_until=until)
    log.info("export: %s (%s..%s) to %s as %s", week.label, sql_time(week.start), sql_time(week.end), directory,
             ",".join(chosen))
    if result.provisional:
        log.warning("export: %s: %s", week.label, result.feedback)

    path = private_file(directory / MANIFEST)
    path.write_text(json.dumps(manifest(week, until), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    result.files[MANIFEST] = path
    if "parquet" in chosen:
        for table in RAW_TABLES:
            path = private_file(directory / f"{table}.parquet")
            result.rows[table] = write_parquet(client, table, week, path, progress,
                                               until=until if table == "feedback" else None)
            result.files[f"{table}.parquet"] = path

    if not {"csv", "html"} & set(chosen):
        result.seconds = time.monotonic() - started
        log.info("export: %s written in %.1f s (raw tables only)", week.label, result.seconds)
        return result
    steps = ["summary", "review sample", "report"]
    if progress:
        progress("summary", 0, len(steps))
    summary = export_summary.summarize(client, week, topics_by_week=topics_by_week, embedder=embedder, now=now)
    if progress:
        progress("summary", 1, len(steps))
    sample = review_sample(client, week, summary.toxic_scores, size, feedback_until=until)
    result.rows["review_sample"] = len(sample)
    if progress:
        progress("review sample", 2, len(steps))

    if "csv" in chosen:
        path = directory / "review_sample.csv"
        write_csv(path, sample, REVIEW_COLUMNS)
        result.files["review_sample.csv"] = path
        for name, (rows, columns) in summary.tables().items():
            table_path = directory / f"{name}.csv"
            write_csv(table_path, rows, columns)
            result.files[f"{name}.csv"] = table_path
    if "html" in chosen:
        from llmsight.review import html as export_html

        evidently_html = export_summary.evidently_drift_html(client, week) if evidently else None
        path = private_file(directory / "report.html")
        html = export_html.render(summary, sample, evidently_html=evidently_html,
                                  feedback_notice=result.feedback, provisional=result.provisional)
        path.write_text(html, encoding="utf-8")
        result.files["report.html"] = path
    if progress:
        progress("report", 3, len(steps))
    result.seconds = time.monotonic() - started
    log.info("export: %s written in %.1f s: %s", week.label, result.seconds,
             ", ".join(f"{k}={v}" for k, v in result.rows.items()))
    return result


# -- the weekly job ----------------------------------------------------------------------------------

_DAYS = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def cron_trigger(cron: str) -> Any:
    """An APScheduler trigger (UTC) from ``"mon 06:00"`` or a 5-field crontab expression."""
    from apscheduler.triggers.cron import CronTrigger

    text = cron.strip()
    short = re.fullmatch(r"([a-z]{3})\s+(\d{1,2}):(\d{2})", text.lower())
    if short and short.group(1) in _DAYS:
        return CronTrigger(day_of_week=short.group(1), hour=int(short.group(2)), minute=int(short.group(3)),
                           timezone=timezone.utc)
    fields = text.split()
    if len(fields) == 5:
        # APScheduler 3 reads a numeric day of week as 0=Monday, crontab as 0=Sunday
        # (agronholm/apscheduler#455): name the days so "0 6 * * 1" means Monday as in cron.
        fields[4] = "*" if fields[4] in ("0-6", "0-7") else re.sub(r"(?<![/\d])([0-7])(?!\d)", lambda m: _CRON_DAYS[int(m.group(1))], fields[4])
    try:
        minute, hour, day, month, day_of_week = fields
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week,
                           timezone=timezone.utc)
    except ValueError as exc:
        raise ConfigError(f"export schedule {cron!r} is not valid: {exc}; use 'mon 06:00' or a crontab line") from None


def run_scheduled_export(out_dir: str | Path, client: Any = None) -> ExportResult:
    """The job body: export the last complete week, its feedback counted until :func:`feedback_cutoff`.

    At the default time (Tuesday 06:00 UTC) the week's feedback grace is over: the files are final,
    and a rerun rewrites the same bytes. A schedule that fires earlier (Monday, say) writes a
    provisional export, marked so in ``export.json`` and ``report.html``; a rerun after the grace
    replaces it with the final figures."""
    if client is None:
        from llmsight import store

        client = store.connect()
    return export_week(client, None, out_dir)


def schedule_weekly_export(scheduler: Any, out_dir: str | Path | None = None, cron: str | None = None,
                           client: Any = None) -> Any:
    """Add the weekly export to an APScheduler ``scheduler`` (Tuesday 06:00 UTC, after the feedback grace,
    unless ``cron``/``LLMSIGHT_EXPORT_CRON`` says otherwise), writing to ``out_dir``/``LLMSIGHT_EXPORT_DIR``."""
    directory = config.resolve(settings.EXPORT_DIR, out_dir, strict=True)
    schedule = config.resolve(settings.EXPORT_CRON, cron, strict=True)
    trigger = cron_trigger(schedule)
    week = last_complete_week()
    first = trigger.get_next_fire_time(None, week.end)
    if first is not None and week.provisional(first):
        log.warning("export: the schedule %r runs before the week's feedback grace ends (Tuesday 00:00 UTC): "
                    "those exports are provisional; a run after the grace gives the final figures", schedule)
    job = scheduler.add_job(run_scheduled_export, trigger, args=[directory, client], id="llmsight-weekly-export",
                            name="weekly quality-review export", replace_existing=True, coalesce=True,
                            max_instances=1, misfire_grace_time=6 * 3600)
    log.info("export: weekly export scheduled (%s) to %s", trigger, directory)
    return job
