"""Decoding and validating one message: a fast path in C (msgspec), and the schema's own validate().

``llmsight.schema.validate`` is the contract; it costs about as much as kafka-python spends
parsing the record, and ``json.loads`` as much again. msgspec decodes JSON straight into typed
structs built from ``LLM_CALL_FIELDS``/``FEEDBACK_FIELDS``/``HEARTBEAT_FIELDS`` (so they cannot
drift; llm_call and feedback also read the envelope's ``producer_id``), about 8x faster. It is only a fast way to say *yes*:

* whatever msgspec or the checks below refuse goes through ``json`` + ``validate()``, which
  decide and give the reason a dead letter keeps;
* so an event is accepted by the fast path only if ``validate()`` accepts it too, with the same
  stored values (``tests/unit/test_collector_decode.py`` checks both directions on generated
  events, and the structs against the schema's field tables).
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional, Union

import msgspec

from llmsight.schema import (
    FEEDBACK,
    FEEDBACK_FIELDS,
    HEARTBEAT,
    HEARTBEAT_FIELDS,
    LLM_CALL,
    LLM_CALL_FIELDS,
    SUPPORTED_SCHEMA_VERSIONS,
    parse_ts,
    validate,
)

# uuid.UUID() accepts more spellings (braces, urn:, no hyphens); those take the slow path.
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# Envelope fields the collector reads beside the schema's tables: ``producer_id`` names the SDK process
# that sent an llm_call or feedback event (the loss audit counts stored rows per producer with it).
# ``validate()`` ignores keys it does not know, so events carrying it are valid for every collector.
PRODUCER_ID = "producer_id"


def _struct(name: str, kind: str, fields: dict[str, tuple[tuple[type, ...], bool]],
            envelope: tuple[str, ...] = ()) -> type[msgspec.Struct]:
    """A struct with the fields of ``schema.validate``'s table for ``kind``, tagged by ``type``.

    Required fields come first (msgspec wants them before the defaults); a field that may be
    missing is ``Optional`` with ``None`` as default, since validate() takes null for any of them.
    ``ts`` is the ISO string as decoded; fast_decode() replaces it with the parsed datetime.
    ``tags`` is stored as strings: the fast path takes only string values (what the SDK sends), so
    the columns need not convert them; any other map goes the slow way, where from_validated()
    converts it.
    """
    def annotation(field: str, types: tuple[type, ...]) -> Any:
        if field == "tags":
            return dict[str, str]
        # msgspec's float takes JSON integers too, as validate's (int, float) does; neither takes bool.
        return float if float in types else next(t for t in types if t is not type(None))

    # A table entry may name one bare type (HEARTBEAT_FIELDS' counters: ``(int, True)``).
    fields = {f: (types if isinstance(types, tuple) else (types,), req) for f, (types, req) in fields.items()}
    required = [(f, annotation(f, types)) for f, (types, req) in fields.items() if req]
    optional = [(f, Optional[annotation(f, types)], None)  # noqa: UP045
                for f, (types, req) in fields.items() if not req]
    optional += [(f, Optional[str], None) for f in envelope]  # noqa: UP045
    # gc=False: a batch holds thousands of these; untracked, they cost the cyclic garbage collector
    # nothing (they never form cycles: their fields are strings, numbers and plain dicts).
    return msgspec.defstruct(name, [("schema_version", int), *required, *optional],
                             tag_field="type", tag=kind, module=__name__, gc=False)


LlmCall = _struct("LlmCall", LLM_CALL, LLM_CALL_FIELDS, (PRODUCER_ID,))
Feedback = _struct("Feedback", FEEDBACK, FEEDBACK_FIELDS, (PRODUCER_ID,))
Heartbeat = _struct("Heartbeat", HEARTBEAT, HEARTBEAT_FIELDS)
_COUNTERS = ("sent", "dropped", "spilled", "failed")

Event = Union[LlmCall, Feedback, Heartbeat]  # noqa: UP007
_fast = msgspec.json.Decoder(Event).decode
_slow = json.JSONDecoder().decode


def fast_decode(raw: bytes) -> LlmCall | Feedback | Heartbeat | None:
    """The event if the fast path can vouch for it, else None (then use :func:`slow_decode`)."""
    try:
        event = _fast(raw)
    except msgspec.DecodeError:
        return None
    if event.schema_version not in SUPPORTED_SCHEMA_VERSIONS or not _CANONICAL_UUID.fullmatch(event.event_id):
        return None
    kind = type(event)
    if kind is LlmCall:
        if event.latency_ms < 0:
            return None
    elif kind is Heartbeat and min(getattr(event, c) for c in _COUNTERS) < 0:
        return None
    try:
        event.ts = parse_ts(event.ts)
    except (ValueError, TypeError):
        return None
    return event


def slow_decode(raw: bytes) -> tuple[Any, LlmCall | Feedback | Heartbeat]:
    """``json`` + ``validate()``: raises ValueError (bad JSON) or SchemaError (with the reason).

    Returns the decoded JSON too, for the checks that need the original values.
    """
    decoded = _slow(raw.decode("utf-8"))  # the SDK writes UTF-8; skips json.loads' detection
    event = from_validated(validate(decoded))
    if type(event) is not Heartbeat:
        producer = decoded.get(PRODUCER_ID)
        event.producer_id = producer if isinstance(producer, str) else None
    return decoded, event


def unknown_version(decoded: Any) -> int | None:
    """The ``schema_version`` of a decoded event when it is an integer this collector does not know."""
    version = decoded.get("schema_version") if isinstance(decoded, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version not in SUPPORTED_SCHEMA_VERSIONS:
        return version
    return None


def from_validated(event: dict[str, Any]) -> LlmCall | Feedback | Heartbeat:
    """The struct of an event ``validate()`` returned (its keys are exactly the struct's fields),
    with ``tags`` turned to strings as the fast path would have them."""
    fields = {k: v for k, v in event.items() if k != "type"}
    if fields.get("tags"):
        fields["tags"] = {str(k): str(v) for k, v in fields["tags"].items()}
    kind = event["type"]
    if kind == LLM_CALL:
        return LlmCall(**fields)
    if kind == HEARTBEAT:
        return Heartbeat(**fields)
    return Feedback(**fields)
