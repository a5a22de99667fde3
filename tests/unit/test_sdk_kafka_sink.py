"""The Kafka sink without a broker: a closed port never blocks the host, events spill, the cap holds."""

from __future__ import annotations

import json
import socket
import time

import llmsight
from llmsight.kafka_sink import KafkaSink, _trace_key
from llmsight.sinks import Stats, make_sink, parse_kafka_url
from llmsight.spool import list_segments, read_lines


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the socket is


def spilled_events(directory) -> list[dict]:
    """The llm_call and feedback events spilled (heartbeats, the loss audit's counters, left out)."""
    events = [json.loads(raw) for s in list_segments(directory) for _, _, raw in read_lines(s.path)]
    return [e for e in events if e.get("type") != "heartbeat"]


def test_closed_port_spills_without_blocking_the_host(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMSIGHT_SPILL_DIR", str(tmp_path / "spill"))
    llmsight.init(sink=f"kafka://127.0.0.1:{closed_port()}/llm.events", flush_interval=0.05)

    @llmsight.monitor
    def ask(q):
        return "a"

    worst = 0.0
    try:
        for i in range(2000):
            started = time.perf_counter()
            ask(f"q{i}")
            worst = max(worst, time.perf_counter() - started)
        assert llmsight.flush(10) is True
        assert llmsight.stats() == {"sent": 0, "dropped": 0, "spilled": 2000, "failed": 0}
    finally:
        started = time.monotonic()
        llmsight.shutdown(3)
        assert time.monotonic() - started < 3.5
    # No connect timeout, no producer constructor on the call path (those take 250 ms and more).
    assert worst < 0.1
    events = spilled_events(tmp_path / "spill" / "llm.events")
    assert sorted(e["input"] for e in events) == sorted(f"q{i}" for i in range(2000))


def test_spill_cap_drops_oldest_segments_and_counts_them(tmp_path):
    sink = KafkaSink([f"127.0.0.1:{closed_port()}"], "t", spill_dir=str(tmp_path), spill_max_bytes=300_000,
                     segment_bytes=1 << 20, fsync="never")
    stats = Stats()
    line = json.dumps({"trace_id": "x", "pad": "p" * 900}).encode() + b"\n"
    for _ in range(20):
        sink.send([("x", line)] * 100, stats)  # 20 x ~90 KB
    sink.close(1, stats)
    remaining = len(spilled_events(tmp_path / "t"))
    total_bytes = sum(s.path.stat().st_size for s in list_segments(tmp_path / "t"))
    assert stats.spilled == 2000
    assert stats.dropped > 0 and stats.dropped + remaining == 2000
    assert total_bytes <= 300_000 + 100 * len(line)  # the cap, give or take the batch being written


def test_kafka_url_parsing_and_trace_key():
    assert parse_kafka_url("kafka://a:9092,b:9093/llm.events") == (["a:9092", "b:9093"], "llm.events")
    for bad in ("kafka://a:9092", "kafka:///topic", "kafka://a/topic"):
        try:
            parse_kafka_url(bad)
        except Exception as exc:
            assert type(exc).__name__ == "SinkError"
        else:
            raise AssertionError(f"{bad} accepted")
    assert isinstance(make_sink("kafka://h:1/t", segment_bytes=1, fsync="never", spill_dir="/tmp/x",
                                spill_max_bytes=1), KafkaSink)
    assert _trace_key(b'{"type":"llm_call","trace_id":"abc-1","x":1}') == "abc-1"
    assert _trace_key(b'{"no":"key"}') == ""


def test_spill_of_a_dead_process_is_claimed_once_and_others_are_left_alone(tmp_path):
    import os

    from llmsight.spool import hostname, parse_base

    topic_dir = tmp_path / "t"
    topic_dir.mkdir()
    dead, me = 4_000_000, os.getpid()
    orphan_open = topic_dir / f"{1:013d}-{hostname()}-{dead}-000001.jsonl.open"
    orphan_closed = topic_dir / f"{2:013d}-{hostname()}-{dead}-000002.jsonl"
    other_host = topic_dir / f"{3:013d}-elsewhere-{dead}-000001.jsonl"
    alive_other = topic_dir / f"{4:013d}-{hostname()}-1-000001.jsonl"  # pid 1 is alive
    for path in (orphan_open, orphan_closed, other_host, alive_other):
        path.write_bytes(b'{"trace_id":"x"}\n')
    sink = KafkaSink(["127.0.0.1:1"], "t", spill_dir=str(tmp_path), spill_max_bytes=1 << 20,
                     segment_bytes=1 << 20, fsync="never")
    claimed = sink._own_segments()
    assert [parse_base(p.name[: -len(".jsonl")])[:3] for p in claimed] == [
        (1, hostname(), me), (2, hostname(), me)]
    assert not orphan_open.exists() and not orphan_closed.exists()
    assert other_host.exists() and alive_other.exists()
    second = KafkaSink(["127.0.0.1:1"], "t", spill_dir=str(tmp_path), spill_max_bytes=1 << 20,
                       segment_bytes=1 << 20, fsync="never")
    assert second._own_segments() == claimed  # same pid here; another process would find nothing to claim


def test_spill_cap_never_deletes_another_live_process_segments(tmp_path):
    from llmsight.spool import hostname

    topic_dir = tmp_path / "t"
    topic_dir.mkdir()
    neighbour = topic_dir / f"{1:013d}-{hostname()}-1-000001.jsonl.open"  # pid 1: alive, still writing
    neighbour.write_bytes(b'{"trace_id":"x"}\n' * 20_000)  # 340 KB, over the cap on its own
    sink = KafkaSink([f"127.0.0.1:{closed_port()}"], "t", spill_dir=str(tmp_path), spill_max_bytes=200_000,
                     segment_bytes=1 << 20, fsync="never")
    stats = Stats()
    sink.send([("x", b'{"trace_id":"x"}\n')] * 100, stats)
    sink.close(1, stats)
    assert neighbour.exists() and stats.dropped == 0 and stats.spilled == 100
