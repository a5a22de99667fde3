"""The receiver's Kafka writer without a broker (a fake producer; the real one is in
tests/integration/test_otlp_kafka.py): records of a trace go to one partition chosen from the trace id,
and the in-flight count follows what Kafka has not answered yet, also after a request gave up waiting."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from typing import Any

import pytest

from llmsight.otlp.writer import Busy, KafkaWriter


class FakeFuture:
    def __init__(self) -> None:
        self.is_done = False
        self._event = threading.Event()
        self._callbacks: list[Any] = []

    def done(self) -> None:
        self.is_done = True
        self._event.set()
        for callback in self._callbacks:
            callback(None)

    def get(self, timeout: float) -> None:
        if not self._event.wait(timeout):
            raise type("KafkaTimeoutError", (Exception,), {})()

    def failed(self) -> bool:  # as kafka-python's Future: done with an exception (these never fail)
        return False

    def add_both(self, callback: Any) -> None:
        if self.is_done:
            callback(None)
        else:
            self._callbacks.append(callback)


class FakeProducer:
    def __init__(self, partitions: int, ack: bool = True) -> None:
        self.partitions = partitions
        self.ack = ack
        self.sent: list[tuple[bytes, int | None]] = []
        self.futures: list[FakeFuture] = []

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def send(self, topic: str, value: bytes, key: bytes, partition: int | None = None) -> FakeFuture:
        self.sent.append((key, partition))
        future = FakeFuture()
        self.futures.append(future)
        if self.ack:
            future.done()
        return future


def writer(producer: FakeProducer) -> KafkaWriter:
    w = KafkaWriter.__new__(KafkaWriter)  # no connection: the fake producer stands in for kafka-python's
    w.servers, w.topic, w.max_in_flight = ["fake:9092"], "events", 1000
    w._lock = threading.Lock()
    w._in_flight = 0
    w._partitions, w._partitions_at = 0, 0.0
    w._producer = producer
    return w


def test_records_of_a_trace_share_a_partition_and_traces_spread_over_all() -> None:
    producer = FakeProducer(partitions=4)
    w = writer(producer)
    random_ids = [hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest() for i in range(200)]
    short_ids = [f"{int(x[:16], 16):032x}" for x in random_ids[:100]]  # 64-bit ids padded with zeros
    xray_ids = [f"6a1b2c3d{x[8:]}" for x in random_ids[100:]]  # X-Ray: the first 8 digits are the time
    traces = random_ids + short_ids + xray_ids
    assert w.write([(t, b"{}\n") for t in traces] + [(traces[0], b"{}\n")], 1.0) == (0, "")
    chosen = {key: partition for key, partition in producer.sent}
    assert all(p is not None for p in chosen.values())
    assert producer.sent[-1] == producer.sent[0]  # the same trace again: the same partition
    for ids in (random_ids, short_ids, xray_ids):
        spread = Counter(chosen[t.encode()] for t in ids)
        assert set(spread) == {0, 1, 2, 3} and min(spread.values()) >= len(ids) // 8, spread
    # Keys that are not trace ids (dead letters) are left to kafka-python's partitioner.
    w.write([("otlp-dead-letter", b"{}\n")], 1.0)
    assert producer.sent[-1] == (b"otlp-dead-letter", None)
    assert w._in_flight == 0


def test_records_a_request_gave_up_on_stay_in_flight_until_kafka_answers() -> None:
    producer = FakeProducer(partitions=2, ack=False)
    w = writer(producer)
    with pytest.raises(Busy):
        w.write([(f"{i:032x}", b"{}\n") for i in range(1, 11)], 0.05)
    assert w._in_flight == 10  # not acknowledged: still counted against LLMSIGHT_OTLP_MAX_IN_FLIGHT
    for future in producer.futures[:4]:
        future.done()
    assert w._in_flight == 6
    for future in producer.futures[4:]:
        future.done()
    assert w._in_flight == 0
