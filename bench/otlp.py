"""OTLP: spans/s the receiver accepts into Kafka over HTTP and gRPC vs a raw kafka-python producer loop, and p99 of a 100-span request.

One run, on one broker (``scripts/kafka-dev``, or ``--bootstrap``):

* ``raw_producer_sps``: a bare kafka-python producer (``acks=all``, idempotent, the receiver's settings)
  sending already-encoded events of the same size and waiting for every acknowledgement: the ceiling;
* ``http_sps`` / ``grpc_sps``: ``llmsight otlp`` in its own process, fed by ``--clients`` threads posting
  prebuilt protobuf requests of 100 spans with ~1 KB of content each (counted once answered 200, i.e.
  acknowledged by Kafka);
* ``http_p99_ms`` / ``grpc_p99_ms``: one client, one request of 100 spans at a time (not saturated);
* ``*_cpu_us_per_span``: CPU time of the receiver's process and its mapping workers per span accepted, and
  ``raw_producer_cpu_us_per_record`` the raw loop's (its process): less moved by the machine's load than spans/s;
* ``stage_decode_us_per_span`` (protobuf to spans), ``stage_map_us_per_span`` (spans to encoded events, without
  redaction), ``stage_redact_us_per_span`` (what redaction adds) and ``stage_handoff_us_per_span`` (a worker's
  result pickled and read back): CPU per span of each stage on one core, in a process of its own, best of 5
  passes over the distinct requests, the least of three such processes: the steadiest figures on a loaded
  machine (the Kafka producer's share is ``raw_producer_cpu_us_per_record``);
* with ``--against REF`` (a git revision of this checkout), the same figures for the receiver as it was
  at REF (its ``otlp`` room and the SDK's redactor, ``sdk/redact.py``, which it runs on every span; the
  rest as now) in a second process, run in turns with this one (``ref_*``): a before/after under the same load.

Targets: >= 10,000 spans/s and >= 0.5x the raw producer; p99 <= 50 ms.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import typer

SPANS_PER_REQUEST = 100


def _text(rng: random.Random, words: list[str], size: int) -> str:
    """Words to ``size`` characters (the last one cut): the prompt or the answer of a call."""
    out: list[str] = []
    length = -1
    while length < size:
        out.append(rng.choice(words))
        length += len(out[-1]) + 1
    return " ".join(out)[:size]


def _request(seed: int, content_bytes: int) -> bytes:
    """A request of 100 chat spans, each with ``content_bytes`` characters of content (half prompt, half answer)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    rng = random.Random(seed)
    words = "card account transfer pin limit fee balance refund statement loan savings abroad blocked".split()
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    kv = resource.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "bench-bot"
    scope = resource.scope_spans.add()
    scope.scope.name = "bench"
    now = time.time_ns()
    for i in range(SPANS_PER_REQUEST):
        span = scope.spans.add()
        span.trace_id = rng.getrandbits(128).to_bytes(16, "big")
        span.span_id = rng.getrandbits(64).to_bytes(8, "big")
        span.name = "chat gpt-4o-mini"
        span.start_time_unix_nano, span.end_time_unix_nano = now, now + 800_000_000
        text_in, text_out = _text(rng, words, content_bytes // 2), _text(rng, words, content_bytes - content_bytes // 2)
        for key, value in (("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai"),
                           ("gen_ai.request.model", "gpt-4o-mini"),
                           ("gen_ai.input.messages", json.dumps([{"role": "user", "parts": [{"type": "text", "content": text_in}]}])),
                           ("gen_ai.output.messages", json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": text_out}]}]))):
            a = span.attributes.add()
            a.key, a.value.string_value = key, value
        for key, number in (("gen_ai.usage.input_tokens", 40 + i), ("gen_ai.usage.output_tokens", 80)):
            a = span.attributes.add()
            a.key, a.value.int_value = key, number
    return request.SerializeToString()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` and its children alive now (the mapping workers)."""
    def stat(p: str) -> tuple[int, float]:
        with open(f"/proc/{p}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent, seconds = stat(entry)
            except (OSError, ValueError, IndexError):
                continue
            if int(entry) == pid or parent == pid:
                total += seconds
    return total


_RAW_CPU: list[float] = []  # CPU seconds per record of each raw loop run


def _raw_producer(bootstrap: str, topic: str, lines: list[bytes]) -> float:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2,
                             batch_size=512 * 1024, compression_type="lz4")
    try:
        producer.send(topic, b"warm-up").get(timeout=30)
        started = time.perf_counter()
        cpu = time.process_time()  # this process: the loop and the producer's network thread
        for i, line in enumerate(lines):
            producer.send(topic, value=line, key=str(i).encode())
        producer.flush(timeout=120)
        _RAW_CPU.append((time.process_time() - cpu) / len(lines))
        return len(lines) / (time.perf_counter() - started)
    finally:
        producer.close()


def _http_post(port: int) -> Any:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(body: bytes) -> int:
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        response = conn.getresponse()
        response.read()
        return response.status

    return post


def _grpc_post(port: int) -> Any:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    # TraceService/Export with the request's serialized bytes, as the HTTP client posts them: the same
    # bytes on the wire as a stub's, without parsing and serializing each request again in the client,
    # whose CPU the receiver shares in this bench (an exporter runs elsewhere).
    export = grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export", request_serializer=None,
        response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString)

    def post(body: bytes) -> int:
        try:
            export(body, timeout=60)
            return 200
        except grpc.RpcError:
            return 503

    return post


def _throughput(make_post: Any, port: int, bodies: list[bytes], clients: int) -> float:
    done = [0]
    lock = threading.Lock()
    chunks = [bodies[i::clients] for i in range(clients)]

    def run(chunk: list[bytes]) -> None:
        post = make_post(port)
        for body in chunk:
            if post(body) == 200:
                with lock:
                    done[0] += SPANS_PER_REQUEST

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.perf_counter() - started)


def _p99(make_post: Any, port: int, bodies: list[bytes]) -> float:
    post = make_post(port)
    times = []
    for body in bodies:
        started = time.perf_counter()
        assert post(body) == 200
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    times.sort()
    return times[min(len(times) - 1, int(len(times) * 0.99))]


# Loaded by every Python process started with the directory holding it on PYTHONPATH (``site`` imports a
# ``sitecustomize`` module after the editable install's finder is in place): the receiver at REF and each of
# its mapping workers (fresh ``python -c`` processes, which would otherwise import the installed room) use
# the otlp room and the SDK's redactor extracted from REF instead of the installed ones.
_SITECUSTOMIZE = """
import importlib.util, os, sys
import llmsight

def _load(name, path, package=None):
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=package)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    setattr(llmsight, name.rsplit(".", 1)[1], module)
    spec.loader.exec_module(module)

if os.path.exists({redactor!r}):
    _load("llmsight.redact", {redactor!r})
_load("llmsight.otlp", {room!r} + "/__init__.py", [{room!r}])
"""


def _room_at(ref: str, into: Path) -> Path:
    """The otlp room's files and the SDK's redactor at git revision ``ref`` of this checkout, extracted under
    ``into``."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(root), "archive", ref, "otlp", "sdk/redact.py"], capture_output=True)
    if archive.returncode != 0:
        raise typer.BadParameter(f"cannot read the otlp room at {ref!r} from {root}: "
                                 f"{archive.stderr.decode(errors='replace').strip()[:300]}", param_hint="--against")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    site = into / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(room=str(into / "otlp"),
                                                                 redactor=str(into / "sdk" / "redact.py")))
    return into / "otlp"


def _workers_up(http_port: int) -> bool:
    """The receiver's mapping workers answer (or it has none: an older room, or LLMSIGHT_OTLP_WORKERS=0)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("llmsight_otlp_mapping_workers "):
                return float(line.split()[1]) > 0 or os.environ.get("LLMSIGHT_OTLP_WORKERS", "auto") == "0"
    return True


def _start_receiver(bootstrap: str, topic: str, redact: bool, room: Path | None,
                    workers: str | None = None) -> tuple[Any, int, int]:
    http_port, grpc_port = _free_port(), _free_port()
    env = {**os.environ, "LLMSIGHT_OTLP_ADDRESS": "127.0.0.1", "LLMSIGHT_REDACT": "true" if redact else "false"}
    if workers is not None:
        env["LLMSIGHT_OTLP_WORKERS"] = workers
    if room is not None:  # its sitecustomize loads the room (and redactor) at REF, here and in the workers
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(room.parent / "site"), env.get("PYTHONPATH")]))
    process = subprocess.Popen([sys.executable, "-c", "from llmsight.cli.app import main; main()", "otlp", "--sink", f"kafka://{bootstrap}/{topic}",
                                "--http-port", str(http_port), "--grpc-port", str(grpc_port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as r:
                if r.status == 200 and (workers == "0" or _workers_up(http_port)):
                    return process, http_port, grpc_port
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the receiver{' at ' + str(room) if room else ''} did not become ready in 60 s")
        time.sleep(0.2)


# The receiver's work per span, stage by stage, on one core in a process of its own (the installed room, or
# REF's through its sitecustomize): best of 5 passes over the bench's distinct requests, CPU time. Loaded
# cores slow each stage, but both receivers alike, and nothing else of the bench runs meanwhile.
_STAGES = """
import json, pickle, sys, time
from llmsight.otlp import decode
from llmsight.otlp.mapping import Mapper
from llmsight.otlp.workers import map_request
from llmsight.pricing import load_prices
from llmsight.redact import redact
bodies = [open(path, "rb").read() for path in sys.argv[1:]]
spans = len(bodies) * 100
def mapper(redactor):
    return Mapper(service="bench", environment="bench", prices=load_prices("", None), max_text_chars=32768,
                  redactor=redactor)
plain, redacting = mapper(None), mapper(redact)
parsed = [list(decode.spans(decode.parse_traces(body))) for body in bodies]
results = [map_request(redacting, decode.parse_traces(body), keep_spans=False) for body in bodies]
def best(run):
    times = []
    for _ in range(5):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times) * 1e6 / spans
decode_us = best(lambda: [list(decode.spans(decode.parse_traces(body))) for body in bodies])
map_us = best(lambda: [plain.llm_call_with_content(span) for request in parsed for span in request])
redacted_us = best(lambda: [redacting.llm_call_with_content(span) for request in parsed for span in request])
handoff_us = best(lambda: [pickle.loads(pickle.dumps(("ok", result), protocol=pickle.HIGHEST_PROTOCOL)) for result in results])
print(json.dumps({"decode": decode_us, "map": map_us, "redact": redacted_us - map_us, "handoff": handoff_us}))
"""


def _stages(bodies: list[bytes], room: Path | None, into: Path) -> dict[str, float]:
    """µs of CPU per span of each stage of the receiver's work (see _STAGES), for the room at ``room``
    (None: the installed one)."""
    paths = []
    for i, body in enumerate(bodies):
        path = into / f"request-{i}.bin"
        path.write_bytes(body)
        paths.append(str(path))
    env = dict(os.environ)
    if room is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(room.parent / "site"), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", _STAGES, *paths], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the stage timing failed: {done.stderr.strip()[-500:]}")
    return {name: round(value, 2) for name, value in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def _stop(process: Any) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def main(
    spans: int = typer.Option(30_000, "--spans", help="Spans per throughput run (in requests of 100)."),
    clients: int = typer.Option(4, "--clients", help="Concurrent client threads for the throughput runs."),
    content: int = typer.Option(1024, "--content", help="Bytes of content per span (input + output)."),
    bootstrap: str = typer.Option(None, "--bootstrap", help="host:port of a broker; default: start one."),
    redact: bool = typer.Option(True, "--redact/--no-redact", help="The receiver redacts as the SDK does "
                                "(LLMSIGHT_REDACT; on by default, and most of its CPU time)."),
    against: str = typer.Option(None, "--against", help="A git revision: also run the receiver as it was "
                                "there (its otlp room), in turns with this one, for a before/after."),
    workers: str = typer.Option(None, "--workers", help="LLMSIGHT_OTLP_WORKERS of the receiver (auto, or a "
                                "number; 0 maps in its own process); default: the setting."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON on the last line."),
) -> None:
    """OTLP receiver: spans/s into Kafka over HTTP and gRPC vs the raw producer, and p99 of a 100-span request."""
    from llmsight.bench.ingest import _start_broker, _stop_broker
    from llmsight.bench.report import emit

    state = Path(tempfile.mkdtemp(prefix="llmsight-bench-otlp-"))
    own_broker = bootstrap is None
    bootstrap = bootstrap or _start_broker(state)
    receivers: dict[str, tuple[Any, int, int]] = {}
    try:
        from kafka.admin import KafkaAdminClient, NewTopic

        topic = f"bench-otlp-{int(time.time())}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
        admin.close()
        requests = max(1, spans // SPANS_PER_REQUEST)
        bodies = [_request(seed, content) for seed in range(min(requests, 50))]
        bodies = [bodies[i % len(bodies)] for i in range(requests)]
        # The raw loop sends what the receiver writes for these spans: encoded llm_call lines of the same size.
        from llmsight.otlp import decode
        from llmsight.otlp.mapping import Mapper
        from llmsight.pricing import load_prices

        mapper = Mapper(service="bench", environment="bench", prices=load_prices("", None), max_text_chars=32768)
        sample = [mapper.llm_call(s)[1] for s in decode.spans(decode.parse_traces(bodies[0]))]
        lines = [sample[i % len(sample)] for i in range(requests * SPANS_PER_REQUEST)]
        receivers[""] = _start_receiver(bootstrap, topic, redact, None, workers)
        ref_room: Path | None = None
        if against:
            ref_room = _room_at(against, state)
            receivers["ref_"] = _start_receiver(bootstrap, topic, redact, ref_room)
        for _, http_port, _ in receivers.values():
            _throughput(_http_post, http_port, bodies[:20], 2)  # warm-up
        figures: dict[str, Any] = {"spans": requests * SPANS_PER_REQUEST, "clients": clients,
                                   "content_bytes_per_span": content, "event_bytes": round(sum(map(len, sample)) / len(sample)),
                                   "cpus": os.cpu_count(), "load_1m_before": round(os.getloadavg()[0], 2), "redact": redact,
                                   "workers": workers or os.environ.get("LLMSIGHT_OTLP_WORKERS", "auto")}
        if against:
            figures["against"] = against
        figures["raw_producer_sps"] = round(_raw_producer(bootstrap, topic, lines))
        # In turns (the reference first), so that a change in the machine's load touches both alike.
        for via, make_post in (("http", _http_post), ("grpc", _grpc_post)):
            for prefix, (process, http_port, grpc_port) in reversed(list(receivers.items())):
                port = http_port if via == "http" else grpc_port
                cpu = _cpu_seconds(process.pid)
                figures[f"{prefix}{via}_sps"] = round(_throughput(make_post, port, bodies, clients))
                # CPU per span of the receiver and its workers: what the machine's load changes least.
                figures[f"{prefix}{via}_cpu_us_per_span"] = round(
                    (_cpu_seconds(process.pid) - cpu) * 1e6 / len(bodies) / SPANS_PER_REQUEST, 1)
        figures["raw_producer_sps_after"] = round(_raw_producer(bootstrap, topic, lines))
        figures["raw_producer_cpu_us_per_record"] = round(sum(_RAW_CPU) / len(_RAW_CPU) * 1e6, 1)
        raw = (figures["raw_producer_sps"] + figures["raw_producer_sps_after"]) / 2
        for prefix in reversed(list(receivers)):
            figures[f"{prefix}http_vs_raw"] = round(figures[f"{prefix}http_sps"] / raw, 3)
            figures[f"{prefix}grpc_vs_raw"] = round(figures[f"{prefix}grpc_sps"] / raw, 3)
        for via, make_post in (("http", _http_post), ("grpc", _grpc_post)):
            for prefix, (_, http_port, grpc_port) in reversed(list(receivers.items())):
                port = http_port if via == "http" else grpc_port
                figures[f"{prefix}{via}_p99_ms"] = round(_p99(make_post, port, bodies[:200]), 2)
        # Stage by stage, one receiver at a time in a process of its own, in turns three times (the reference's
        # first): the least of the three, as a burst of load elsewhere slows one turn.
        distinct = bodies[:min(requests, 50)]
        rooms = {"": None, "ref_": ref_room} if against else {"": None}
        for _ in range(3):
            for prefix, room in reversed(list(rooms.items())):
                for stage, value in _stages(distinct, room, state).items():
                    name = f"{prefix}stage_{stage}_us_per_span"
                    figures[name] = min(value, figures.get(name, value))
        figures["load_1m_after"] = round(os.getloadavg()[0], 2)
        emit("OTLP receiver into Kafka", figures, as_json)
    finally:
        for process, _, _ in receivers.values():
            _stop(process)
        if own_broker:
            _stop_broker(state)
