"""The loss audit after a crash (issue 15, item 10): three producers write events and heartbeats
through the SDK's file sink (or a Kafka producer with the SDK's acks=all); a collector is SIGKILLed twice mid-stream and restarted; in the end
`llmsight audit` balances for every producer, per hour and in total: sent = stored + dead letters.
A fourth producer whose heartbeat claims more than it wrote shows as a loss (the audit can fail).

Until the SDK stamps ``producer_id`` on its events and sends heartbeats itself, this test does both,
as the SDK will: a top-level ``producer_id`` on each llm_call and feedback event, and a heartbeat with
the sink's own counters (``llmsight.sinks.Stats``) at the end of each hour.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from llmsight.sinks import FileSink, Stats
from tests.integration.test_collector_crash import collector_env, free_port, rows_stored

HOURS = 3
PER_HOUR = 7000
KILLS = 2


def line(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


class KafkaLines:
    """Writes lines to a topic as the SDK's Kafka sink does (keyed, acks=all) and counts them as sent."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaProducer

        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=1 << 20)
        self.topic = topic
        self.writer = self

    def send(self, batch: list[tuple[str, bytes]], stats: Stats) -> None:
        self.write([line for _key, line in batch], [key for key, _line in batch])
        stats.add(sent=len(batch))

    def write(self, lines: list[bytes], keys: list[str] | None = None) -> None:
        for i, value in enumerate(lines):
            self.producer.send(self.topic, value.rstrip(b"\n"), key=(keys[i] if keys else "hb").encode())
        self.producer.flush(timeout=60)

    def close(self) -> None:
        self.producer.close()


def write_producers(sink, base: datetime, rng: random.Random) -> dict[str, dict[str, int]]:  # type: ignore[no-untyped-def]
    """Interleaved batches of three producers (and one that over-reports); returns each one's final counters."""
    producers = {f"p-{name}": (service, Stats()) for name, service in (("a", "bank"), ("b", "bank"), ("c", "cards"))}
    producers["p-lossy"] = ("cards", Stats())
    for hour in range(HOURS):
        start = base + timedelta(hours=hour)
        for producer, (service, stats) in producers.items():
            n = 50 if producer == "p-lossy" else PER_HOUR
            batch = []
            for i in range(n):
                ts = (start + timedelta(seconds=i * 3000 / n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                common = {"schema_version": 1, "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                          "ts": ts, "producer_id": producer}
                if i % 10 == 9:
                    event = {"type": "feedback", **common, "trace_id": f"{producer}-{hour}-{i - 1}", "accepted": True}
                else:
                    event = {"type": "llm_call", **common, "trace_id": f"{producer}-{hour}-{i}", "service": service,
                             "name": "answer", "input": f"question {i}", "latency_ms": 120.0}
                if producer == "p-b" and hour == 1 and i == 5:
                    event["schema_version"] = 2  # sent, but this collector cannot store it: a dead letter
                batch.append((event["trace_id"], line(event)))
            for at in range(0, len(batch), 500):
                sink.send(batch[at:at + 500], stats)
            if producer == "p-a":
                stats.add(dropped=3 * (hour + 1), failed=hour)  # counted by the SDK, never sent
            counters = stats.snapshot()
            if producer == "p-lossy":
                counters["sent"] += 7 * (hour + 1)  # claims 7 more each hour than it wrote: 21 lost
            beat = {"type": "heartbeat", "schema_version": 1, "event_id": str(uuid.uuid4()),
                    "ts": (start + timedelta(minutes=59, seconds=59)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "producer_id": producer, "service": service, "environment": "production", "host": "web-1",
                    "pid": 1000 + len(producer), "started_at": base.isoformat(), **counters}
            sink.writer.write([line(beat)])  # heartbeats are not counted in `sent`
    sink.writer.close()  # type: ignore[attr-defined]
    return {p: s.snapshot() for p, (_service, s) in producers.items()}


def kill_twice_then_finish(source: str, db: Path, rng: random.Random) -> list[float]:
    killed_at = []
    for kill in range(KILLS):
        port = free_port()
        log_path = db.parent / f"collector-{kill}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "llmsight.cli.app", "collector", "--source", source],
                                    env=collector_env(db, port), stdout=subprocess.DEVNULL, stderr=log)
        target = rng.uniform(3_000, 12_000)
        deadline = time.monotonic() + 120
        try:
            while rows_stored(port) < target:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.3))
            killed_at.append(rows_stored(port))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    final = subprocess.run([sys.executable, "-m", "llmsight.cli.app", "collector", "--source", source,
                            "--until-idle"], env=collector_env(db, 0), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    return killed_at


def audit(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmsight.cli.app", "audit", "--from", "5h", *args],
                          env=collector_env(db, 0), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("transport", ["spool", "kafka"])
def test_the_audit_balances_after_a_collector_is_killed_mid_stream(transport: str, tmp_path: Path,
                                                                   request: pytest.FixtureRequest) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    base = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS)
    if transport == "kafka":
        broker = request.getfixturevalue("kafka_broker")
        topic = broker.create_topic(partitions=4)
        sink: object = KafkaLines(broker.bootstrap, topic)
        source = f"kafka://{broker.bootstrap}/{topic}"
    else:
        sink = FileSink(str(tmp_path / "spool"), segment_bytes=2 * 1024 * 1024, fsync="never")
        source = f"file://{tmp_path / 'spool'}"
    counters = write_producers(sink, base, rng)
    killed_at = kill_twice_then_finish(source, tmp_path / "chdb", rng)
    assert all(k > 0 for k in killed_at)

    out = audit(tmp_path / "chdb", "--json")
    assert out.returncode == 1, out.stderr[-3000:]  # p-lossy is not balanced
    report = json.loads(out.stdout.strip().splitlines()[-1])
    totals = {t["producer_id"]: t for t in report["totals"]}
    assert set(totals) == {"p-a", "p-b", "p-c", "p-lossy"}
    for producer in ("p-a", "p-b", "p-c"):
        t = totals[producer]
        assert t["sent"] == counters[producer]["sent"] == HOURS * PER_HOUR
        assert (t["stored"] + t["dead_letters"], t["missing"]) == (t["sent"], 0), t
    assert totals["p-b"]["dead_letters"] == 1 and totals["p-a"]["dead_letters"] == 0
    assert (totals["p-a"]["dropped"], totals["p-a"]["failed"]) == (3 + 6 + 9, 0 + 1 + 2)
    assert (totals["p-lossy"]["sent"], totals["p-lossy"]["stored"], totals["p-lossy"]["missing"]) == (171, 150, 21)
    # Each hour balances too: the heartbeats close each hour.
    hours = [h for h in report["hours"] if h["producer_id"] != "p-lossy"]
    assert len(hours) == 3 * HOURS and all(h["missing"] == 0 for h in hours)
    assert report["unattributed"] == []

    text = audit(tmp_path / "chdb")
    print(text.stdout)  # the audit as a person reads it (pytest -s shows it)
    assert "LOSS" in text.stdout and text.stdout.count(" ok") >= 3
