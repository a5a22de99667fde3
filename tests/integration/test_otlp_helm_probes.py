"""The chart's OTLP receiver as the real process: started with the arguments and environment `helm template`
renders (otlp.enabled, the generated token), it answers its probes, refuses a request without the token,
and writes a span sent with it to a real Kafka broker.

As in test_helm_probes.py, only what this machine requires differs from a cluster: the broker is the
test's, the ports are free ones (others may hold 4317/4318), and the token, which a cluster reads from
the chart's Secret, is taken from the rendered Secret.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.test_otlp_kafka import free_port
from tests.unit.test_helm import container, effective_env, find, render
from tests.unit.test_otlp_join import span_request


def _request(url: str, body: bytes | None = None, token: str = "") -> int:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_the_rendered_receiver_answers_its_probes_and_requires_its_token(kafka_broker: Any, tmp_path: Path) -> None:
    docs = render({"otlp": {"enabled": True}}, tmp_path=tmp_path)
    spec = container(docs, "Deployment", "rel-llmsight-otlp")
    env = effective_env(docs, spec)
    secret = env["LLMSIGHT_OTLP_TOKEN"]
    assert secret[0] == "secret"
    token = base64.b64decode(find(docs, "Secret", secret[1])["data"][secret[2]]).decode()
    topic = kafka_broker.create_topic()
    kafka_url = f"kafka://{kafka_broker.bootstrap}/{topic}"
    http_port, grpc_port = free_port(), free_port()
    args = list(spec["args"])
    args[args.index("--sink") + 1] = kafka_url
    args[args.index("--http-port") + 1] = str(http_port)
    args[args.index("--grpc-port") + 1] = str(grpc_port)
    assert args[args.index("--address") + 1] == "0.0.0.0"  # beyond localhost: it must insist on the token
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    plain.update({"HOME": str(tmp_path), "LLMSIGHT_SINK": kafka_url, "LLMSIGHT_OTLP_TOKEN": token})
    log = tmp_path / "otlp.log"
    llmsight = str(Path(sys.executable).with_name("llmsight"))
    with open(log, "wb") as out:
        process = subprocess.Popen([llmsight, *args], env={**os.environ, **plain}, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        probes = {spec["livenessProbe"]["httpGet"]["path"], spec["readinessProbe"]["httpGet"]["path"]}
        assert probes == {"/healthz", "/readyz"}
        while probes and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            probes = {p for p in probes if _request(base + p) != 200}
            time.sleep(0.3)
        assert probes == set(), log.read_text()[-3000:]
        body = span_request({})
        assert _request(f"{base}/v1/traces", body) == 401
        assert _request(f"{base}/v1/traces", body, token="wrong-token-0123456789") == 401
        assert _request(f"{base}/v1/traces", body, token=token) == 200
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        assert "llmsight_otlp_llm_calls_total 1" in metrics and "llmsight_otlp_unauthorized_total 2" in metrics
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)
    try:
        events = [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()
    assert [(e["type"], e["model"], e["service"]) for e in events] == [("llm_call", "gpt-4o-mini", "support-bot")]
