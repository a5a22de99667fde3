"""The OTLP receiver's mapping, span by span, and its answers to bad input, over real HTTP into a real spool.

``data/otlp_spans.json`` holds OTLP/JSON requests shaped as the GenAI conventions (current and older),
OpenLLMetry, OpenInference and OpenLIT document their attributes, each with the fields it must map to.
"""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from llmsight import otlp
from llmsight.errors import ConfigError
from llmsight.otlp import decode
from llmsight.spool import list_segments, read_lines
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((Path(__file__).parent / "data" / "otlp_spans.json").read_text())


@pytest.fixture
def receiver(tmp_path: Path):
    spool = tmp_path / "spool"
    service = otlp.build(sink=f"file://{spool}", address="127.0.0.1", http_port=free_port(), grpc_port=0,
                         token="", workers=0).start()  # in-process (test_otlp_workers: the same in workers)
    service.spool = spool  # type: ignore[attr-defined]
    yield service
    service.stop()


def post(service: Any, path: str, body: bytes, content_type: str = "application/json",
         headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{service.http_port}{path}", data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def written(service: Any) -> list[dict[str, Any]]:
    service.receiver.writer.close(1.0)  # closes the active segment so it can be read
    out = []
    for segment in list_segments(service.spool):
        out += [json.loads(raw) for _, _, raw in read_lines(segment.path)]
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_each_documented_span_shape_maps_as_the_table_says(case: dict[str, Any], receiver: Any) -> None:
    status, body, _ = post(receiver, "/v1/traces", json.dumps(case["request"]).encode())
    assert status == 200, body
    assert json.loads(body or b"{}").get("partialSuccess", {}).get("rejectedSpans") is None
    events = written(receiver)
    expect = dict(case["expect"])
    skipped = expect.pop("skipped", 0)
    assert receiver.receiver.counters.snapshot()["skipped"] == skipped
    if skipped:
        assert events == []
        return
    calls = [e for e in events if e["type"] == "llm_call"]
    assert len(calls) == 1
    call = calls[0]
    for secret in expect.pop("absent", []):
        assert secret not in json.dumps(events)
    feedback = expect.pop("feedback", None)
    if feedback is not None:
        [got] = [e for e in events if e["type"] == "feedback"]
        assert {k: got[k] for k in feedback} == feedback
    for key, value in expect.items():
        if isinstance(value, float):
            assert call[key] == pytest.approx(value), key
        else:
            assert call[key] == value, key
    assert call["metadata"]["otel"]["span_id"] == case["request"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"]


def test_protobuf_and_json_map_to_the_same_event_and_a_retry_has_the_same_event_id(receiver: Any) -> None:
    request = CASES[0]["request"]
    as_proto = decode.parse_traces(json.dumps(request).encode(), "application/json").SerializeToString()
    assert post(receiver, "/v1/traces", as_proto, "application/x-protobuf")[0] == 200
    assert post(receiver, "/v1/traces", gzip.compress(as_proto), "application/x-protobuf",
                {"Content-Encoding": "gzip"})[0] == 200
    assert post(receiver, "/v1/traces", json.dumps(request).encode())[0] == 200
    events = written(receiver)
    assert len(events) == 3 and len({json.dumps(e, sort_keys=True) for e in events}) == 1


def test_the_readme_holds_the_mapping_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert otlp.table_markdown() in readme


def test_evaluation_logs_become_feedback_and_content_logs_without_ids_are_rejected_with_a_reason(receiver: Any) -> None:
    def record(name: str, attrs: dict[str, Any], trace: str = "4bf92f3577b34da6a3ce929d0e0e4736") -> dict[str, Any]:
        return {"timeUnixNano": "1767000000000000000", "eventName": name, "traceId": trace,
                "spanId": "00f067aa0ba902b7",
                "attributes": [{"key": k, "value": {"stringValue": v} if isinstance(v, str) else {"doubleValue": v}}
                               for k, v in attrs.items()]}
    logs = {"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": [
        record("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "toxicity", "gen_ai.evaluation.score.value": 0.1,
                                            "gen_ai.evaluation.score.label": "fail"}),
        record("gen_ai.user.message", {}),  # held for its span (tests/unit/test_otlp_join.py)
        {"eventName": "gen_ai.user.message", "body": {"kvlistValue": {"values": [
            {"key": "content", "value": {"stringValue": "no ids: no call to join"}}]}}},
        {"body": {"stringValue": "an ordinary log line"}},
    ]}]}]}
    status, body, _ = post(receiver, "/v1/logs", json.dumps(logs).encode())
    assert status == 200
    partial = json.loads(body)["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1" and "without a trace and span id" in partial["errorMessage"]
    [event] = written(receiver)
    assert event["type"] == "feedback" and event["accepted"] is False and event["score"] == pytest.approx(0.1)
    assert receiver.receiver.counters.snapshot()["skipped"] == 1


def test_bad_input_is_refused_and_dead_lettered_and_good_spans_beside_bad_ids_go_on(receiver: Any) -> None:
    proto = decode.parse_traces(json.dumps(CASES[0]["request"]).encode(), "application/json").SerializeToString()
    # truncated protobuf
    status, body, _ = post(receiver, "/v1/traces", proto[: len(proto) // 2], "application/x-protobuf")
    assert status == 400
    # not JSON; an unknown content type; a truncated gzip stream
    assert post(receiver, "/v1/traces", b"{not json")[0] == 400
    assert post(receiver, "/v1/traces", b"x", "text/csv")[0] == 415
    assert post(receiver, "/v1/traces", gzip.compress(proto)[:-12], "application/x-protobuf",
                {"Content-Encoding": "gzip"})[0] == 400
    # a gzip bomb: 64 MB of zeros in ~64 KB, over the 16 MB limit; refused without inflating it all
    bomb = gzip.compress(b"\0" * (64 << 20), 9)
    assert len(bomb) < 200_000
    assert post(receiver, "/v1/traces", bomb, "application/x-protobuf", {"Content-Encoding": "gzip"})[0] == 413
    # unknown fields and an unknown AnyValue kind are ignored; a span with a bad id is rejected alone
    request = json.loads(json.dumps(CASES[0]["request"]))
    spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["futureField"] = {"x": 1}
    spans[0]["attributes"].append({"key": "weird", "value": {"futureValue": 3}})
    bad = json.loads(json.dumps(spans[0]))
    bad["spanId"] = ""
    spans.append(bad)
    status, body, _ = post(receiver, "/v1/traces", json.dumps(request).encode())
    assert status == 200
    assert json.loads(body)["partialSuccess"]["rejectedSpans"] == "1"
    # a huge attribute value: cut to the text cap and flagged truncated
    huge = json.loads(json.dumps(CASES[0]["request"]))
    attrs = huge["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
    attrs.append({"key": "gen_ai.prompt", "value": {"stringValue": "y" * 5_000_000}})
    for a in attrs:
        if a["key"] == "gen_ai.input.messages":
            a["value"]["stringValue"] = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "z" * 3_000_000}]}])
    huge["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "00f067aa0ba902b8"
    assert post(receiver, "/v1/traces", json.dumps(huge).encode())[0] == 200
    events = written(receiver)
    calls = [e for e in events if e.get("type") == "llm_call"]
    dead = [e for e in events if e.get("type") == "otlp_dead_letter"]
    assert len(calls) == 2
    assert max(len(c["input"]) for c in calls) == 32_768 and any(c["truncated"] for c in calls)
    assert {d["reason"].split(":")[0] for d in dead} >= {"bad protobuf", "bad JSON", "truncated gzip data"}
    assert all(len(d["payload_head"]) <= 4096 for d in dead)


def test_a_bearer_token_is_required_when_set_and_beyond_localhost(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LLMSIGHT_OTLP_TOKEN"):
        otlp.build(sink=f"file://{tmp_path}", address="0.0.0.0", http_port=free_port(), grpc_port=0, token="")
    service = otlp.build(sink=f"file://{tmp_path}", address="127.0.0.1", http_port=free_port(), grpc_port=0,
                         token="s3cret-token").start()
    try:
        body = json.dumps(CASES[0]["request"]).encode()
        assert post(service, "/v1/traces", body)[0] == 401
        assert post(service, "/v1/traces", body, headers={"Authorization": "Bearer wrong"})[0] == 401
        assert post(service, "/v1/traces", body, headers={"Authorization": "Bearer s3cret-token"})[0] == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{service.http_port}/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        service.stop()


def test_responses_are_the_official_messages() -> None:
    # What the exporters parse: an empty response means full success.
    assert ExportTraceServiceResponse().SerializeToString() == b""
    assert json_format.MessageToDict(ExportLogsServiceResponse()) == {}
    assert ExportTraceServiceRequest.DESCRIPTOR.full_name == "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"
