"""The official OpenAI instrumentation with its content sent as OTLP log records, as an app runs it: a small
Python app in its own process (the instrumentation reads its modes once per process) calls a local
OpenAI-compatible server, plainly and streamed, and exports spans and logs to the receiver over
OTLP/HTTP; the receiver joins each call's content logs with its span and writes to a real Kafka broker;
the collector stores; the events table has each call with its prompt and answer.

Two modes: the default (``gen_ai.user.message`` / ``gen_ai.choice`` log records) and the latest
conventions with ``event_only`` (one ``gen_ai.client.inference.operation.details`` log record per call).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from llmsight import otlp
from tests.integration.test_otlp_kafka import _FakeOpenAI, collect, free_port

APP = """
import sys
from openai import OpenAI
from opentelemetry import _logs, trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

resource = Resource.create({"service.name": "card-assistant"})
traces, logs = TracerProvider(resource=resource), LoggerProvider(resource=resource)
traces.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
trace.set_tracer_provider(traces)
_logs.set_logger_provider(logs)
OpenAIInstrumentor().instrument()

client = OpenAI(base_url=sys.argv[1], api_key="sk-test")
client.chat.completions.create(model="gpt-4o-mini", messages=[
    {"role": "system", "content": "You help with cards."}, {"role": "user", "content": "Where is my card?"}])
stream = client.chat.completions.create(model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
                                        messages=[{"role": "user", "content": "When does it ship?"}])
print("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
traces.shutdown()
logs.shutdown()
"""

MODES = {
    "message-events": {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},
    "details-event": {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                      "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "event_only"},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_content_sent_as_log_records_is_stored_with_its_call(mode: str, kafka_broker: Any, store_client: Any,
                                                             tmp_path: Path) -> None:
    fake = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    topic = kafka_broker.create_topic()
    service = otlp.build(sink=f"kafka://{kafka_broker.bootstrap}/{topic}", address="127.0.0.1",
                         http_port=free_port(), grpc_port=0, token="").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMSIGHT_"))}
    env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{service.http_port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_BSP_SCHEDULE_DELAY": "200",
                "OTEL_BLRP_SCHEDULE_DELAY": "200", **MODES[mode]})
    script = tmp_path / "app.py"
    script.write_text(APP)
    try:
        run = subprocess.run([sys.executable, str(script), f"http://127.0.0.1:{fake.server_address[1]}/v1"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.strip() == "Your card ships tomorrow."
        counts = service.receiver.counters.snapshot()
    finally:
        service.stop()
        fake.shutdown()
    assert counts["llm_calls"] == 2 and counts["content_logs"] >= 2, counts
    collect(kafka_broker, topic, store_client)
    rows = store_client.query("SELECT model, input, output, tokens_in, tokens_out, service, tags['provider'] "
                              "FROM events FINAL ORDER BY tokens_in").result_rows
    assert rows == [
        ("gpt-4o-mini", "system: You help with cards.\nuser: Where is my card?", "It is on its way.", 9, 6,
         "card-assistant", "openai"),
        ("gpt-4o-mini", "user: When does it ship?", "Your card ships tomorrow.", 11, 4, "card-assistant", "openai"),
    ]
