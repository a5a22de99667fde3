"""Drift on a stream: time to detection of a new topic (2%, 5%, 10%), false alerts per segment-week, flaps.

The protocol, on ../shared/data/banking77, one segment, through the real store (chdb in a temporary
folder) and the real analyzers:

* one intent is held out (drawn by ``--seed`` among intents with at least 100 texts) as the new
  topic; every other call's prompt is drawn from the other 76 intents. The output is the prompt
  echoed back (so input and output drift alike and no new text needs embedding);
* a **shift stream** per share: ``--rate`` calls per second (Poisson arrivals) with event times in
  the past, ``--before-hours`` of ordinary traffic, then from a time that is not on an hour
  boundary (``--shift-offset-min`` past the hour) each call is from the new topic with
  probability ``share``, for ``--after-hours``;
* a **null stream**: ``--week-days`` of ordinary traffic at ``--week-rate`` calls per second,
  analysed with ``--week-window-s`` base windows (at a low rate a 1-minute window holds too few
  texts to test; the evidence's alarm level follows the window length, so the weekly budget is
  the same);
* the store's embeddings table is filled beforehand with the vectors of ``llmsight bench drift``'s
  cache file (the same model), so the analyzers find every text cached, as they would in
  production after the minute windows; the real model still loads for the toxicity scorer;
* then exactly what ``llmsight analyzers --backfill FROM TO`` runs (``AnalyzerService.backfill``:
  every minute window, hour and day) and the default alert rules, window after window in time
  order (each evaluated as at its end plus 20 s).

Reported per share: the first firing drift alert after the shift (minutes from the shift to the
end of the window that fired it, and which rule), the grown topic it shows (label, share before
and after, and how many of its examples really are from the held-out intent), flaps (a drift
alert firing again within 10 minutes of resolving) and false drift alerts before the shift. For
``--shares 0.02 --after-hours 24`` (the 2%-within-a-day target) at 1 call/s the analysis takes about
an hour on a busy 2-core host; every text is cached, so a lower ``--rate`` is not cheaper per
window, only per test. For
the null stream: firing drift alerts per segment-week. Evidently's default embedding drift method
(``model(bootstrap=n_ref < 1000)``, as ``EmbeddingsDriftMetric`` runs it) is run on the same hourly
windows (the hour against the hour before, up to ``LLMSIGHT_DRIFT_HORIZON_SAMPLE`` texts a side)
for comparison: its first flagged hour after the shift and its flagged hours per week on the
null stream.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import typer

from llmsight.bench.drift import DEFAULT_DATA

log = logging.getLogger("llmsight.bench")

COMMAND = "drift-stream"
SEGMENT = {"service": "bank-bot", "name": "answer", "model": "bench-llm", "prompt_version": "v1"}
FLAP_S = 600


def pick_novel_intent(intents: np.ndarray, seed: int) -> str:
    names, counts = np.unique(intents, return_counts=True)
    return str(random.Random(seed).choice(sorted(names[counts >= 100].tolist())))


def make_stream(intents: np.ndarray, novel: str, start: datetime, seconds: float, rate: float,
                shift_at: datetime | None, share: float, rng: np.random.Generator) -> list[tuple[datetime, int]]:
    """(time, text index) of each call: Poisson arrivals; after ``shift_at`` a call is new-topic with
    probability ``share``."""
    n = int(rng.poisson(rate * seconds))
    offsets = np.sort(rng.uniform(0, seconds, n))
    old = np.flatnonzero(intents != novel)
    new = np.flatnonzero(intents == novel)
    calls = []
    for offset in offsets:
        ts = start + timedelta(seconds=float(offset))
        pool = new if shift_at is not None and ts >= shift_at and rng.random() < share else old
        calls.append((ts, int(pool[rng.integers(len(pool))])))
    return calls


def seed_store(client: Any, texts: list[str], vectors: np.ndarray, calls: list[tuple[datetime, int]],
               model_name: str) -> None:
    """The calls as events, and the vectors of their texts in the embeddings table."""
    from llmsight.analyzers.embeddings import text_hash
    from llmsight.store import EMBEDDING_COLUMNS, EVENT_COLUMNS, event_row

    rng = random.Random(len(calls))
    used = sorted({index for _, index in calls})
    embeddings = [[model_name, text_hash(model_name, texts[i]), vectors[i].tolist()] for i in used]
    for start in range(0, len(embeddings), 5000):
        client.insert("embeddings", embeddings[start:start + 5000], column_names=EMBEDDING_COLUMNS)
    rows = []
    for ts, index in calls:
        rows.append(event_row({
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "trace_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "ts": ts, **SEGMENT, "environment": "bench", "input": texts[index], "output": texts[index],
            "latency_ms": 500.0, "tokens_in": 20, "tokens_out": 20}, "bench"))
    for start in range(0, len(rows), 20_000):
        client.insert("events", rows[start:start + 20_000], column_names=EVENT_COLUMNS)


def analyse(client: Any, start: datetime, end: datetime, window_s: int) -> tuple[Any, list[tuple[Any, str, datetime]],
                                                                                 dict[str, Any]]:
    """Backfill ``start``..``end`` as ``llmsight analyzers --backfill`` does, then the default rules
    window after window; returns the service, the alert changes (state, transition, window end) and timings."""
    from llmsight.analyzers.windows import BASE_GRANULARITY, ROLLUPS, Window, floor_time, read_metrics
    from llmsight.scheduler.service import AnalyzerService, ScheduleSettings

    service = AnalyzerService(client, schedule=ScheduleSettings(window_s=window_s))
    started = time.perf_counter()
    windows_done = service.backfill(start, end)
    backfill_s = time.perf_counter() - started
    windows: list[Window] = []
    for granularity, seconds in ((BASE_GRANULARITY, window_s), *ROLLUPS.items()):
        cursor = floor_time(start, seconds)
        if cursor < start:
            cursor += timedelta(seconds=seconds)
        while cursor + timedelta(seconds=seconds) <= end:
            windows.append(Window(cursor, cursor + timedelta(seconds=seconds), granularity))
            cursor += timedelta(seconds=seconds)
    windows.sort(key=lambda w: (w.end, -(w.end - w.start).total_seconds()))
    changes: list[tuple[Any, str, datetime]] = []
    started = time.perf_counter()
    for window in windows:
        rows = read_metrics(client, window)
        for state, transition in service.alerts.evaluate(window.start, rows, window.granularity,
                                                         now=window.end + timedelta(seconds=20)):
            changes.append((state, transition, window.end))
    return service, changes, {"windows": windows_done, "backfill_s": round(backfill_s, 1),
                              "alerts_s": round(time.perf_counter() - started, 1),
                              "analysis_failures": service.analyzer.failures}


def drift_firings(changes: list[tuple[Any, str, datetime]]) -> list[tuple[Any, datetime]]:
    """Each time a drift alert started firing (a new incident or a re-fire), with its window end."""
    return [(state, at) for state, transition, at in changes
            if state.metric.startswith("drift_") and state.state == "firing" and transition in ("firing", "flapping")]


def flaps(changes: list[tuple[Any, str, datetime]]) -> int:
    """Drift alerts that fired again within 10 minutes (window time) of resolving."""
    resolved: dict[str, datetime] = {}
    count = 0
    for state, _, at in changes:
        if not state.metric.startswith("drift_"):
            continue
        if state.state == "resolved":
            resolved[state.alert_id] = at
        elif state.state == "firing" and state.alert_id in resolved:
            if (at - resolved.pop(state.alert_id)).total_seconds() <= FLAP_S:
                count += 1
    return count


def evidently_hours(client: Any, vectors_of: dict[str, np.ndarray], start: datetime, end: datetime,
                    sample: int) -> list[tuple[datetime, bool]]:
    """Evidently's default embedding drift method on each hour against the hour before: (hour end, drifted)."""
    import pandas as pd
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model

    out = []
    hour = start
    rng = np.random.default_rng(0)
    previous = None
    while hour + timedelta(hours=1) <= end:
        texts = [r[0] for r in client.query(
            "SELECT input FROM events FINAL WHERE ts >= {a:DateTime64(3, 'UTC')} AND ts < {b:DateTime64(3, 'UTC')}",
            parameters={"a": hour, "b": hour + timedelta(hours=1)}).result_rows]
        current = np.stack([vectors_of[t] for t in texts]) if texts else None
        if current is not None and len(current) > sample:
            current = current[np.sort(rng.choice(len(current), sample, replace=False))]
        if previous is not None and current is not None and min(len(previous), len(current)) >= 20:
            method = model(bootstrap=len(previous) < 1000)
            _, drifted, _ = method(pd.DataFrame(current), pd.DataFrame(previous))
            out.append((hour + timedelta(hours=1), bool(drifted)))
        previous = current
        hour += timedelta(hours=1)
    return out


def _progress(message: str) -> None:
    typer.echo(f"bench drift-stream: {message}", err=True)


def shift_run(texts: list[str], intents: np.ndarray, vectors: np.ndarray, model_name: str, share: float, *,
              novel: str, rate: float, before_h: float, after_h: float, offset_min: float, seed: int,
              end: datetime, evidently: bool, sample: int) -> dict[str, Any]:
    from llmsight import store

    start = end - timedelta(hours=before_h + after_h)
    shift_at = start + timedelta(hours=before_h, minutes=offset_min)
    calls = make_stream(intents, novel, start, (end - start).total_seconds(), rate, shift_at, share,
                        np.random.default_rng(seed))
    novel_texts = {texts[i] for i in np.flatnonzero(intents == novel)}
    with tempfile.TemporaryDirectory(prefix="llmsight-bench-drift-stream-") as folder:
        client = store.connect(f"chdb://{folder}", f"bench_{uuid.uuid4().hex[:8]}")
        store.migrate(client)
        seed_store(client, texts, vectors, calls, model_name)
        _progress(f"share {share}: {len(calls)} calls stored, analysing {before_h + after_h} h")
        _, changes, timing = analyse(client, start, end, 60)
        _progress(f"share {share}: analysed in {timing['backfill_s']} s")
        fired = drift_firings(changes)
        after = [(state, at) for state, at in fired if at > shift_at]
        result: dict[str, Any] = {
            "share": share, "calls": len(calls), "shift_at_min": round((shift_at - start).total_seconds() / 60, 1),
            "false_alerts_before_shift": sum(1 for _, at in fired if at <= shift_at),
            "flaps": flaps(changes), **timing,
        }
        if after:
            state, at = after[0]
            grown = state.evidence.get("grown_topic") or {}
            examples = grown.get("examples") or []
            result.update({
                "detected_min": round((at - shift_at).total_seconds() / 60, 1), "rule": state.rule,
                "grown_topic": {"label": grown.get("label"), "share_before": grown.get("share_before"),
                                "share_after": grown.get("share_after"),
                                "share_after_ci": grown.get("share_after_ci"),
                                # How many texts a side it was named over (the whole run of evidence
                                # when the alarm spans several windows), None: the window's own.
                                "named_over_texts": (grown.get("over") or {}).get("n_cur"),
                                "examples_from_new_topic": f"{sum(e.get('text') in novel_texts for e in examples)}"
                                                           f"/{len(examples)}"}})
        else:
            result["detected_min"] = None
        if evidently:
            vectors_of = {texts[i]: vectors[i] for i in {index for _, index in calls}}
            hours = evidently_hours(client, vectors_of, start, end, sample)
            flagged_after = [at for at, drifted in hours if drifted and at > shift_at]
            result["evidently_default"] = {
                "detected_min": round((flagged_after[0] - shift_at).total_seconds() / 60, 1) if flagged_after else None,
                "false_flags_before_shift": sum(1 for at, drifted in hours if drifted and at <= shift_at),
                "hours_tested": len(hours)}
        store.close_all()
    return result


def null_run(texts: list[str], intents: np.ndarray, vectors: np.ndarray, model_name: str, *, novel: str,
             rate: float, days: float, window_s: int, seed: int, end: datetime, evidently: bool,
             sample: int) -> dict[str, Any]:
    from llmsight import store

    start = end - timedelta(days=days)
    calls = make_stream(intents, novel, start, (end - start).total_seconds(), rate, None, 0.0,
                        np.random.default_rng(seed + 1))
    with tempfile.TemporaryDirectory(prefix="llmsight-bench-drift-null-") as folder:
        client = store.connect(f"chdb://{folder}", f"bench_{uuid.uuid4().hex[:8]}")
        store.migrate(client)
        seed_store(client, texts, vectors, calls, model_name)
        _progress(f"no shift: {len(calls)} calls stored, analysing {days} days in {window_s} s windows")
        _, changes, timing = analyse(client, start, end, window_s)
        _progress(f"no shift: analysed in {timing['backfill_s']} s")
        fired = drift_firings(changes)
        weeks = days / 7
        by_rule: dict[str, int] = {}
        for state, _ in fired:
            by_rule[state.rule] = by_rule.get(state.rule, 0) + 1
        result: dict[str, Any] = {
            "days": days, "rate_per_s": rate, "base_window_s": window_s, "calls": len(calls),
            "false_alerts_per_segment_week": round(len(fired) / weeks, 2), "false_alerts_by_rule": by_rule,
            "flaps": flaps(changes), **timing}
        tests = client.query(
            "SELECT granularity, count(), countIf(p_value < 0.01) FROM metrics FINAL WHERE metric = 'drift_input' "
            "GROUP BY granularity ORDER BY granularity").result_rows
        result["single_tests_p_below_0.01"] = {g: f"{flagged}/{n}" for g, n, flagged in tests}
        if evidently:
            vectors_of = {texts[i]: vectors[i] for i in {index for _, index in calls}}
            hours = evidently_hours(client, vectors_of, start, end, sample)
            result["evidently_default"] = {"flagged_hours_per_week": round(sum(d for _, d in hours) / weeks, 2),
                                           "hours_tested": len(hours)}
        store.close_all()
    return result


def main(
    json_out: bool = typer.Option(False, "--json", help="Print the figures as one JSON line last."),
    shares_text: str = typer.Option("0.02,0.05,0.10", "--shares", help="New-topic shares after the shift."),
    rate: float = typer.Option(1.0, help="Calls per second in the shift streams."),
    before_hours: float = typer.Option(2.0, "--before-hours", help="Ordinary traffic before the shift."),
    after_hours: float = typer.Option(3.0, "--after-hours", help="Traffic after the shift (2% is checked "
                                      "against one day: pass 24 for that target)."),
    shift_offset_min: float = typer.Option(7.0, "--shift-offset-min", help="The shift starts this many "
                                           "minutes past the hour."),
    week_days: float = typer.Option(7.0, "--week-days", help="Length of the no-shift stream (0: skip)."),
    week_rate: float = typer.Option(0.05, "--week-rate", help="Calls per second in the no-shift stream."),
    week_window_s: int = typer.Option(600, "--week-window-s", help="Base window of the no-shift stream."),
    evidently: bool = typer.Option(True, "--evidently/--no-evidently", help="Run Evidently on the hourly windows."),
    seed: int = typer.Option(7, help="Seed of the held-out intent and the streams."),
    data: Path = typer.Option(DEFAULT_DATA, help="The banking77 folder (train.csv, test.csv)."),
) -> None:
    """Drift on a stream through the store and the analyzers: time to detection, false alerts per week, flaps."""
    from llmsight import config
    from llmsight.analyzers import settings
    from llmsight.analyzers.embeddings import Embedder
    from llmsight.analyzers.windows import floor_time
    from llmsight.bench.drift import embed_cached, load_banking77
    from llmsight.bench.report import emit

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Whole texts are what drift embeds; the toxicity scorer's extra sentence pass would embed new
    # sentences, which this benchmark does not measure.
    os.environ["LLMSIGHT_TOXICITY_SENTENCES"] = "false"
    texts, intents = load_banking77(data)
    backend = config.resolve(settings.EMBEDDING_BACKEND, strict=True)
    vectors, embedding = embed_cached(texts, backend, None)
    model_name = Embedder(backend=backend).name
    novel = pick_novel_intent(intents, seed)
    sample = config.resolve(settings.DRIFT_HORIZON_SAMPLE, strict=True)
    end = floor_time(datetime.now(timezone.utc) - timedelta(hours=1), 3600)
    figures: dict[str, Any] = {"new_topic": novel, "rate_per_s": rate, "before_hours": before_hours,
                               "after_hours": after_hours, "false_alarms_budget_per_segment_week":
                               config.resolve(settings.DRIFT_FALSE_ALARMS_PER_WEEK, strict=True),
                               "backend": backend, **embedding, "shifts": []}
    for share in (float(s) for s in shares_text.split(",") if s.strip()):
        result = shift_run(texts, intents, vectors, model_name, share, novel=novel, rate=rate, before_h=before_hours,
                           after_h=after_hours, offset_min=shift_offset_min, seed=seed, end=end,
                           evidently=evidently, sample=sample)
        log.info("bench drift-stream: %s", result)
        figures["shifts"].append(result)
    if week_days > 0:
        figures["no_shift"] = null_run(texts, intents, vectors, model_name, novel=novel, rate=week_rate,
                                       days=week_days, window_s=week_window_s, seed=seed, end=end,
                                       evidently=evidently, sample=sample)
    emit(f"llmsight bench drift-stream (banking77, one segment, new topic {novel})", figures, json_out)
