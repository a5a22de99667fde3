"""``llmsight bench analyzers`` end to end on a small workload: the JSON it prints, and that the cold
and the warm run both analysed every call of every segment, and the steady run embedded only the window's
texts (figures are reported, not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_analyzers_json(kafka_broker):
    out = subprocess.run([sys.executable, "-m", "llmsight.cli.app", "bench", "analyzers", "--segments", "3",
                          "--calls", "20", "--workers", "1,2", "--kafka", kafka_broker.bootstrap,
                          "--unit-segments", "1", "--json"], capture_output=True, text=True, timeout=900, cwd=ROOT,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"segments", "calls_per_segment", "backend", "cores", "cold", "warm"} <= set(figures)
    assert (figures["segments"], figures["calls_per_segment"]) == (3, 20)
    for run in ("cold", "warm", "steady"):
        result = figures[run]
        assert {"seconds", "calls", "texts", "calls_per_s", "texts_per_s", "texts_embedded", "model_calls",
                "metric_rows", "failures"} <= set(result)
        assert result["calls"] == result["calls_analysed"] == 60
        assert result["segments"] == result["segments_analysed"] == 3
        assert result["texts"] == 120
        assert result["failures"] == 0
        assert result["seconds"] > 0 and result["calls_per_s"] > 0
    assert figures["cold"]["texts_embedded"] >= 120 and figures["cold"]["model_calls"] >= 1
    assert figures["warm"]["texts_embedded"] == 0 and figures["warm"]["model_calls"] == 0
    assert figures["warm"]["metric_rows"] == figures["cold"]["metric_rows"]
    # Steady: the history's vectors are in the table, so only the window's own texts (and the
    # sentences the toxicity pass splits from its outputs) reach the model: fewer than in the cold
    # run, which embedded the reference hour too.
    steady = figures["steady"]
    assert 0 < steady["texts_embedded"] < figures["cold"]["texts_embedded"]
    assert steady["metric_rows"] == figures["cold"]["metric_rows"] and figures["history_embed_s"] > 0
    # Then the window shared by worker processes through the broker: every unit done, split 3 / 2+1.
    replicas = figures["replicas"]
    assert [run["workers"] for run in replicas["runs"]] == [1, 2]
    for run in replicas["runs"]:
        assert (run["segments"], run["units"], run["calls"]) == (3, 3, 60)
        assert sum(run["units_by_worker"]) == 3 and run["calls_per_s"] > 0
        # The workers really ran the window (their CPU time, read from /proc), and the rest is accounted.
        assert run["worker_cpu_s"] > 0 and run["other_cpu_s"] >= 0 and 0 < run["machine_busy_share"] <= 1.05
        assert run["calls_per_worker_cpu_s"] > 0
        # The window's texts went through its embedding units first (two: no worker had done units before).
        assert run["embed_phase"] and run["embedding_units"] == 2 and run["window_texts_sharded"] > 0
        assert run["texts_embedded"] >= run["distinct_texts"] - 1 > 0  # (the warm-up's text may be found)
    assert replicas["runs"][1]["units_by_worker"] == [1, 2]
    assert set(replicas["scaling"]) == {"1", "2"} and replicas["scaling"]["1"] == 1.0
