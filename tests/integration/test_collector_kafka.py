"""The collector on a real Kafka broker and real chdb: poison messages, and collectors sharing a
topic's partitions through a rebalance."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import clickhouse_connect
from kafka import KafkaProducer

from llmsight.collector import Collector, source_from_url

# Yesterday, not a fixed date: rows past the store's 90-day TTL vanish on a merge.
DAY = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()


def events(n: int, seed: int) -> list[bytes]:
    """n events, one in ten a feedback event, with event_ids drawn from ``seed``."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if i % 10 == 9:
            event = {"type": "feedback", "schema_version": 1, "event_id": event_id, "trace_id": f"t{i - 1}",
                     "ts": f"{DAY}T10:00:01Z", "accepted": i % 20 == 9}
        else:
            event = {"type": "llm_call", "schema_version": 1, "event_id": event_id, "trace_id": f"t{i}",
                     "ts": f"{DAY}T10:00:00.123456Z", "service": "bank", "name": "answer",
                     "model": "m1", "input": f"question {i}", "output": f"answer {i}",
                     "latency_ms": 100 + i % 50, "tokens_in": 12, "tokens_out": 40}
        out.append(json.dumps(event, separators=(",", ":")).encode())
    return out


def produce(bootstrap: str, topic: str, values: list[bytes | None]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20, acks=1)
    try:
        for value in values:
            producer.send(topic, value, key=None if value is not None else b"tombstone")
        producer.flush(timeout=60)
    finally:
        producer.close()


def stored(client: Any) -> tuple[int, int]:
    """(rows after FINAL, distinct event_ids) over events and feedback."""
    row = client.query(
        "SELECT count(), uniqExact(event_id) FROM "
        "(SELECT event_id FROM events FINAL UNION ALL SELECT event_id FROM feedback FINAL)").result_rows[0]
    return int(row[0]), int(row[1])


def test_poison_messages_land_in_dead_letters_and_their_neighbours_are_stored(kafka_broker, store_client) -> None:
    topic = kafka_broker.create_topic(partitions=1)
    good = events(6, seed=1)
    poison: list[tuple[bytes | None, str]] = [
        (b'{"type": "llm_call", "schema_version": 1, ', "bad JSON: "),
        (json.dumps({**json.loads(good[0]), "schema_version": 2}).encode(), "unknown schema_version 2"),
        (json.dumps({k: v for k, v in json.loads(good[1]).items() if k != "name"}).encode(),
         "llm_call: missing required field 'name'"),
        (json.dumps({**json.loads(good[2]), "tokens_in": "12"}).encode(),
         "llm_call: field 'tokens_in' must be int or null, got str"),
        (b"\xc3\x28 not utf-8", "bad JSON: "),
        (json.dumps({**json.loads(good[3]), "input": "x" * 3000}).encode(), "message of "),
        (None, "empty message (no value)"),
    ]
    values: list[bytes | None] = []
    for i, (bad, _reason) in enumerate(poison):  # good, bad, good, bad, ...: offset 2i+1 is poison i
        values += [good[i % len(good)], bad]
    values.append(good[5])
    produce(kafka_broker.bootstrap, topic, values)

    source = source_from_url(f"kafka://{kafka_broker.bootstrap}/{topic}", group_id=f"g-{topic}")
    stats = Collector(source, store_client, max_message_bytes=2000, http_port=0).run_until_idle(timeout_s=90)

    assert stats.messages == len(values)
    assert stored(store_client) == (6, 6)
    rows = store_client.query("SELECT source, reason, hex(raw) FROM dead_letters ORDER BY source").result_rows
    by_source = {r[0]: (r[1], r[2]) for r in rows}
    assert len(rows) == len(poison)
    for i, (bad, reason) in enumerate(poison):
        got_reason, got_raw = by_source[f"kafka://{topic}/0/{2 * i + 1}"]
        assert got_reason.startswith(reason), got_reason
        expected_raw = b"" if bad is None else bad[:2000]
        assert got_raw == expected_raw.hex().upper()
    # Committed: a second run in the same group finds nothing new.
    again = source_from_url(f"kafka://{kafka_broker.bootstrap}/{topic}", group_id=f"g-{topic}")
    assert Collector(again, store_client, http_port=0).run_until_idle(timeout_s=90).messages == 0


def test_two_collectors_share_the_partitions_and_a_rebalance_loses_and_repeats_nothing(
        kafka_broker, store_client, store_url, store_database) -> None:
    topic = kafka_broker.create_topic(partitions=4)
    url = f"kafka://{kafka_broker.bootstrap}/{topic}"
    values = events(30_000, seed=2)
    # A second client handle on the same chdb engine, as a second writer thread would have.
    other_client = clickhouse_connect.get_client(dsn=store_url, database=store_database)
    stops = [threading.Event(), threading.Event()]
    sources = [source_from_url(url, group_id=f"g-{topic}") for _ in range(2)]
    # The first collector holds everything it reads (a batch of a minute, a million messages),
    # so the rebalance finds it with a batch in hand, which it must insert and commit on revoke.
    collectors = [Collector(sources[0], store_client, http_port=0, batch_events=10**6, batch_seconds=60),
                  Collector(sources[1], other_client, http_port=0, batch_events=2000)]
    threads = [threading.Thread(target=c.run, args=(s,)) for c, s in zip(collectors, stops, strict=True)]

    def trickle() -> None:  # a steady stream, so the rebalance meets a half-filled batch
        for start in range(0, len(values), 1000):
            produce(kafka_broker.bootstrap, topic, values[start:start + 1000])
            time.sleep(0.2)

    producer = threading.Thread(target=trickle)
    try:
        producer.start()
        threads[0].start()
        wait_for(lambda: collectors[0].stats().messages > 2000, "the first collector to read a few thousand")
        # The second member joins mid-stream: the first one inserts and commits on revoke.
        threads[1].start()
        wait_for(lambda: all(len(s._consumer.assignment()) == 2 for s in sources), "two partitions each")
        producer.join(timeout=120)
        wait_for(lambda: sum(c.stats().messages for c in collectors) >= 30_000
                 and all(c.stats().lag == 0 for c in collectors), "all 30000 messages")
    finally:
        producer.join(timeout=120)
        for stop in stops:
            stop.set()
        for thread in threads:
            if thread.ident:
                thread.join(timeout=60)
    first, second = (c.stats() for c in collectors)
    assert first.revoke_flushes >= 1  # the rebalance met the batch in hand, and it was flushed
    assert first.events + first.feedback > 0 and second.events + second.feedback > 0
    # Every message was read exactly once across the two members (nothing replayed), and stored once.
    assert first.messages + second.messages == 30_000
    assert stored(store_client) == (30_000, 30_000)
    assert store_client.query("SELECT count() FROM dead_letters").result_rows[0][0] == 0


def wait_for(condition: Any, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_after_an_error_a_second_run_reads_the_uncommitted_batches_again(kafka_broker, store_client) -> None:
    topic = kafka_broker.create_topic(partitions=2)
    produce(kafka_broker.bootstrap, topic, events(6000, seed=4))
    source = source_from_url(f"kafka://{kafka_broker.bootstrap}/{topic}", group_id=f"g-{topic}")
    polls = {"n": 0}
    real_poll = source.poll

    def failing_poll(timeout_s: float, max_messages: int, max_bytes: int) -> Any:
        polls["n"] += 1
        if polls["n"] > 3 and collector._inflight is not None and len(collector._batch) > 0:
            raise OSError("injected failure with a batch in flight and the next one half read")
        return real_poll(timeout_s, min(max_messages, 500), max_bytes)

    source.poll = failing_poll  # type: ignore[method-assign]
    collector = Collector(source, store_client, http_port=0, batch_events=1000)
    try:
        collector.run_until_idle(timeout_s=60)
        raise AssertionError("the injected failure should have escaped")
    except OSError:
        pass
    assert 0 < stored(store_client)[0] < 6000
    source.poll = real_poll  # type: ignore[method-assign]
    collector.run_until_idle(timeout_s=90)
    assert stored(store_client) == (6000, 6000)
    # Committed to the end: a fresh member of the group finds nothing left.
    again = source_from_url(f"kafka://{kafka_broker.bootstrap}/{topic}", group_id=f"g-{topic}")
    assert Collector(again, store_client, http_port=0).run_until_idle(timeout_s=90).messages == 0
