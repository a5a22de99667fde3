"""The chart's hardening, on what `helm template` renders (tests/unit/test_helm.py's helpers):
plain secret values live in a Secret the chart owns, never in a manifest's env; the dashboard can
use its own read-mostly ClickHouse user and only the hook migrates; NetworkPolicies are opt-in and
let each component reach only what it needs."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.unit.test_helm import CHART, PRODUCTION, _values_args, container, effective_env, find, helm, render

SECRETS = {
    "clickhouse": {"url": "http://ch.db:8123", "user": "writer", "password": {"value": "ch-p%40ss-1"}},
    "kafka": {"securityProtocol": "SASL_SSL",
              "sasl": {"mechanism": "SCRAM-SHA-512", "username": "llmsight", "password": {"value": "kafka-pw-2"}}},
    "dashboard": {"password": {"value": "dash-login-3"},
                  "clickhouse": {"user": "llmsight_dashboard", "password": {"value": "dash-ch-4"}}},
    "alerts": {"slackWebhookUrl": {"value": "https://hooks.slack.com/services/T/B/slack-5"},
               "webhookUrl": {"value": "https://hooks.example.com/web-6"}, "webhookToken": {"value": "tok-7"}},
}
PLAIN = ["ch-p%40ss-1", "kafka-pw-2", "dash-login-3", "dash-ch-4", "slack-5", "web-6", "tok-7"]


def _pods(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(d["metadata"]["name"], c) for d in docs if d["kind"] in ("Deployment", "Job")
            for c in d["spec"]["template"]["spec"]["containers"]]


def _decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_plain_secret_values_go_into_the_chart_secret_and_never_into_a_manifest(tmp_path: Path) -> None:
    docs = render(SECRETS, tmp_path=tmp_path)
    # Not one secret in any manifest other than the Secrets that hold them.
    text = yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])
    assert [s for s in PLAIN if s in text] == []
    for name, spec in _pods(docs):
        literal = {e["name"] for e in spec.get("env", []) if "value" in e and any(s in str(e["value"]) for s in PLAIN)}
        assert literal == set(), name

    chart_secret = find(docs, "Secret", "rel-llmsight-secrets")
    assert "helm.sh/hook" not in chart_secret["metadata"].get("annotations", {})  # an ordinary release resource
    assert _decoded(chart_secret) == {
        "CLICKHOUSE_PASSWORD": "ch-p%40ss-1", "DASHBOARD_CLICKHOUSE_PASSWORD": "dash-ch-4",
        "LLMSIGHT_KAFKA_SASL_PASSWORD": "kafka-pw-2", "LLMSIGHT_DASHBOARD_PASSWORD": "dash-login-3",
        "LLMSIGHT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/slack-5",
        "LLMSIGHT_WEBHOOK_URL": "https://hooks.example.com/web-6", "LLMSIGHT_WEBHOOK_TOKEN": "tok-7"}
    envs = {n: effective_env(docs, container(docs, "Deployment", f"rel-llmsight-{n}"))
            for n in ("collector", "analyzers", "dashboard")}
    own = "rel-llmsight-secrets"
    assert envs["collector"]["CLICKHOUSE_PASSWORD"] == ("secret", own, "CLICKHOUSE_PASSWORD")
    assert envs["collector"]["LLMSIGHT_KAFKA_SASL_PASSWORD"] == ("secret", own, "LLMSIGHT_KAFKA_SASL_PASSWORD")
    for name in ("LLMSIGHT_SLACK_WEBHOOK_URL", "LLMSIGHT_WEBHOOK_URL", "LLMSIGHT_WEBHOOK_TOKEN"):
        assert envs["analyzers"][name] == ("secret", own, name)
    assert envs["dashboard"]["LLMSIGHT_DASHBOARD_PASSWORD"] == ("secret", own, "LLMSIGHT_DASHBOARD_PASSWORD")

    # The hook runs before the release's resources exist: its password comes from a hook Secret created
    # just before it (lower weight) and deleted once the hooks succeeded.
    hook_secret = find(docs, "Secret", "rel-llmsight-migrations")
    annotations = hook_secret["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    job = find(docs, "Job", "rel-llmsight-migrations")
    assert int(annotations["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert _decoded(hook_secret) == {"CLICKHOUSE_PASSWORD": "ch-p%40ss-1"}
    job_env = effective_env(docs, container(docs, "Job", "rel-llmsight-migrations"))
    assert job_env["CLICKHOUSE_PASSWORD"] == ("secret", "rel-llmsight-migrations", "CLICKHOUSE_PASSWORD")
    assert job_env["LLMSIGHT_CLICKHOUSE_URL"] == "http://writer:$(CLICKHOUSE_PASSWORD)@ch.db:8123/llmsight"


def test_without_plain_values_the_chart_owns_no_secret(tmp_path: Path) -> None:
    docs = render(None, PRODUCTION)
    assert not [d for d in docs if d["kind"] == "Secret"]


def test_the_dashboard_can_have_its_own_read_mostly_clickhouse_user_and_only_the_hook_migrates(tmp_path: Path) -> None:
    from llmsight.store import parse_url

    docs = render(SECRETS, tmp_path=tmp_path)
    dashboard = effective_env(docs, container(docs, "Deployment", "rel-llmsight-dashboard"))
    assert dashboard["CLICKHOUSE_PASSWORD"] == ("secret", "rel-llmsight-secrets", "DASHBOARD_CLICKHOUSE_PASSWORD")
    url = dashboard["LLMSIGHT_CLICKHOUSE_URL"].replace("$(CLICKHOUSE_PASSWORD)", "dash-ch-4")
    assert parse_url(url).display() == "http://llmsight_dashboard@ch.db:8123/llmsight"
    for name in ("collector", "analyzers"):
        env = effective_env(docs, container(docs, "Deployment", f"rel-llmsight-{name}"))
        assert env["LLMSIGHT_CLICKHOUSE_URL"].startswith("http://writer:")
    # Only the hook runs `db migrate`; the dashboard's own start-up migrate() writes nothing on a
    # migrated store (tests/integration/test_retention.py runs it as a read-only user).
    migrating = [name for name, spec in _pods(docs) if spec.get("args", [])[:2] == ["db", "migrate"]]
    assert migrating == ["rel-llmsight-migrations"]
    readme = (CHART / "README.md").read_text()
    for grant in ("GRANT SELECT ON llmsight.*", "GRANT INSERT ON llmsight.alerts", "GRANT INSERT ON llmsight.alert_silences"):
        assert grant in readme


def test_a_dashboard_password_without_its_user_is_refused(tmp_path: Path) -> None:
    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({"dashboard": {"clickhouse": {"password": {"value": "x"}}}}))
    result = helm("template", "rel", str(CHART), "-f", str(values))
    assert result.returncode != 0
    assert "dashboard.clickhouse.password is given but dashboard.clickhouse.user is empty" in result.stderr


def _policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"].removeprefix("rel-llmsight-"): d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}


def _egress_ports(spec: dict[str, Any]) -> set[tuple[int, str]]:
    return {(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule.get("ports", [])}


def test_network_policies_are_opt_in(tmp_path: Path) -> None:
    assert _policies(render()) == {}
    assert _policies(render(None, PRODUCTION)) == {}


def test_each_network_policy_admits_only_its_port_and_reaches_only_what_its_component_needs(tmp_path: Path) -> None:
    prometheus = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    ingress = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    clickhouse = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "analytics"}}}]
    docs = render({"networkPolicy": {"enabled": True, "metricsFrom": prometheus, "dashboardFrom": ingress,
                                     "clickhouseTo": clickhouse},
                   "clickhouse": {"url": "https://ch.analytics:8443"},
                   "kafka": {"bootstrapServers": "k0.kafka:9093,k1.kafka:9093,k2.kafka:9094"}}, tmp_path=tmp_path)
    policies = _policies(docs)
    assert set(policies) == {"collector", "analyzers", "dashboard", "migrations"}
    dns = {(53, "UDP"), (53, "TCP")}
    for name, spec in policies.items():
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == name
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        assert dns | {(8443, "TCP")} <= _egress_ports(spec), name
        ch_rule = next(r for r in spec["egress"] if {p["port"] for p in r["ports"]} == {8443})
        assert ch_rule["to"] == clickhouse
    ports = {name: [(p["port"], rule.get("from")) for rule in spec["ingress"] for p in rule["ports"]]
             for name, spec in policies.items()}
    assert ports == {"collector": [(9464, prometheus)], "analyzers": [(9465, prometheus)],
                     "dashboard": [(8501, ingress)], "migrations": []}
    assert _egress_ports(policies["collector"]) == dns | {(8443, "TCP"), (9093, "TCP"), (9094, "TCP")}
    assert _egress_ports(policies["migrations"]) == dns | {(8443, "TCP")}
    assert _egress_ports(policies["dashboard"]) == dns | {(8443, "TCP")}  # no OIDC secret: no way out
    assert (443, "TCP") in _egress_ports(policies["analyzers"])  # the alert webhooks
    # Each policy selects exactly one component's pods.
    labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in
              ((d["metadata"]["name"].removeprefix("rel-llmsight-"), d) for d in docs if d["kind"] in ("Deployment", "Job"))}
    for name, spec in policies.items():
        selected = {n for n, lab in labels.items() if spec["podSelector"]["matchLabels"].items() <= lab.items()}
        assert selected == {name}


def test_with_oidc_the_dashboard_may_reach_the_identity_provider(tmp_path: Path) -> None:
    docs = render({"networkPolicy": {"enabled": True}, "dashboard": {"oidcSecret": "oidc"}}, tmp_path=tmp_path)
    dashboard = _policies(docs)["dashboard"]
    assert (443, "TCP") in _egress_ports(dashboard)
    assert dashboard["ingress"] == [{"ports": [{"port": 8501, "protocol": "TCP"}]}]  # anyone may open it


def test_lint_passes_with_network_policies_and_plain_secrets(tmp_path: Path) -> None:
    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({**SECRETS, "networkPolicy": {"enabled": True}}))
    for files in ((), (PRODUCTION,)):
        result = subprocess.run([*helm_lint_args(), *_values_args(None, None, files), "-f", str(values)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def helm_lint_args() -> list[str]:
    from tests.unit.test_helm import helm_binary

    return [helm_binary(), "lint", "--strict", str(CHART)]
