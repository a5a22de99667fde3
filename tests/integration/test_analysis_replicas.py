"""Analysis shared by replicas through a real Kafka broker, on real chdb with the real analyzers.

* two workers split a window's units, and the rows are the rows one process writes alone;
* the coordinator role moves to another replica when its owner stops, and planning goes on;
* with no worker running, the lag rises and the default lag rule fires.

The replicas here are threads of the test process (one chdb path per process); the crash test with
worker processes is in tests/integration/test_analysis_replica_crash.py.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from llmsight import store
from llmsight.alerts.engine import load_states
from llmsight.alerts.rules import load_rules
from llmsight.analyzers.windows import Window, floor_time, read_metrics
from llmsight.demo.traffic import TrafficGenerator
from llmsight.scheduler.replica import Replica
from llmsight.scheduler.roles import QueueSettings
from llmsight.scheduler.service import AnalyzerService, ScheduleSettings
from llmsight.store import EVENT_COLUMNS, event_row, names
from llmsight.store.queries import analysis_lag

SEGMENTS = 6


def seed_calls(client, window: Window, segments: int = SEGMENTS, per_window: int = 25, seed: int = 7) -> None:
    """``segments`` features with ``per_window`` calls in ``window`` and as many in the half hour before it."""
    gen = TrafficGenerator(seed=seed)
    rows = []
    for s in range(segments):
        for i in range(2 * per_window):
            reference = i < per_window
            ts = (window.start - timedelta(minutes=30) + timedelta(seconds=60 * i) if reference
                  else window.start + timedelta(seconds=(i - per_window) * (window.end - window.start).total_seconds()
                                                / per_window))
            prompt = gen.next("v1")
            rows.append(event_row({
                "event_id": str(uuid.UUID(int=(seed << 64) + s * 1000 + i)), "trace_id": f"t{seed}-{s}-{i}",
                "ts": ts, "service": "bank", "name": f"feature-{s}", "model": "m", "prompt_version": "v1",
                "input": prompt.text, "output": f"Here is how to {prompt.text[:50].lower()}", "latency_ms": 100.0 + i,
                "tokens_in": 10, "tokens_out": 20, "cost_usd": 0.001}, "test"))
    client.insert("events", rows, column_names=EVENT_COLUMNS)


def queue_for(kafka_broker, **overrides) -> QueueSettings:
    name = uuid.uuid4().hex[:8]
    values = {"bootstrap": (kafka_broker.bootstrap,), "topic": f"analysis-{name}", "group": f"analyzers-{name}",
              "partitions": 24, "unit_segments": 1, "session_s": 6.0, "unit_timeout_s": 300.0}
    values.update(overrides)
    return QueueSettings(**values)


def replica(client, queue: QueueSettings, role: str, schedule: ScheduleSettings, name: str, rules=None) -> Replica:
    return Replica(client, queue, role=role, schedule=schedule, rules=rules or [], notifier=None, name=name,
                   weekly_export=False)


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def start_workers(workers: list[Replica], timeout_s: float = 60, *, warm: bool = False) -> None:
    """Start the worker replicas and wait until each holds its even share of the 24 partitions (and, with
    ``warm``, has loaded its models), so that what is published next splits evenly."""
    for w in workers:
        w.start()
    share = 24 // len(workers)
    wait_for(lambda: all((w.worker.ready or not warm) and w.worker.member is not None
                         and len(w.worker.member.assigned) == share for w in workers),
             timeout_s, f"{len(workers)} workers with {share} partitions each")


def window_state(client, window: Window) -> str | None:
    rows = client.query("SELECT state FROM analysis_windows FINAL WHERE granularity = {g:String} "
                        "AND window_start = {w:DateTime('UTC')}", parameters={"g": window.granularity,
                                                                             "w": window.start}).result_rows
    return rows[0][0] if rows else None


def comparable(rows: list[dict]) -> list[tuple]:
    """Metric rows without their write time, lag rows left out, in a total order."""
    keep = ("metric", "service", "name", "model", "prompt_version", "value", "n", "baseline", "p_value",
            "threshold", "details")
    return sorted(tuple(r[k] for k in keep) for r in rows
                  if r["metric"] not in (names.ANALYSIS_LAG_WINDOWS, names.ANALYSIS_LAG_SECONDS))


@pytest.fixture
def second_client(store_url):
    """Another fresh database on the test process's chdb path (for the one-process reference run)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    client = store.connect(store_url, database)
    store.migrate(client)
    yield client
    client.command(f"DROP DATABASE IF EXISTS `{database}`")


def test_two_workers_split_a_window_and_write_the_rows_one_process_writes(store_client, second_client, kafka_broker):
    now = datetime.now(timezone.utc)
    window = Window(floor_time(now, 60) - timedelta(seconds=120), floor_time(now, 60) - timedelta(seconds=60))
    for client in (store_client, second_client):
        seed_calls(client, window)
    schedule = ScheduleSettings(window_s=60, lag_s=1, catchup=3, http_port=0)

    # The reference: one process analyses the window alone.
    alone = AnalyzerService(second_client, schedule=schedule, rules=[], notifier=None)
    alone.run_window(window)
    expected = comparable(read_metrics(second_client, window))
    assert len({(r[1], r[2]) for r in expected}) == SEGMENTS  # every segment has rows

    queue = queue_for(kafka_broker)
    workers = [replica(store_client, queue, "worker", schedule, f"w{i}") for i in range(2)]
    coordinator = replica(store_client, queue, "coordinator", schedule, "c")
    try:
        # Both workers in the group before anything is published, so the split is the even one.
        start_workers(workers)
        coordinator.start()
        wait_for(lambda: window_state(store_client, window) == "evaluated", 240, "the window to be evaluated")
    finally:
        for r in (coordinator, *workers):
            r.shutdown()

    assert comparable(read_metrics(store_client, window)) == expected
    done = store_client.query(
        "SELECT worker, count() FROM analysis_units FINAL WHERE granularity = '1m' AND window_start = {w:DateTime('UTC')} "
        "GROUP BY worker ORDER BY worker", parameters={"w": window.start}).result_rows
    assert done == [("w0", SEGMENTS // 2), ("w1", SEGMENTS // 2)]  # round-robin: three units each
    assert coordinator.coordinator.windows_evaluated >= 1


def test_the_coordinator_moves_when_its_owner_stops_and_planning_goes_on(store_client, kafka_broker):
    queue = queue_for(kafka_broker)
    schedule = ScheduleSettings(window_s=2, lag_s=0.5, catchup=3, http_port=0)
    candidates = [replica(store_client, queue, "coordinator", schedule, f"c{i}") for i in range(2)]
    try:
        for c in candidates:
            c.start()
        wait_for(lambda: sum(c.coordinator.leading for c in candidates) == 1, 60, "one coordinator")
        leader = next(c for c in candidates if c.coordinator.leading)
        other = next(c for c in candidates if c is not leader)
        planned_before = store_client.query("SELECT max(window_start) FROM analysis_windows").result_rows[0][0]
        leader.shutdown()
        stopped = time.monotonic()
        wait_for(lambda: other.coordinator.leading, 30, "the other replica to take over")
        took_over_s = time.monotonic() - stopped
        # It plans on from where the first one stopped: newer windows appear, none is planned twice.
        wait_for(lambda: store_client.query("SELECT max(window_start) FROM analysis_windows").result_rows[0][0]
                 > planned_before, 30, "new windows planned by the new coordinator")
    finally:
        for c in candidates:
            c.shutdown()
    print(f"coordinator handed over in {took_over_s:.1f} s")
    duplicates = store_client.query(
        "SELECT count() FROM (SELECT window_start, count() AS plans FROM analysis_windows FINAL "
        "WHERE granularity = '1m' GROUP BY window_start HAVING plans > 1)").result_rows[0][0]
    assert duplicates == 0
    starts = [r[0] for r in store_client.query(
        "SELECT window_start FROM analysis_windows FINAL WHERE granularity = '1m' ORDER BY window_start").result_rows]
    gaps = [(a, b) for a, b in zip(starts, starts[1:], strict=False) if (b - a).total_seconds() != 2]
    assert gaps == []  # every 2-second window planned, across the hand-over


def test_lag_rises_and_the_default_rule_fires_when_no_worker_runs(store_client, kafka_broker):
    now = datetime.now(timezone.utc)
    start = floor_time(now, 2)
    # Traffic in every upcoming 2-second window, so each has a unit that nobody takes.
    seed_calls(store_client, Window(start, start + timedelta(seconds=40)), segments=1, per_window=40)
    queue = queue_for(kafka_broker)
    schedule = ScheduleSettings(window_s=2, lag_s=0.5, catchup=1, http_port=0)
    rules = [r for r in load_rules() if r.name == "analysis-lag"]
    coordinator = replica(store_client, queue, "coordinator", schedule, "c", rules=rules)
    try:
        coordinator.start()

        def fired() -> bool:
            return any(s.rule == "analysis-lag" and s.state == "firing" for s in load_states(store_client).values())

        wait_for(fired, 90, "the analysis-lag alert to fire")
    finally:
        coordinator.shutdown()
    lag = analysis_lag(store_client, datetime.now(timezone.utc))
    assert lag.windows > 2 and lag.behind and lag.unfinished >= 1  # windows wait for a worker
    state = next(s for s in load_states(store_client).values() if s.rule == "analysis-lag")
    assert state.segment == names.ANALYSIS_SEGMENT
    assert state.value >= 3
