"""Trace requests mapped in worker processes (``LLMSIGHT_OTLP_WORKERS``) write what the receiver writes when
it maps them itself: every documented span shape, the join with content log records in either order, bad
payloads (400 and a dead letter), and a worker that is killed (the request is mapped in-process, the pool
comes back). Real spawned worker processes, real HTTP, a real spool."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from llmsight import otlp
from tests.unit.test_otlp_join import CHOICE, SYSTEM, USER, log_request, span_request
from tests.unit.test_otlp_mapping import CASES, free_port, post, written


def _service(tmp_path: Path, name: str, workers: int) -> Any:
    spool = tmp_path / name
    service = otlp.build(sink=f"file://{spool}", address="127.0.0.1", http_port=free_port(), grpc_port=0,
                         token="", workers=workers).start()
    service.spool = spool
    return service


def _wait_ready(service: Any, restarts: int = 0) -> None:
    pool = service.receiver.pool
    deadline = time.monotonic() + 120
    while not (pool.live == pool.workers and pool.restarts == restarts):
        assert time.monotonic() < deadline, "the mapping workers did not start in 120 s"
        time.sleep(0.1)


@pytest.fixture
def pooled(tmp_path: Path):
    service = _service(tmp_path, "pooled", 2)
    try:
        _wait_ready(service)
        yield service
    finally:
        service.stop()


@pytest.fixture
def local(tmp_path: Path):
    service = _service(tmp_path, "local", 0)
    assert service.receiver.pool is None
    yield service
    service.stop()


def test_every_documented_shape_maps_alike_in_a_worker_and_in_process(pooled: Any, local: Any) -> None:
    for case in CASES:
        body = json.dumps(case["request"]).encode()
        got = [post(service, "/v1/traces", body) for service in (pooled, local)]
        assert [g[0] for g in got] == [200, 200], case["name"]
        assert got[0][1] == got[1][1], case["name"]  # the same answer (partial success and all)
    counts = pooled.receiver.counters.snapshot()
    assert counts["worker_requests"] == len(CASES)
    assert local.receiver.counters.snapshot()["worker_requests"] == 0
    assert {k: v for k, v in counts.items() if k != "worker_requests"} == \
        {k: v for k, v in local.receiver.counters.snapshot().items() if k != "worker_requests"}
    from_workers, from_here = written(pooled), written(local)
    assert len(from_workers) == len(CASES) - sum(1 for c in CASES if c["expect"].get("skipped")) + sum(
        1 for c in CASES if "feedback" in c["expect"])
    assert from_workers == from_here


def test_content_logs_join_calls_mapped_in_workers_in_either_order(pooled: Any, local: Any) -> None:
    other, third = "aaa19b7ec3c1b174", "bbb19b7ec3c1b174"
    on_span = {"gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
               "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "yo"}]}])}
    for service in (pooled, local):
        # Records first: the worker maps the span without them, the receiver maps it again with them.
        assert post(service, "/v1/logs", log_request(SYSTEM, USER, CHOICE))[0] == 200
        assert post(service, "/v1/traces", span_request({}))[0] == 200
        # Span first (no content: the worker sends it back for the join), then its records.
        assert post(service, "/v1/traces", span_request({}, span_id=other))[0] == 200
        assert post(service, "/v1/logs", log_request(USER, CHOICE, span_id=other))[0] == 200
        # Records first for a span that has its content (the worker keeps no span: the request is mapped again).
        assert post(service, "/v1/logs", log_request(SYSTEM, span_id=third))[0] == 200
        assert post(service, "/v1/traces", span_request(on_span, span_id=third))[0] == 200
    assert pooled.receiver.counters.snapshot()["worker_requests"] == 3
    events = written(pooled)
    assert events == written(local)
    rows = [e for e in events if e["type"] == "llm_call"]
    first = [e for e in rows if e["metadata"]["otel"]["span_id"] == "eee19b7ec3c1b174"]
    assert len(first) == 1  # joined before it was written: one row
    assert first[0]["input"] == "system: You help with cards.\nuser: Where is my card?"
    assert first[0]["output"] == "It ships tomorrow."
    last = {e["metadata"]["otel"]["span_id"]: e for e in rows}
    assert (last[other]["input"], last[other]["output"]) == ("user: Where is my card?", "It ships tomorrow.")
    assert last[other]["tokens_in"] == 12 and last[other]["latency_ms"] == pytest.approx(420.0)
    assert (last[third]["input"], last[third]["output"]) == ("user: hi", "yo")  # messages on the span win


def test_a_payload_a_worker_cannot_read_is_refused_and_dead_lettered(pooled: Any) -> None:
    status, body, _ = post(pooled, "/v1/traces", b"\x0a\xff\xff\xff\x0f", "application/x-protobuf")
    assert status == 400 and b"bad protobuf" in body
    status, _, _ = post(pooled, "/v1/traces", b"[1, 2", "application/json")
    assert status == 400
    [first, second] = written(pooled)
    assert first["type"] == second["type"] == "otlp_dead_letter"
    assert "bad protobuf" in first["reason"] and "bad JSON" in second["reason"]


def test_a_killed_worker_costs_no_request_and_the_pool_comes_back(pooled: Any) -> None:
    pool = pooled.receiver.pool
    os.kill(pool.pids[0], signal.SIGKILL)
    time.sleep(0.5)
    statuses = [post(pooled, "/v1/traces", json.dumps(CASES[0]["request"]).encode())[0] for _ in range(3)]
    assert statuses == [200, 200, 200]  # mapped in-process while the pool is broken or being replaced
    _wait_ready(pooled, restarts=1)
    assert post(pooled, "/v1/traces", json.dumps(CASES[0]["request"]).encode())[0] == 200
    assert pooled.receiver.counters.snapshot()["worker_requests"] >= 1
    calls = [e for e in written(pooled) if e["type"] == "llm_call"]
    assert len(calls) == 4 and len({c["event_id"] for c in calls}) == 1  # the same span, sent four times
    assert calls[0] == calls[-1]


def test_a_containers_cpu_limit_bounds_the_usable_cpus(tmp_path: Path) -> None:
    from llmsight.otlp.workers import usable_cpus

    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")
    assert usable_cpus(str(limit)) == min(2, usable_cpus(str(tmp_path / "none")))
    limit.write_text("50000 100000\n")
    assert usable_cpus(str(limit)) == 1
    limit.write_text("max 100000\n")
    assert usable_cpus(str(limit)) == usable_cpus(str(tmp_path / "none"))


def test_the_setting_is_checked() -> None:
    from llmsight.errors import ConfigError
    from llmsight.otlp.workers import worker_count

    assert worker_count(3) == 3 and worker_count(0) == 0
    assert 0 <= worker_count("auto") <= 4
    assert [worker_count("auto", cpus) for cpus in (1, 2, 3, 16)] == [0, 2, 3, 4]
    with pytest.raises(ConfigError, match="LLMSIGHT_OTLP_WORKERS"):
        otlp.build(sink="file:///tmp/unused-llmsight-spool", address="127.0.0.1", http_port=0, grpc_port=0,
                   token="", workers="many")


def test_grpc_trace_requests_are_mapped_from_their_bytes_and_bad_ones_dead_lettered(tmp_path: Path) -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    from llmsight.otlp import decode

    spool = tmp_path / "grpc"
    service = otlp.build(sink=f"file://{spool}", address="127.0.0.1", http_port=free_port(), grpc_port=free_port(),
                         token="", workers=0).start()
    service.spool = spool
    channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
    try:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                     request_serializer=None, response_deserializer=None)
        good = decode.parse_traces(json.dumps(CASES[0]["request"]).encode(), "application/json").SerializeToString()
        answer = ExportTraceServiceResponse.FromString(export(good, timeout=30))
        assert not answer.HasField("partial_success")
        with pytest.raises(grpc.RpcError) as refused:
            export(b"\x0a\xff\xff\xff\x0f", timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "bad protobuf" in refused.value.details()
    finally:
        channel.close()
        service.stop()
    call, dead = written(service)
    assert call["type"] == "llm_call" and call["trace_id"] == CASES[0]["request"]["resourceSpans"][0][
        "scopeSpans"][0]["spans"][0]["traceId"]
    assert dead["type"] == "otlp_dead_letter" and dead["source"].startswith("otlp grpc traces from")
