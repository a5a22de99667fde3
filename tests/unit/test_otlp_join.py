"""GenAI content that arrives as OTLP log records is joined with its span by trace and span id, whether
the span came first or later, over real HTTP into a real spool (the events table keeps the last row
written for an event_id, so the last one written for a call is what the store holds)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from llmsight.otlp.join import Joiner
from llmsight.otlp.mapping import Event, Span
from tests.unit import test_otlp_mapping
from tests.unit.test_otlp_mapping import post, written

TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"
T0 = 1_767_000_000_000_000_000

receiver = test_otlp_mapping.receiver  # the fixture: an in-process receiver on a spool


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": _value(x)} for k, x in v.items()]}}
    if isinstance(v, list):
        return {"arrayValue": {"values": [_value(x) for x in v]}}
    raise TypeError(v)


def span_request(attrs: dict[str, Any], span_id: str = SPAN) -> bytes:
    """A chat span as the official OpenAI instrumentation sends it without content on the span."""
    base = {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 5}
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "support-bot"}}]},
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2"}, "spans": [{
            "traceId": TRACE, "spanId": span_id, "name": "chat gpt-4o-mini", "kind": 3,
            "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 420_000_000),
            "attributes": [{"key": k, "value": _value(v)} for k, v in {**base, **attrs}.items()]}]}]}]}).encode()


def log_request(*records: tuple[str, Any, int], span_id: str = SPAN) -> bytes:
    """Log records (event name, body or attributes, offset in ms) as the OTel SDK's log exporter sends them."""
    out = []
    for name, payload, offset_ms in records:
        record: dict[str, Any] = {"timeUnixNano": str(T0 + offset_ms * 1_000_000), "eventName": name,
                                  "traceId": TRACE, "spanId": span_id,
                                  "attributes": [{"key": "gen_ai.system", "value": {"stringValue": "openai"}}]}
        if name == "gen_ai.client.inference.operation.details":
            record["attributes"] += [{"key": k, "value": _value(v)} for k, v in payload.items()]
        else:
            record["body"] = _value(payload)
        out.append(record)
    return json.dumps({"resourceLogs": [{"resource": {}, "scopeLogs": [{
        "scope": {"name": "opentelemetry.instrumentation.openai_v2"}, "logRecords": out}]}]}).encode()


USER = ("gen_ai.user.message", {"content": "Where is my card?"}, 1)
SYSTEM = ("gen_ai.system.message", {"content": "You help with cards."}, 0)
CHOICE = ("gen_ai.choice", {"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "It ships tomorrow."}}, 400)


def calls(service: Any) -> list[dict[str, Any]]:
    return [e for e in written(service) if e["type"] == "llm_call"]


def test_content_logs_before_their_span_are_joined_when_it_comes(receiver: Any) -> None:
    status, body, _ = post(receiver, "/v1/logs", log_request(SYSTEM, USER, CHOICE))
    assert status == 200 and "partialSuccess" not in json.loads(body)  # accepted, held for the span
    assert post(receiver, "/v1/traces", span_request({}))[0] == 200
    [call] = calls(receiver)
    assert call["input"] == "system: You help with cards.\nuser: Where is my card?"
    assert call["output"] == "It ships tomorrow."
    assert (call["model"], call["tokens_in"], call["service"]) == ("gpt-4o-mini", 12, "support-bot")
    assert call["latency_ms"] == pytest.approx(420.0)


def test_a_span_first_is_written_again_with_each_content_log_that_follows(receiver: Any) -> None:
    assert post(receiver, "/v1/traces", span_request({}))[0] == 200
    assert post(receiver, "/v1/logs", log_request(USER))[0] == 200
    assert post(receiver, "/v1/logs", log_request(CHOICE))[0] == 200
    first, second, last = calls(receiver)
    assert first["event_id"] == second["event_id"] == last["event_id"]  # one call, the last row kept
    assert (first["input"], first["output"]) == (None, None)
    assert (second["input"], second["output"]) == ("user: Where is my card?", None)
    assert (last["input"], last["output"]) == ("user: Where is my card?", "It ships tomorrow.")
    assert last["latency_ms"] == pytest.approx(420.0) and last["tokens_out"] == 5
    counts = receiver.receiver.counters.snapshot()
    assert (counts["content_logs"], counts["content_joined"], counts["llm_calls"]) == (2, 2, 1)


def test_the_operation_details_event_joins_in_either_order(receiver: Any) -> None:
    details = ("gen_ai.client.inference.operation.details", {
        "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "Block my card"}]}],
        "gen_ai.output.messages": [{"role": "assistant", "parts": [{"type": "text", "content": "Blocked."}],
                                    "finish_reason": "stop"}]}, 420)
    other = "aaa19b7ec3c1b174"
    assert post(receiver, "/v1/traces", span_request({}))[0] == 200
    assert post(receiver, "/v1/logs", log_request(details))[0] == 200
    assert post(receiver, "/v1/logs", log_request(details, span_id=other))[0] == 200
    assert post(receiver, "/v1/traces", span_request({}, span_id=other))[0] == 200
    by_span = {c["metadata"]["otel"]["span_id"]: c for c in calls(receiver)}  # the last row of each call
    for span_id in (SPAN, other):
        assert (by_span[span_id]["input"], by_span[span_id]["output"]) == ("user: Block my card", "Blocked.")


def test_logs_for_a_call_that_already_has_its_content_change_nothing(receiver: Any) -> None:
    on_span = {"gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
               "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "hello"}]}])}
    assert post(receiver, "/v1/traces", span_request(on_span))[0] == 200
    assert post(receiver, "/v1/logs", log_request(("gen_ai.user.message", {"content": "other"}, 1)))[0] == 200
    [call] = calls(receiver)
    assert (call["input"], call["output"]) == ("user: hi", "hello")
    assert receiver.receiver.joiner.duplicates == 1


def test_an_exporters_retry_of_a_log_record_does_not_repeat_the_message(receiver: Any) -> None:
    assert post(receiver, "/v1/traces", span_request({}))[0] == 200
    assert post(receiver, "/v1/logs", log_request(USER))[0] == 200
    assert post(receiver, "/v1/logs", log_request(USER))[0] == 200  # the same record again
    assert calls(receiver)[-1]["input"] == "user: Where is my card?"


def _span(span_id: str) -> Span:
    return Span(TRACE, span_id, "", "chat", T0, T0 + 1, 0, "", {"gen_ai.operation.name": "chat"}, {})


def _record(span_id: str, at: int = 0) -> Event:
    return Event("gen_ai.user.message", T0 + at, {}, {"content": "q"}, TRACE, span_id)


def test_content_whose_span_never_comes_expires_and_is_counted() -> None:
    now = [0.0]
    joiner = Joiner(window_s=30.0, max_entries=100, clock=lambda: now[0])
    assert joiner.content(_record("0000000000000001")) is None
    assert joiner.content(_record("0000000000000001", 5)) is None
    now[0] = 29.0
    assert len(joiner) == 1 and joiner.unjoined == 0
    now[0] = 31.0
    joiner.content(_record("0000000000000002"))  # any call tidies up
    assert joiner.unjoined == 2 and len(joiner) == 1
    # A span within the window gets the records held for it.
    span = joiner.span(_span("0000000000000002"))
    assert [e.name for e in span.events] == ["gen_ai.user.message"]


def test_the_join_holds_at_most_max_entries_oldest_out_first() -> None:
    joiner = Joiner(window_s=300.0, max_entries=3, clock=time.monotonic)
    for i in range(1, 6):
        joiner.content(_record(f"{i:016x}"))
    assert len(joiner) == 3 and joiner.unjoined == 2
    assert joiner.span(_span(f"{1:016x}")).events == []  # evicted
    assert len(joiner.span(_span(f"{5:016x}")).events) == 1
    # Spans that still lack content are kept and count towards the cap; complete ones leave a marker.
    joiner.mapped(_span(f"{6:016x}"), complete=True)
    assert joiner.content(_record(f"{6:016x}")) is None and joiner.duplicates == 1


def test_content_that_comes_while_its_span_is_being_written_is_written_after_it() -> None:
    joiner = Joiner()
    span = joiner.span(_span("0000000000000007"))  # no content yet: mapped and written as it is
    assert joiner.content(_record("0000000000000007")) is None  # held: the span is not known as written yet
    again = joiner.mapped(span, complete=False)
    assert again is not None and [e.name for e in again.events] == ["gen_ai.user.message"]
    assert joiner.mapped(again, complete=True) is None
    assert joiner.content(_record("0000000000000007", 9)) is None and joiner.duplicates == 1


def test_calls_that_have_their_content_never_push_out_the_ones_still_waiting() -> None:
    joiner = Joiner(window_s=300.0, max_entries=3)
    assert joiner.content(_record("00000000000000aa")) is None  # waits for its span
    for i in range(10):
        joiner.mapped(_span(f"{0x100 + i:016x}"), complete=True)
    assert len(joiner) == 1 and joiner.unjoined == 0
    assert [e.name for e in joiner.span(_span("00000000000000aa")).events] == ["gen_ai.user.message"]
    # The markers are capped too: the oldest complete call is forgotten, a record for it is held as new.
    assert joiner.content(_record(f"{0x100:016x}")) is None and joiner.duplicates == 0
    assert joiner.content(_record(f"{0x109:016x}")) is None and joiner.duplicates == 1
