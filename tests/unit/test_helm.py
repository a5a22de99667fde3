"""The Helm chart (helm/llmsight), checked on the manifests `helm template` renders.

helm comes from scripts/install-helm (built with `go install` into the llmsight cache). Without
it these tests fail, because a chart nobody renders is a chart nobody tested.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmsight import config
from llmsight.cli.settings import all_settings
from llmsight.collector import settings as collector_settings
from llmsight.scheduler import settings as scheduler_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "llmsight"
PRODUCTION = CHART / "examples" / "values-production.yaml"
HELM_VERSION = "v3.16.4"


def helm_binary() -> str:
    cache = Path(os.environ.get("LLMSIGHT_CACHE", Path.home() / ".cache" / "llmsight"))
    path = cache / "bin" / "helm"
    if not os.access(path, os.X_OK):
        pytest.fail(f"helm not found at {path}: run scripts/install-helm (it builds helm {HELM_VERSION} "
                    "with go install into the llmsight cache)")
    return str(path)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=60)


def _values_args(tmp_path: Path | None, values: dict[str, Any] | None, files: tuple[Path, ...]) -> list[str]:
    args = [a for f in files for a in ("-f", str(f))]
    if values:
        assert tmp_path is not None
        extra = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
        extra.write_text(yaml.safe_dump(values))
        args += ["-f", str(extra)]
    return args


def render(values: dict[str, Any] | None = None, *files: Path, tmp_path: Path | None = None) -> list[dict[str, Any]]:
    result = helm("template", "rel", str(CHART), "--namespace", "obs", *_values_args(tmp_path, values, files))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_error(values: dict[str, Any], tmp_path: Path) -> str:
    result = helm("template", "rel", str(CHART), *_values_args(tmp_path, values, ()))
    assert result.returncode != 0, "helm template accepted impossible values"
    return result.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: found {len(matches)}"
    return matches[0]


def container(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (only,) = find(docs, kind, name)["spec"]["template"]["spec"]["containers"]
    return only


def effective_env(docs: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any]:
    """What the process sees: envFrom ConfigMaps first, then env (which wins). Secrets as ("secret", name, key)."""
    env: dict[str, Any] = {}
    for source in spec.get("envFrom", []):
        env.update(find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in spec.get("env", []):
        if "valueFrom" in entry:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = ("secret", ref["name"], ref["key"])
        else:
            env[entry["name"]] = entry["value"]
    return env


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def production_docs() -> list[dict[str, Any]]:
    return render(None, PRODUCTION)


# -- the binary and lint ---------------------------------------------------------------------------

def test_helm_is_the_pinned_version_built_for_kubernetes_1_31() -> None:
    assert helm("version", "--template", "{{.Version}}").stdout == HELM_VERSION
    # Without install-helm's ldflags, helm would assume Kubernetes 1.20 when rendering.
    docs = render()
    assert docs  # and kubeVersion ">=1.23.0-0" in Chart.yaml did not reject the default capabilities


@pytest.mark.parametrize("files", [(), (PRODUCTION,)], ids=["defaults", "production"])
def test_helm_lint_passes(files: tuple[Path, ...]) -> None:
    result = helm("lint", "--strict", str(CHART), *_values_args(None, None, files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


# -- what each component runs ----------------------------------------------------------------------

def test_defaults_render_the_three_services_the_hook_and_nothing_optional(default_docs: list[dict[str, Any]]) -> None:
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in default_docs)
    assert kinds == [
        "ConfigMap/rel-llmsight-settings",
        "Deployment/rel-llmsight-analyzers",
        "Deployment/rel-llmsight-collector",
        "Deployment/rel-llmsight-dashboard",
        "HorizontalPodAutoscaler/rel-llmsight-collector",
        "Job/rel-llmsight-migrations",
        "PodDisruptionBudget/rel-llmsight-analyzers",
        "PodDisruptionBudget/rel-llmsight-collector",
        "Secret/rel-llmsight-dashboard",
        "Service/rel-llmsight-dashboard",
        "ServiceAccount/rel-llmsight",
    ]


def _probe(spec: dict[str, Any], kind: str) -> tuple[str, int]:
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    get = spec[kind]["httpGet"]
    return get["path"], ports[get["port"]]


def test_collector_consumes_the_topic_and_exposes_health_on_9464(default_docs: list[dict[str, Any]]) -> None:
    spec = container(default_docs, "Deployment", "rel-llmsight-collector")
    assert spec["image"] == "ghcr.io/llmsight/llmsight:0.1.0"
    assert "command" not in spec  # the image's ENTRYPOINT is `tini -- llmsight`
    assert spec["args"] == ["collector", "--source", "kafka://kafka:9092/llmsight.events"]
    assert _probe(spec, "livenessProbe") == ("/healthz", 9464)
    assert _probe(spec, "readinessProbe") == ("/readyz", 9464)
    env = effective_env(default_docs, spec)
    assert env["LLMSIGHT_CLICKHOUSE_URL"] == "http://default@clickhouse:8123/llmsight"
    assert env["LLMSIGHT_COLLECTOR_HTTP_PORT"] == "9464"
    assert env["LLMSIGHT_SINK"] == "kafka://kafka:9092/llmsight.events"
    assert env["LLMSIGHT_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert "LLMSIGHT_KAFKA_SASL_PASSWORD" not in env and "LLMSIGHT_RULES" not in env


def test_collector_scales_with_an_hpa_and_a_pdb_on_its_own_pods(default_docs: list[dict[str, Any]]) -> None:
    deployment = find(default_docs, "Deployment", "rel-llmsight-collector")
    assert "replicas" not in deployment["spec"]  # the HPA owns the replica count
    hpa = find(default_docs, "HorizontalPodAutoscaler", "rel-llmsight-collector")["spec"]
    assert (hpa["scaleTargetRef"]["kind"], hpa["scaleTargetRef"]["name"]) == ("Deployment", "rel-llmsight-collector")
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    pdb = find(default_docs, "PodDisruptionBudget", "rel-llmsight-collector")["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["selector"]["matchLabels"]["app.kubernetes.io/component"] == "collector"


def test_collector_without_autoscaling_has_fixed_replicas(tmp_path: Path) -> None:
    docs = render({"collector": {"autoscaling": {"enabled": False}, "replicas": 3}}, tmp_path=tmp_path)
    assert find(docs, "Deployment", "rel-llmsight-collector")["spec"]["replicas"] == 3
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]


def test_analyzer_replicas_share_the_work_through_kafka_with_health_on_9465(default_docs: list[dict[str, Any]]) -> None:
    deployment = find(default_docs, "Deployment", "rel-llmsight-analyzers")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}  # Kafka picks the coordinator
    spec = container(default_docs, "Deployment", "rel-llmsight-analyzers")
    queue = effective_env(default_docs, spec)
    assert queue["LLMSIGHT_ANALYSIS_QUEUE"] == "kafka://kafka:9092/llmsight.analysis"
    assert (queue["LLMSIGHT_ANALYSIS_PARTITIONS"], queue["LLMSIGHT_ANALYSIS_UNIT_SEGMENTS"]) == ("24", "4")
    pdb = find(default_docs, "PodDisruptionBudget", "rel-llmsight-analyzers")["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"]["app.kubernetes.io/component"] == "analyzers"
    assert spec["args"] == ["analyzers"]
    assert _probe(spec, "livenessProbe") == ("/healthz", 9465)
    assert _probe(spec, "readinessProbe") == ("/readyz", 9465)
    env = effective_env(default_docs, spec)
    assert env["LLMSIGHT_ANALYZERS_HTTP_PORT"] == "9465"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["LLMSIGHT_CLICKHOUSE_URL"] == "http://default@clickhouse:8123/llmsight"


def test_dashboard_serves_streamlit_on_8501_behind_its_service(default_docs: list[dict[str, Any]]) -> None:
    spec = container(default_docs, "Deployment", "rel-llmsight-dashboard")
    assert spec["args"] == ["dashboard", "--port", "8501", "--address", "0.0.0.0"]
    assert _probe(spec, "livenessProbe") == ("/_stcore/health", 8501)
    assert _probe(spec, "readinessProbe") == ("/_stcore/health", 8501)
    service = find(default_docs, "Service", "rel-llmsight-dashboard")["spec"]
    assert service["ports"] == [{"name": "http", "port": 8501, "targetPort": "http", "protocol": "TCP"}]
    pod_labels = find(default_docs, "Deployment", "rel-llmsight-dashboard")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    assert service["selector"]["app.kubernetes.io/component"] == "dashboard"


def test_dashboard_without_a_password_gets_a_generated_one_from_the_chart_secret(
        default_docs: list[dict[str, Any]]) -> None:
    # The dashboard refuses to listen beyond localhost without a login (dashboard/auth.py).
    env = effective_env(default_docs, container(default_docs, "Deployment", "rel-llmsight-dashboard"))
    assert env["LLMSIGHT_DASHBOARD_PASSWORD"] == ("secret", "rel-llmsight-dashboard", "password")
    secret = find(default_docs, "Secret", "rel-llmsight-dashboard")
    assert len(secret["data"]["password"]) == 32  # 24 random characters, base64


def test_migrations_hook_runs_db_migrate_with_the_settings_the_pods_see(default_docs: list[dict[str, Any]]) -> None:
    job = find(default_docs, "Job", "rel-llmsight-migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    # Hooks run before the release's ServiceAccount and ConfigMap exist.
    assert "serviceAccountName" not in pod
    (spec,) = pod["containers"]
    assert spec["args"] == ["db", "migrate"] and "envFrom" not in spec
    job_env = effective_env(default_docs, spec)
    settings = find(default_docs, "ConfigMap", "rel-llmsight-settings")["data"]
    assert {k: job_env[k] for k in settings} == settings
    assert job_env["LLMSIGHT_CLICKHOUSE_URL"] == "http://default@clickhouse:8123/llmsight"


def _parse_cli(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Resolve the subcommands and parse the options as the CLI would, without running anything."""
    import typer

    from llmsight.cli.app import _build

    root = typer.main.get_command(_build())
    ctx = root.make_context("llmsight", list(args))
    command: Any = root
    while hasattr(command, "resolve_command"):  # a group: descend into the subcommand
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx.command_path, ctx.params


def test_the_cli_accepts_the_arguments_the_chart_passes(default_docs: list[dict[str, Any]]) -> None:
    parsed = {name: _parse_cli(container(default_docs, kind, f"rel-llmsight-{name}")["args"])
              for kind, name in (("Deployment", "collector"), ("Deployment", "analyzers"),
                                 ("Deployment", "dashboard"), ("Job", "migrations"))}
    assert parsed["collector"][0] == "llmsight collector"
    assert parsed["collector"][1]["source"] == "kafka://kafka:9092/llmsight.events"
    assert parsed["analyzers"][0] == "llmsight analyzers"
    assert parsed["analyzers"][1]["once"] is False
    assert parsed["dashboard"][0] == "llmsight dashboard"
    assert (parsed["dashboard"][1]["port"], parsed["dashboard"][1]["address"]) == (8501, "0.0.0.0")
    assert parsed["migrations"][0] == "llmsight db migrate"


def test_every_pod_runs_as_non_root_with_a_read_only_root_and_resources(default_docs: list[dict[str, Any]]) -> None:
    pods = [d["spec"]["template"]["spec"] for d in default_docs if d["kind"] in ("Deployment", "Job")]
    assert len(pods) == 4
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["automountServiceAccountToken"] is False
        assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
        for spec in pod["containers"]:
            assert spec["securityContext"]["readOnlyRootFilesystem"] is True
            assert spec["securityContext"]["allowPrivilegeEscalation"] is False
            assert spec["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert spec["resources"]["requests"]["memory"] and spec["resources"]["limits"]["memory"]
            assert {"name": "tmp", "mountPath": "/tmp"} in spec["volumeMounts"]
            assert effective_env(default_docs, spec)["HOME"] == "/tmp"


# -- secrets: a value or a secretKeyRef ------------------------------------------------------------

def test_production_secrets_come_from_secret_key_refs_and_reach_only_their_component(
        production_docs: list[dict[str, Any]]) -> None:
    envs = {name: effective_env(production_docs, container(production_docs, "Deployment", f"rel-llmsight-{name}"))
            for name in ("collector", "analyzers", "dashboard")}
    for env in envs.values():
        assert env["CLICKHOUSE_PASSWORD"] == ("secret", "llmsight-clickhouse", "password")
        assert env["LLMSIGHT_CLICKHOUSE_URL"] == (
            "https://llmsight:$(CLICKHOUSE_PASSWORD)@clickhouse-lb.analytics.svc.cluster.local:8443/llmsight")
    assert envs["collector"]["LLMSIGHT_KAFKA_SASL_PASSWORD"] == ("secret", "llmsight-kafka", "password")
    assert envs["analyzers"]["LLMSIGHT_SLACK_WEBHOOK_URL"] == ("secret", "llmsight-alerts", "slack")
    assert envs["dashboard"]["LLMSIGHT_DASHBOARD_PASSWORD"] == ("secret", "llmsight-dashboard", "password")
    secret_names = {"LLMSIGHT_KAFKA_SASL_PASSWORD", "LLMSIGHT_SLACK_WEBHOOK_URL", "LLMSIGHT_DASHBOARD_PASSWORD"}
    assert {k for k in envs["collector"] if k in secret_names} == {"LLMSIGHT_KAFKA_SASL_PASSWORD"}
    # The analyzers share their work through Kafka, so they get its password too.
    assert envs["analyzers"]["LLMSIGHT_KAFKA_SASL_PASSWORD"] == ("secret", "llmsight-kafka", "password")
    assert {k for k in envs["analyzers"] if k in secret_names} == {"LLMSIGHT_SLACK_WEBHOOK_URL",
                                                                   "LLMSIGHT_KAFKA_SASL_PASSWORD"}
    assert {k for k in envs["dashboard"] if k in secret_names} == {"LLMSIGHT_DASHBOARD_PASSWORD"}
    # A given password means no generated one.
    assert not [d for d in production_docs if d["kind"] == "Secret"]


def test_the_password_variable_comes_before_the_url_that_expands_it(production_docs: list[dict[str, Any]]) -> None:
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    for kind, name in (("Deployment", "rel-llmsight-collector"), ("Job", "rel-llmsight-migrations")):
        names = [e["name"] for e in container(production_docs, kind, name)["env"]]
        assert names.index("CLICKHOUSE_PASSWORD") < names.index("LLMSIGHT_CLICKHOUSE_URL")


def test_secrets_given_as_values_are_read_from_the_chart_secret_and_the_url_parses(tmp_path: Path) -> None:
    import base64

    from llmsight.store import parse_url

    docs = render({
        "clickhouse": {"url": "http://ch.db:8123", "user": "writer", "password": {"value": "p%40ss"},
                       "database": "obs_prod"},
        "dashboard": {"password": {"value": "let-me-in"}},
        "alerts": {"webhookUrl": {"value": "https://hooks.example.com/x"}, "webhookToken": {"value": "tok"}},
    }, tmp_path=tmp_path)
    own = {k: base64.b64decode(v).decode() for k, v in find(docs, "Secret", "rel-llmsight-secrets")["data"].items()}

    def value(env: dict[str, Any], name: str) -> str:
        kind, secret, key = env[name]  # never a literal: ("secret", the chart's Secret, its key)
        assert (kind, secret) == ("secret", "rel-llmsight-secrets")
        return own[key]

    analyzers = effective_env(docs, container(docs, "Deployment", "rel-llmsight-analyzers"))
    assert value(analyzers, "CLICKHOUSE_PASSWORD") == "p%40ss"
    assert value(analyzers, "LLMSIGHT_WEBHOOK_URL") == "https://hooks.example.com/x"
    assert value(analyzers, "LLMSIGHT_WEBHOOK_TOKEN") == "tok"
    dashboard = effective_env(docs, container(docs, "Deployment", "rel-llmsight-dashboard"))
    assert value(dashboard, "LLMSIGHT_DASHBOARD_PASSWORD") == "let-me-in"
    # What the store sees after Kubernetes expands the variable.
    url = analyzers["LLMSIGHT_CLICKHOUSE_URL"].replace("$(CLICKHOUSE_PASSWORD)", value(analyzers, "CLICKHOUSE_PASSWORD"))
    target = parse_url(url)
    assert (target.kind, target.database, target.display()) == ("http", "obs_prod", "http://writer@ch.db:8123/obs_prod")


def test_without_a_user_the_store_url_has_no_credentials(tmp_path: Path) -> None:
    docs = render({"clickhouse": {"user": ""}}, tmp_path=tmp_path)
    env = effective_env(docs, container(docs, "Deployment", "rel-llmsight-collector"))
    assert env["LLMSIGHT_CLICKHOUSE_URL"] == "http://clickhouse:8123/llmsight"


def test_kafka_settings_of_the_collector_give_the_kafka_client_options(
        production_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    spec = container(production_docs, "Deployment", "rel-llmsight-collector")
    env = effective_env(production_docs, spec)
    for name, value in env.items():
        monkeypatch.setenv(name, "s3cret" if isinstance(value, tuple) else value)
    assert config.kafka_security_options(strict=True) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "llmsight-collector",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/llmsight/kafka-ca/ca.crt",
    }
    mount = next(m for m in spec["volumeMounts"] if m["name"] == "kafka-ca")
    volume = next(v for v in find(production_docs, "Deployment", "rel-llmsight-collector")
                  ["spec"]["template"]["spec"]["volumes"] if v["name"] == "kafka-ca")
    assert volume["secret"]["secretName"] == "llmsight-kafka-ca"
    assert f"{mount['mountPath']}/{volume['secret']['items'][0]['path']}" == env["LLMSIGHT_KAFKA_SSL_CAFILE"]


def test_every_ca_file_a_pod_is_told_to_read_is_mounted_in_it(tmp_path: Path) -> None:
    # The production values (Kafka over SASL_SSL with a private CA), with the analyzers sharing work through Kafka
    # and e-mail through a server signed by a private CA: every *_CAFILE a container sees is a file of its volumes.
    docs = render({"analyzers": {"queue": {"enabled": True}},
                   "alerts": {"smtp": {"host": "smtp.example.com", "from": "llmsight@example.com",
                                       "to": ["oncall@example.com"], "caSecret": {"name": "mail-ca"}}}},
                  PRODUCTION, tmp_path=tmp_path)
    checked = set()
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for spec in pod["containers"]:
            mounted = {f"{m['mountPath']}/{item['path']}"
                       for m in spec.get("volumeMounts", []) if "secret" in volumes[m["name"]]
                       for item in volumes[m["name"]]["secret"].get("items", [])}
            for name, value in effective_env(docs, spec).items():
                if name.endswith("_CAFILE"):
                    assert value in mounted, f"{doc['metadata']['name']}: {name}={value} is not mounted"
                    checked.add((doc["metadata"]["name"], name))
    assert {("rel-llmsight-analyzers", "LLMSIGHT_KAFKA_SSL_CAFILE"), ("rel-llmsight-analyzers", "LLMSIGHT_SMTP_CAFILE"),
            ("rel-llmsight-collector", "LLMSIGHT_KAFKA_SSL_CAFILE")} <= checked


def test_every_llmsight_variable_the_chart_sets_is_a_known_setting(production_docs: list[dict[str, Any]]) -> None:
    names = set(find(production_docs, "ConfigMap", "rel-llmsight-settings")["data"])
    for doc in production_docs:
        if doc["kind"] in ("Deployment", "Job"):
            for spec in doc["spec"]["template"]["spec"]["containers"]:
                names |= {e["name"] for e in spec.get("env", [])}
    ours = {n for n in names if n.startswith("LLMSIGHT_")}
    assert len(ours) >= 14
    assert ours - set(all_settings()) == set()
    assert {n for n in names if not n.startswith("LLMSIGHT_")} == {
        "CLICKHOUSE_PASSWORD", "HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}


def test_default_ports_are_the_services_own_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["collector"]["port"] == collector_settings.COLLECTOR_HTTP_PORT.default
    assert values["analyzers"]["port"] == scheduler_settings.ANALYZERS_HTTP_PORT.default


# -- cluster, rules, settings, ingress -------------------------------------------------------------

def test_cluster_name_reaches_the_migrations_job_and_the_pods(production_docs: list[dict[str, Any]]) -> None:
    job_env = effective_env(production_docs, container(production_docs, "Job", "rel-llmsight-migrations"))
    assert job_env["LLMSIGHT_CLICKHOUSE_CLUSTER"] == "analytics"
    assert job_env["LLMSIGHT_RETENTION_DAYS"] == "180"
    settings = find(production_docs, "ConfigMap", "rel-llmsight-settings")["data"]
    assert settings["LLMSIGHT_CLICKHOUSE_CLUSTER"] == "analytics"
    assert settings["LLMSIGHT_COLLECTOR_BATCH_EVENTS"] == "10000"


def test_rules_from_values_are_a_valid_rules_file_mounted_where_llmsight_rules_points(
        production_docs: list[dict[str, Any]]) -> None:
    from llmsight.alerts.rules import parse_rules

    text = find(production_docs, "ConfigMap", "rel-llmsight-rules")["data"]["rules.yaml"]
    assert [rule.name for rule in parse_rules(text, "chart")] == ["output-toxicity", "input-drift"]
    for name in ("analyzers", "dashboard"):
        deployment = find(production_docs, "Deployment", f"rel-llmsight-{name}")
        spec = container(production_docs, "Deployment", f"rel-llmsight-{name}")
        path = effective_env(production_docs, spec)["LLMSIGHT_RULES"]
        mount = next(m for m in spec["volumeMounts"] if m["name"] == "rules")
        volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "rules")
        assert path == f"{mount['mountPath']}/rules.yaml"
        assert volume["configMap"]["name"] == "rel-llmsight-rules"
    collector = container(production_docs, "Deployment", "rel-llmsight-collector")
    assert "LLMSIGHT_RULES" not in effective_env(production_docs, collector)


def test_changing_the_rules_rolls_the_analyzers(tmp_path: Path, default_docs: list[dict[str, Any]]) -> None:
    rules = {"rules": [{"name": "r", "metric": "error_rate", "comparison": "absolute", "direction": "above",
                        "warning": 0.1, "critical": 0.2}]}
    docs = render({"alerts": {"rules": rules}}, tmp_path=tmp_path)

    def checksum(d: list[dict[str, Any]]) -> str:
        pod = find(d, "Deployment", "rel-llmsight-analyzers")["spec"]["template"]["metadata"]
        return str(pod["annotations"]["checksum/rules"])

    assert checksum(docs) != checksum(default_docs)


def test_weekly_exports_go_to_an_empty_dir_or_a_kept_claim(tmp_path: Path, default_docs: list[dict[str, Any]]) -> None:
    def exports(docs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        pod = find(docs, "Deployment", "rel-llmsight-analyzers")["spec"]["template"]["spec"]
        (spec,) = pod["containers"]
        mount = next(m for m in spec["volumeMounts"] if m["name"] == "exports")
        assert effective_env(docs, spec)["LLMSIGHT_EXPORT_DIR"] == mount["mountPath"]
        volume = next(v for v in pod["volumes"] if v["name"] == "exports")
        return mount["mountPath"], {k: v for k, v in volume.items() if k != "name"}

    assert exports(default_docs) == ("/var/lib/llmsight/exports", {"emptyDir": {}})
    docs = render({"exports": {"persistence": {"enabled": True, "size": "20Gi"}}}, tmp_path=tmp_path)
    assert exports(docs)[1] == {"persistentVolumeClaim": {"claimName": "rel-llmsight-exports"}}
    claim = find(docs, "PersistentVolumeClaim", "rel-llmsight-exports")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    docs = render({"exports": {"persistence": {"enabled": True, "existingClaim": "reports"}}}, tmp_path=tmp_path)
    assert exports(docs)[1] == {"persistentVolumeClaim": {"claimName": "reports"}}
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]


def test_production_ingress_routes_the_host_to_the_dashboard_service(production_docs: list[dict[str, Any]]) -> None:
    ingress = find(production_docs, "Ingress", "rel-llmsight-dashboard")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"secretName": "llmsight-tls", "hosts": ["llmsight.example.com"]}]
    (rule,) = ingress["rules"]
    assert rule["host"] == "llmsight.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "rel-llmsight-dashboard", "port": {"name": "http"}}
    service = find(production_docs, "Service", "rel-llmsight-dashboard")
    assert "http" in [p["name"] for p in service["spec"]["ports"]]


# -- validations -----------------------------------------------------------------------------------

SASL = {"securityProtocol": "SASL_SSL", "sasl": {"mechanism": "PLAIN", "username": "u", "password": {"value": "p"}}}


@pytest.mark.parametrize(("values", "message"), [
    ({"analyzers": {"replicas": 2, "queue": {"enabled": False}}},
     "analyzers.replicas is 2 but analyzers.queue.enabled is false"),
    ({"analyzers": {"replicas": 30}}, "analyzers.replicas (30) is above analyzers.queue.partitions (24)"),
    ({"clickhouse": {"url": ""}}, "clickhouse.url is required"),
    ({"clickhouse": {"url": "chdb:///data/llmsight"}}, "chdb is the embedded store of one process"),
    ({"clickhouse": {"url": "tcp://ch:9000"}}, "expected http://host:8123 or https://host:8443"),
    ({"clickhouse": {"url": "http://u:p@ch:8123"}}, "clickhouse.url must not carry credentials"),
    ({"clickhouse": {"url": "http://ch:8123/prod"}}, "give the database in clickhouse.database"),
    ({"clickhouse": {"database": "bad-name"}}, "clickhouse.database is \"bad-name\""),
    ({"clickhouse": {"user": "", "password": {"value": "p"}}}, "clickhouse.user is empty but a clickhouse.password"),
    ({"clickhouse": {"cluster": "c1`; DROP"}}, "clickhouse.cluster is"),
    ({"clickhouse": {"password": {"value": "x", "secretKeyRef": {"name": "s", "key": "k"}}}},
     "clickhouse.password is given both as value and as secretKeyRef"),
    ({"kafka": {**SASL, "sasl": {**SASL["sasl"], "password": {"value": "x", "secretKeyRef": {"name": "s", "key": "k"}}}}},
     "kafka.sasl.password is given both as value and as secretKeyRef"),
    ({"dashboard": {"password": {"value": "x", "secretKeyRef": {"name": "s", "key": "k"}}}},
     "dashboard.password is given both as value and as secretKeyRef"),
    ({"alerts": {"slackWebhookUrl": {"value": "https://x", "secretKeyRef": {"name": "s", "key": "k"}}}},
     "alerts.slackWebhookUrl is given both as value and as secretKeyRef"),
    ({"alerts": {"webhookUrl": {"secretKeyRef": {"name": "s"}}}},
     "alerts.webhookUrl.secretKeyRef.name is set but alerts.webhookUrl.secretKeyRef.key is empty"),
    ({"collector": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}},
     "collector.autoscaling.minReplicas (5) is greater than collector.autoscaling.maxReplicas (3)"),
    ({"kafka": {"bootstrapServers": ""}}, "kafka.bootstrapServers is required by the collector"),
    ({"kafka": {"securityProtocol": "TLS"}}, "kafka.securityProtocol is TLS"),
    ({"kafka": {**SASL, "sasl": {**SASL["sasl"], "mechanism": ""}}}, "kafka.sasl.mechanism is \"\" with securityProtocol"),
    ({"kafka": {**SASL, "sasl": {**SASL["sasl"], "password": {"value": ""}}}},
     "kafka.sasl.password (value or secretKeyRef) is required with securityProtocol SASL_SSL"),
    ({"kafka": {"sasl": {"username": "u"}}}, "kafka.sasl.* is set but kafka.securityProtocol is PLAINTEXT"),
    ({"kafka": {"tls": {"caSecret": {"name": "ca"}}}}, "kafka.tls.caSecret is set but kafka.securityProtocol is PLAINTEXT"),
    ({"dashboard": {"ingress": {"enabled": True}}}, "dashboard.ingress.hosts is empty"),
    ({"settings": {"LLMSIGHT_CLICKHOUSE_URL": "http://x:8123"}}, "settings.LLMSIGHT_CLICKHOUSE_URL is set by the chart"),
    ({"alerts": {"rules": {"defaults": {"for": 2}}}}, "alerts.rules must be a rules document with a `rules:` list"),
    # values.schema.json: misspelt keys and wrong types
    ({"clickhose": {"url": "http://ch:8123"}}, "Additional property clickhose is not allowed"),
    ({"kafka": {"sasl": {"passwrd": "x"}}}, "kafka.sasl: Additional property passwrd is not allowed"),
    ({"collector": {"port": "9464"}}, "collector.port: Invalid type. Expected: integer, given: string"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_impossible_values_are_refused_with_a_message(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    assert message in render_error(values, tmp_path)


def test_disabling_the_collector_lifts_the_kafka_requirement(tmp_path: Path) -> None:
    docs = render({"collector": {"enabled": False}, "kafka": {"bootstrapServers": ""}}, tmp_path=tmp_path)
    assert "rel-llmsight-collector" not in {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}


# -- values.yaml documentation ---------------------------------------------------------------------

def test_every_value_has_a_doc_comment() -> None:
    """helm-docs style: each leaf value, or an ancestor of it, has a `# --` comment right above."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    key = re.compile(r"^(\s*)([A-Za-z0-9_.\-/]+):(.*)$")
    documented_at: list[tuple[int, bool]] = []  # (indent, documented) of the open ancestors
    undocumented = []
    for number, line in enumerate(lines):
        match = key.match(line)
        if not match:
            continue
        indent, name, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while documented_at and documented_at[-1][0] >= indent:
            documented_at.pop()
        above = number - 1
        while above >= 0 and lines[above].strip().startswith("#") and not lines[above].strip().startswith("# --"):
            above -= 1
        documented = above >= 0 and lines[above].strip().startswith("# --")
        following = next((x for x in lines[number + 1:] if x.strip() and not x.strip().startswith("#")), "")
        has_children = not rest and key.match(following) is not None and \
            len(following) - len(following.lstrip()) > indent
        if not has_children and not documented and not any(d for _, d in documented_at):
            undocumented.append(f"line {number + 1}: {name}")
        documented_at.append((indent, documented))
    assert undocumented == []
