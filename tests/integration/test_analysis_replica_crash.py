"""A worker process killed (SIGKILL) mid-window: the window still completes once, with the rows of a run
without the kill.

Real components: worker processes started with `llmsight analyzers --role worker`, a real Kafka broker,
and one chdb store shared by every process through `llmsight store serve` (chdb allows one process per
data directory; the server is ClickHouse's HTTP interface over it, reached with clickhouse-connect).
The reference run and the coordinator run in the test process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from llmsight import store
from llmsight.analyzers.windows import Window, floor_time, read_metrics, segments_in
from llmsight.scheduler.roles import Coordinator
from llmsight.scheduler.service import AnalyzerService, ScheduleSettings
from tests.integration.test_analysis_replicas import comparable, queue_for, seed_calls, wait_for, window_state
from tests.integration.test_store_server import start_server

SEGMENTS = 8


def group_members(bootstrap: str, group: str) -> int:
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="llmsight-tests")
    try:
        described = admin.describe_groups([group])[group]
        return len(described.get("members") or []) if described.get("group_state") == "Stable" else 0
    except KafkaError:  # no such group yet: its coordinator is not known
        return 0
    finally:
        admin.close()


def start_worker(name: str, url: str, queue, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LLMSIGHT_CLICKHOUSE_URL": url, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "LLMSIGHT_ANALYSIS_QUEUE": f"kafka://{queue.bootstrap[0]}/{queue.topic}",
           "LLMSIGHT_ANALYSIS_GROUP": queue.group, "LLMSIGHT_ANALYSIS_SESSION_TIMEOUT_S": str(queue.session_s),
           "LLMSIGHT_ANALYSIS_UNIT_SEGMENTS": str(queue.unit_segments), "LLMSIGHT_ANALYZERS_HTTP_PORT": "0",
           "LLMSIGHT_REFERENCE_SECONDS": "3600"}
    out = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "llmsight.cli.app", "analyzers", "--role", "worker"],
                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def units_by(client, window: Window) -> dict[str, int]:
    rows = client.query("SELECT worker, count() FROM analysis_units FINAL WHERE granularity = '1m' AND "
                        "window_start = {w:DateTime('UTC')} GROUP BY worker", parameters={"w": window.start}).result_rows
    return {worker: int(n) for worker, n in rows}


def test_a_worker_killed_mid_window_leaves_the_window_complete_once_with_the_same_rows(
        store_client, kafka_broker, tmp_path):
    now = datetime.now(timezone.utc)
    window = Window(floor_time(now, 60) - timedelta(seconds=120), floor_time(now, 60) - timedelta(seconds=60))
    schedule = ScheduleSettings(window_s=60, lag_s=1, catchup=3, http_port=0)

    # The reference: the same calls analysed by one process, without any kill.
    seed_calls(store_client, window, segments=SEGMENTS)
    AnalyzerService(store_client, schedule=schedule, rules=[], notifier=None).run_window(window)
    expected = comparable(read_metrics(store_client, window))

    server = start_server(tmp_path / "shared-store")
    database = f"t_{uuid.uuid4().hex[:12]}"
    url = f"{server.url}/{database}"
    shared = store.connect(url)
    store.migrate(shared)
    seed_calls(shared, window, segments=SEGMENTS)
    queue = queue_for(kafka_broker)
    workers = {name: start_worker(name, url, queue, tmp_path / f"{name}.log") for name in ("a", "b")}
    coordinator = Coordinator(shared, queue, window_s=60, lag_s=1, catchup=3, rules=[], notifier=None,
                              name="test", weekly_export=False)
    try:
        wait_for(lambda: group_members(kafka_broker.bootstrap, queue.group) == 2, 240, "two workers in the group")
        coordinator.publish(window, segments_in(shared, window))
        # The window's texts are embedded first (one shard per unit), then its analysis units go out.
        wait_for(lambda: coordinator.release_embedded() > 0, 240, "the window's embedding units done")
        # Kill the first worker to finish a unit, while units of the window are still to do.
        wait_for(lambda: bool(units_by(shared, window)), 240, "a first unit done")
        victim = next(name for name, proc in workers.items()
                      if any(worker.endswith(f"-{proc.pid}") for worker in units_by(shared, window)))
        os.killpg(workers[victim].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        done_at_kill = sum(units_by(shared, window).values())
        assert done_at_kill < SEGMENTS, "the window finished before the kill"

        wait_for(lambda: sum(units_by(shared, window).values()) == SEGMENTS, 300, "every unit done after the kill")
        recovered_s = time.monotonic() - killed_at
        wait_for(lambda: coordinator.evaluate_done(datetime.now(timezone.utc)) > 0, 60, "the window evaluated")
        assert coordinator.evaluate_done(datetime.now(timezone.utc)) == 0  # nothing is evaluated twice
        by_worker = units_by(shared, window)
        state = window_state(shared, window)
        evaluations = shared.query("SELECT count() FROM analysis_windows WHERE granularity = '1m' AND "
                                   "window_start = {w:DateTime('UTC')} AND state = 'evaluated'",
                                   parameters={"w": window.start}).result_rows[0][0]
        rows = comparable(read_metrics(shared, window))
    finally:
        coordinator.close()
        for proc in workers.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in workers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        server.stop()
    print(f"worker {victim} killed after {done_at_kill} of {SEGMENTS} units; the window completed "
          f"{recovered_s:.1f} s later; units by worker {by_worker}")
    assert state == "evaluated"
    assert evaluations == 1
    assert rows == expected
