"""Analyzers: calls/s, texts/s and window seconds of one analyzer process, cold and warm.

The workload, through the real store (chdb in a temp dir, a fresh database):

* ``--segments`` segments (service × name × model × prompt_version) with ``--calls`` calls each in
  one 1-minute window; every fifth segment is a new prompt version of the segment before it, with no
  history of its own, so its reference falls back to its feature's traffic;
* a trailing reference hour before the window: ``--reference-calls`` calls per segment (none for
  the new versions), one feedback row for about half of all calls, and operations metric rows for
  every minute of the hour, so drift, acceptance and the baselines really run;
* inputs are banking77 customer questions (drawn per segment by a fixed seed); outputs are answers
  of two to four sentences made from the question's intent (templated, so outputs repeat across
  segments as real ones do), a few refusals and failed calls.

Then one window is analysed *cold* (empty ``embeddings`` table, a fresh :class:`EmbeddingCache`
and LRU; the models are loaded beforehand: the reference hour is embedded too, as on a fresh
deployment), *warm* (the same window again, same cache) and *steady* (the embeddings table holds
the vectors of every text before the window, as the windows before it would have left them, and a
fresh process with an empty LRU analyses it: the window embeds only its own texts, as a running
deployment does). Each run
reports the window's seconds (analysis plus writing the metric rows), calls/s and texts/s (two texts,
prompt and output, per call), the texts that reached the model and its encode calls.

``seed`` and ``analyze_once`` are reusable building blocks (a distributed bench drives them from
worker processes).
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import typer

log = logging.getLogger("llmsight.bench")

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"
NEW_VERSION_EVERY = 5  # every fifth segment is a new prompt version of the one before it
_BASELINE_METRICS = ("volume", "error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                     "ttft_p50_ms", "tokens_in", "tokens_out", "cost_usd", "cost_per_call_usd",
                     "output_chars_mean", "refusal_rate", "toxicity_rate_output", "toxicity_rate_input")


_OPENINGS = ("Thanks for getting in touch.", "Happy to help with that.", "Good question.", "")
_BODIES = ("You can sort out {topic} in the app under Cards and accounts.",
           "Most questions about {topic} are answered in a few minutes by our team.",
           "For {topic}, open the app, choose Help and follow the steps shown there.",
           "We have checked {topic} on your account and everything looks in order.",
           "If {topic} is still a problem after 24 hours, please contact support.")
_CLOSINGS = ("Is there anything else I can help with?", "Let me know if that works for you.", "")
_REFUSAL = "I'm sorry, but I can't help with that request."


def _answer(intent: str, version: str, rng: random.Random) -> tuple[str, str | None, bool]:
    """(output, error, refused) of one call: an answer about the intent, sometimes a refusal or a failure."""
    draw = rng.random()
    if draw < 0.02:
        return "", "Request timed out.", False
    if draw < 0.05:
        return _REFUSAL, None, True
    topic = intent.replace("_", " ")
    body = rng.choice(_BODIES).format(topic=topic)
    if version == "v2":
        body += " You could also try our new premium plan."
    parts = (rng.choice(_OPENINGS), body, rng.choice(_CLOSINGS))
    return " ".join(p for p in parts if p), None, False


def bench_segments(n: int) -> list[dict[str, str]]:
    """``n`` segments; each fifth is prompt version v2 of the feature before it."""
    segments = []
    feature = 0
    for i in range(n):
        if i % NEW_VERSION_EVERY == NEW_VERSION_EVERY - 1 and segments:
            segments.append({**segments[-1], "prompt_version": "v2"})
            continue
        segments.append({"service": "bench", "name": f"feature-{feature:03d}", "model": "gpt-4o-mini",
                         "prompt_version": "v1"})
        feature += 1
    return segments


def seed(client: Any, segments: int, calls: int, window_start: datetime, *, reference_calls: int | None = None,
         data: Path = DEFAULT_DATA, feedback_share: float = 0.5) -> Any:
    """Write the bench workload into ``client`` (a migrated store) and return the window to analyse
    (a :class:`llmsight.analyzers.windows.Window`; its segments are :func:`bench_segments`)."""
    from llmsight.analyzers.windows import Window
    from llmsight.bench.drift import load_banking77
    from llmsight.store import EVENT_COLUMNS, FEEDBACK_COLUMNS, METRIC_COLUMNS, event_row, feedback_row

    texts, intents = load_banking77(data)
    window = Window(window_start, window_start + timedelta(seconds=60))
    reference_calls = calls if reference_calls is None else reference_calls
    chosen = bench_segments(segments)
    events: list[list[Any]] = []
    feedback: list[list[Any]] = []
    metric_rows: list[list[Any]] = []

    def add_calls(segment: dict[str, str], start: datetime, seconds: int, n: int, rng: random.Random) -> None:
        version = segment["prompt_version"]
        for i in range(n):
            ts = start + timedelta(seconds=seconds * (i + rng.random()) / n)
            pick = rng.randrange(len(texts))
            prompt = texts[pick]
            trace = uuid.UUID(int=rng.getrandbits(128)).hex
            output, error, refused = _answer(str(intents[pick]), version, rng)
            tokens_in, tokens_out = max(1, len(prompt) // 4), len(output) // 4
            events.append(event_row({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "trace_id": trace, "ts": ts, **segment,
                "environment": "production", "input": prompt, "output": output, "error": error,
                "latency_ms": round(rng.lognormvariate(6.5, 0.4), 1), "ttft_ms": round(rng.uniform(80, 400), 1),
                "tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": round(tokens_out * 6e-7, 8),
                "user_id": f"u{rng.randrange(5000)}"}, "bench"))
            if rng.random() < feedback_share:
                accepted = rng.random() < (0.1 if error or refused else 0.8)
                feedback.append(feedback_row({"event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                                              "trace_id": trace, "ts": ts + timedelta(seconds=2),
                                              "accepted": accepted, "score": 5.0 if accepted else 2.0,
                                              "edited_output": output[:40] if accepted and rng.random() < 0.05
                                              else ""}, "bench"))

    reference_start = window_start - timedelta(hours=1)
    for index, segment in enumerate(chosen):
        rng = random.Random(f"bench-analyzers/{index}")
        add_calls(segment, window_start, 60, calls, rng)
        if segment["prompt_version"] == "v1" and reference_calls:
            add_calls(segment, reference_start, 3600, reference_calls, rng)
            per_minute = max(1, reference_calls // 60)
            for minute in range(60):
                start = reference_start + timedelta(minutes=minute)
                for metric in _BASELINE_METRICS:
                    metric_rows.append([start, start + timedelta(minutes=1), "1m", *segment.values(), metric,
                                        round(rng.uniform(0.0, 1.0), 6), per_minute, None, None, None, ""])
    for table, rows, columns in (("events", events, EVENT_COLUMNS), ("feedback", feedback, FEEDBACK_COLUMNS),
                                 ("metrics", metric_rows, METRIC_COLUMNS)):
        for start in range(0, len(rows), 20_000):
            client.insert(table, rows[start:start + 20_000], column_names=columns)
    return window


def make_analyzer(client: Any) -> Any:
    """A :class:`WindowAnalyzer` with a fresh embedding cache (empty LRU), models loaded beforehand."""
    from llmsight.analyzers.embeddings import Embedder, EmbeddingCache
    from llmsight.analyzers.window_metrics import AnalysisSettings, WindowAnalyzer

    analyzer = WindowAnalyzer(client, AnalysisSettings(), embeddings=EmbeddingCache(client, Embedder()))
    analyzer.toxicity.score_embeddings(analyzer.embeddings.embedder.encode(["warm up. Twice."]), ["warm up. Twice."])
    return analyzer


def analyze_once(client: Any, window: Any, segments: list[dict[str, str]] | None = None, *,
                 analyzer: Any = None) -> dict[str, Any]:
    """Analyse ``window`` (``segments``, or all of them) once, write its rows, and return the figures."""
    from llmsight.analyzers.windows import segments_in, write_metrics

    analyzer = analyzer or make_analyzer(client)
    chosen = segments if segments is not None else segments_in(client, window)
    calls = _count_calls(client, window, chosen)
    embedder = analyzer.embeddings.embedder
    model_calls, texts_encoded = embedder.calls, embedder.texts_encoded
    started = time.perf_counter()
    rows = analyzer.analyze(window) if segments is None else analyzer.analyze(window, segments)
    write_metrics(client, rows)
    seconds = time.perf_counter() - started
    analysed = {tuple(r.segment.values()) for r in rows if r.metric == "volume"}
    return {
        "seconds": round(seconds, 2),
        "segments": len(chosen),
        "calls": calls,
        "calls_analysed": int(sum(r.value for r in rows if r.metric == "volume")),
        "segments_analysed": len(analysed),
        "texts": 2 * calls,
        "calls_per_s": round(calls / seconds, 1),
        "texts_per_s": round(2 * calls / seconds, 1),
        "metric_rows": len(rows),
        "texts_embedded": embedder.texts_encoded - texts_encoded,
        "model_calls": embedder.calls - model_calls,
        "failures": analyzer.failures,
    }


def embed_history(client: Any, window: Any, embedder: Any) -> float:
    """Empty the ``embeddings`` table, then embed every text before ``window`` into it, as the
    windows before it would have; returns the seconds that took.

    A running deployment has analysed the trailing reference hour minute by minute, so a new window
    finds the reference's vectors in the table and embeds only its own texts: the *steady* run.
    """
    from llmsight.analyzers.embeddings import EmbeddingCache

    client.command("TRUNCATE TABLE embeddings")
    rows = client.query("SELECT input, output FROM events FINAL WHERE ts < {a:DateTime64(3, 'UTC')}",
                        parameters={"a": window.start}).result_rows
    texts = list(dict.fromkeys(text for row in rows for text in row if text))
    started = time.perf_counter()
    EmbeddingCache(client, embedder).encode(texts)
    return time.perf_counter() - started


def _count_calls(client: Any, window: Any, segments: list[dict[str, str]]) -> int:
    wanted = {tuple(s.values()) for s in segments}
    rows = client.query(
        "SELECT service, name, model, prompt_version, count() FROM events FINAL WHERE ts >= {a:DateTime64(3, 'UTC')} "
        "AND ts < {b:DateTime64(3, 'UTC')} GROUP BY service, name, model, prompt_version",
        parameters={"a": window.start, "b": window.end}).result_rows
    return int(sum(row[4] for row in rows if tuple(row[:4]) in wanted))


def main(segments: int = typer.Option(40, "--segments", help="segments with calls in the window"),
         calls: int = typer.Option(120, "--calls", help="calls per segment in the window"),
         reference_calls: int = typer.Option(120, "--reference-calls",
                                             help="calls per segment in the trailing reference hour"),
         data: Path = typer.Option(DEFAULT_DATA, "--data", help="the banking77 folder"),
         workers: str = typer.Option("1,2", "--workers",
                                     help="then the same window shared by this many worker processes through "
                                          "Kafka, one core each, one count after the other (empty: skip)"),
         kafka: str = typer.Option(None, "--kafka", help="broker for --workers; default: start one with "
                                   "the checkout's scripts/kafka-dev"),
         unit_segments: int = typer.Option(4, "--unit-segments", help="segments per work unit with --workers"),
         compare_embedding_phase: bool = typer.Option(
             False, "--compare-embedding-phase", help="with --workers, run each count without the replicas' "
             "embedding phase too (before it), side by side"),
         json_out: bool = typer.Option(False, "--json", help="print the figures as one JSON line")) -> None:
    """Analyzers: one window of N segments x M calls, one process cold and warm, then 1 and 2 worker processes."""
    import os

    from llmsight import config, store
    from llmsight.analyzers import settings
    from llmsight.analyzers.windows import floor_time
    from llmsight.bench.report import emit

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Recent (the tables' TTL drops old rows), whole minutes, and the same start within an hour.
    window_start = floor_time(datetime.now(timezone.utc) - timedelta(hours=2), 3600)
    with tempfile.TemporaryDirectory(prefix="llmsight-bench-analyzers-") as folder:
        client = store.connect(f"chdb://{folder}", f"bench_{uuid.uuid4().hex[:8]}")
        store.migrate(client)
        started = time.perf_counter()
        window = seed(client, segments, calls, window_start, reference_calls=reference_calls, data=data)
        seed_s = time.perf_counter() - started
        started = time.perf_counter()
        analyzer = make_analyzer(client)
        load_s = time.perf_counter() - started
        client.command("TRUNCATE TABLE embeddings")  # the warm-up's vectors: the cold run starts empty
        analyzer = make_analyzer(client)
        cold = analyze_once(client, window, analyzer=analyzer)
        warm = analyze_once(client, window, analyzer=analyzer)
        history_s = embed_history(client, window, analyzer.embeddings.embedder)
        steady = analyze_once(client, window, analyzer=make_analyzer(client))
        store.close_all()
    figures = {
        "segments": segments, "calls_per_segment": calls, "reference_calls_per_segment": reference_calls,
        "backend": config.resolve(settings.EMBEDDING_BACKEND, strict=True), "cores": os.cpu_count(),
        "seed_s": round(seed_s, 1), "model_load_s": round(load_s, 1), "cold": cold, "warm": warm,
        "steady": steady, "history_embed_s": round(history_s, 1),
    }
    counts = [int(w) for w in workers.split(",") if w.strip()]
    if counts:
        from llmsight.bench.analyzers_scale import scale

        figures["replicas"] = scale(counts, segments, calls, reference_calls, unit_segments, data, kafka,
                                    (False, True) if compare_embedding_phase else (True,))
    emit("analyzers: one window, one process, then worker processes", figures, json_out)
