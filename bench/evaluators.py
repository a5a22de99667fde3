"""Evaluators: offline texts/s on cached embeddings, and judge throughput and latency under a limit.

* ``offline``: the four offline evaluators on ``--n`` banking77 prompt-answer pairs (answers are other
  banking77 questions, a few empty, cut off, in German, or with an e-mail), with the prompt and answer
  vectors already in the embedding cache's LRU (what the scheduler sees after the window's drift pass).
  Each check alone and all four together: texts/s (one text = one evaluated call), against the
  target of 2,000/s; and the language guess on every banking77 test question (all English): the
  share called English, undecided and wrong (a wrong call is a false mismatch).
* ``judge``: one base window of ``--segments`` segments with ``--sample`` judged calls each, through the
  real runner, store (chdb in a temp dir) and ``openai`` client, against the local stand-in server
  with ``--judge-latency-ms`` of simulated model time, at each ``--concurrency``: calls/s, p50/p95
  latency of one judge call, and the window's share of its deadline and of the base window it
  must keep up with (under 1: the sampler keeps up). Then the same window with a daily token cap of
  ``--token-cap``: the tokens spent (never above the cap) and the calls skipped.
"""

from __future__ import annotations

import random
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _pairs(questions: list[str], n: int, seed: int = 7) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        prompt, answer = rng.choice(questions), rng.choice(questions)
        kind = i % 25
        if kind == 0:
            answer = ""
        elif kind == 1:
            answer = answer.rstrip("?.!") + " and the"
        elif kind == 2:
            answer = "Sie können die Karte in der App sperren, wenn sie gestohlen ist."
        elif kind == 3:
            answer += " Write to help.desk@example.com."
        pairs.append((prompt, answer, '{"finish_reason": "stop"}'))
    return pairs


def _offline(questions: list[str], n: int) -> dict[str, object]:
    import numpy as np

    from llmsight.analyzers.embeddings import Embedder
    from llmsight.evaluators import language, offline
    from llmsight.evaluators.runner import relevance_cosines

    pairs = _pairs(questions, n)
    embedder = Embedder()
    distinct = sorted({t for p, a, _ in pairs for t in (p, a)})
    vectors = dict(zip(distinct, embedder.encode(distinct), strict=True))

    class Cached:  # the EmbeddingCache's LRU hit path: a dict lookup per text
        def encode(self, texts: list[str]) -> np.ndarray:
            return np.stack([vectors[t] for t in texts])

    cache = Cached()
    checks = {
        "relevance": lambda: [offline.relevance(c) for c in relevance_cosines(cache, [p for p, _, _ in pairs],
                                                                                [a for _, a, _ in pairs])],
        "empty_or_truncated": lambda: [offline.empty_or_truncated(a, m) for _, a, m in pairs],
        "language_mismatch": lambda: [offline.language_mismatch(p, a) for p, a, _ in pairs],
        "pii_leak": lambda: [offline.pii_leak(a) for _, a, _ in pairs],
    }
    figures: dict[str, object] = {"target_texts_per_s": 2000, "texts": n}
    total = 0.0
    for name, run in checks.items():
        run()  # warm up
        started = time.perf_counter()
        verdicts = run()
        seconds = time.perf_counter() - started
        total += seconds
        figures[f"{name}_texts_per_s"] = round(n / seconds, 1)
        figures[f"{name}_flagged"] = int(sum(bool(v.flagged) for v in verdicts))
    figures["all_four_texts_per_s"] = round(n / total, 1)
    guesses = [language.detect(q) for q in questions]
    figures["banking77_language"] = {"english": round(guesses.count("en") / len(guesses), 4),
                                     "undecided": round(guesses.count(None) / len(guesses), 4),
                                     "wrong": round(sum(g not in ("en", None) for g in guesses) / len(guesses), 4),
                                     "questions": len(guesses)}
    return figures


def _judge(questions: list[str], segments: int, sample: int, latency_ms: float, concurrency: list[int],
           token_cap: int, store_url: str = "") -> dict[str, object]:
    import numpy as np

    from llmsight import store
    from llmsight.analyzers.windows import Window, floor_time
    from llmsight.evaluators.config import Evaluator, JudgeOptions
    from llmsight.evaluators.runner import EvaluatorRunner
    from llmsight.evaluators.stub_judge import StubJudgeServer
    from llmsight.store import EVENT_COLUMNS, event_row

    start = floor_time(datetime.now(timezone.utc) - timedelta(hours=1), 60)
    window = Window(start, start + timedelta(seconds=60))
    rng = random.Random(11)
    rows = []
    for s in range(segments):
        for i in range(sample):
            rows.append(event_row({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "trace_id": f"t{s}-{i}",
                "ts": start + timedelta(seconds=rng.uniform(0, 59)), "service": "bench", "name": f"feature-{s}",
                "model": "m", "prompt_version": "v1", "input": rng.choice(questions),
                "output": rng.choice(questions), "latency_ms": 100.0}, "bench"))
    figures: dict[str, object] = {"segments": segments, "sample_per_segment": sample,
                                  "simulated_model_ms": latency_ms, "base_window_s": 60}
    with tempfile.TemporaryDirectory(prefix="llmsight-bench-evaluators-") as folder, \
            StubJudgeServer(delay_s=latency_ms / 1000) as server:
        database = f"bench_{uuid.uuid4().hex[:8]}"
        client = store.connect(store_url or f"chdb://{folder}", database)
        store.migrate(client)
        client.insert("events", rows, column_names=EVENT_COLUMNS)
        for limit in concurrency:
            for cap in ((0,) if limit != concurrency[-1] else (0, token_cap)):
                client.command("TRUNCATE TABLE evaluations")
                options = JudgeOptions(base_url=server.base_url, model="stand-in", concurrency=limit,
                                       deadline_s=45.0, daily_tokens=cap)
                evaluator = Evaluator(name="helpfulness", rubric="helpfulness", judge=options,
                                      sample_per_segment=sample)
                runner = EvaluatorRunner(client, [evaluator])
                judge = runner.judges["helpfulness"]
                latencies: list[float] = []
                inner = judge.judge

                def timed(*args: object, inner=inner, latencies=latencies) -> object:
                    began = time.perf_counter()
                    verdict = inner(*args)  # type: ignore[arg-type]
                    latencies.append(time.perf_counter() - began)  # verdicts only: skips take no time
                    return verdict

                judge.judge = timed  # type: ignore[method-assign]
                began = time.perf_counter()
                report = runner.run_window(window)
                seconds = time.perf_counter() - began
                judged = report.evaluated["helpfulness"]
                row: dict[str, object] = {
                    "judged": judged, "window_s": round(seconds, 3),
                    "calls_per_s": round(judged / seconds, 1) if seconds else 0.0,
                    "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1) if latencies else None,
                    "p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 1) if latencies else None,
                    "share_of_deadline": round(seconds / options.deadline_s, 3),
                    "share_of_base_window": round(seconds / 60, 3),
                    "problems": dict(report.problems.get("helpfulness", {})),
                }
                if cap:
                    row.update(token_cap=cap, tokens_spent=judge.budget.tokens,
                               within_cap=judge.budget.tokens <= cap)
                    figures["token_capped"] = row
                else:
                    figures[f"concurrency_{limit}"] = row
                runner.stop()
        if store_url:
            client.command(f"DROP DATABASE IF EXISTS `{database}`")
        else:
            store.close_all()
    return figures


def main(n: int = typer.Option(5000, "--n", help="prompt-answer pairs for the offline evaluators"),
         segments: int = typer.Option(20, "--segments", help="segments in the judged window"),
         sample: int = typer.Option(3, "--sample", help="judged calls per segment"),
         judge_latency_ms: float = typer.Option(200.0, "--judge-latency-ms",
                                                help="simulated model time per judge call (the stand-in server)"),
         concurrency: str = typer.Option("1,4", "--concurrency", help="judge concurrency limits to compare"),
         token_cap: int = typer.Option(6000, "--token-cap", help="daily token cap of the capped run"),
         data: Path = typer.Option(DEFAULT_DATA, "--data", help="the shared data folder"),
         store_url: str = typer.Option("", "--store-url", help="store of the judged window, in a database of its own "
                                       "(default: chdb in a temp dir)"),
         json_out: bool = typer.Option(False, "--json", help="print the figures as one JSON line")) -> None:
    """Evaluators: offline texts/s on cached embeddings; judge calls/s and p95 under a concurrency limit."""
    import logging
    import os

    import pandas as pd

    from llmsight.bench.report import emit

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("llmsight").setLevel(logging.WARNING)
    questions = pd.read_csv(data / "banking77" / "test.csv")["text"].astype(str).tolist()
    limits = [int(x) for x in concurrency.split(",") if x.strip()]
    figures = {"offline": _offline(questions, n),
               "judge": _judge(questions, segments, sample, judge_latency_ms, limits, token_cap, store_url)}
    emit("evaluators", figures, json_out)
