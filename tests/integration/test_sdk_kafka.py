"""100k events through the decorator to a real Kafka broker that is stopped for over 10 s mid-stream.

Every event must arrive exactly once (by event_id): those in the producer when the broker
stops are retried by the idempotent producer, those made during the outage are spilled to disk
and replayed when it returns.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

import llmsight
from tests.kafka import kafka_broker  # noqa: F401  (the session fixture)

TOTAL = 100_000
OUTAGE_S = 10.0


def consume(bootstrap: str, topic: str, expected: int, timeout: float) -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, fetch_max_bytes=64 * 1024 * 1024)
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500, max_records=20_000)
            for records in batch.values():
                values.extend(r.value for r in records)
            if len(values) >= expected:
                # Keep reading a little longer: a duplicate would arrive after the expected count.
                quiet_until = quiet_until or time.monotonic() + 2
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    # The producer's heartbeats (its counters, for the loss audit) ride the same topic; they are not events.
    return [v for v in values if json.loads(v).get("type") != "heartbeat"]


def test_100k_events_survive_a_broker_outage_exactly_once(kafka_broker, tmp_path, monkeypatch, caplog):  # noqa: F811
    caplog.set_level(logging.CRITICAL, logger="kafka")  # the planned outage makes kafka-python log every retry
    topic = kafka_broker.create_topic(partitions=3)
    monkeypatch.setenv("LLMSIGHT_SPILL_DIR", str(tmp_path / "spill"))
    llmsight.init(sink=f"kafka://{kafka_broker.bootstrap}/{topic}", queue_size=TOTAL, batch_size=2000,
                  flush_interval=0.1, redact=False)

    @llmsight.monitor(name="outage")
    def ask(i):
        return "ok"

    try:
        for i in range(40_000):
            ask(str(i))
        deadline = time.monotonic() + 60
        while llmsight.stats()["sent"] < 20_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        sent_before_outage = llmsight.stats()["sent"]
        kafka_broker.stop()  # mid-stream: part of the first 40k is still queued or in flight
        stopped = time.monotonic()
        i = 40_000
        while i < 70_000:  # calls keep coming while the broker is away
            for _ in range(3000):
                ask(str(i))
                i += 1
            time.sleep(0.3)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        outage = time.monotonic() - stopped
        spilled_during_outage = llmsight.stats()["spilled"]
        kafka_broker.start()
        for i in range(70_000, TOTAL):
            ask(str(i))
        assert llmsight.flush(120) is True
        counts = llmsight.stats()
    finally:
        llmsight.shutdown(10)

    assert 20_000 <= sent_before_outage < 40_000
    assert outage >= OUTAGE_S
    assert spilled_during_outage > 0  # the spill path was exercised, not just producer retries
    assert counts["sent"] == TOTAL and counts["dropped"] == 0 and counts["failed"] == 0
    values = consume(kafka_broker.bootstrap, topic, TOTAL, timeout=90)
    events = [json.loads(v) for v in values]
    ids = Counter(e["event_id"] for e in events)
    assert len(values) == TOTAL
    assert len(ids) == TOTAL and max(ids.values()) == 1
    assert sorted(int(e["input"]) for e in events) == list(range(TOTAL))


def test_shutdown_while_the_broker_is_down_keeps_events_for_the_next_start(kafka_broker, tmp_path, monkeypatch,  # noqa: F811
                                                                           caplog):
    """Events still inside the producer when the app exits during an outage are spilled by the exit
    flush (a forced close fails them back to us) and replayed by the next client."""
    caplog.set_level(logging.CRITICAL, logger="kafka")
    topic = kafka_broker.create_topic(partitions=1)
    monkeypatch.setenv("LLMSIGHT_SPILL_DIR", str(tmp_path / "spill"))
    sink_url = f"kafka://{kafka_broker.bootstrap}/{topic}"

    @llmsight.monitor(name="exit-during-outage")
    def ask(i):
        return "ok"

    llmsight.init(sink=sink_url, flush_interval=0.05)
    try:
        for i in range(3000):
            ask(str(i))
        assert llmsight.flush(30) is True
        kafka_broker.stop()
        for i in range(3000, 5000):
            ask(str(i))  # handed to the producer: Kafka has not been judged unreachable yet
        time.sleep(0.5)
    finally:
        assert llmsight.shutdown(3) is True
    first = llmsight.stats()
    assert first == {"sent": 3000, "dropped": 0, "spilled": 2000, "failed": 0}

    kafka_broker.start()
    llmsight.init(sink=sink_url, flush_interval=0.05)
    try:
        assert llmsight.flush(60) is True
    finally:
        llmsight.shutdown(5)
    assert llmsight.stats() == {"sent": 2000, "dropped": 0, "spilled": 0, "failed": 0}
    values = consume(kafka_broker.bootstrap, topic, 5000, timeout=60)
    events = [json.loads(v) for v in values]
    assert len({e["event_id"] for e in events}) == len(events) == 5000
    assert sorted(int(e["input"]) for e in events) == list(range(5000))
