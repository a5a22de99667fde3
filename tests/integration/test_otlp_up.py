"""``llmsight up`` runs the OTLP receiver too: a span sent over OTLP/HTTP and one over OTLP/gRPC by the
real OpenTelemetry exporters reach the embedded stack's events table through the same spool its
collector reads; ``--no-otlp`` leaves the receiver out; a port in use stops ``up`` with what to do."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from llmsight.cli.up import EmbeddedStack
from llmsight.errors import ConfigError
from llmsight.store.client import parse_url
from tests.processes import free_port
from tests.unit.test_helm import _parse_cli


def _url(store_url: str, database: str) -> str:
    target = parse_url(store_url, database)
    return target.display() if target.kind == "chdb" else f"{store_url.rstrip('/')}/{database}"


def _stack(store_url: str, database: str, tmp_path: Path, otlp: bool) -> EmbeddedStack:
    return EmbeddedStack(_url(store_url, database), f"file://{tmp_path / 'spool'}", http_port=0,
                         collector_http_port=0, otlp=otlp)


def _send(tracer: Any, via: str) -> None:
    with tracer.start_as_current_span(f"chat via {via}") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                             "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 3,
                             "gen_ai.input.messages": json.dumps(
                                 [{"role": "user", "parts": [{"type": "text", "content": f"hello over {via}"}]}])})


def test_up_receives_otlp_over_http_and_grpc_into_its_events_table(
        store_url: str, store_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    http_port, grpc_port = free_port(), free_port()
    monkeypatch.setenv("LLMSIGHT_OTLP_HTTP_PORT", str(http_port))
    monkeypatch.setenv("LLMSIGHT_OTLP_GRPC_PORT", str(grpc_port))
    monkeypatch.delenv("LLMSIGHT_OTLP_ADDRESS", raising=False)
    stack = _stack(store_url, store_database, tmp_path, otlp=True)
    try:
        stack.start(warm_up=False, weekly_export=False)
        assert stack.otlp is not None
        assert (stack.otlp.http_port, stack.otlp.grpc_port) == (http_port, grpc_port)
        assert stack.otlp.http.server.server_address[0] == "127.0.0.1"  # localhost only, as `up` is
        for via, exporter in (("http", HttpExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces")),
                              ("grpc", GrpcExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True))):
            provider = TracerProvider(resource=Resource.create({"service.name": "up-app"}))
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            _send(provider.get_tracer("app"), via)
            provider.shutdown()
        assert stack.otlp.receiver.counters.snapshot()["llm_calls"] == 2
        deadline = time.monotonic() + 60
        rows: list[Any] = []
        while time.monotonic() < deadline:
            rows = stack.client.query("SELECT name, model, input, tokens_in, service FROM events FINAL "
                                      "ORDER BY name").result_rows
            if len(rows) >= 2:
                break
            time.sleep(0.5)
    finally:
        stack.stop()
    assert rows == [("chat via grpc", "gpt-4o-mini", "user: hello over grpc", 7, "up-app"),
                    ("chat via http", "gpt-4o-mini", "user: hello over http", 7, "up-app")]
    # Stopped: the ports are free again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", http_port))


def test_a_port_in_use_stops_up_with_what_to_change(store_url: str, store_database: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("LLMSIGHT_OTLP_HTTP_PORT", str(port))
        monkeypatch.setenv("LLMSIGHT_OTLP_GRPC_PORT", str(free_port()))
        stack = _stack(store_url, store_database, tmp_path, otlp=True)
        try:
            with pytest.raises(ConfigError, match="--no-otlp") as info:
                stack.start(warm_up=False, weekly_export=False)
        finally:
            stack.stop()
    assert str(port) in str(info.value)
    assert "LLMSIGHT_OTLP_HTTP_PORT" in str(info.value)


def test_no_otlp_leaves_the_receiver_out(store_url: str, store_database: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert _parse_cli(["up", "--no-otlp"])[1]["otlp"] is False
    assert _parse_cli(["up"])[1]["otlp"] is None  # then LLMSIGHT_UP_OTLP decides (on by default)
    port = free_port()
    monkeypatch.setenv("LLMSIGHT_OTLP_HTTP_PORT", str(port))
    stack = _stack(store_url, store_database, tmp_path, otlp=False)
    try:
        stack.start(warm_up=False, weekly_export=False)
        assert stack.otlp is None
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nobody listens there
    finally:
        stack.stop()


def test_a_grpc_port_in_use_frees_the_http_port_it_had_taken(store_url: str, store_database: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    http_port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("LLMSIGHT_OTLP_HTTP_PORT", str(http_port))
        monkeypatch.setenv("LLMSIGHT_OTLP_GRPC_PORT", str(busy.getsockname()[1]))
        stack = _stack(store_url, store_database, tmp_path, otlp=True)
        try:
            with pytest.raises(ConfigError, match="OTLP/gRPC"):
                stack.start(warm_up=False, weekly_export=False)
        finally:
            stack.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", http_port))
