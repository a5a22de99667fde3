"""The collector loop against a fake store (the real one is in the integration tests): batching,
tokens, commit only after the insert, retries while the store is down, stop, HTTP endpoints."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from llmsight.collector import Collector
from llmsight.collector.spool_source import SpoolSource
from llmsight.spool import hostname
from tests.processes import free_port


class FakeStore:
    """Records inserts; the first ``failures`` attempts raise as an unreachable server would.

    The collector writes events and feedback with ``raw_insert`` (JSON columns) and dead letters
    with ``insert`` (Native); both are recorded the same way.
    """

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts = 0
        self.inserts: list[tuple[str, int, str]] = []

    def attempt(self) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store down")

    def insert(self, table: str, data: Any, *, column_names: list[str], column_oriented: bool,
               settings: dict[str, str], column_type_names: list[str] | None = None) -> None:
        assert column_oriented and len(data) == len(column_names)
        assert column_type_names is None or len(column_type_names) == len(column_names)
        self.attempt()
        self.inserts.append((table, len(data[0]), settings["insert_deduplication_token"]))

    def raw_insert(self, table: str, column_names: list[str], insert_block: bytes, *, settings: dict[str, str],
                   fmt: str) -> None:
        assert fmt == "JSONCompactColumns"
        data = json.loads(insert_block)
        assert len(data) == len(column_names)
        self.attempt()
        self.inserts.append((table, len(data[0]), settings["insert_deduplication_token"]))

    def create_insert_context(self, table: str, column_names: list[str]) -> Any:
        return SimpleNamespace(column_types=[SimpleNamespace(name="String") for _ in column_names])


# Yesterday: inside the collector's accepted range [now - retention, now + 1 day] on any day the tests run.
DAY = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")


def event_line(i: int) -> bytes:
    return json.dumps({"type": "llm_call", "schema_version": 1, "event_id": str(uuid.uuid4()),
                       "trace_id": f"t{i}", "ts": f"{DAY}T10:00:00Z", "service": "s", "name": "n",
                       "latency_ms": 1.0}).encode() + b"\n"


def spool_with(tmp_path: Path, lines: list[bytes]) -> tuple[SpoolSource, str]:
    base = f"1700000000000-{hostname()}-4194999-000001"
    (tmp_path / f"{base}.jsonl").write_bytes(b"".join(lines))
    return SpoolSource(tmp_path), base


def positions(tmp_path: Path) -> dict[str, Any] | None:
    path = tmp_path / ".collector" / "positions.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_batches_close_at_the_count_and_carry_their_source_range_as_token(tmp_path: Path) -> None:
    lines = [event_line(i) for i in range(5)]
    source, base = spool_with(tmp_path, lines)
    store = FakeStore()
    stats = Collector(source, store, batch_events=2, http_port=0).run_until_idle(timeout_s=30)
    ends = [sum(len(x) for x in lines[:n]) for n in (0, 2, 4, 5)]
    assert store.inserts == [("events", 2, f"{base}-{ends[0]}-{ends[1]}"),
                             ("events", 2, f"{base}-{ends[1]}-{ends[2]}"),
                             ("events", 1, f"{base}-{ends[2]}-{ends[3]}")]
    assert (stats.messages, stats.events, stats.batches) == (5, 5, 3)
    assert not (tmp_path / f"{base}.jsonl").exists()  # closed and stored: removed


def test_nothing_is_committed_while_the_store_is_down_and_the_retry_reuses_the_token(tmp_path: Path) -> None:
    source, base = spool_with(tmp_path, [event_line(0), b"not json\n"])
    store = FakeStore(failures=3)
    seen_positions = []
    original_attempt = store.attempt

    def watching_attempt() -> None:
        seen_positions.append(positions(tmp_path))
        original_attempt()

    store.attempt = watching_attempt  # type: ignore[method-assign]
    stats = Collector(source, store, retry_max_s=0.05, http_port=0).run_until_idle(timeout_s=30)
    assert seen_positions[:4] == [None, None, None, None]  # no commit before the insert succeeded
    token = f"{base}-0-{len(event_line(0)) + 9}"
    assert store.inserts == [("events", 1, token), ("dead_letters", 1, token)]
    assert (stats.insert_errors, stats.events, stats.dead_letters, stats.store_up) == (3, 1, 1, True)
    assert positions(tmp_path) is not None


def test_a_stop_during_an_outage_gives_the_batch_up_without_committing(tmp_path: Path) -> None:
    source, base = spool_with(tmp_path, [event_line(0)])
    store = FakeStore(failures=10**9)
    stop = threading.Event()
    collector = Collector(source, store, retry_max_s=0.05, http_port=0, batch_seconds=0.01)
    collector._stop_grace_s = 0.3
    thread = threading.Thread(target=collector.run, args=(stop,))
    thread.start()
    time.sleep(0.5)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    stats = collector.stats()
    assert stats.events == 0 and stats.dropped_batches == 1 and stats.insert_errors >= 2
    assert positions(tmp_path) is None
    assert (tmp_path / f"{base}.jsonl").exists()  # still there to be read again


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_health_and_readiness_follow_the_store(tmp_path: Path) -> None:
    source, _base = spool_with(tmp_path, [event_line(i) for i in range(3)] + [b"[]\n"])
    store = FakeStore(failures=10**9)
    port = free_port()
    stop = threading.Event()
    collector = Collector(source, store, retry_max_s=0.05, http_port=port, batch_seconds=0.01)
    thread = threading.Thread(target=collector.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while store.attempts < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get(port, "/healthz")[0] == 200
        assert get(port, "/readyz")[0] == 503  # the store is down
        store.failures = 0
        while collector.stats().batches < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get(port, "/readyz")[0] == 200
        status, body = get(port, "/metrics")
        assert status == 200
        assert 'llmsight_collector_rows_total{table="events"} 3.0' in body
        assert 'llmsight_collector_dead_letters_total{kind="bad_schema"} 1.0' in body
        assert "llmsight_collector_insert_errors_total" in body and "llmsight_collector_lag" in body
        assert get(port, "/nope")[0] == 404
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


class FlakySpool(SpoolSource):
    """A spool source whose poll fails once, after ``fail_after`` polls."""

    def __init__(self, directory: Path, fail_after: int) -> None:
        super().__init__(directory)
        self.polls = 0
        self.fail_after = fail_after

    def poll(self, timeout_s: float, max_messages: int, max_bytes: int) -> Any:
        self.polls += 1
        if self.polls == self.fail_after:
            raise OSError("disk hiccup")
        return super().poll(timeout_s, max_messages, max_bytes)


def test_run_can_be_called_again_after_an_error_and_stores_everything_once(tmp_path: Path) -> None:
    lines = [event_line(i) for i in range(10)]
    base = f"1700000000000-{hostname()}-4194999-000001"
    (tmp_path / f"{base}.jsonl").write_bytes(b"".join(lines))
    source = FlakySpool(tmp_path, fail_after=4)
    store = FakeStore()
    # One message per poll, two per batch: the error comes with a batch sealed and in flight.
    source_poll = source.poll
    source.poll = lambda timeout_s, max_messages, max_bytes: source_poll(timeout_s, 1, max_bytes)  # type: ignore[method-assign]
    collector = Collector(source, store, batch_events=2, http_port=0)
    stop = threading.Event()
    try:
        collector.run(stop)
    except OSError as exc:
        assert str(exc) == "disk hiccup"
    else:
        raise AssertionError("the poll error should have escaped run()")
    stats = collector.run_until_idle(timeout_s=30)
    tokens = [t for _table, _n, t in store.inserts]
    ends = [sum(len(x) for x in lines[:n]) for n in range(0, 11, 2)]
    # What was inserted before the error but not committed is inserted again with the same token.
    assert sorted(set(tokens)) == sorted(f"{base}-{a}-{b}" for a, b in zip(ends, ends[1:], strict=False))
    assert stats.running is False and stats.events >= 10
    assert not (tmp_path / f"{base}.jsonl").exists()  # committed to its end, so removed


def test_the_gc_threshold_is_raised_while_collectors_run_and_restored_after_the_last(tmp_path: Path) -> None:
    import gc

    from llmsight.collector import collector as collector_module

    before = gc.get_threshold()
    seen = []

    class Store(FakeStore):
        def raw_insert(self, *args: Any, **kwargs: Any) -> None:
            seen.append(gc.get_threshold()[0])
            super().raw_insert(*args, **kwargs)

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Collector(spool_with(tmp_path / "a", [event_line(0)])[0], Store(), http_port=0)
    second = Collector(spool_with(tmp_path / "b", [event_line(1)])[0], Store(), http_port=0)
    # Overlapping runs (as two collectors of one process would): the first to stop must not put the
    # threshold back while the other still runs, and the last one must.
    collector_module._raise_gc_threshold()
    try:
        first.run_until_idle(timeout_s=30)
        assert gc.get_threshold() == (max(before[0], collector_module._GC_YOUNG_THRESHOLD), *before[1:])
        second.run_until_idle(timeout_s=30)
    finally:
        collector_module._restore_gc_threshold()
    assert seen == [max(before[0], collector_module._GC_YOUNG_THRESHOLD)] * 2
    assert gc.get_threshold() == before
