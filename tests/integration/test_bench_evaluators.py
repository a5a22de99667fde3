"""``llmsight bench evaluators --json`` on a small workload: its figures are there and consistent
(the capped run never spends past its cap; every sampled call is judged when nothing is capped)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.timeout(300)
def test_bench_evaluators_reports_offline_and_judge_figures(shared_data, store_url, capsys) -> None:
    from llmsight.bench.evaluators import main

    # In this process, on the suite's store (chdb allows one path per process): MiniLM loads once for the
    # suite. The command is `llmsight bench evaluators`.
    main(n=150, segments=3, sample=4, judge_latency_ms=5.0, concurrency="1,3", token_cap=1500, data=shared_data,
         store_url=store_url, json_out=True)
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    offline, judge = figures["offline"], figures["judge"]
    assert offline["texts"] == 150
    for check in ("relevance", "empty_or_truncated", "language_mismatch", "pii_leak"):
        assert offline[f"{check}_texts_per_s"] > 0
    # Every 25th pair is empty, the next cut off, the next German, the next with an e-mail.
    assert offline["empty_or_truncated_flagged"] >= 12 and offline["pii_leak_flagged"] >= 6
    assert 0.9 < offline["banking77_language"]["english"] <= 1.0
    for limit in (1, 3):
        row = judge[f"concurrency_{limit}"]
        assert row["judged"] == 12 and row["problems"] == {} and row["p95_ms"] >= row["p50_ms"] > 0
    capped = judge["token_capped"]
    assert capped["within_cap"] and capped["tokens_spent"] <= 1500
    assert 0 < capped["judged"] < 12 and capped["problems"]["budget"] == 12 - capped["judged"]
