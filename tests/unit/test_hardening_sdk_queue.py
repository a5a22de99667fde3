"""The SDK's queue stays cheap for the host's garbage collector (issue 15, the broker-down worst call) and its
byte accounting stays exact with host threads racing the worker and each other.

With the broker down the worker falls behind a busy host, and every record waiting in the queue is an object
CPython's collector counts and traverses; its collections run on whichever thread allocates, usually the host's.
Each call used to leave three (the record, a (record, size) pair and the span), which doubled the collections on
the host's thread and let a full collection (24-30 ms) land inside a monitored call.
"""

from __future__ import annotations

import gc
import threading

import llmsight
from llmsight.sinks import MemorySink, Sink
from llmsight.worker import Worker

CALLS = 5_000


def test_a_monitored_call_leaves_one_object_for_the_collector():
    llmsight.init(sink=MemorySink(), flush_interval=3600, batch_size=1_000_000, queue_size=100_000)
    try:
        @llmsight.monitor(name="noop", model="m", prompt_version="v1")
        def noop() -> None:
            return None

        for _ in range(100):
            noop()
        gc.collect()
        gc.disable()
        try:
            before = len(gc.get_objects())
            for _ in range(CALLS):
                noop()
            left = len(gc.get_objects()) - before
        finally:
            gc.enable()
        assert left <= CALLS * 1.05, f"{left / CALLS:.2f} tracked objects left per call"
        assert llmsight.flush(30)
    finally:
        llmsight.shutdown(10)


class _Counting(Sink):
    def __init__(self) -> None:
        self.lines = 0

    def send(self, batch, stats) -> None:
        self.lines += len(batch)
        stats.add(sent=len(batch))


def test_the_byte_accounting_is_exact_with_threads_racing_the_worker_and_each_other():
    sink = _Counting()
    worker = Worker(sink, lambda record: ("k", b"x"), queue_size=10_000, batch_size=64, flush_interval=0.001,
                    max_bytes=50_000)
    per_thread, threads = 20_000, 4

    def host(seed: int) -> None:
        for i in range(per_thread):
            worker.submit((seed, i), 100 + (i % 7) * 50)  # about 250 records fit under the byte bound

    started = [threading.Thread(target=host, args=(t,)) for t in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    assert worker.flush(30)
    counts = worker.counters()
    assert counts["sent"] + counts["dropped"] == per_thread * threads
    assert counts["dropped"] > 0  # the bound was reached, so the eviction path ran against the worker
    assert worker.queued_bytes == 0 and not worker._queue and not worker._sizes
    assert worker._bytes_in == sum(100 + (i % 7) * 50 for i in range(per_thread)) * threads
    worker.shutdown(5)
