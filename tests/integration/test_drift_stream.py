"""A small drift stream through the real store, analyzers (MiniLM) and the default alert rules.

Three hours of one segment's banking77 traffic at 0.5 calls/s in 10-minute base windows: hour 0 is
the reference, hour 1 is more of the same, and from hour 2 on 15% of the calls are a held-out intent.
The default drift alerts must stay quiet before the shift, fire after it, and their evidence must
name the topic that grew (examples from the held-out intent, shares before and after with
intervals). The hourly test must use more texts than a base window samples, all read from the
embeddings the base windows stored (nothing new is embedded for it).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np

from llmsight.analyzers.embeddings import Embedder, EmbeddingCache
from llmsight.analyzers.window_metrics import AnalysisSettings, WindowAnalyzer
from llmsight.analyzers.windows import Window, floor_time, read_metrics
from llmsight.bench.drift import load_banking77
from llmsight.bench.drift_stream import drift_firings, flaps, make_stream, seed_store
from llmsight.scheduler.service import AnalyzerService, ScheduleSettings
from llmsight.store import names

NOVEL = "card_arrival"


def _texts_pool(shared_data):
    """A pool of 600 ordinary texts and 80 of the held-out intent (embedded once each)."""
    texts, intents = load_banking77(shared_data / "banking77")
    rng = np.random.default_rng(5)
    old = rng.choice(np.flatnonzero(intents != NOVEL), 600, replace=False)
    new = rng.choice(np.flatnonzero(intents == NOVEL), 80, replace=False)
    chosen = np.r_[old, new]
    return [texts[i] for i in chosen], intents[chosen]


def test_a_new_topic_is_flagged_and_the_evidence_names_it(store_client, shared_data) -> None:
    texts, intents = _texts_pool(shared_data)
    embedder = Embedder()
    vectors = EmbeddingCache(store_client, embedder).encode(texts)  # the vectors the base windows would store
    end = floor_time(datetime.now(timezone.utc) - timedelta(hours=1), 3600)
    start = end - timedelta(hours=3)
    shift_at = start + timedelta(hours=2)
    calls = make_stream(intents, NOVEL, start, 3 * 3600, 0.5, shift_at, 0.15, np.random.default_rng(1))
    seed_store(store_client, texts, vectors, calls, embedder.name)

    analyzer = WindowAnalyzer(store_client, AnalysisSettings(), embeddings=EmbeddingCache(store_client, embedder))
    service = AnalyzerService(store_client, schedule=ScheduleSettings(window_s=600), analyzer=analyzer)
    # What `llmsight analyzers --backfill` runs: every base window, then every hour.
    windows = [Window(start + timedelta(minutes=10 * i), start + timedelta(minutes=10 * (i + 1))) for i in range(18)]
    hours = [Window(start + timedelta(hours=h), start + timedelta(hours=h + 1), "1h") for h in range(3)]
    for window in windows:
        service.run_window(window, evaluate_alerts=False)
    encoded = embedder.texts_encoded  # (the toxicity scorer's sentence pass embeds sentences of its own)
    for window in hours:
        service.run_window(window, evaluate_alerts=False)
    assert analyzer.failures == 0
    assert embedder.texts_encoded == encoded  # the hourly tests read stored vectors and embedded nothing

    # The hourly test of the shifted hour: more texts than a base window samples, threshold in the score's units.
    hour = Window(shift_at, shift_at + timedelta(hours=1), "1h")
    rows = {r["metric"]: r for r in read_metrics(store_client, hour)}
    drift, evidence = rows[names.DRIFT_INPUT], rows[names.DRIFT_INPUT_EVIDENCE]
    assert drift["n"] > 1000 and drift["p_value"] < 0.01 and drift["value"] > drift["threshold"] > 0
    assert evidence["threshold"] == 1.0 and evidence["value"] >= 1.0
    # The hour before the shift: no alarm at that horizon.
    quiet = {r["metric"]: r for r in read_metrics(store_client, Window(shift_at - timedelta(hours=1), shift_at, "1h"))}
    assert quiet[names.DRIFT_INPUT_EVIDENCE]["value"] < 1.0

    # The default rules, window after window in time order, as the bench runs them.
    changes = []
    for window in sorted(windows + hours, key=lambda w: (w.end, w.granularity != "1h")):
        for state, transition in service.alerts.evaluate(window.start, read_metrics(store_client, window),
                                                         window.granularity, now=window.end + timedelta(seconds=20)):
            changes.append((state, transition, window.end))
    fired = drift_firings(changes)
    assert fired, "no drift alert fired after a 15% new topic"
    assert all(at > shift_at for _, at in fired), "a drift alert fired before the shift"
    assert flaps(changes) == 0
    state, at = fired[0]
    assert at - shift_at <= timedelta(hours=1)
    grown = state.evidence["grown_topic"]
    novel_texts = {t for t, i in zip(texts, intents, strict=True) if i == NOVEL}
    from_novel = sum(e["text"] in novel_texts for e in grown["examples"])
    assert len(grown["examples"]) == 5 and from_novel >= 4, grown
    assert grown["share_before"] < grown["share_after"]
    lo, hi = grown["share_after_ci"]
    assert lo <= grown["share_after"] <= hi and grown["share_before_ci"][1] < lo
    assert any(word in grown["label"] for word in ("card", "arriv", "deliver", "mail")), grown["label"]
    assert all(e["trace_id"] for e in grown["examples"])


def test_an_alarm_over_several_small_windows_names_the_new_topic_from_its_whole_run(store_client, shared_data) -> None:
    """Windows of 60 texts (a minute at 1 call/s) and a new topic at 20% from 14:07. When the base
    evidence alarms on a run of several windows, its grown topic is named over every window since
    the run began (against as many texts of the held reference), not over the last window's 60
    texts, and it is the injected intent."""
    texts, intents = _texts_pool(shared_data)
    embedder = Embedder()
    vectors = EmbeddingCache(store_client, embedder).encode(texts)
    end = floor_time(datetime.now(timezone.utc) - timedelta(hours=1), 3600)
    start = end - timedelta(hours=3)
    shift_at = start + timedelta(hours=2, minutes=7)
    calls = make_stream(intents, NOVEL, start, 3 * 3600, 0.2, shift_at, 0.2, np.random.default_rng(2))
    seed_store(store_client, texts, vectors, calls, embedder.name)

    analyzer = WindowAnalyzer(store_client, AnalysisSettings(), embeddings=EmbeddingCache(store_client, embedder))
    service = AnalyzerService(store_client, schedule=ScheduleSettings(window_s=300), analyzer=analyzer)
    novel_texts = {t for t, i in zip(texts, intents, strict=True) if i == NOVEL}
    named = None
    for i in range(36):
        window = Window(start + timedelta(minutes=5 * i), start + timedelta(minutes=5 * (i + 1)))
        service.run_window(window, evaluate_alerts=False)
        evidence = {r["metric"]: r for r in read_metrics(store_client, window)}.get(names.DRIFT_INPUT_EVIDENCE)
        if evidence is None or evidence["value"] < 1.0:
            continue
        assert window.end > shift_at, f"false alarm at {window}"
        details = json.loads(evidence["details"])
        if details["since"] < window.start.strftime("%Y-%m-%dT%H:%M:%SZ"):  # a run of several windows
            named = details
            break
    assert analyzer.failures == 0
    assert named is not None, "the base evidence did not alarm on a run of several windows after a 20% new topic"
    grown = named["grown_topic"]
    # Named over the run, not the window: more texts than a window holds, from the run's start.
    assert grown["over"]["n_cur"] > 60 and grown["over"]["from"] == named["since"]
    from_novel = sum(e["text"] in novel_texts for e in grown["examples"])
    assert len(grown["examples"]) == 5 and from_novel >= 4, grown
    assert any(word in grown["label"] for word in ("card", "arriv", "deliver", "mail")), grown["label"]
    assert grown["share_before"] < grown["share_after"]
