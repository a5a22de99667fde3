"""Erase one user: every row that holds their id or text, in the store and in the export folders.

What belongs to a user (:func:`find_subject`): their calls (``events.user_id``), every call of the
traces those calls belong to, and the feedback on those traces or sent under their id. What is done
(:func:`erase_user`):

* ``events``, ``feedback``, ``evaluations`` (the judges' reasons may quote an answer) and
  ``review_labels`` (edited answers, comments): those rows are deleted;
* ``embeddings``: the vectors of their texts (the cache keys come from ``embedding_keys``, which the
  caller supplies: the store does not know how the analyzers hash and split texts);
* ``metrics.details`` and ``alerts.evidence``: the examples that quote their texts or trace ids are
  taken out of the JSON (the rows, the figures and the other examples stay);
* ``dead_letters``: the raw messages that carry their id, trace ids, event ids or texts are deleted.

Statements are mutations (``ALTER TABLE ... DELETE`` / ``UPDATE``) with ``mutations_sync = 2``:
they rewrite the parts that held the rows, so the text leaves the disk (a lightweight ``DELETE``
only masks rows until a merge), they work on chdb and on a server alike, and the command returns
once every replica has applied them. On a cluster they go to the ``_local`` tables ``ON CLUSTER``.
The statements carry SHA-256 digests of the ids and texts, never the values, because ClickHouse
keeps the text of recent mutations (``system.mutations``).

:func:`erase_exports` does the same to the weekly export folders (``LLMSIGHT_EXPORT_DIR``): Parquet
and CSV files are rewritten without the rows (or the examples), HTML reports that quote them are
removed (rerun the export of that week to rebuild one), zips beside changed files are removed.

Texts are matched by their first :data:`QUOTE_CHARS` characters (what the analyzers quote of a text
is a prefix of it); texts shorter than :data:`MIN_TEXT_CHARS` match only through their row.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmsight.store import cluster as cluster_sql

log = logging.getLogger("llmsight.store.erase")

QUOTE_CHARS = 200  # the analyzers quote at least the first 200 characters of a text
MIN_TEXT_CHARS = 8  # shorter texts ("ok", "thanks") are too common to mark anything as theirs
ERASED = "[erased]"
_CHUNK = 200  # needles per multiSearchAny (ClickHouse takes fewer than 256)
_MUTATION = {"mutations_sync": 2}

EmbeddingKeys = Callable[[str, str], Iterable[str]]  # (model, text) -> text_hash values


@dataclass
class Subject:
    """What identifies one user's data."""

    user_id: str
    trace_ids: set[str] = field(default_factory=set)
    event_ids: set[str] = field(default_factory=set)
    texts: set[str] = field(default_factory=set)

    def quotes(self) -> list[str]:
        """The strings whose presence in a value marks it as theirs (raw, unescaped)."""
        found = {t[:QUOTE_CHARS] for t in self.texts if len(t.strip()) >= MIN_TEXT_CHARS}
        found |= self.trace_ids | self.event_ids
        if len(self.user_id) >= MIN_TEXT_CHARS:
            found.add(self.user_id)
        return sorted(n for n in found if n)

    def sql_needles(self) -> list[str]:
        """:meth:`quotes` as they appear inside JSON text (escaped, with and without ``ensure_ascii``),
        plus the user id as a JSON field, for searching JSON columns and raw messages in SQL."""
        out: set[str] = set()
        for quote in self.quotes():
            out.update((quote, json.dumps(quote, ensure_ascii=False)[1:-1], json.dumps(quote)[1:-1]))
        user = json.dumps(self.user_id, ensure_ascii=False)
        out.update((f'"user_id":{user}', f'"user_id": {user}'))
        return sorted(n for n in out if n)

    def mentions(self, value: str) -> bool:
        return any(q in value for q in self.quotes())


@dataclass
class Erased:
    """One line of the report: a table or a file, what was (or would be) done, how many rows."""

    where: str
    action: str
    rows: int

    def line(self, dry_run: bool) -> str:
        verb = {"deleted": "would delete", "rewrote": "would rewrite", "removed": "would remove"}
        action = verb.get(self.action, f"would {self.action}") if dry_run else self.action
        return f"{self.where}: {action} {self.rows} row{'s' if self.rows != 1 else ''}" if self.rows >= 0 \
            else f"{self.where}: {action}"


@dataclass
class EraseReport:
    user_id: str
    dry_run: bool
    traces: int = 0
    tables: list[Erased] = field(default_factory=list)
    files: list[Erased] = field(default_factory=list)  # paths relative to export_dir
    export_dir: str = ""

    def lines(self) -> list[str]:
        head = "would erase" if self.dry_run else "erased"
        out = [f"{head} user {self.user_id!r}: {self.traces} trace{'s' if self.traces != 1 else ''}"]
        out += [f"  {e.line(self.dry_run)}" for e in self.tables]
        if self.files:
            out.append(f"  export files in {self.export_dir}:")
            out += [f"    {e.line(self.dry_run)}" for e in self.files]
        else:
            out.append(f"  export files in {self.export_dir or '(none)'}: none hold their rows or texts")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "dry_run": self.dry_run, "traces": self.traces, "export_dir": self.export_dir,
                "tables": {e.where: {"action": e.action, "rows": e.rows} for e in self.tables},
                "files": {e.where: {"action": e.action, "rows": e.rows} for e in self.files}}


# -- finding them --------------------------------------------------------------------------------------

def _digest(value: str) -> str:
    """What ``hex(SHA256(value))`` gives in ClickHouse."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest().upper()


def _chunks(items: list[str], size: int = _CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def find_subject(client: Any, user_id: str) -> Subject:
    """The user's trace ids, event ids and texts, read from ``events`` and ``feedback``."""
    if not user_id:
        raise ValueError("an empty user id matches every anonymous call: give the user id to erase")
    subject = Subject(user_id)
    params: dict[str, Any] = {"user": user_id}
    subject.trace_ids.update(r[0] for r in client.query(
        "SELECT DISTINCT trace_id FROM events WHERE user_id = {user:String}", parameters=params).result_rows)
    # Feedback sent under their id, on calls that carry no other user's id.
    subject.trace_ids.update(r[0] for r in client.query(
        "SELECT DISTINCT trace_id FROM feedback WHERE user_id = {user:String} AND trace_id NOT IN "
        "(SELECT trace_id FROM events WHERE user_id NOT IN ('', {user:String}))", parameters=params).result_rows)
    subject.trace_ids.discard("")
    traces = sorted(subject.trace_ids)
    for chunk in [*_chunks(traces, 5000)] or [[]]:
        rows = client.query(
            "SELECT toString(event_id), input, output, error FROM events "
            "WHERE user_id = {user:String} OR (has({traces:Array(String)}, trace_id) AND user_id = '')",
            parameters={**params, "traces": chunk}).result_rows
        for event_id, *texts in rows:
            subject.event_ids.add(event_id)
            subject.texts.update(t for t in texts if t)
        rows = client.query(
            "SELECT toString(event_id), comment, edited_output FROM feedback "
            "WHERE user_id = {user:String} OR has({traces:Array(String)}, trace_id)",
            parameters={**params, "traces": chunk}).result_rows
        for event_id, *texts in rows:
            subject.event_ids.add(event_id)
            subject.texts.update(t for t in texts if t)
    return subject


# -- scrubbing JSON ------------------------------------------------------------------------------------

def scrub(value: Any, subject: Subject) -> Any:
    """``value`` (parsed JSON) without what quotes the subject: list items that mention them are
    dropped (an example, a topic's example text), other strings that do become :data:`ERASED`."""
    if isinstance(value, dict):
        return {k: scrub(v, subject) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, subject) for v in value if not _mentions_any(v, subject)]
    if isinstance(value, str) and subject.mentions(value):
        return ERASED
    return value


def _mentions_any(value: Any, subject: Subject) -> bool:
    if isinstance(value, str):
        return subject.mentions(value)
    if isinstance(value, dict):
        return any(_mentions_any(v, subject) for v in value.values())
    if isinstance(value, list):
        return any(_mentions_any(v, subject) for v in value)
    return False


def scrub_text(text: str, subject: Subject) -> str:
    """A JSON document without the subject's quotes; text that is not JSON and mentions them becomes ''."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return "" if subject.mentions(text) else text
    cleaned = scrub(parsed, subject)
    return text if cleaned == parsed else json.dumps(cleaned, sort_keys=True, ensure_ascii=False)


# -- the store -----------------------------------------------------------------------------------------

class _Tables:
    """Where reads and mutations go: the plain tables, or on a cluster the ``_local`` tables ON CLUSTER."""

    def __init__(self, client: Any, cluster: str | None) -> None:
        self.client = client
        self.cluster = cluster
        self.existing = {r[0] for r in client.query("SHOW TABLES").result_rows}

    def target(self, table: str) -> str:
        if self.cluster:
            return (f"`{self.client.database}`.{table}{cluster_sql.LOCAL_SUFFIX} "
                    f"{cluster_sql.on_cluster(self.cluster)}")
        return f"`{self.client.database}`.{table}"

    def count(self, table: str, where: str, params: dict[str, Any]) -> int:
        return int(self.client.query(f"SELECT count() FROM {table} WHERE {where}", parameters=params).result_rows[0][0])

    def delete(self, table: str, where: str, params: dict[str, Any]) -> None:
        self.client.command(f"ALTER TABLE {self.target(table)} DELETE WHERE {where}", parameters=params,
                            settings=_MUTATION)

    def matching(self, table: str, column: str, needles: list[str], extra: str = "") -> list[str]:
        """The distinct values of a String column that contain any of ``needles``."""
        found: set[str] = set()
        for chunk in _chunks(needles):
            found.update(r[0] for r in self.client.query(
                f"SELECT DISTINCT {column} FROM {table} WHERE {column} != '' {extra} "
                f"AND multiSearchAny({column}, {{needles:Array(String)}})",
                parameters={"needles": chunk}).result_rows)
        return sorted(found)


def erase_user(client: Any, user_id: str, *, dry_run: bool = False, cluster: str | None = None,
               embedding_keys: EmbeddingKeys | None = None, subject: Subject | None = None) -> EraseReport:
    """Remove the user's rows from every table (see the module docstring); ``dry_run`` only counts."""
    subject = subject or find_subject(client, user_id)
    report = EraseReport(user_id, dry_run, traces=len(subject.trace_ids))
    tables = _Tables(client, cluster)
    user = {"user": _digest(user_id), "traces": sorted(_digest(t) for t in subject.trace_ids)}
    by_user = "hex(SHA256(user_id)) = {user:String}"
    in_traces = "has({traces:Array(String)}, hex(SHA256(trace_id)))"
    plan = [("events", f"{by_user} OR ({in_traces} AND user_id = '')"), ("feedback", f"{by_user} OR {in_traces}")]
    # The judges' verdicts (their reasons may quote the answer) and the reviewers' labels (edited
    # answers, comments) on the user's traces.
    plan += [(table, in_traces) for table in ("evaluations", "review_labels") if table in tables.existing]
    for table, where in plan:
        rows = tables.count(table, where, user)
        if rows and not dry_run:
            tables.delete(table, where, user)
        report.tables.append(Erased(table, "deleted", rows))

    if embedding_keys is not None and "embeddings" in tables.existing:
        models = [r[0] for r in client.query("SELECT DISTINCT model FROM embeddings").result_rows]
        keys = sorted({k for model in models for text in subject.texts for k in embedding_keys(model, text)})
        rows = 0
        for chunk in _chunks(keys, 5000):
            params = {"keys": chunk}
            count = tables.count("embeddings", "has({keys:Array(String)}, text_hash)", params)
            if count and not dry_run:
                tables.delete("embeddings", "has({keys:Array(String)}, text_hash)", params)
            rows += count
        report.tables.append(Erased("embeddings", "deleted", rows))
    elif "embeddings" in tables.existing:
        report.tables.append(Erased("embeddings", "not checked (no embedding key function)", -1))

    needles = subject.sql_needles()
    for table, column in (("metrics", "details"), ("alerts", "evidence")):
        old = tables.matching(table, column, needles)
        params = {"old": [_digest(t) for t in old], "new": [scrub_text(text, subject) for text in old]}
        where = f"has({{old:Array(String)}}, hex(SHA256({column})))"
        rows = tables.count(table, where, params) if old else 0
        if rows and not dry_run:
            client.command(f"ALTER TABLE {tables.target(table)} UPDATE {column} = transform(hex(SHA256({column})), "
                           f"{{old:Array(String)}}, {{new:Array(String)}}, {column}) WHERE {where}",
                           parameters=params, settings=_MUTATION)
        report.tables.append(Erased(f"{table}.{column}", "rewrote", rows))

    raw = tables.matching("dead_letters", "raw", needles)
    params = {"raws": [_digest(t) for t in raw]}
    rows = tables.count("dead_letters", "has({raws:Array(String)}, hex(SHA256(raw)))", params) if raw else 0
    if rows and not dry_run:
        tables.delete("dead_letters", "has({raws:Array(String)}, hex(SHA256(raw)))", params)
    report.tables.append(Erased("dead_letters", "deleted", rows))
    log.info("erase: %s", "; ".join(report.lines()))
    return report


# -- the export folders --------------------------------------------------------------------------------

ID_COLUMNS = ("user_id", "trace_id", "event_id")


def erase_exports(export_dir: str | Path, subject: Subject, *, dry_run: bool = False) -> list[Erased]:
    """Rewrite or remove the export files that hold the subject's rows or quote their texts."""
    root = Path(export_dir).expanduser()
    done: list[Erased] = []
    if not root.is_dir():
        return done
    changed_dirs: set[Path] = set()
    zips: list[Path] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        if suffix == ".zip":
            zips.append(path)
            continue
        if suffix == ".parquet":
            outcome = _parquet(path, subject, dry_run)
        elif suffix == ".csv":
            outcome = _csv(path, subject, dry_run)
        else:
            outcome = _other(path, subject, dry_run)
        if outcome is not None:
            done.append(Erased(str(path.relative_to(root)), outcome.action, outcome.rows))
            changed_dirs.add(path.parent)
    for path in zips:
        if path.parent in changed_dirs:  # a bundle of files that just changed
            if not dry_run:
                path.unlink()
            done.append(Erased(str(path.relative_to(root)), "removed", -1))
    return done


def _id_match(column: str, value: Any, subject: Subject) -> bool:
    if value is None:
        return False
    text = str(value)
    return (column == "user_id" and text == subject.user_id) or \
        (column == "trace_id" and text in subject.trace_ids) or (column == "event_id" and text in subject.event_ids)


def _clean_cell(value: Any, subject: Subject) -> tuple[Any, bool]:
    """(new value, whether the row must go): JSON is scrubbed, ' | '-joined examples lose the items that
    quote the subject, any other text that quotes them makes the row go."""
    if not isinstance(value, str) or not subject.mentions(value):
        return value, False
    stripped = value.lstrip()
    if stripped.startswith(("{", "[")):
        cleaned = scrub_text(value, subject)
        if cleaned and not subject.mentions(cleaned):
            return cleaned, False
    if " | " in value:
        kept = [part for part in value.split(" | ") if not subject.mentions(part)]
        return " | ".join(kept), False
    return value, True


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    mode = path.stat().st_mode & 0o777
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    temp = Path(name)
    try:
        write(temp)
        os.chmod(temp, mode)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def _parquet(path: Path, subject: Subject, dry_run: bool) -> Erased | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    columns = table.column_names
    rows = table.to_pylist()
    kept: list[dict[str, Any]] = []
    changed = 0
    for row in rows:
        if any(_id_match(c, row.get(c), subject) for c in ID_COLUMNS if c in row):
            continue
        drop, touched = False, False
        for column in columns:
            new, must_go = _clean_cell(row[column], subject)
            drop = drop or must_go
            if new is not row[column]:
                row[column], touched = new, True
        if drop:
            continue
        changed += touched
        kept.append(row)
    removed = len(rows) - len(kept)
    if not removed and not changed:
        return None
    if not dry_run:
        schema = table.schema
        cleaned = pa.Table.from_pylist(kept, schema=schema)
        _write_atomically(path, lambda temp: pq.write_table(cleaned, temp, compression="zstd", write_statistics=True))
    return Erased(str(path), "rewrote", removed + changed)


def _csv(path: Path, subject: Subject, dry_run: bool) -> Erased | None:
    text = path.read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    fields = list(reader.fieldnames or [])
    rows = list(reader)
    kept: list[dict[str, Any]] = []
    changed = 0
    for row in rows:
        if any(_id_match(c, row.get(c), subject) for c in ID_COLUMNS if c in row):
            continue
        cleaned = {c: _clean_cell(v, subject) for c, v in row.items()}
        if any(must_go for _, must_go in cleaned.values()):
            continue
        new = {c: v for c, (v, _) in cleaned.items()}
        changed += new != row
        kept.append(new)
    removed = len(rows) - len(kept)
    if not removed and not changed:
        return None
    if not dry_run:
        def write(temp: Path) -> None:
            with temp.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
                writer.writeheader()
                writer.writerows(kept)
        _write_atomically(path, write)
    return Erased(str(path), "rewrote", removed + changed)


def _other(path: Path, subject: Subject, dry_run: bool) -> Erased | None:
    """HTML, JSON and anything else: removed when it quotes the subject (as text or HTML-escaped)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    forms = {f for q in subject.quotes() for f in (q, html.escape(q), html.escape(q, quote=False),
                                                  json.dumps(q, ensure_ascii=False)[1:-1], json.dumps(q)[1:-1])}
    if not any(f in text for f in forms if f):
        return None
    if not dry_run:
        path.unlink()
    return Erased(str(path), "removed", -1)
