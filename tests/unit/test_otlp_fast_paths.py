"""The receiver's cheaper bookkeeping does what the per-call bookkeeping did: a request's complete calls
told to the joiner in one go, and a worker's result pickled with its calls as tuples."""

from __future__ import annotations

import pickle
import random

import pytest

from llmsight.otlp.join import Joiner
from llmsight.otlp.mapping import Event, Span
from llmsight.otlp.workers import Call, Mapped


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _key(rng: random.Random) -> tuple[str, str]:
    return f"{rng.randrange(40):032x}", f"{rng.randrange(40):016x}"


def _state(joiner: Joiner) -> tuple[object, ...]:
    entries = [(key, entry.expires, entry.span is not None, len(entry.content)) for key, entry in joiner._entries.items()]
    return entries, list(joiner._complete.items()), joiner.unjoined, joiner.duplicates


def _mapped_complete_before(joiner: Joiner, trace_id: str, span_id: str) -> None:
    """``Joiner.mapped_complete`` as it was (0f6f7d2), one call per key."""
    key = (trace_id, span_id)
    now = joiner._now()
    with joiner._lock:
        entry = joiner._entries.pop(key, None)
        if entry is not None:
            joiner.duplicates += len(entry.content)
        joiner._complete.pop(key, None)
        joiner._complete[key] = now + joiner.window_s
        joiner._expire(now)


@pytest.mark.parametrize("seed", range(12))
def test_mapped_complete_many_is_mapped_complete_for_each_key(seed):
    rng = random.Random(seed)
    clock_a, clock_b = _Clock(), _Clock()
    cap, window = rng.choice([5, 25, 60]), rng.choice([3.0, 10.0, 30.0])  # small caps: eviction happens too
    one, many = Joiner(window, cap, clock_a), Joiner(window, cap, clock_b)
    for step in range(300):
        clock_a.now = clock_b.now = clock_a.now + rng.choice([0.0, 0.1, 0.7, 2.0, 5.0])  # monotonic, as in use
        kind = rng.random()
        if kind < 0.4:  # a content record, for either joiner alike
            trace, span = _key(rng)
            for joiner in (one, many):
                joiner.content(Event("gen_ai.choice", step, {}, {"message": {"content": "x"}}, trace, span))
        elif kind < 0.55:  # a span still lacking content
            trace, span = _key(rng)
            for joiner in (one, many):
                joiner.mapped(Span(trace, span, "", "chat", 1, 2, 0, "", {}, {}), False)
        else:  # a request's complete calls, from a worker
            keys = [_key(rng) for _ in range(rng.randint(0, 80))]
            for trace, span in keys:
                _mapped_complete_before(one, trace, span)
            many.mapped_complete_many(keys)
        assert _state(one) == _state(many), step
    assert one.duplicates > 0 and one.unjoined > 0  # the walk went through both kinds of bookkeeping


def test_any_waiting_is_waiting_for_any():
    joiner = Joiner()
    keys = [(f"{i:032x}", f"{i:016x}") for i in range(1, 6)]
    assert not joiner.any_waiting(keys)
    joiner.content(Event("gen_ai.choice", 1, {}, {"message": {"content": "x"}}, *keys[3]))
    assert joiner.any_waiting(keys) and joiner.waiting(*keys[3])
    assert not joiner.any_waiting(keys[:3] + keys[4:])
    assert not joiner.any_waiting([])


def test_a_mapped_request_pickles_as_it_was():
    span = Span("a" * 32, "b" * 16, "", "chat", 1, 2, 0, "", {"k": "v"}, {"service.name": "s"})
    mapped = Mapped(batch=[("a" * 32, b'{"x":1}\n'), ("c" * 32, b'{"y":2}\n')],
                    calls=[Call(0, "a" * 32, "b" * 16, False, span), Call(1, "c" * 32, "d" * 16, True, None)],
                    feedback=1, received=4, skipped=1, rejected=1, reasons=["span 'x' has an invalid trace or span id"])
    again = pickle.loads(pickle.dumps(("ok", mapped), protocol=pickle.HIGHEST_PROTOCOL))[1]
    assert again == mapped
    assert isinstance(again.calls[0], Call) and again.calls[0].span == span and again.calls[1].span is None
