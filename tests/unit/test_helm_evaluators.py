"""The chart's online evaluators (analyzers.evaluators, analyzers.judgeApiKey), checked on what `helm template`
renders: the YAML block becomes a valid evaluators file mounted where LLMSIGHT_EVALUATORS_FILE points, the
judges' key always comes from a Secret, and values that cannot work are refused."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from llmsight.evaluators.config import parse_evaluators
from tests.unit.test_helm import container, effective_env, find, render, render_error

EVALUATORS = {
    "defaults": {"sample_per_segment": 10},
    "evaluators": [
        {"name": "relevance", "check": "relevance"},
        {"name": "helpfulness", "rubric": "helpfulness", "sample_per_segment": 3,
         "judge": {"base_url": "http://ollama.llm.svc:11434/v1", "model": "llama3.1:8b",
                   "api_key_env": "LLMSIGHT_JUDGE_API_KEY"}},
    ],
}


def _analyzers(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return (find(docs, "Deployment", "rel-llmsight-analyzers"),
            container(docs, "Deployment", "rel-llmsight-analyzers"))


def test_by_default_no_evaluator_file_no_key_and_no_configmap() -> None:
    docs = render()
    deployment, spec = _analyzers(docs)
    env = effective_env(docs, spec)
    assert "LLMSIGHT_EVALUATORS_FILE" not in env and "LLMSIGHT_JUDGE_API_KEY" not in env
    assert not [d for d in docs if d["metadata"]["name"] == "rel-llmsight-evaluators"]
    assert "evaluators" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_the_block_is_a_valid_evaluators_file_mounted_where_the_variable_points(tmp_path: Path) -> None:
    docs = render({"analyzers": {"evaluators": EVALUATORS, "judgeApiKey": {"value": "sk-judge-0123"}}},
                  tmp_path=tmp_path)
    text = find(docs, "ConfigMap", "rel-llmsight-evaluators")["data"]["evaluators.yaml"]
    parsed = parse_evaluators(text, "chart")  # the analyzers' own parser: a bad file would stop them
    assert [(e.name, e.sample_per_segment) for e in parsed] == [("relevance", 10), ("helpfulness", 3)]
    assert parsed[1].judge is not None and parsed[1].judge.base_url == "http://ollama.llm.svc:11434/v1"

    deployment, spec = _analyzers(docs)
    env = effective_env(docs, spec)
    mount = next(m for m in spec["volumeMounts"] if m["name"] == "evaluators")
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "evaluators")
    assert env["LLMSIGHT_EVALUATORS_FILE"] == f"{mount['mountPath']}/evaluators.yaml"
    assert mount["readOnly"] is True
    assert volume["configMap"]["name"] == "rel-llmsight-evaluators"

    # The plain key lives in the chart's Secret; the Deployment only references it.
    assert env["LLMSIGHT_JUDGE_API_KEY"] == ("secret", "rel-llmsight-secrets", "LLMSIGHT_JUDGE_API_KEY")
    secret = find(docs, "Secret", "rel-llmsight-secrets")["data"]
    assert base64.b64decode(secret["LLMSIGHT_JUDGE_API_KEY"]).decode() == "sk-judge-0123"
    assert "sk-judge-0123" not in str(deployment)
    # Only the analyzers run evaluators: the other pods neither mount the file nor see the key.
    for name in ("collector", "dashboard"):
        other = effective_env(docs, container(docs, "Deployment", f"rel-llmsight-{name}"))
        assert "LLMSIGHT_EVALUATORS_FILE" not in other and "LLMSIGHT_JUDGE_API_KEY" not in other


def test_a_key_from_an_existing_secret_under_a_variable_of_your_own(tmp_path: Path) -> None:
    evaluators = {"evaluators": [{"name": "helpfulness", "rubric": "helpfulness",
                                  "judge": {"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini",
                                            "api_key_env": "OPENAI_API_KEY"}}]}
    docs = render({"analyzers": {"evaluators": evaluators, "judgeApiKey": {
        "env": "OPENAI_API_KEY", "secretKeyRef": {"name": "openai", "key": "api-key"}}}}, tmp_path=tmp_path)
    _, spec = _analyzers(docs)
    env = effective_env(docs, spec)
    assert env["OPENAI_API_KEY"] == ("secret", "openai", "api-key")
    assert "LLMSIGHT_JUDGE_API_KEY" not in env
    assert not [d for d in docs if d["kind"] == "Secret" and "LLMSIGHT_JUDGE_API_KEY" in d.get("data", {})]


def test_changing_the_evaluators_rolls_the_analyzers(tmp_path: Path) -> None:
    def checksum(docs: list[dict[str, Any]]) -> str:
        deployment, _ = _analyzers(docs)
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/evaluators"])

    one = render({"analyzers": {"evaluators": {"evaluators": [{"name": "relevance", "check": "relevance"}]}}},
                 tmp_path=tmp_path)
    two = render({"analyzers": {"evaluators": {"evaluators": [{"name": "pii_leak", "check": "pii_leak"}]}}},
                 tmp_path=tmp_path)
    assert checksum(one) != checksum(two)


def test_the_network_policy_lets_the_analyzers_reach_the_judges_ports(tmp_path: Path) -> None:
    docs = render({"networkPolicy": {"enabled": True},
                   "analyzers": {"evaluators": EVALUATORS, "judgeApiKey": {"value": "k"}}}, tmp_path=tmp_path)
    policy = find(docs, "NetworkPolicy", "rel-llmsight-analyzers")["spec"]
    ports = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
    assert {443, 11434} <= ports  # the webhooks' port and the judge's
    dashboard = find(docs, "NetworkPolicy", "rel-llmsight-dashboard")["spec"]
    assert 11434 not in {p["port"] for rule in dashboard["egress"] for p in rule.get("ports", [])}


def test_impossible_values_are_refused_with_a_message(tmp_path: Path) -> None:
    # A judge that reads the key variable, with no key given, would stop the analyzers at start-up.
    assert "analyzers.judgeApiKey has neither a value nor a secretKeyRef" in render_error(
        {"analyzers": {"evaluators": EVALUATORS}}, tmp_path)
    assert "analyzers.judgeApiKey is given both as value and as secretKeyRef" in render_error(
        {"analyzers": {"judgeApiKey": {"value": "k", "secretKeyRef": {"name": "s", "key": "k"}}}}, tmp_path)
    assert "a variable the chart or llmsight sets itself" in render_error(
        {"analyzers": {"judgeApiKey": {"env": "CLICKHOUSE_PASSWORD", "value": "k"}}}, tmp_path)
    # The schema: evaluator names are the evaluators' own form (they become metric names).
    assert "name" in render_error({"analyzers": {"evaluators": {"evaluators": [{"check": "relevance"}]}}}, tmp_path)
    assert "pattern" in render_error(
        {"analyzers": {"evaluators": {"evaluators": [{"name": "Bad Name", "check": "relevance"}]}}}, tmp_path)
