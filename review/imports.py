"""``llmsight review import FILE``: the weekly review sample read back with the reviewers' columns filled in.

The CSV is the export's ``review_sample.csv`` (:data:`llmsight.review.export.REVIEW_COLUMNS`) after
reviewers filled in ``reviewer_verdict`` (accept or reject, or a word for it: ok, bad, yes, no, 1, 0),
``reviewer_tags`` (wrong, off-topic, toxic, unsafe, refusal; commas or semicolons),
``reviewer_edited_output`` (a better answer) and ``reviewer_notes`` (the comment). A row whose
reviewer columns are all empty was not reviewed and is skipped.

**All or nothing.** Every row is checked before anything is written: the trace id must be a call in
the store, the verdict and tags must be known, a reviewed row needs a verdict, and a trace may appear
once. When any row is bad, :class:`ImportRejected` lists every bad row (its spreadsheet row number:
the header is row 1) and nothing is stored; otherwise the labels go in one insert.

**Formula-neutralised cells.** The export puts an apostrophe in front of a cell a spreadsheet would
run as a formula (``= + - @``, a tab or a carriage return; :func:`llmsight.review.export.csv_cell`).
:func:`restore_cell` takes it off again, so an edited answer ``'=SUM(A1)`` is stored as ``=SUM(A1)``.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmsight.errors import LlmsightError
from llmsight.review.export import _FORMULA_START, REVIEWER_COLUMNS
from llmsight.review.labels import Label, parse_tags, parse_verdict, save_labels

log = logging.getLogger("llmsight.review.imports")

REQUIRED_COLUMNS = ("trace_id", "reviewer_verdict")
MAX_ERRORS_SHOWN = 50
# A cell can hold a long answer; a CSV field past this is refused by the csv module instead of read.
FIELD_LIMIT = 10 * 1024 * 1024


class ImportRejected(LlmsightError):
    """The file had bad rows (or no usable header): nothing was imported."""

    def __init__(self, path: Path, errors: list[str], *, whole_file: bool = False) -> None:
        self.errors = errors
        if whole_file:  # the file itself cannot be read as a review sample
            super().__init__(f"{path}: nothing imported: {'; '.join(errors)}")
            return
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        super().__init__(f"{path}: nothing imported, {len(errors)} bad row(s):\n  " + "\n  ".join(shown) + more)


@dataclass
class ImportResult:
    path: Path
    labels: list[Label] = field(default_factory=list)
    skipped: int = 0  # rows with every reviewer column empty
    rows: int = 0


def restore_cell(value: str) -> str:
    """A cell as it was before the export neutralised it: ``'=x`` -> ``=x`` (only before a formula start)."""
    if value.startswith("'") and value[1:].startswith(_FORMULA_START):
        return value[1:]
    return value


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except UnicodeDecodeError as exc:
        raise ImportRejected(path, [f"the file is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                    "save it as CSV UTF-8"], whole_file=True) from None
    except csv.Error as exc:
        raise ImportRejected(path, [f"the file is not readable CSV: {exc}"], whole_file=True) from None
    return header, rows


def parse_file(client: Any, path: str | Path, reviewer: str, *, now: datetime | None = None) -> ImportResult:
    """Check every row of ``path`` and build its labels, storing nothing; :class:`ImportRejected` on any bad row."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ImportRejected(path, ["no such file"], whole_file=True)
    header, rows = _read(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ImportRejected(path, [f"the header lacks the column(s) {', '.join(missing)} (row 1 is "
                                    f"{', '.join(header[:8]) or 'empty'}): is this a review_sample.csv?"], whole_file=True)
    at = now or datetime.now(timezone.utc)
    result = ImportResult(path, rows=len(rows))
    errors: list[str] = []
    seen: dict[str, int] = {}
    candidates: list[tuple[int, dict[str, str]]] = []
    for number, raw in enumerate(rows, start=2):
        if None in raw:  # more cells than the header has names
            errors.append(f"row {number}: {len(raw[None])} cell(s) more than the header's {len(header)} columns")  # type: ignore[index]
            continue
        row = {key: restore_cell(value or "") for key, value in raw.items()}
        if not any(row.get(c, "").strip() for c in REVIEWER_COLUMNS):
            result.skipped += 1
            continue
        candidates.append((number, row))
    known = _known_traces(client, [row["trace_id"].strip() for _, row in candidates if row["trace_id"].strip()])
    for number, row in candidates:
        trace = row["trace_id"].strip()
        where = f"row {number}" + (f" (trace {trace})" if trace else "")
        problems = []
        if not trace:
            problems.append("no trace_id")
        elif trace not in known:
            problems.append("trace_id is not a call in this store (another store, or past the retention)")
        elif trace in seen:
            problems.append(f"trace_id already given on row {seen[trace]}")
        verdict = tags = None
        if not row.get("reviewer_verdict", "").strip():
            problems.append("reviewer columns are filled in but reviewer_verdict is empty (accept or reject)")
        else:
            try:
                verdict = parse_verdict(row["reviewer_verdict"])
            except ValueError as exc:
                problems.append(str(exc))
        try:
            tags = parse_tags(row.get("reviewer_tags", ""))
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            errors.append(f"{where}: " + "; ".join(problems))
            continue
        seen[trace] = number
        assert verdict is not None and tags is not None
        result.labels.append(Label(trace, reviewer, verdict, tags, row.get("reviewer_edited_output", ""),
                                   row.get("reviewer_notes", ""), row.get("event_id", "").strip(), "import", at))
    if errors:
        raise ImportRejected(path, errors)
    return result


def _known_traces(client: Any, traces: list[str]) -> set[str]:
    if not traces:
        return set()
    rows = client.query("SELECT DISTINCT trace_id FROM events WHERE has({traces:Array(String)}, trace_id)",
                        parameters={"traces": sorted(set(traces))}).result_rows
    return {str(r[0]) for r in rows}


def import_file(client: Any, path: str | Path, reviewer: str, *, now: datetime | None = None,
                dry_run: bool = False) -> ImportResult:
    """Import the reviewers' labels of ``path`` as ``reviewer``: every row or, when any is bad, none."""
    result = parse_file(client, path, reviewer, now=now)
    if not dry_run:
        save_labels(client, result.labels)
    log.info("review: %s: %d label(s) %s, %d unreviewed row(s) skipped", result.path, len(result.labels),
             "checked" if dry_run else "imported", result.skipped)
    return result
