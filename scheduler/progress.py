"""Work units and the record of analysis progress (the ``analysis_windows`` and ``analysis_units`` tables).

A due window is cut into **work units**: its segments, sorted, in groups of
``LLMSIGHT_ANALYSIS_UNIT_SEGMENTS``. A unit's id is a function of the window and its place in it, so a
unit planned twice (a coordinator that died between planning and publishing, a republish after a
timeout) is the same unit, and its rows replace each other:

* the metric rows, by the ``metrics`` table's ReplacingMergeTree key (window, segment, metric);
* the unit's row in ``analysis_units``, by (granularity, window, unit id).

A window's row in ``analysis_windows`` says how many units it has (``planned``) and, once every one
is done and the alert rules ran on its rows, ``evaluated``. In one process (``llmsight up``, the
demo) a window is one unit, planned and evaluated by the same call.

With replicas a minute window first goes through **embedding units** (``embed_units``): one per hash
shard of the texts its units will embed, recorded in ``analysis_units`` under ``1m+embed``; its analysis
units are published once they are done, and find every text of the window in the embeddings table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from llmsight.analyzers.windows import BASE_GRANULARITY, MetricRow, Window, write_metrics
from llmsight.store import METRIC_COLUMNS, names
from llmsight.store.names import SEGMENT_KEYS
from llmsight.store.queries import analysis_lag
from llmsight.store.times import utc

LAG_METRICS = (names.ANALYSIS_LAG_WINDOWS, names.ANALYSIS_LAG_SECONDS)
PLANNED = "planned"
EMBED_SUFFIX = "+embed"  # the granularity under which embedding units are recorded
EVALUATED = "evaluated"
WINDOW_COLUMNS = ["granularity", "window_start", "window_end", "units", "state", "planned_at", "updated_at"]
UNIT_COLUMNS = ["granularity", "window_start", "plan", "unit_id", "segments", "metric_rows", "worker", "seconds", "done_at"]


@dataclass(frozen=True)
class WorkUnit:
    """Some segments of one window: what one worker analyses at a time."""

    window: Window
    plan: int  # the window's plan: when it was cut into units, in ms since the epoch
    index: int
    units: int  # how many units the window's plan has
    segments: tuple[tuple[str, ...], ...]  # each in SEGMENT_KEYS order
    shards: int = 0  # an embedding unit (index = its shard) when above 0; see embed_units

    @property
    def embeds(self) -> bool:
        return self.shards > 0

    @property
    def unit_id(self) -> str:
        kind = "e" if self.embeds else ""
        return f"{self.window.granularity}/{int(self.window.start.timestamp())}/{self.plan}/{kind}{self.index}"

    @property
    def granularity(self) -> str:
        """The ``analysis_units`` granularity it is recorded under (embedding units apart: they are not
        among the window's ``units``)."""
        return str(self.window.granularity) + (EMBED_SUFFIX if self.embeds else "")

    @property
    def key(self) -> bytes:
        """The Kafka key: the unit's first segment, so a segment tends to go to the same worker (warm caches)."""
        return "/".join(self.segments[0]).encode() if self.segments else self.unit_id.encode()

    def segment_dicts(self) -> list[dict[str, str]]:
        return [dict(zip(SEGMENT_KEYS, segment, strict=True)) for segment in self.segments]

    def encode(self) -> bytes:
        return json.dumps({"v": 1, "granularity": self.window.granularity,
                           "start": int(self.window.start.timestamp()), "end": int(self.window.end.timestamp()),
                           "plan": self.plan, "index": self.index, "units": self.units,
                           "segments": [list(s) for s in self.segments],
                           **({"shards": self.shards} if self.embeds else {})}, separators=(",", ":")).encode()

    @staticmethod
    def decode(raw: bytes) -> WorkUnit:
        """The unit a message carries; ValueError when the message is not one."""
        try:
            data = json.loads(raw)
            window = Window(datetime.fromtimestamp(int(data["start"]), timezone.utc),
                            datetime.fromtimestamp(int(data["end"]), timezone.utc), str(data["granularity"]))
            segments = tuple(tuple(str(v) for v in s) for s in data["segments"])
            if any(len(s) != len(SEGMENT_KEYS) for s in segments):
                raise ValueError("a segment has the wrong number of keys")
            shards = int(data.get("shards") or 0)
            if shards < 0 or (shards and not 0 <= int(data["index"]) < shards):
                raise ValueError("the shard is out of range")
            return WorkUnit(window, int(data["plan"]), int(data["index"]), int(data["units"]), segments, shards)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a work unit: {exc}") from None


def plan_id(planned_at: datetime) -> int:
    return int(round(planned_at.timestamp() * 1000))


def cut(window: Window, segments: list[dict[str, str]], per_unit: int, plan: int) -> list[WorkUnit]:
    """The window's units: its segments sorted, ``per_unit`` at a time, numbered from 0."""
    keys = sorted(tuple(s[k] for k in SEGMENT_KEYS) for s in segments)
    groups = [tuple(keys[i:i + per_unit]) for i in range(0, len(keys), per_unit)]
    return [WorkUnit(window, plan, i, len(groups), group) for i, group in enumerate(groups)]


def embed_units(window: Window, segments: list[dict[str, str]], shards: int, plan: int) -> list[WorkUnit]:
    """The window's embedding units: each carries every segment and embeds the texts of one hash shard
    (:mod:`llmsight.scheduler.embedding`), so a text shared by segments of different units is embedded once."""
    keys = tuple(sorted(tuple(s[k] for k in SEGMENT_KEYS) for s in segments))
    return [WorkUnit(window, plan, i, shards, keys, shards) for i in range(shards)]


# -- the tables ----------------------------------------------------------------------------------------

def record_window(client: Any, window: Window, units: int, state: str, planned_at: datetime,
                  now: datetime | None = None) -> None:
    """Write (or replace) a window's progress row."""
    now = now or datetime.now(timezone.utc)
    client.insert("analysis_windows", [[window.granularity, window.start, window.end, units, state, planned_at, now]],
                  column_names=WINDOW_COLUMNS)


def record_unit(client: Any, unit: WorkUnit, metric_rows: int, worker: str, seconds: float) -> None:
    """Mark a unit done (after its metric rows were written)."""
    client.insert("analysis_units", [[unit.granularity, unit.window.start, unit.plan, unit.unit_id,
                                      len(unit.segments),
                                      metric_rows, worker, seconds, datetime.now(timezone.utc)]],
                  column_names=UNIT_COLUMNS)


def shards_done(client: Any, window: Window, plan: int) -> int:
    """How many of the embedding units of a window's plan are done."""
    return int(client.query(
        "SELECT uniqExact(unit_id) FROM analysis_units WHERE granularity = {g:String} "
        "AND window_start = {w:DateTime('UTC')} AND plan = {p:UInt64}",
        parameters={"g": window.granularity + EMBED_SUFFIX, "w": window.start, "p": plan}).result_rows[0][0])


def last_planned(client: Any, granularity: str) -> datetime | None:
    """The start of the newest window planned (where a new coordinator resumes)."""
    row = client.query("SELECT max(window_start), count() FROM analysis_windows WHERE granularity = {g:String}",
                       parameters={"g": granularity}).result_rows[0]
    return utc(row[0]) if row[1] else None


@dataclass(frozen=True)
class Unfinished:
    window: Window
    units: int
    planned_at: datetime
    done: frozenset[int]  # indexes of the plan's units already done

    @property
    def plan(self) -> int:
        return plan_id(self.planned_at)


def unfinished(client: Any, granularity: str | None = None) -> list[Unfinished]:
    """Planned windows not yet evaluated, oldest first, with the units of each that are done."""
    where = "" if granularity is None else " AND granularity = {g:String}"
    rows = client.query(
        "SELECT w.granularity, w.window_start, w.window_end, w.units, w.planned_at, "
        "groupUniqArrayIf(toUInt32OrZero(splitByChar('/', u.unit_id)[4]), u.plan = toUInt64(toUnixTimestamp64Milli(w.planned_at))) "
        "FROM (SELECT * FROM analysis_windows FINAL WHERE state = {planned:String}" + where + ") AS w "
        "LEFT JOIN analysis_units AS u ON u.granularity = w.granularity AND u.window_start = w.window_start "
        "GROUP BY w.granularity, w.window_start, w.window_end, w.units, w.planned_at "
        "ORDER BY w.window_start, w.granularity",
        parameters={"planned": PLANNED, "g": granularity or ""}).result_rows
    return [Unfinished(Window(utc(start), utc(end), gran), int(units), utc(planned), frozenset(int(i) for i in done))
            for gran, start, end, units, planned, done in rows]


def lag_rows(client: Any, window: Window, now: datetime) -> list[MetricRow]:
    """The lag at ``now`` as metric rows of ``window`` on llmsight's own analysis segment."""
    lag = analysis_lag(client, now)
    return [MetricRow(window, names.ANALYSIS_SEGMENT, names.ANALYSIS_LAG_WINDOWS, float(lag.windows), 1),
            MetricRow(window, names.ANALYSIS_SEGMENT, names.ANALYSIS_LAG_SECONDS, float(lag.seconds), 1)]


def record_lag(client: Any, rows: list[MetricRow], now: datetime, engine: Any) -> None:
    """Write lag rows and run the lag rules on them."""
    write_metrics(client, rows)
    read = [dict(zip(METRIC_COLUMNS, row.as_list(), strict=True)) for row in rows]
    engine.evaluate(rows[0].window.start, read, BASE_GRANULARITY, now=now)
