"""A record Kafka refuses is one failed event, not an outage (issue 15, item 4), against a real broker.

Before: a 2 MB event made ``producer.send`` raise, the sink took Kafka for unreachable, spilled the
event and everything behind it, and replayed (and re-spilled) it for ever: the flush never finished
and the events behind it never arrived.
"""

from __future__ import annotations

import json
import logging
import os
import time

from llmsight.kafka_sink import KafkaSink
from llmsight.sinks import Stats
from llmsight.spool import SpoolWriter, list_segments
from tests.integration.test_sdk_kafka import consume
from tests.kafka import kafka_broker  # noqa: F401  (the session fixture)


def line(trace: str, size: int = 100) -> bytes:
    return json.dumps({"type": "llm_call", "trace_id": trace, "input": "x" * size}).encode() + b"\n"


def test_a_refused_record_is_failed_and_dropped_and_the_rest_go_on(kafka_broker, tmp_path, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING, logger="llmsight")
    topic = kafka_broker.create_topic()
    sink = KafkaSink([kafka_broker.bootstrap], topic, spill_dir=str(tmp_path), spill_max_bytes=1 << 26,
                     segment_bytes=1 << 20, fsync="never")
    stats = Stats()
    try:
        batch = [("a", line("a")), ("big", line("big", 2_000_000)), ("b", line("b"))]
        sink.send(batch, stats)
        assert sink.flush(20, stats) is True
        assert stats.snapshot() == {"sent": 2, "dropped": 0, "spilled": 0, "failed": 1}
        assert list_segments(tmp_path / topic) == []  # nothing spilled, nothing to replay for ever
    finally:
        sink.close(5, stats)
    got = [json.loads(v)["trace_id"] for v in consume(kafka_broker.bootstrap, topic, 2, 30)]
    assert sorted(got) == ["a", "b"]
    assert sum("refused" in r.getMessage() for r in caplog.records) == 1


def test_a_refused_record_in_the_spill_does_not_block_its_replay(kafka_broker, tmp_path):  # noqa: F811
    topic = kafka_broker.create_topic()
    # The spill of a process that died while Kafka was away, with a record Kafka will refuse in it.
    writer = SpoolWriter(tmp_path / topic, 1 << 30, "never")
    writer.write([line("c"), line("big", 2_000_000), line("d")])
    writer.forget()  # left .open by a dead process: rename it as a closed segment of a dead pid
    [segment] = list_segments(tmp_path / topic)
    dead_pid = 2 ** 22 - 3
    while True:
        try:
            os.kill(dead_pid, 0)
            dead_pid -= 1
        except ProcessLookupError:
            break
        except PermissionError:
            dead_pid -= 1
    created, rest = segment.base.split("-", 1)
    host = rest.rsplit("-", 2)[0]
    segment.path.rename(segment.path.with_name(f"{created}-{host}-{dead_pid}-000001.jsonl"))

    sink = KafkaSink([kafka_broker.bootstrap], topic, spill_dir=str(tmp_path), spill_max_bytes=1 << 26,
                     segment_bytes=1 << 20, fsync="never")
    stats = Stats()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (stats.sent < 2 or list_segments(tmp_path / topic)):
            sink.flush(2, stats)
        assert stats.sent == 2 and stats.failed == 1
        assert list_segments(tmp_path / topic) == []
    finally:
        sink.close(5, stats)
    got = [json.loads(v)["trace_id"] for v in consume(kafka_broker.bootstrap, topic, 2, 30)]
    assert sorted(got) == ["c", "d"]
