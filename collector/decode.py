"""Decoding and validating one message: a fast path in C (msgspec), and the schema's own validate().

``llmsight.schema.validate`` is the contract; it costs about as much as kafka-python spends
parsing the record, and ``json.loads`` as much again. msgspec decodes JSON straight into typed
structs whose field types mirror ``LLM_CALL_FIELDS``/``FEEDBACK_FIELDS`` one for one, about 8x
faster. It is only a fast way to say *yes*:

* whatever msgspec or the checks below refuse goes through ``json`` + ``validate()``, which
  decide and give the reason a dead letter keeps;
* so an event is accepted by the fast path only if ``validate()`` accepts it too, with the same
  stored values (``tests/unit/test_collector_decode.py`` checks both directions on generated
  events, and the structs against the schema's field tables).
"""

from __future__ import annotations

import json
import re
from typing import Any, Union

import msgspec

from llmsight.schema import FEEDBACK, LLM_CALL, SUPPORTED_SCHEMA_VERSIONS, parse_ts, validate

# uuid.UUID() accepts more spellings (braces, urn:, no hyphens); those take the slow path.
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# Union[...] rather than "X | None": msgspec reads these annotations at runtime on Python 3.10.
_Str = Union[str, None]  # noqa: UP007
_Num = Union[float, None]  # noqa: UP007 - msgspec's float takes JSON integers too, as validate's (int, float)
_Int = Union[int, None]  # noqa: UP007
_Dict = Union[dict, None]  # noqa: UP007
_Bool = Union[bool, None]  # noqa: UP007


class LlmCall(msgspec.Struct, tag_field="type", tag=LLM_CALL):
    """An ``llm_call`` event; field types as in ``schema.LLM_CALL_FIELDS``."""

    schema_version: int
    event_id: str
    trace_id: str
    ts: str  # the ISO string as decoded; fast_decode() replaces it with the parsed datetime
    service: str
    name: str
    latency_ms: float
    parent_id: _Str = None
    environment: _Str = None
    model: _Str = None
    prompt_version: _Str = None
    input: _Str = None
    output: _Str = None
    error: _Str = None
    error_type: _Str = None
    ttft_ms: _Num = None
    tokens_in: _Int = None
    tokens_out: _Int = None
    cost_usd: _Num = None
    user_id: _Str = None
    session_id: _Str = None
    tags: _Dict = None
    metadata: _Dict = None
    truncated: _Bool = None


class Feedback(msgspec.Struct, tag_field="type", tag=FEEDBACK):
    """A ``feedback`` event; field types as in ``schema.FEEDBACK_FIELDS``."""

    schema_version: int
    event_id: str
    trace_id: str
    ts: str  # as in LlmCall
    accepted: _Bool = None
    score: _Num = None
    comment: _Str = None
    edited_output: _Str = None
    user_id: _Str = None


Event = Union[LlmCall, Feedback]  # noqa: UP007
_fast = msgspec.json.Decoder(Event).decode
_slow = json.JSONDecoder().decode


def fast_decode(raw: bytes) -> LlmCall | Feedback | None:
    """The event if the fast path can vouch for it, else None (then use :func:`slow_decode`)."""
    try:
        event = _fast(raw)
    except msgspec.DecodeError:
        return None
    if event.schema_version not in SUPPORTED_SCHEMA_VERSIONS or not _CANONICAL_UUID.fullmatch(event.event_id):
        return None
    if type(event) is LlmCall and event.latency_ms < 0:
        return None
    try:
        event.ts = parse_ts(event.ts)
    except (ValueError, TypeError):
        return None
    return event


def slow_decode(raw: bytes) -> tuple[Any, LlmCall | Feedback]:
    """``json`` + ``validate()``: raises ValueError (bad JSON) or SchemaError (with the reason).

    Returns the decoded JSON too, for the checks that need the original values.
    """
    decoded = _slow(raw.decode("utf-8"))  # the SDK writes UTF-8; skips json.loads' detection
    return decoded, from_validated(validate(decoded))


def from_validated(event: dict[str, Any]) -> LlmCall | Feedback:
    """The struct of an event ``validate()`` returned (its keys are exactly the struct's fields)."""
    fields = {k: v for k, v in event.items() if k != "type"}
    return LlmCall(**fields) if event["type"] == LLM_CALL else Feedback(**fields)
