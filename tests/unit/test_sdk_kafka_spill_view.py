"""The Kafka sink keeps its spill segments in memory: the spill directory is not listed per batch or per loop turn."""

from __future__ import annotations

import json
import os
import socket
import time

import llmsight.kafka_sink as kafka_sink
import llmsight.spool as spool
from llmsight.kafka_sink import KafkaSink
from llmsight.sinks import Stats
from llmsight.spool import hostname, list_segments, read_lines

LINE = json.dumps({"trace_id": "t", "pad": "p" * 400}).encode() + b"\n"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Acked:
    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer

    def add_callback(self, fn, *args):
        self.producer.unacked.append((fn, args))
        if not self.producer.defer:
            self.producer.ack_all()

    def add_errback(self, fn, *args):
        pass


class FakeProducer:
    """Keeps the values sent, in order; acknowledges them at once, or when ack_all() is called."""

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.unacked: list = []
        self.defer = False

    def send(self, topic, value, key):
        self.values.append(value)
        return Acked(self)

    def ack_all(self) -> None:
        acks, self.unacked = self.unacked, []
        for fn, args in acks:
            fn(*args)

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        pass


def count_listings(monkeypatch) -> list[int]:
    listed = [0]
    real = os.listdir

    def counting(path):
        listed[0] += 1
        return real(path)

    monkeypatch.setattr(spool.os, "listdir", counting)
    return listed


def broker_returns(sink: KafkaSink) -> FakeProducer:
    producer = FakeProducer()

    def connect() -> bool:
        sink._producer = producer
        return True

    sink._probe = lambda: True
    sink._connect = connect
    sink._next_probe = 0.0
    return producer


def test_spilling_with_the_broker_down_lists_the_directory_once(tmp_path, monkeypatch):
    listed = count_listings(monkeypatch)
    sink = KafkaSink([f"127.0.0.1:{closed_port()}"], "t", spill_dir=str(tmp_path), spill_max_bytes=1 << 20,
                     segment_bytes=1 << 20, fsync="never")
    stats = Stats()
    for _ in range(100):
        sink.send([("t", LINE)] * 50, stats)  # 100 x ~21 KB: the 1 MB cap drops about half
    assert listed[0] == 1
    sink.close(1, stats)
    on_disk = sum(s.path.stat().st_size for s in list_segments(tmp_path / "t"))
    kept = sum(1 for s in list_segments(tmp_path / "t") for _ in read_lines(s.path))
    assert stats.spilled == 5000 and stats.dropped > 0 and stats.dropped + kept == 5000
    assert on_disk <= (1 << 20) + 50 * len(LINE)
    # The in-memory accounting matches the disk after all the rotations and deletions.
    assert sink._segment_bytes == on_disk


def test_replay_while_busy_does_not_list_the_directory_each_loop_turn(tmp_path, monkeypatch):
    monkeypatch.setattr(kafka_sink, "RESCAN_EVERY_S", 3600.0)
    monkeypatch.setattr(kafka_sink, "MAX_IN_FLIGHT", 150)  # each turn submits 150 events at most
    sink = KafkaSink([f"127.0.0.1:{closed_port()}"], "t", spill_dir=str(tmp_path), spill_max_bytes=64 << 20,
                     segment_bytes=1 << 20, fsync="never")
    stats = Stats()
    for batch in range(40):
        sink.send([("t", LINE.replace(b'"t"', f'"b{batch}"'.encode()))] * 100, stats)
    producer = broker_returns(sink)
    producer.defer = True  # acknowledgements arrive between loop turns
    listed = count_listings(monkeypatch)
    assert sink.busy is False  # the worker has not seen the broker come back yet
    sink.tick(stats)  # it does on its next (interval) wake-up
    turns = 1
    while sink.busy and turns < 1000:  # then wakes every 20 ms while busy
        producer.ack_all()
        sink.tick(stats)
        turns += 1
    for _ in range(200):  # and at its interval when idle
        assert sink.busy is False
        sink.tick(stats)
    assert turns >= 4000 // 150 and listed[0] == 1  # the first replay lists once, to claim dead processes' spill
    assert [json.loads(v)["trace_id"] for v in producer.values] == [f"b{i}" for i in range(40) for _ in range(100)]
    assert sink.flush(1, stats) is True and listed[0] == 1 + 1  # a flush lists once more
    assert stats.sent == 4000 and list_segments(tmp_path / "t") == []


def test_spill_of_a_process_that_dies_later_is_claimed_on_the_rescan(tmp_path, monkeypatch):
    monkeypatch.setattr(kafka_sink, "RESCAN_EVERY_S", 0.05)
    sink = KafkaSink([f"127.0.0.1:{closed_port()}"], "t", spill_dir=str(tmp_path), spill_max_bytes=1 << 20,
                     segment_bytes=1 << 20, fsync="never")
    stats = Stats()
    producer = broker_returns(sink)
    sink.tick(stats)
    assert stats.sent == 0 and sink.busy is False
    (tmp_path / "t").mkdir()
    orphan = tmp_path / "t" / f"{1:013d}-{hostname()}-4000000-000001.jsonl"  # pid 4,000,000: not alive
    orphan.write_bytes(b'{"trace_id":"late"}\n' * 3)
    time.sleep(0.06)
    sink.tick(stats)
    assert stats.sent == 3 and producer.values == [b'{"trace_id":"late"}'] * 3
    assert not orphan.exists() and list_segments(tmp_path / "t") == []
    sink.close(1, stats)


def test_a_segment_removed_behind_the_sinks_back_is_skipped(tmp_path, monkeypatch):
    sink = KafkaSink([f"127.0.0.1:{closed_port()}"], "t", spill_dir=str(tmp_path), spill_max_bytes=64 << 20,
                     segment_bytes=1 << 20, fsync="never")
    stats = Stats()
    sink.send([("t", LINE)] * 10, stats)
    sink._spill.rotate()
    sink.send([("t", LINE.replace(b'"t"', b'"second"'))] * 10, stats)
    first = sink._own_segments()[0]
    first.unlink()  # not this sink's doing: its view is stale
    producer = broker_returns(sink)
    for _ in range(10):
        sink.tick(stats)
    assert stats.sent == 10 and {json.loads(v)["trace_id"] for v in producer.values} == {"second"}
    assert sink.busy is False and sink._segment_bytes == 0
