"""Hostile text never stalls the host: redaction is linear, and the worker gives the GIL back while it redacts.

Timings are ratios against a no-op baseline measured in the same test (benign text of the same
length, or the same heartbeat beside calls carrying short text), so a loaded machine slows both.
Before this change, 32,768 "(" took about 7 s to redact (against about 1 ms for benign text) and a
1 ms heartbeat thread waited about 14 s.
"""

from __future__ import annotations

import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmsight
from llmsight.bench.sdk import hostile_texts
from llmsight.redact import redact
from llmsight.sinks import MemorySink

CAP = 32_768
# Units that made the old patterns backtrack, and some of everything else the redactor looks for.
PIECES = ["(", ")", "+", "1", "9", " ", "-", ".", "@", "a", "Z", "_", ":", "é", "٣", "ж", "日", "eyJ", "sk-",
          "AKIA", "de12 ", "basic ", "secret=", "://", "-----BEGIN ", "123-45-", "::"]
RATIO = 25  # a field may cost this many benign fields; the quadratic cases were several thousand


def _time(fn, *args) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def _fill(unit: str, size: int = CAP) -> str:
    return (unit * (size // max(1, len(unit)) + 1))[:size]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES) | st.text(min_size=1, max_size=4), min_size=1, max_size=12))
def test_fuzzed_hostile_text_redacts_in_linear_time(parts):
    text = _fill("".join(parts))
    assert _ratio(text) <= RATIO or _ratio(text, runs=7) <= RATIO, repr(text[:60])  # a second look past noise


def _ratio(text: str, runs: int = 3) -> float:
    baseline = min(_time(redact, _fill("lorem ipsum ")) for _ in range(max(1, runs // 3)))
    return min(_time(redact, text) for _ in range(max(1, runs // 3))) / max(baseline, 0.0005)


def test_known_hostile_shapes_redact_in_linear_time():
    slow = {name: round(min(_ratio(text), _ratio(text, runs=7)), 1) for name, text in hostile_texts(CAP).items()}
    assert max(slow.values()) <= RATIO, slow


def test_eight_times_the_text_costs_about_eight_times_the_time():
    def growth(unit: str) -> float:
        small = min(_time(redact, _fill(unit, CAP // 8) + "@") for _ in range(2))
        large = min(_time(redact, _fill(unit, CAP) + "@") for _ in range(2))
        return large / max(small, 0.0002)

    for unit in ("(", "a", "1 (", "a.b_c"):
        # Linear is 8x, quadratic 64x; a second look past a noisy neighbour.
        assert growth(unit) <= 24 or growth(unit) <= 24, unit


def _heartbeat_worst(body) -> float:
    stop = threading.Event()
    late: list[float] = []

    def beat() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            time.sleep(0.001)
            late.append(time.perf_counter() - start - 0.001)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        body()
    finally:
        stop.set()
        thread.join()
    return max(late)


def test_a_host_heartbeat_never_waits_long_while_monitored_calls_carry_hostile_text():
    llmsight.init(sink=MemorySink(), max_text_chars=CAP)

    @llmsight.monitor
    def echo(text):
        return text

    texts = list(hostile_texts(CAP).values())

    def calls(payloads):
        def run() -> None:
            for text in payloads:
                echo(text)
                time.sleep(0.002)
            assert llmsight.flush(120)
        return run

    try:
        baseline = _heartbeat_worst(calls(["short"] * len(texts)))
        hostile = _heartbeat_worst(calls(texts))
    finally:
        llmsight.shutdown(5)
    # Loaded 2-core machines wake a sleeping thread late by a few ms on their own: hence the floor.
    assert hostile <= 6 * max(baseline, 0.004), (hostile, baseline)
