"""Crash and replay: 200k events, the collector process SIGKILLed at three random points and
restarted each time; in the end every event is stored exactly once (count() FINAL and
uniqExact(event_id) both 200k), from Kafka and from the spool.

The collector runs as `llmsight collector` in a subprocess with a chdb directory of its own
(chdb allows one process per directory); the test opens that directory only after the last
collector has exited, from one more subprocess.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from llmsight.spool import SpoolWriter
from tests.integration.test_collector_kafka import events, produce
from tests.processes import free_port

TOTAL = 200_000
KILLS = 3


def collector_env(db: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "LLMSIGHT_CLICKHOUSE_URL": f"chdb://{db}?database=crash",
        "LLMSIGHT_COLLECTOR_HTTP_PORT": str(port),
        # A killed member's partitions move after this; the broker's minimum is 6 s.
        "LLMSIGHT_COLLECTOR_SESSION_TIMEOUT_S": "6",
        "LLMSIGHT_COLLECTOR_GROUP": "crash-test",
    })
    return env


def rows_stored(port: int) -> float:
    """The running collector's own count of stored rows, from its /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            body = response.read().decode()
    except OSError:
        return 0.0
    return sum(float(v) for v in re.findall(r'^llmsight_collector_rows_total\{table="(?:events|feedback)"\} (\S+)$',
                                            body, flags=re.M))


def crash_and_replay(source: str, db: Path, rng: random.Random) -> list[float]:
    """Start, SIGKILL after a random number of stored rows, three times; then run until idle."""
    killed_at = []
    for kill in range(KILLS):
        port = free_port()
        # The log goes to a file: a pipe nobody reads while the collector runs can fill and block it.
        log_path = db.parent / f"collector-{kill}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "llmsight.cli.app", "collector", "--source", source],
                                    env=collector_env(db, port), stdout=subprocess.DEVNULL, stderr=log)
        # Each process counts only its own rows, and what earlier processes stored is gone from the
        # source, so a target past what remains is never reached: aim within half of what is left
        # (the rows counted before each kill bound what was consumed; replays only over-count).
        remaining = TOTAL - sum(killed_at)
        target = rng.uniform(5_000, min(45_000, remaining / 2))
        deadline = time.monotonic() + 120
        try:
            while rows_stored(port) < target:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, (f"the collector made no progress in 120 s (target {target:.0f}, "
                                                     f"stored {rows_stored(port)}):\n{log_path.read_text()[-3000:]}")
                time.sleep(0.05)
            time.sleep(rng.uniform(0, 0.5))  # land anywhere in the batch cycle
            killed_at.append(rows_stored(port))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    final = subprocess.run([sys.executable, "-m", "llmsight.cli.app", "collector", "--source", source, "--until-idle"],
                           env=collector_env(db, 0), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    return killed_at


def count_stored(db: Path) -> dict[str, int]:
    """Open the collector's chdb directory in a fresh process, now that no collector holds it."""
    script = (
        "import json; from llmsight import store\n"
        f"c = store.connect('chdb://{db}', 'crash')\n"
        "q = lambda sql: int(c.query(sql).result_rows[0][0])\n"
        "union = '(SELECT event_id FROM events FINAL UNION ALL SELECT event_id FROM feedback FINAL)'\n"
        "print(json.dumps({'final': q('SELECT count() FROM ' + union),\n"
        "                  'unique': q('SELECT uniqExact(event_id) FROM ' + union),\n"
        "                  'dead': q('SELECT count() FROM dead_letters')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kafka_crash_and_replay_stores_every_event_once(kafka_broker, tmp_path: Path) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    topic = kafka_broker.create_topic(partitions=4)
    produce(kafka_broker.bootstrap, topic, events(TOTAL, seed=11))
    killed_at = crash_and_replay(f"kafka://{kafka_broker.bootstrap}/{topic}", tmp_path / "chdb", rng)
    assert all(k > 0 for k in killed_at)
    assert count_stored(tmp_path / "chdb") == {"final": TOTAL, "unique": TOTAL, "dead": 0}


def test_spool_crash_and_replay_stores_every_event_once(tmp_path: Path) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    spool = tmp_path / "spool"
    writer = SpoolWriter(spool, segment_bytes=4 * 1024 * 1024, fsync="never")  # ~20 segments
    values = events(TOTAL, seed=12)
    for start in range(0, TOTAL, 2000):
        writer.write([v + b"\n" for v in values[start:start + 2000]])
    writer.close()
    killed_at = crash_and_replay(f"file://{spool}", tmp_path / "chdb", rng)
    assert all(k > 0 for k in killed_at)
    assert count_stored(tmp_path / "chdb") == {"final": TOTAL, "unique": TOTAL, "dead": 0}
    left = [p.name for p in spool.iterdir() if p.name != ".collector"]
    assert left == []  # every segment stored and removed


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            body = response.read().decode()
    except OSError:
        return -1.0
    found = re.search(rf"^{name} (\S+)$", body, flags=re.M)
    return float(found.group(1)) if found else -1.0


def test_sigterm_inserts_the_batch_in_hand_commits_and_exits(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    writer = SpoolWriter(spool, segment_bytes=1 << 30, fsync="never")
    writer.write([v + b"\n" for v in events(3000, seed=13)])
    writer.close()
    port = free_port()
    env = collector_env(tmp_path / "chdb", port)
    # A batch that would wait a minute: only SIGTERM can make the collector insert it now.
    env.update({"LLMSIGHT_COLLECTOR_BATCH_SECONDS": "60", "LLMSIGHT_COLLECTOR_BATCH_EVENTS": "100000"})
    proc = subprocess.Popen([sys.executable, "-m", "llmsight.cli.app", "collector", "--source", f"file://{spool}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while metric(port, "llmsight_collector_messages_total") < 3000:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert metric(port, "llmsight_collector_batches_total") == 0  # read, not yet inserted
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "3000 messages" in out
    assert count_stored(tmp_path / "chdb") == {"final": 3000, "unique": 3000, "dead": 0}
    assert [p.name for p in spool.iterdir()] == [".collector"]  # committed, so the segment is gone
