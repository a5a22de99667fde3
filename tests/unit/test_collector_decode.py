"""The fast decoder only says yes where the schema's validate() says yes, with the same values."""

from __future__ import annotations

import json
import math
from typing import Any, Optional

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsight.collector.columns import event_columns, feedback_columns
from llmsight.collector.decode import Feedback, LlmCall, fast_decode, from_validated, slow_decode
from llmsight.errors import SchemaError
from llmsight.schema import FEEDBACK_FIELDS, LLM_CALL_FIELDS, validate


def test_the_structs_mirror_the_schema_field_tables() -> None:
    for struct, fields in ((LlmCall, LLM_CALL_FIELDS), (Feedback, FEEDBACK_FIELDS)):
        # plus the envelope's producer_id (the loss audit's attribution; validate() ignores it)
        assert set(struct.__struct_fields__) == set(fields) | {"schema_version", "producer_id"}
        required = set(struct.__struct_fields__[: len(struct.__struct_fields__) - len(struct.__struct_defaults__)])
        assert required == {name for name, (_types, req) in fields.items() if req} | {"schema_version"}
    # How the schema's accepted types become msgspec types (each a bug the fast path could hide).
    types = {f.name: f.type for f in msgspec.structs.fields(LlmCall)}
    assert (types["latency_ms"], types["ts"], types["schema_version"]) == (float, str, int)
    assert types["environment"] == Optional[str]  # not required, so null is taken too  # noqa: UP045
    assert types["tokens_in"] == Optional[int]  # noqa: UP045
    assert types["cost_usd"] == Optional[float]  # noqa: UP045
    assert (types["tags"], types["truncated"]) == (Optional[dict[str, str]], Optional[bool])  # noqa: UP045


def test_tags_with_other_values_take_the_slow_path_and_come_out_as_strings() -> None:
    raw = json.dumps({**GOOD, "tags": {"a": 1, "b": True, "c": None}}).encode()
    assert fast_decode(raw) is None
    _decoded, event = slow_decode(raw)
    assert event.tags == {"a": "1", "b": "True", "c": "None"}


GOOD = {"type": "llm_call", "schema_version": 1, "event_id": "0b6b4b0e-8d59-4c1e-9a43-4a3b8f0c9d11",
        "trace_id": "t", "ts": "2026-11-20T10:00:00.5Z", "service": "s", "name": "n", "latency_ms": 3,
        "input": "héllo", "tags": {"a": "1"}, "metadata": {"m": [1]}, "tokens_in": 2**40}


def test_ordinary_events_take_the_fast_path() -> None:
    event = fast_decode(json.dumps(GOOD, ensure_ascii=False).encode())
    assert isinstance(event, LlmCall) and event.tokens_in == 2**40 and event.ts.microsecond == 500000
    feedback = fast_decode(b'{"type":"feedback","schema_version":1,"event_id":"0b6b4b0e-8d59-4c1e-9a43-'
                           b'4a3b8f0c9d11","trace_id":"t","ts":"2026-11-20T10:00:00Z","accepted":true}')
    assert isinstance(feedback, Feedback) and feedback.accepted is True


def test_anything_doubtful_is_left_to_validate() -> None:
    for change in ({"schema_version": 2}, {"schema_version": True}, {"latency_ms": -1}, {"service": None},
                   {"event_id": "{0b6b4b0e-8d59-4c1e-9a43-4a3b8f0c9d11}"}, {"ts": "yesterday"},
                   {"tokens_in": 1.0}, {"truncated": 1}, {"type": "span"}):
        assert fast_decode(json.dumps({**GOOD, **change}).encode()) is None, change
    for raw in (b"[]", b"{", b'{"type":"llm_call"}', b'{"input":"\\ud800"}', b"1e400"):
        assert fast_decode(raw) is None


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5))
values = st.one_of(scalars, st.dictionaries(st.text(max_size=3), scalars, max_size=3), st.lists(scalars, max_size=2))
plausible = {
    "event_id": st.sampled_from(["0b6b4b0e-8d59-4c1e-9a43-4a3b8f0c9d11", "0B6B4B0E8D594C1E9A434A3B8F0C9D11",
                                 "not-a-uuid", "0b6b4b0e-8d59-4c1e-9a43-4a3b8f0c9d1"]),
    "ts": st.sampled_from(["2026-11-20T10:00:00Z", "2026-11-20T10:00:00.123+02:00", "2026-11-20", "nope"]),
    "schema_version": st.sampled_from([1, 1, 2, True, "1", 1.0]),
    "type": st.sampled_from(["llm_call", "feedback", "other"]),
}


VALID = {"event_id": "0b6b4b0e-8d59-4c1e-9a43-4a3b8f0c9d11", "ts": "2026-11-20T10:00:00.25Z", "schema_version": 1}


@st.composite
def events(draw: Any) -> dict[str, Any]:
    """Mostly valid events (so both answers get exercised), each field now and then odd or missing."""
    kind = draw(st.sampled_from(["llm_call", "feedback"]))
    fields = LLM_CALL_FIELDS if kind == "llm_call" else FEEDBACK_FIELDS
    event: dict[str, Any] = {"type": kind, "schema_version": 1}
    for name, (types, _required) in fields.items():
        roll = draw(st.integers(0, 39))
        if roll == 0:
            continue  # missing
        if roll == 1:
            event[name] = draw(values)  # anything at all
        elif roll <= 3 and name in plausible:
            event[name] = draw(plausible[name])
        elif name in VALID:
            event[name] = VALID[name]
        elif str in types:
            event[name] = draw(st.text(max_size=8))
        elif dict in types:
            event[name] = draw(st.dictionaries(st.text(max_size=3), scalars, max_size=3))
        elif bool in types:
            event[name] = draw(st.booleans())
        elif float in types:
            event[name] = draw(st.one_of(st.integers(-5, 10**6), st.floats(-1, 1e6, allow_nan=False)))
        else:
            event[name] = draw(st.integers(-10, 2**40))
    if draw(st.integers(0, 9)) == 0:
        name = draw(st.sampled_from(["type", "schema_version", "extra"]))
        event[name] = draw(plausible.get(name, values))
    return event


@settings(max_examples=600, deadline=None)
@given(events())
def test_the_fast_path_agrees_with_validate(event: dict[str, Any]) -> None:
    raw = json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")
    fast = fast_decode(raw)
    try:
        slow = from_validated(validate(json.loads(raw)))
    except (SchemaError, ValueError):
        slow = None
    if fast is None:
        return  # validate() decides, and the collector uses its answer
    assert slow is not None, "the fast path accepted what validate() refuses"
    assert type(fast) is type(slow)
    build = event_columns if isinstance(fast, LlmCall) else feedback_columns
    got, want = build([fast], ["s"]), build([slow], ["s"])
    for a, b in zip(got, want, strict=True):
        assert a == b or all(isinstance(x, float) and math.isclose(x, y) for x, y in zip(a, b, strict=True))
