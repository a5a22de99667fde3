"""Nothing vanishes silently (issue 15, items 7-9), on real chdb through a spool: timestamps the store
would drop or keep for decades are dead letters; a batch the store keeps refusing is bisected and
its refused rows are dead letters; an unknown schema_version is a dead letter that
`llmsight dead-letters replay` stores after an upgrade, idempotently."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmsight.collector import Collector
from llmsight.collector.batch import REJECTED, TS_OUT_OF_RANGE, UNKNOWN_VERSION
from llmsight.collector.replay import replay
from llmsight.collector.spool_source import SpoolSource
from llmsight.spool import SpoolWriter

NOW = datetime.now(timezone.utc)


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def call(i: int, ts: datetime | str | None = None, **fields: Any) -> bytes:
    stamp = ts if isinstance(ts, str) else iso(ts or NOW - timedelta(hours=1))
    event = {"type": "llm_call", "schema_version": 1, "event_id": str(uuid.uuid4()), "trace_id": f"t{i}",
             "ts": stamp, "service": "bank", "name": "answer", "input": f"question {i}", "latency_ms": 10.0,
             **fields}
    return json.dumps(event).encode()


def spool(tmp_path: Path, values: list[bytes]) -> SpoolSource:
    directory = tmp_path / "spool"
    writer = SpoolWriter(directory, segment_bytes=1 << 30, fsync="never")
    writer.write([v + b"\n" for v in values])
    writer.close()
    return SpoolSource(directory)


def dead_letters(client: Any) -> list[tuple[str, str, bytes]]:
    rows = client.query("SELECT kind, reason, raw FROM dead_letters ORDER BY received_at, source",
                        column_formats={"raw": "bytes"}).result_rows
    return [(str(k), str(r), bytes(raw)) for k, r, raw in rows]


def stored_ids(client: Any) -> set[str]:
    return {str(r[0]) for r in client.query("SELECT event_id FROM events FINAL").result_rows}


# -- 7. Timestamps outside [now - retention, now + 1 day] -------------------------------------------

def test_timestamps_the_store_would_drop_or_keep_for_decades_are_dead_letters(tmp_path, store_client) -> None:
    # Good rows in every month of the 90-day window: the per-insert partition cap must fit them all.
    good = [call(i, NOW - timedelta(days=d)) for i, d in enumerate((0, 1, 30, 60, 89))]
    good.append(call(9, NOW + timedelta(hours=20)))  # a producer clock slightly ahead: kept
    bad = {
        "2150": call(10, "2150-01-01T00:00:00Z"),
        "year 1": call(11, "0001-01-01T00:00:00Z"),
        "1970": call(12, "1970-01-01T00:00:00Z"),
        "past retention": call(13, NOW - timedelta(days=91)),
        "two days ahead": call(14, NOW + timedelta(days=2)),
    }
    stats = Collector(spool(tmp_path, good + list(bad.values())), store_client, http_port=0,
                      retention_days=90).run_until_idle(timeout_s=60)

    assert stats.events == len(good)  # today the 2150 row (and the others) counted as inserted
    assert len(stored_ids(store_client)) == len(good)
    dead = dead_letters(store_client)
    assert sorted(raw for _k, _r, raw in dead) == sorted(bad.values())
    assert {kind for kind, _r, _raw in dead} == {TS_OUT_OF_RANGE}
    reasons = {json.loads(raw)["trace_id"]: reason for _k, reason, raw in dead}
    assert reasons["t10"].startswith("ts 2150-01-01T00:00:00+00:00 is outside the stored range [")
    assert "1 day ahead of the collector's clock" in reasons["t10"]
    assert "older than the retention (now − 90 days" in reasons["t11"]
    # No partition outside the window: year-1 and 2150 rows would have made ones that live for decades.
    partitions = {int(r[0]) for r in store_client.query(
        "SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = 'events' "
        "AND active").result_rows}
    earliest = NOW - timedelta(days=90)
    assert min(partitions) >= earliest.year * 100 + earliest.month
    assert max(partitions) <= (NOW + timedelta(days=1)).year * 100 + (NOW + timedelta(days=1)).month
    assert stats.dead_letter_kinds == {TS_OUT_OF_RANGE: len(bad)}


# -- 8. A batch the store keeps refusing ------------------------------------------------------------

def test_a_batch_the_store_keeps_refusing_is_bisected_and_the_refused_rows_are_dead_letters(
        tmp_path, store_client) -> None:
    # An operator's constraint: the store answers every insert holding a poison row with an error.
    store_client.command("ALTER TABLE events ADD CONSTRAINT no_poison CHECK input != 'poison'")
    values = [call(i) for i in range(600)]
    poison_at = (3, 250, 251, 599)
    for i in poison_at:
        values[i] = call(i, input="poison")
    collector = Collector(spool(tmp_path, values), store_client, http_port=0, batch_events=200)
    stats = collector.run_until_idle(timeout_s=90)  # today: retried for ever, nothing stored

    assert stats.events == 600 - len(poison_at)
    assert len(stored_ids(store_client)) == 600 - len(poison_at)
    dead = dead_letters(store_client)
    assert sorted(raw for _k, _r, raw in dead) == sorted(values[i] for i in poison_at)  # the raw message, kept
    assert all(kind == REJECTED for kind, _r, _raw in dead)
    assert all(r.startswith("events: the store rejected this row: ") and "VIOLATED_CONSTRAINT" in r
               for _k, r, _raw in dead)
    assert stats.rejected == len(poison_at) and stats.bisected_batches == 3  # each batch of 200 held poison
    # The rows of a refused batch that the store took are stored once (the halves' tokens dedup retries).
    assert int(store_client.query("SELECT count() FROM events").result_rows[0][0]) == 600 - len(poison_at)


# -- 9. Unknown schema_version, and the replay after an upgrade -------------------------------------

def test_an_unknown_schema_version_waits_in_dead_letters_and_a_replay_stores_it_after_an_upgrade(
        tmp_path, store_client, store_url, store_database, monkeypatch) -> None:
    v2 = [call(i, schema_version=2) for i in range(5)]
    late = call(99, NOW - timedelta(days=400))
    collector = Collector(spool(tmp_path, [call(100), *v2, late]), store_client, http_port=0)
    stats = collector.run_until_idle(timeout_s=60)
    assert stats.events == 1
    dead = dead_letters(store_client)
    versions = [(kind, reason) for kind, reason, _raw in dead if kind == UNKNOWN_VERSION]
    assert len(versions) == 5
    assert all(r.startswith("unknown schema_version 2 (supported: [1])") for _k, r in versions)

    # Before the upgrade a replay stores nothing and adds no dead letter.
    report = replay(store_client, reason=UNKNOWN_VERSION)
    assert (report.selected, report.stored["events"], report.failed_again) == (5, 0, {UNKNOWN_VERSION: 5})
    assert len(dead_letters(store_client)) == 6

    # The upgrade: this collector now knows schema_version 2 (the same fields, here).
    import llmsight.collector.batch as batch_module
    import llmsight.collector.decode as decode_module
    import llmsight.schema as schema_module
    for module in (schema_module, decode_module):
        monkeypatch.setattr(module, "SUPPORTED_SCHEMA_VERSIONS", frozenset({1, 2}))
    monkeypatch.setattr(batch_module, "SUPPORTED", frozenset({1, 2}))

    runner = CliRunner()
    env = {"LLMSIGHT_CLICKHOUSE_URL": f"{store_url}?database={store_database}"}
    dry = runner.invoke(_cli(), ["dead-letters", "replay", "--dry-run", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output.strip().splitlines()[-1]) == {
        "selected": 6, "dry_run": True, "failed_again": {TS_OUT_OF_RANGE: 1},
        "stored": {"events": 5, "feedback": 0, "producer_heartbeats": 0}}
    assert len(stored_ids(store_client)) == 1  # a dry run stores nothing

    for _ in range(2):  # idempotent: a second replay changes nothing
        done = runner.invoke(_cli(), ["dead-letters", "replay", "--since", "1h", "--json"], env=env)
        assert done.exit_code == 0, done.output
        assert json.loads(done.output.strip().splitlines()[-1]) == {
            "selected": 6, "dry_run": False, "failed_again": {TS_OUT_OF_RANGE: 1},
            "stored": {"events": 5, "feedback": 0, "producer_heartbeats": 0}}
        assert stored_ids(store_client) >= {json.loads(v)["event_id"] for v in v2}
        assert int(store_client.query("SELECT count() FROM events FINAL").result_rows[0][0]) == 6
        assert len(dead_letters(store_client)) == 6  # what failed again was not inserted again
    sources = {str(r[0]) for r in store_client.query("SELECT source FROM events").result_rows}
    assert sum(" (replayed) #" in s for s in sources) == 5


def _cli() -> Any:
    from llmsight.cli.app import _build

    return _build()


@pytest.fixture(autouse=True)
def _fresh_retention(monkeypatch) -> None:
    monkeypatch.delenv("LLMSIGHT_RETENTION_DAYS", raising=False)
