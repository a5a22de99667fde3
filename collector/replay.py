"""Re-submit dead letters after an upgrade: ``llmsight dead-letters replay [--since] [--reason] [--dry-run]``.

The dead letters are read back as a :class:`Source` and go through the collector as any message
does (decode, validation, the ts window, bisection of rows the store refuses, dedup tokens), so a
replay stores exactly what a collector would store now:

* a dead letter that is valid now (a ``schema_version`` this collector learned, a row the store
  refused before a fix) is stored in its table, its ``source`` the original one plus
  `` (replayed) #n``;
* one that fails again stays where it is: nothing is inserted into ``dead_letters`` again, and
  the replay reports it by kind;
* dead letters are not deleted (they leave with the TTL), so a second replay submits them again
  and nothing changes: ClickHouse drops a block whose token it has seen (the token is a hash of
  the raw messages) and ``ReplacingMergeTree`` folds any other copy by ``event_id``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from llmsight.collector.batch import Batch, Chunk, ts_window
from llmsight.collector.collector import Collector
from llmsight.collector.source import Checkpoint, Source

log = logging.getLogger("llmsight.collector")

_PAGE = 2000


def _where(since: dt.datetime | None, reason: str | None) -> tuple[str, dict[str, Any]]:
    clauses, params = ["1"], {}
    if since is not None:
        clauses.append("received_at >= {since:DateTime64(3, 'UTC')}")
        params["since"] = since
    if reason:
        # A kind (unknown_schema_version, ts_out_of_range, rejected, ...) or words of the reason.
        clauses.append("(kind = {reason:String} OR positionCaseInsensitiveUTF8(reason, {reason:String}) > 0)")
        params["reason"] = reason
    return " AND ".join(clauses), params


def count_dead_letters(client: Any, since: dt.datetime | None = None, reason: str | None = None) -> int:
    where, params = _where(since, reason)
    return int(client.query(f"SELECT count() FROM dead_letters WHERE {where}", parameters=params).result_rows[0][0])


class DeadLetterSource(Source):
    """The dead letters matching ``since``/``reason`` as a source, read a page at a time in a fixed order."""

    def __init__(self, client: Any, since: dt.datetime | None = None, reason: str | None = None,
                 page: int = _PAGE) -> None:
        self.url = "dead_letters"
        self.client = client
        self.page = page
        self._where, self._params = _where(since, reason)
        self._total = count_dead_letters(client, since, reason)
        self._read = 0  # rows handed out
        self._sealed = 0  # rows up to the last checkpoint
        self._raws: list[bytes] = []  # rows handed out since the last checkpoint

    def _fetch(self, offset: int, limit: int) -> list[tuple[str, bytes]]:
        # A snapshot order that later inserts (received_at now) do not disturb.
        result = self.client.query(
            f"SELECT source, raw FROM dead_letters WHERE {self._where} "
            "ORDER BY received_at, source, cityHash64(raw) LIMIT {limit:UInt64} OFFSET {offset:UInt64}",
            parameters={**self._params, "limit": limit, "offset": offset},
            column_formats={"raw": "bytes"})
        return [(str(source), bytes(raw)) for source, raw in result.result_rows]

    def poll(self, timeout_s: float, max_messages: int, max_bytes: int) -> list[Chunk]:
        limit = min(max_messages, self.page, self._total - self._read)
        if limit <= 0:
            return []
        rows = self._fetch(self._read, limit)
        chunks = []
        for i, (source, raw) in enumerate(rows):
            chunks.append(Chunk(f"{source} (replayed) #", [self._read + i], [raw]))
            self._raws.append(raw)
        self._read += len(rows)
        if len(rows) < limit:  # rows left with the TTL meanwhile
            self._total = self._read
        return chunks

    def checkpoint(self) -> Checkpoint | None:
        if self._read == self._sealed:
            return None
        digest = hashlib.sha1()
        for raw in self._raws:
            digest.update(hashlib.sha1(raw).digest())
        checkpoint = Checkpoint(f"replay-{digest.hexdigest()}", self._read, [f"dead_letters-{self._sealed}-{self._read}"])
        self._sealed = self._read
        self._raws = []
        return checkpoint

    def commit(self, checkpoint: Checkpoint) -> None:
        return None

    def rewind(self) -> None:
        self._read = self._sealed
        self._raws = []

    def idle(self) -> bool:
        return self._read >= self._total


@dataclass
class ReplayReport:
    selected: int = 0  # dead letters matching the filters
    stored: dict[str, int] = field(default_factory=dict)  # table -> rows stored (or, dry run, storable)
    failed_again: dict[str, int] = field(default_factory=dict)  # dead-letter kind -> rows
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"selected": self.selected, "stored": self.stored, "failed_again": self.failed_again,
                "dry_run": self.dry_run}


def replay(client: Any, since: dt.datetime | None = None, reason: str | None = None, *,
           dry_run: bool = False, retention_days: int | None = None) -> ReplayReport:
    """Re-submit the matching dead letters through the collector's path; see the module docstring."""
    source = DeadLetterSource(client, since, reason)
    report = ReplayReport(selected=source._total, dry_run=dry_run)
    if dry_run:
        # Validation only: what the store's refusals would add is known only by inserting.
        window = ts_window(retention_days)
        kinds: Counter[str] = Counter()
        stored: Counter[str] = Counter()
        while not source.idle():
            batch = Batch(1 << 62, window)
            for chunk in source.poll(0, _PAGE, 1 << 62):
                batch.add(chunk)
            stored.update(events=batch.n_events, feedback=batch.n_feedback, producer_heartbeats=batch.n_heartbeats)
            kinds.update(d.kind for d in batch.dead_letters)
            source.checkpoint()
        report.stored, report.failed_again = dict(stored), dict(kinds)
        return report
    # Every raw message was within the size limit of the collector that received it, or is a
    # too_large dead letter's first bytes: the replay takes any size.
    collector = Collector(source, client, http_port=0, dead_letters=False, retention_days=retention_days,
                          max_message_bytes=1 << 62, batch_seconds=3600.0)
    stats = collector.run_until_idle(threading.Event())
    report.stored = {"events": stats.events, "feedback": stats.feedback, "producer_heartbeats": stats.heartbeats}
    report.failed_again = dict(stats.dead_letter_kinds)
    return report
