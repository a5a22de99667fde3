"""KafkaSource replaces a consumer whose group join never finishes (kafka-python 3.0.12 sometimes
leaves a member there for ever), and leaves a member alone while its joins finish.

A fake KafkaConsumer stands in for the broker: a unit test of the watchdog, not of Kafka (the
integration and benchmark tests run the real broker)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmsight.collector import kafka_source


class FakeConsumer:
    made: list[FakeConsumer] = []

    def __init__(self, **options: Any) -> None:
        self.options, self.listener, self.closed, self.polls = options, None, False, 0
        FakeConsumer.made.append(self)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1}

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.topics, self.listener = topics, listener

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        self.polls += 1
        return {}

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        self.closed = True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    FakeConsumer.made = []
    monkeypatch.setattr(kafka_source, "KafkaConsumer", FakeConsumer)
    monkeypatch.setattr(kafka_source.time, "monotonic", lambda: now[0])
    monkeypatch.setenv("LLMSIGHT_COLLECTOR_SESSION_TIMEOUT_S", "10")
    return now


def test_a_join_that_never_finishes_gets_a_new_consumer_after_the_session_timeout(clock, caplog) -> None:
    source = kafka_source.KafkaSource(["127.0.0.1:9"], "events", group_id="g")
    first = FakeConsumer.made[0]
    assert first.topics == ["events"] and first.options["session_timeout_ms"] == 10_000
    asyncio.run(first.listener.on_partitions_revoked(set()))  # a rebalance begins...
    generation = source.generation
    clock[0] += 9.9
    source.poll(0.1, 10, 1000)
    assert len(FakeConsumer.made) == 1 and not first.closed  # ...still within the session timeout
    clock[0] += 0.2
    source.poll(0.1, 10, 1000)
    assert len(FakeConsumer.made) == 2 and first.closed  # ...and never finished: a new member joins
    second = FakeConsumer.made[1]
    assert second.topics == ["events"] and second.polls == 1 and source.generation == generation + 1
    assert "has not finished in 10 s" in caplog.text
    # The new member's join finishes: it is left alone however long it then holds no partitions.
    asyncio.run(second.listener.on_partitions_assigned(set()))
    clock[0] += 100
    source.poll(0.1, 10, 1000)
    assert len(FakeConsumer.made) == 2 and not second.closed


def test_joins_that_finish_are_never_replaced(clock) -> None:
    source = kafka_source.KafkaSource(["127.0.0.1:9"], "events", group_id="g")
    consumer = FakeConsumer.made[0]
    for _ in range(5):
        asyncio.run(consumer.listener.on_partitions_revoked(set()))
        clock[0] += 8
        asyncio.run(consumer.listener.on_partitions_assigned(set()))
        clock[0] += 30
        source.poll(0.1, 10, 1000)
    assert len(FakeConsumer.made) == 1 and consumer.polls == 5
