"""The OTLP receiver end to end: the real OpenTelemetry SDK and exporters (HTTP and gRPC), the official
OpenAI instrumentation on the real ``openai`` client against a local OpenAI-compatible server, the receiver,
a real Kafka broker, the real collector and chdb; and back-pressure with the broker stopped."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmsight import otlp
from llmsight.collector import Collector, source_from_url
from llmsight.otlp import decode
from tests.processes import free_port


def collect(kafka_broker: Any, topic: str, store_client: Any) -> None:
    source = source_from_url(f"kafka://{kafka_broker.bootstrap}/{topic}", group_id=f"g-{topic}")
    Collector(source, store_client, http_port=0).run_until_idle(timeout_s=90)


def test_otel_sdk_over_http_and_grpc_reaches_the_events_table(kafka_broker, store_client) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    topic = kafka_broker.create_topic()
    service = otlp.build(sink=f"kafka://{kafka_broker.bootstrap}/{topic}", address="127.0.0.1",
                         http_port=free_port(), grpc_port=free_port(), token="", workers=2).start()
    try:
        deadline = time.monotonic() + 120  # mapped in worker processes: wait until they are up
        while service.receiver.pool.live < 2:
            assert time.monotonic() < deadline, "the mapping workers did not start"
            time.sleep(0.1)
        exporters = {"http": HttpExporter(endpoint=f"http://127.0.0.1:{service.http_port}/v1/traces"),
                     "grpc": GrpcExporter(endpoint=f"127.0.0.1:{service.grpc_port}", insecure=True)}
        for via, exporter in exporters.items():
            provider = TracerProvider(resource=Resource.create({"service.name": f"bot-{via}"}))
            provider.add_span_processor(BatchSpanProcessor(exporter))
            tracer = provider.get_tracer("app")
            for i in range(20):
                with tracer.start_as_current_span("handle request"):
                    with tracer.start_as_current_span("chat gpt-4o-mini") as span:
                        span.set_attributes({
                            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10 + i,
                            "gen_ai.usage.output_tokens": 5, "gen_ai.conversation.id": f"c{i}",
                            "gen_ai.input.messages": json.dumps(
                                [{"role": "user", "parts": [{"type": "text", "content": f"question {i}"}]}]),
                            "gen_ai.output.messages": json.dumps(
                                [{"role": "assistant", "parts": [{"type": "text", "content": f"answer {i}"}]}])})
            assert provider.force_flush(30_000)
            provider.shutdown()
        counts = service.receiver.counters.snapshot()
        assert counts["llm_calls"] == 40 and counts["skipped"] == 40
        assert counts["worker_requests"] == counts["requests"] > 0  # every request, over HTTP and gRPC
    finally:
        service.stop()
    collect(kafka_broker, topic, store_client)
    rows = store_client.query(
        "SELECT service, name, model, input, output, tokens_in, tokens_out, session_id, length(trace_id), parent_id "
        "FROM events FINAL ORDER BY service, tokens_in").result_rows
    assert len(rows) == 40
    for via in ("http", "grpc"):
        mine = [r for r in rows if r[0] == f"bot-{via}"]
        assert [r[5] for r in mine] == list(range(10, 30))
        assert all(r[1] == "chat gpt-4o-mini" and r[2] == "gpt-4o-mini" and r[6] == 5 for r in mine)
        assert {r[3] for r in mine} == {f"user: question {i}" for i in range(20)}
        assert {r[4] for r in mine} == {f"answer {i}" for i in range(20)}
        assert all(r[8] == 32 and len(r[9]) == 16 for r in mine)


class _FakeOpenAI(BaseHTTPRequestHandler):
    """A small OpenAI-compatible server: fixed answers to /v1/chat/completions, streamed or not."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        created = int(time.time())
        if request.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pieces = ["Your card ", "ships ", "tomorrow."]
            chunks = [{"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": created,
                       "model": "gpt-4o-mini-2024-07-18",
                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": p}, "finish_reason": None}]}
                      for p in pieces]
            chunks.append({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": created,
                           "model": "gpt-4o-mini-2024-07-18",
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            chunks.append({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": created,
                           "model": "gpt-4o-mini-2024-07-18", "choices": [],
                           "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}})
            for i, chunk in enumerate(chunks):
                if i == 1:
                    time.sleep(0.05)
                data = f"data: {json.dumps(chunk)}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            done = b"data: [DONE]\n\n"
            self.wfile.write(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")
            return
        body = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": created,
                           "model": "gpt-4o-mini-2024-07-18",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "It is on its way."},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def genai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")


def test_the_official_openai_instrumentation_reaches_the_events_table(kafka_broker, store_client, genai_env) -> None:
    from openai import OpenAI
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    fake = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    topic = kafka_broker.create_topic()
    service = otlp.build(sink=f"kafka://{kafka_broker.bootstrap}/{topic}", address="127.0.0.1",
                         http_port=free_port(), grpc_port=0, token="").start()
    provider = TracerProvider(resource=Resource.create({"service.name": "card-assistant"}))
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://127.0.0.1:{service.http_port}/v1/traces")))
    seen = InMemorySpanExporter()  # what the instrumentation emitted, to hold the stored TTFT against
    provider.add_span_processor(SimpleSpanProcessor(seen))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{fake.server_address[1]}/v1", api_key="sk-test")
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "system", "content": "You help with cards."},
                                           {"role": "user", "content": "Where is my card?"}])
        assert reply.choices[0].message.content == "It is on its way."
        stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "When does it ship?"}])
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Your card ships tomorrow."
        provider.force_flush(30_000)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
        service.stop()
        fake.shutdown()
    collect(kafka_broker, topic, store_client)
    rows = store_client.query("SELECT model, input, output, tokens_in, tokens_out, ttft_ms, service, tags['provider'] "
                              "FROM events FINAL ORDER BY tokens_in").result_rows
    assert len(rows) == 2
    plain, streamed = rows
    assert plain[0] == "gpt-4o-mini" and plain[6] == "card-assistant" and plain[7] == "openai"
    assert plain[1] == "system: You help with cards.\nuser: Where is my card?"
    assert (plain[2], plain[3], plain[4]) == ("It is on its way.", 9, 6)
    assert streamed[1] == "user: When does it ship?"
    assert (streamed[2], streamed[3], streamed[4]) == ("Your card ships tomorrow.", 11, 4)
    # TTFT: the stored figure is exactly what the instrumentation sent as gen_ai.response.time_to_first_chunk
    # (seconds), and none when it sent none. openai-v2 2.4b0 on util-genai 0.4b0 (the newest that install
    # together) emits no first-chunk time at all: no span attribute, span event, log record or
    # gen_ai.client.operation.time_to_first_chunk metric, so nothing honest to derive it from. util-genai 1.x
    # sets the attribute, but openai-v2 2.4b0 does not run on it (pyproject.toml's pin).
    [streamed_span] = [s for s in seen.get_finished_spans() if (s.attributes or {}).get("gen_ai.usage.input_tokens") == 11]
    sent = (streamed_span.attributes or {}).get("gen_ai.response.time_to_first_chunk")
    if sent is None:
        assert streamed[5] is None
    else:
        assert streamed[5] == pytest.approx(float(sent) * 1000.0)  # type: ignore[arg-type]


def test_with_the_broker_stopped_no_request_is_answered_200_and_lost(kafka_broker, store_client) -> None:
    topic = kafka_broker.create_topic()
    service = otlp.build(sink=f"kafka://{kafka_broker.bootstrap}/{topic}", address="127.0.0.1",
                         http_port=free_port(), grpc_port=0, token="").start()
    os.environ.pop("LLMSIGHT_OTLP_WRITE_TIMEOUT_S", None)
    service.receiver.write_timeout = 2.0

    def request(i: int) -> bytes:
        body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bp"}}]},
                                   "scopeSpans": [{"spans": [{
                                       "traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": "chat",
                                       "startTimeUnixNano": str(time.time_ns()), "endTimeUnixNano": str(time.time_ns()),
                                       "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                                      {"key": "gen_ai.request.model", "value": {"stringValue": "m"}}]}]}]}]}
        return decode.parse_traces(json.dumps(body).encode(), "application/json").SerializeToString()

    def send(i: int) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{service.http_port}/v1/traces", data=request(i),
                                     headers={"Content-Type": "application/x-protobuf"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Retry-After", "")

    answered: dict[int, int] = {}
    try:
        for i in range(5):
            answered[i] = send(i)[0]
        kafka_broker.stop()
        try:
            for i in range(5, 15):
                code, retry_after = send(i)
                answered[i] = code
                assert code in (429, 503) and retry_after, (i, code)
        finally:
            kafka_broker.start()
        # The broker is back: the exporter's retries go through.
        deadline = time.monotonic() + 60
        for i in range(5, 15):
            while (code := send(i)[0]) != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            answered[i] = code
    finally:
        service.stop()
    assert all(code == 200 for code in answered.values()), answered
    collect(kafka_broker, topic, store_client)
    stored = {r[0] for r in store_client.query("SELECT trace_id FROM events FINAL").result_rows}
    assert stored == {f"{i + 1:032x}" for i in range(15)}
