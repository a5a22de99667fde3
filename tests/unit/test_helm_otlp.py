"""The chart's OTLP receiver (otlp.enabled): its own Deployment, Service on 4317/4318, HPA, PDB and
probes, the bearer token always from a Secret, checked on what `helm template` renders."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from llmsight.otlp import settings as otlp_settings
from tests.unit.test_helm import (
    PRODUCTION,
    _parse_cli,
    container,
    effective_env,
    find,
    render,
    render_error,
)

ON = {"otlp": {"enabled": True}}


def _otlp_docs(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs if d["metadata"]["name"].endswith("-otlp"))


def test_the_receiver_is_off_by_default() -> None:
    assert _otlp_docs(render()) == []


def test_enabled_it_is_a_deployment_with_a_service_hpa_pdb_and_a_generated_token(tmp_path: Path) -> None:
    docs = render(ON, tmp_path=tmp_path)
    assert _otlp_docs(docs) == ["Deployment/rel-llmsight-otlp", "HorizontalPodAutoscaler/rel-llmsight-otlp",
                                "PodDisruptionBudget/rel-llmsight-otlp", "Secret/rel-llmsight-otlp",
                                "Service/rel-llmsight-otlp"]
    deployment = find(docs, "Deployment", "rel-llmsight-otlp")
    spec = container(docs, "Deployment", "rel-llmsight-otlp")
    command, params = _parse_cli(spec["args"])
    assert command == "llmsight otlp"
    assert params["sink"] == "kafka://kafka:9092/llmsight.events"
    assert (params["address"], params["http_port"], params["grpc_port"]) == ("0.0.0.0", 4318, 4317)
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports == {"grpc": 4317, "http": 4318}
    # The chart's ports are the receiver's own defaults (an app's default OTLP endpoint works).
    assert (ports["http"], ports["grpc"]) == (otlp_settings.OTLP_HTTP_PORT.default, otlp_settings.OTLP_GRPC_PORT.default)
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}

    service = find(docs, "Service", "rel-llmsight-otlp")["spec"]
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["ports"]} == {("grpc", 4317, "grpc"),
                                                                                   ("http", 4318, "http")}
    assert service["sessionAffinity"] == "ClientIP"  # an app's logs meet its spans in one receiver
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert service["selector"]["app.kubernetes.io/component"] == "otlp"
    pdb = find(docs, "PodDisruptionBudget", "rel-llmsight-otlp")["spec"]
    assert pdb["selector"]["matchLabels"] == service["selector"]
    hpa = find(docs, "HorizontalPodAutoscaler", "rel-llmsight-otlp")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "rel-llmsight-otlp"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert "replicas" not in deployment["spec"]  # the HPA owns the count

    # It listens on the pod IP, so never without a token: one is generated into a Secret of its own.
    env = effective_env(docs, spec)
    assert env["LLMSIGHT_OTLP_TOKEN"] == ("secret", "rel-llmsight-otlp", "token")
    token = base64.b64decode(find(docs, "Secret", "rel-llmsight-otlp")["data"]["token"]).decode()
    assert len(token) >= 32 and token.isalnum()
    assert env["LLMSIGHT_SINK"] == params["sink"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["resources"]["limits"]["memory"]


def test_without_autoscaling_fixed_replicas_and_a_given_token_lives_in_the_chart_secret(tmp_path: Path) -> None:
    token = "a-long-otlp-token-0123456789"
    docs = render({"otlp": {"enabled": True, "replicas": 3, "autoscaling": {"enabled": False},
                            "pdb": {"enabled": False}, "token": {"value": token}}}, tmp_path=tmp_path)
    assert _otlp_docs(docs) == ["Deployment/rel-llmsight-otlp", "Service/rel-llmsight-otlp"]
    assert find(docs, "Deployment", "rel-llmsight-otlp")["spec"]["replicas"] == 3
    env = effective_env(docs, container(docs, "Deployment", "rel-llmsight-otlp"))
    assert env["LLMSIGHT_OTLP_TOKEN"] == ("secret", "rel-llmsight-secrets", "LLMSIGHT_OTLP_TOKEN")
    chart_secret = find(docs, "Secret", "rel-llmsight-secrets")["data"]
    assert base64.b64decode(chart_secret["LLMSIGHT_OTLP_TOKEN"]).decode() == token
    import yaml

    assert token not in yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])


def test_a_token_value_with_the_receiver_off_creates_nothing(tmp_path: Path) -> None:
    docs = render({"otlp": {"token": {"value": "a-long-otlp-token-0123456789"}}}, tmp_path=tmp_path)
    assert _otlp_docs(docs) == []
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "rel-llmsight-secrets"]


def test_production_reads_the_token_and_kafka_credentials_from_existing_secrets() -> None:
    docs = render(None, PRODUCTION)
    spec = container(docs, "Deployment", "rel-llmsight-otlp")
    env = effective_env(docs, spec)
    assert env["LLMSIGHT_OTLP_TOKEN"] == ("secret", "llmsight-otlp", "token")
    assert env["LLMSIGHT_KAFKA_SASL_PASSWORD"] == ("secret", "llmsight-kafka", "password")
    assert env["LLMSIGHT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    mount = next(m for m in spec["volumeMounts"] if m["name"] == "kafka-ca")
    assert env["LLMSIGHT_KAFKA_SSL_CAFILE"].startswith(mount["mountPath"] + "/")
    _, params = _parse_cli(spec["args"])
    assert params["sink"].startswith("kafka://kafka-0.kafka.messaging.svc:9093,")
    # No ClickHouse for the receiver: it only writes to Kafka.
    assert "CLICKHOUSE_PASSWORD" not in env and "LLMSIGHT_CLICKHOUSE_URL" not in env
    assert not [d for d in docs if d["kind"] == "Secret"]


def test_network_policy_admits_both_otlp_ports_and_lets_it_reach_kafka(tmp_path: Path) -> None:
    docs = render({"otlp": {"enabled": True}, "networkPolicy": {"enabled": True}}, tmp_path=tmp_path)
    policy = find(docs, "NetworkPolicy", "rel-llmsight-otlp")["spec"]
    (rule,) = policy["ingress"]
    assert sorted(p["port"] for p in rule["ports"]) == [4317, 4318]
    assert "from" not in rule  # the apps are anywhere; the token guards the door
    egress_ports = {p["port"] for e in policy["egress"] for p in e["ports"]}
    assert 9092 in egress_ports


@pytest.mark.parametrize(("values", "message"), [
    ({"otlp": {"enabled": True, "token": {"value": "short"}}}, "otlp.token.value is shorter than 16 characters"),
    ({"otlp": {"enabled": True, "token": {"value": "a-long-otlp-token-0123456789",
                                          "secretKeyRef": {"name": "s", "key": "k"}}}},
     "otlp.token is given both as value and as secretKeyRef"),
    ({"otlp": {"enabled": True, "grpcPort": 4318}}, "otlp.grpcPort and otlp.httpPort are both 4318"),
    ({"otlp": {"enabled": True, "autoscaling": {"minReplicas": 4, "maxReplicas": 2}}},
     "otlp.autoscaling.minReplicas (4) is greater than otlp.autoscaling.maxReplicas (2)"),
    ({"otlp": {"enabled": True}, "collector": {"enabled": False}, "kafka": {"bootstrapServers": ""}},
     "kafka.bootstrapServers is required by the OTLP receiver"),
    ({"otlp": {"enabld": True}}, "Additional property enabld is not allowed"),
    ({"settings": {"LLMSIGHT_OTLP_TOKEN": "x"}}, "settings.LLMSIGHT_OTLP_TOKEN is set by the chart"),
])
def test_impossible_otlp_values_are_refused_with_a_message(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    assert message in render_error(values, tmp_path)
