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
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.processes import free_port, http_status, start_llmsight, stop, wait_for_200
from tests.unit.test_helm import container, effective_env, find, render
from tests.unit.test_otlp_join import span_request


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
    process = start_llmsight(args, plain, log)
    base = f"http://127.0.0.1:{http_port}"
    try:
        probes = {spec["livenessProbe"]["httpGet"]["path"], spec["readinessProbe"]["httpGet"]["path"]}
        assert probes == {"/healthz", "/readyz"}
        assert wait_for_200({base + p for p in probes}, process, log, timeout=60) == set(), log.read_text()[-3000:]
        body = span_request({})
        assert http_status(f"{base}/v1/traces", body, timeout=30) == 401
        assert http_status(f"{base}/v1/traces", body, token="wrong-token-0123456789", timeout=30) == 401
        assert http_status(f"{base}/v1/traces", body, token=token, timeout=30) == 200
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        assert "llmsight_otlp_llm_calls_total 1" in metrics and "llmsight_otlp_unauthorized_total 2" in metrics
    finally:
        stop([process])
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)
    try:
        events = [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()
    assert [(e["type"], e["model"], e["service"]) for e in events] == [("llm_call", "gpt-4o-mini", "support-bot")]
