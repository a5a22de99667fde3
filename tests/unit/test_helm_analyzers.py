"""The chart's analyzers: one process without the queue, replicas with an HPA on the lag with it."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from tests.unit.test_helm import CHART, container, find, helm_binary


def render(*sets: str) -> list[dict[str, Any]]:
    args = [helm_binary(), "template", "rel", str(CHART)]
    for item in sets:
        args += ["--set", item]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_without_the_queue_one_replica_recreated_and_no_queue_setting() -> None:
    docs = render("analyzers.queue.enabled=false", "analyzers.replicas=1")
    deployment = find(docs, "Deployment", "rel-llmsight-analyzers")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    names = {e["name"] for e in container(docs, "Deployment", "rel-llmsight-analyzers")["env"]}
    assert "LLMSIGHT_ANALYSIS_QUEUE" not in names
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"].endswith("analyzers")]


def test_autoscaling_scales_on_the_lag_metric_the_replicas_serve() -> None:
    docs = render("analyzers.autoscaling.enabled=true", "analyzers.autoscaling.maxReplicas=6")
    hpa = find(docs, "HorizontalPodAutoscaler", "rel-llmsight-analyzers")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "rel-llmsight-analyzers"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    pods = next(m for m in hpa["metrics"] if m["type"] == "Pods")["pods"]
    assert pods["metric"]["name"] == "llmsight_analysis_lag_windows"  # the gauge scheduler/replica.py serves
    assert pods["target"] == {"type": "AverageValue", "averageValue": "1"}
    # The HPA owns the replica count.
    assert "replicas" not in find(docs, "Deployment", "rel-llmsight-analyzers")["spec"]
