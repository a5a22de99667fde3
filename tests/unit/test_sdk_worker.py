"""The background worker: bounded queue, batching, deadlines, failures, and a real fork."""

from __future__ import annotations

import json
import os
import threading
import time

import llmsight
from llmsight.sinks import Sink, Stats
from llmsight.spool import list_segments, parse_base, read_lines
from llmsight.worker import Worker


class RecordingSink(Sink):
    def __init__(self, block_first: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.block_first = block_first

    def send(self, batch, stats: Stats) -> None:
        self.entered.set()
        if self.block_first and not self.batches:
            self.release.wait(10)
        self.batches.append([key for key, _ in batch])
        stats.add(sent=len(batch))


def build(record):
    return str(record), f"{record}\n".encode()


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_full_queue_drops_the_oldest_and_counts_it():
    sink = RecordingSink(block_first=True)
    worker = Worker(sink, build, queue_size=3, batch_size=1, flush_interval=0.05)
    worker.submit(0)
    assert sink.entered.wait(5)  # the worker holds record 0 inside send()
    for i in range(1, 7):
        worker.submit(i)
    sink.release.set()
    assert worker.flush(5) is True
    assert [k for batch in sink.batches for k in batch] == ["0", "4", "5", "6"]
    assert worker.counters() == {"sent": 4, "dropped": 3, "spilled": 0, "failed": 0}
    assert worker.shutdown(2) is True


def test_a_full_batch_is_sent_without_waiting_for_the_interval():
    sink = RecordingSink()
    worker = Worker(sink, build, queue_size=100, batch_size=4, flush_interval=30)
    started = time.monotonic()
    for i in range(4):
        worker.submit(i)
    assert wait_for(lambda: sink.batches == [["0", "1", "2", "3"]])
    assert time.monotonic() - started < 5
    worker.shutdown(2)


def test_a_partial_batch_is_sent_after_the_interval():
    sink = RecordingSink()
    worker = Worker(sink, build, queue_size=100, batch_size=1000, flush_interval=0.2)
    for i in range(3):
        worker.submit(i)
    assert sink.batches == []
    assert wait_for(lambda: sink.batches == [["0", "1", "2"]], timeout=5)
    worker.shutdown(2)


def test_flush_and_shutdown_keep_their_deadlines_with_a_stuck_sink():
    class StuckSink(Sink):
        def send(self, batch, stats):
            time.sleep(3)

    worker = Worker(StuckSink(), build, queue_size=10, batch_size=1, flush_interval=0.05)
    worker.submit(1)
    worker.submit(2)
    time.sleep(0.1)
    started = time.monotonic()
    assert worker.flush(0.3) is False
    assert worker.shutdown(0.3) is False
    assert time.monotonic() - started < 1.5


def test_sink_and_build_failures_are_counted_and_the_worker_survives():
    class FlakySink(RecordingSink):
        def send(self, batch, stats):
            if not self.batches and batch[0][0] == "boom":
                self.batches.append(["raised"])
                raise OSError("disk on fire")
            super().send(batch, stats)

    def flaky_build(record):
        if record == "bad":
            raise ValueError("cannot build")
        return build(record)

    sink = FlakySink()
    worker = Worker(sink, flaky_build, queue_size=10, batch_size=1, flush_interval=0.05)
    for record in ("boom", "bad", "fine"):
        worker.submit(record)
        worker.flush(2)
    assert sink.batches == [["raised"], ["fine"]]
    assert worker.counters()["failed"] == 1 and worker.counters()["sent"] == 1
    worker.shutdown(2)


def test_flush_before_any_event_returns_at_once():
    worker = Worker(RecordingSink(), build, queue_size=10, batch_size=1, flush_interval=10)
    assert worker.flush(0.01) is True
    assert worker.shutdown(0.01) is True


def test_real_fork_rebuilds_the_worker_in_the_child(tmp_path):
    spool = tmp_path / "spool"
    llmsight.init(sink=f"file://{spool}", flush_interval=0.05)

    @llmsight.monitor
    def ask(q):
        return q

    try:
        for i in range(3):
            ask(f"parent-{i}")  # possibly still queued at fork time: the child must not send them
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                ask("child-0")
                ask("child-1")
                ok = llmsight.flush(5)
                counts = llmsight.stats()
                code = 0 if ok and counts == {"sent": 2, "dropped": 0, "spilled": 0, "failed": 0} else 3
                llmsight.shutdown(2)
            finally:
                os._exit(code)
        ask("parent-3")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert llmsight.flush(5)
    finally:
        llmsight.shutdown(2)
    by_pid: dict[int, list[str]] = {}
    ids = []
    for segment in list_segments(spool):
        assert segment.closed
        writer_pid = parse_base(segment.base)[2]
        for _, _, raw in read_lines(segment.path):
            event = json.loads(raw)
            if event["type"] == "heartbeat":  # the loss audit's counters, checked in test_sdk_heartbeat.py
                continue
            by_pid.setdefault(writer_pid, []).append(event["input"])
            ids.append(event["event_id"])
    assert sorted(by_pid[pid]) == ["child-0", "child-1"]
    assert sorted(by_pid[os.getpid()]) == ["parent-0", "parent-1", "parent-2", "parent-3"]
    assert len(ids) == len(set(ids)) == 6
