"""With replicas, each distinct text of a window reaches the model once, however the units share texts.

Real Kafka broker, real chdb, the real MiniLM model. Segments share most of their outputs (a few
canned answers) and some prompts; the reference hour is in the embeddings table already, as in a
running deployment, so the window's analysis embeds only its own texts. Two workers take its units:
with the embedding phase the two models together embed exactly the window's distinct texts. (With
``Coordinator(..., embed_phase=False)`` both embed the answers their first units share: 326 texts for 323 when
this test was written; with the phase but without the toxicity views in it, the two answers with a view of
their own were embedded twice: 327 for 325.)
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

from llmsight.analyzers.embeddings import Embedder, EmbeddingCache
from llmsight.analyzers.windows import Window, floor_time, read_metrics, segments_in
from llmsight.demo.traffic import TrafficGenerator
from llmsight.scheduler.replica import Replica
from llmsight.scheduler.roles import Coordinator, QueueSettings
from llmsight.scheduler.service import ScheduleSettings
from llmsight.store import EVENT_COLUMNS, event_row
from tests.integration.test_analysis_replicas import queue_for, replica, start_workers, window_state

SEGMENTS = 6
PER_WINDOW = 30
# The last two are read by the toxicity head through a view of their own (emoji named, "sh!t" spelled out),
# which needs a vector of its own: embedded once too.
ANSWERS = ["Sure, I can help with that.", "Please check the app under Cards.", "Your transfer is on its way.",
           "I cannot help with that request.", "Let me connect you with an agent.",
           "Done \U0001F44D your card is on its way \U0001F680", "No sh!t, the fee was refunded."]


def seed_shared(client, window: Window) -> None:
    """Segments with a reference half hour and the window; outputs from five shared answers."""
    gen = TrafficGenerator(seed=5)
    rows = []
    for s in range(SEGMENTS):
        stamps = [window.start - timedelta(minutes=40) + timedelta(seconds=60 * i) for i in range(PER_WINDOW)]
        stamps += [window.start + timedelta(seconds=i * 60 / PER_WINDOW) for i in range(PER_WINDOW)]
        for i, ts in enumerate(stamps):
            rows.append(event_row({
                "event_id": str(uuid.UUID(int=(5 << 64) + s * 1000 + i)), "trace_id": f"e-{s}-{i}", "ts": ts,
                "service": "bank", "name": f"feature-{s}", "model": "m", "prompt_version": "v1",
                "input": gen.next("v1").text, "output": ANSWERS[(s + i) % len(ANSWERS)], "latency_ms": 100.0,
                "tokens_in": 10, "tokens_out": 20, "cost_usd": 0.001}, "test"))
    client.insert("events", rows, column_names=EVENT_COLUMNS)
    # The reference hour was embedded by the windows before this one.
    history = client.query("SELECT input, output FROM events WHERE ts < {a:DateTime64(3, 'UTC')}",
                           parameters={"a": window.start}).result_rows
    EmbeddingCache(client, Embedder()).encode(list(dict.fromkeys(t for row in history for t in row)))


def _setup(store_client, kafka_broker) -> tuple[Window, QueueSettings, list[Replica]]:
    """The window before the last full minute, seeded; a fresh work queue; two worker replicas (not started)."""
    now = datetime.now(timezone.utc)
    window = Window(floor_time(now, 60) - timedelta(seconds=120), floor_time(now, 60) - timedelta(seconds=60))
    seed_shared(store_client, window)
    schedule = ScheduleSettings(window_s=60, lag_s=1, catchup=3, http_port=0)
    queue = queue_for(kafka_broker)
    return window, queue, [replica(store_client, queue, "worker", schedule, f"w{i}") for i in range(2)]


def _coordinator(store_client, queue: QueueSettings, name: str) -> Coordinator:
    return Coordinator(store_client, queue, window_s=60, lag_s=1, catchup=3, rules=[], notifier=None, name=name,
                       weekly_export=False)


def test_two_workers_embed_each_distinct_text_of_a_window_once(store_client, kafka_broker):
    window, queue, workers = _setup(store_client, kafka_broker)
    coordinator = _coordinator(store_client, queue, "c")
    try:
        start_workers(workers, 120, warm=True)
        embedders = [w.worker.analyzer.embeddings.embedder for w in workers]
        before = sum(e.texts_encoded for e in embedders)
        # (after the workers' warm-up, which embeds a text of its own)
        stored_before = int(store_client.query("SELECT uniqExact(text_hash) FROM embeddings").result_rows[0][0])
        coordinator.publish(window, segments_in(store_client, window))
        deadline = time.monotonic() + 240
        while coordinator.evaluate_done(datetime.now(timezone.utc)) == 0:
            coordinator.release_embedded()
            assert time.monotonic() < deadline, "the window was not done in 240 s"
            time.sleep(0.25)
        embedded = sum(e.texts_encoded for e in embedders) - before
    finally:
        for r in workers:
            r.shutdown()
        coordinator.close()
    assert window_state(store_client, window) == "evaluated"
    assert {r["name"] for r in read_metrics(store_client, window)} == {f"feature-{s}" for s in range(SEGMENTS)}
    new = int(store_client.query("SELECT uniqExact(text_hash) FROM embeddings").result_rows[0][0]) - stored_before
    print(f"{embedded} texts reached the models, {new} distinct new texts")
    assert new > PER_WINDOW  # the window's own prompts, its answers and their sentences
    assert embedded == new


def test_a_new_coordinator_publishes_what_the_one_before_left_between_the_two_phases(store_client, kafka_broker):
    # The coordinator dies after the window's embedding units went out and before its analysis units did: the next
    # coordinator, on taking over, publishes the units not done, and the window completes once.
    window, queue, workers = _setup(store_client, kafka_broker)
    first, second = _coordinator(store_client, queue, "c1"), _coordinator(store_client, queue, "c2")
    try:
        start_workers(workers, 120, warm=True)
        planned = first.publish(window, segments_in(store_client, window))
        first.close()  # gone before release_embedded sent the analysis units
        time.sleep(3)
        assert window_state(store_client, window) != "evaluated"
        second._hand_over(True)  # what Kafka's group assignment does when the partition moves to it
        deadline = time.monotonic() + 240
        while window_state(store_client, window) != "evaluated":
            second.step()
            assert time.monotonic() < deadline, "the window was not done in 240 s after the hand-over"
            time.sleep(0.25)
    finally:
        for r in workers:
            r.shutdown()
        second.close()
    assert {r["name"] for r in read_metrics(store_client, window)} == {f"feature-{s}" for s in range(SEGMENTS)}
    # Every analysis unit of the plan done (each once in the table, which keeps the last row of a unit), and
    # the embedding units before them.
    done = store_client.query(
        "SELECT granularity, uniqExact(unit_id) FROM analysis_units WHERE window_start = {w:DateTime('UTC')} "
        "GROUP BY granularity ORDER BY granularity", parameters={"w": window.start}).result_rows
    assert dict(done)["1m"] == planned and dict(done)["1m+embed"] >= 1
