"""Consecutive windows with replicas: a window's drift evidence follows from the window before it.

Two 1-minute windows are due at once (a catch-up). The drift evidence of the second (the CUSUM row
``drift_*_evidence``, and the trailing reference it holds behind a run of evidence) is a step from the
first window's evidence row, so the second window must not be analysed before the first is done. Two
workers on a real Kafka broker and real chdb write, for both windows, the rows one process writes
analysing them in order.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

from llmsight.analyzers.windows import Window, floor_time, read_metrics
from llmsight.demo.traffic import TrafficGenerator
from llmsight.scheduler.roles import Coordinator
from llmsight.scheduler.service import AnalyzerService, ScheduleSettings
from llmsight.store import EVENT_COLUMNS, event_row, names
from tests.integration.test_analysis_replicas import (
    comparable,
    queue_for,
    replica,
    second_client,  # noqa: F401  (a fixture)
    start_workers,
    wait_for,
    window_state,
)

SEGMENTS = 4
PER_WINDOW = 40


def seed_shift(client, first: Window, second: Window) -> None:
    """A reference half hour of v1 questions, then both windows of v2 questions (new topics): drift."""
    gen = TrafficGenerator(seed=11)
    rows = []
    for s in range(SEGMENTS):
        # Ten minutes before ``first`` and earlier: the windows the coordinator catches up before it are empty.
        # 150 of them, so that the reference pool holds 3x a 40-text window (else its tests do not count).
        stamps = [(first.start - timedelta(minutes=40) + timedelta(seconds=12 * i), "v1") for i in range(150)]
        for window in (first, second):
            # The first feature is busy in the first window: its unit there is the slowest one.
            n = 10 * PER_WINDOW if s == 0 and window == first else PER_WINDOW
            stamps += [(window.start + timedelta(seconds=i * 60 / n), "v2") for i in range(n)]
        for i, (ts, version) in enumerate(stamps):
            prompt = gen.next(version)
            rows.append(event_row({
                "event_id": str(uuid.UUID(int=(11 << 64) + s * 10_000 + i)), "trace_id": f"t-{s}-{i}", "ts": ts,
                "service": "bank", "name": f"feature-{s}", "model": "m", "prompt_version": "v1",
                "input": prompt.text, "output": f"Here is how to {prompt.text[:50].lower()}",
                "latency_ms": 100.0 + i, "tokens_in": 10, "tokens_out": 20, "cost_usd": 0.001}, "test"))
    # A feature that only begins in the second window and sorts first: each old segment is in another
    # unit (and partition, and likely worker) in the second window than in the first.
    for i in range(PER_WINDOW):
        prompt = gen.next("v1")
        rows.append(event_row({
            "event_id": str(uuid.UUID(int=(12 << 64) + i)), "trace_id": f"t-new-{i}",
            "ts": second.start + timedelta(seconds=i * 60 / PER_WINDOW), "service": "bank", "name": "alpha",
            "model": "m", "prompt_version": "v1", "input": prompt.text, "output": "Sure.", "latency_ms": 90.0,
            "tokens_in": 10, "tokens_out": 20, "cost_usd": 0.001}, "test"))
    client.insert("events", rows, column_names=EVENT_COLUMNS)


def evidence(rows: list[tuple]) -> list[tuple]:
    return [r for r in rows if r[0] in (names.DRIFT_INPUT_EVIDENCE, names.DRIFT_OUTPUT_EVIDENCE)]


def test_two_windows_due_together_are_analysed_in_order_by_two_workers(store_client, second_client,  # noqa: F811
                                                                        kafka_broker):
    now = datetime.now(timezone.utc)
    second = Window(floor_time(now, 60) - timedelta(seconds=60), floor_time(now, 60))
    first = Window(second.start - timedelta(seconds=60), second.start)
    for client in (store_client, second_client):
        seed_shift(client, first, second)
    schedule = ScheduleSettings(window_s=60, lag_s=1, catchup=2, http_port=0)

    # The reference: one process analyses the two windows in order.
    alone = AnalyzerService(second_client, schedule=schedule, rules=[], notifier=None)
    alone.run_window(first)
    alone.run_window(second)
    expected = {w: comparable(read_metrics(second_client, w)) for w in (first, second)}
    carried = [json.loads(r[-1]) for r in evidence(expected[second])]
    # The workload is one where the order matters: the second window's evidence goes on from a run
    # that began in the first window (its CUSUM and the reference held behind it).
    assert len(carried) == 2 * SEGMENTS
    from_first = [d for d in carried if (d["since"] or "").startswith(first.start.strftime("%Y-%m-%dT%H:%M"))]
    assert len(from_first) >= SEGMENTS, carried

    queue = queue_for(kafka_broker)
    workers = [replica(store_client, queue, "worker", schedule, f"w{i}") for i in range(2)]
    coordinator = Coordinator(store_client, queue, window_s=60, lag_s=1, catchup=5, rules=[], notifier=None,
                              name="c", weekly_export=False)
    published: list[tuple[Window, set[str]]] = []
    publish = coordinator.publish

    def recording_publish(window, segments, planned_at=None):
        # What was done (of both windows) when each window was published.
        done = {str(r[0]) for r in store_client.query(
            "SELECT DISTINCT toString(window_start) FROM analysis_units WHERE granularity = '1m'").result_rows}
        units = publish(window, segments, planned_at)
        if units:
            published.append((window, done))
        return units

    coordinator.publish = recording_publish  # type: ignore[method-assign]
    stop = threading.Event()

    def coordinate() -> None:
        # Both windows are due from the first step (with up to five windows of catch-up; the empty
        # windows after them have no units).
        while not stop.is_set():
            coordinator.step()
            time.sleep(0.3)

    thread = threading.Thread(target=coordinate, daemon=True)
    try:
        start_workers(workers)
        thread.start()
        wait_for(lambda: window_state(store_client, second) == "evaluated", 240, "the second window evaluated")
    finally:
        stop.set()
        thread.join(timeout=30)
        for r in workers:
            r.shutdown()
        coordinator.close()

    assert window_state(store_client, first) == "evaluated"
    for window in (first, second):
        rows = comparable(read_metrics(store_client, window))
        assert evidence(rows) == evidence(expected[window])
        assert rows == expected[window]
    base = [(w, done) for w, done in published if w.granularity == "1m"]
    order = [w for w, _ in base]
    assert order == [first, second]
    for (before, _), (window, done) in zip(base, base[1:], strict=False):
        # Each window went out once the one before it was done.
        assert str(before.start.replace(tzinfo=None)) in done, (window, before, done)
    by_worker = store_client.query(
        "SELECT worker, count() FROM analysis_units FINAL WHERE granularity = '1m' GROUP BY worker ORDER BY worker"
    ).result_rows
    assert [w for w, _ in by_worker] == ["w0", "w1"]  # both workers took units
