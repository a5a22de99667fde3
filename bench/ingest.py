"""Ingest: collector events/s from Kafka into chdb vs a raw kafka-python consume+decode loop, and spool into chdb.

One run measures, on the same topic and the same machine:

* ``raw_loop_eps``: a bare kafka-python consumer that only polls and ``json.loads`` each value
  (the same fetch settings as the collector), the ceiling for any Python consumer;
* ``collector_kafka_eps``: ``Collector`` + ``KafkaSource`` from the first message read to the
  last batch inserted and committed in chdb (validation, columns, dedup tokens, commits included);
* ``collector_spool_eps``: the same events from a spool directory written by the SDK's writer.

It runs ``--rounds`` pairs (raw loop, then collector, each with a fresh consumer group and a fresh
database) and reports the medians, so one burst of load from a neighbour spoils a round, not the
figure; ``collector_vs_raw_per_round`` shows the spread.

Targets: collector >= 20,000 events/s and >= 0.6x the raw loop.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import typer

_WORDS = ("card account transfer pin limit fee balance refund statement loan mortgage savings "
          "abroad blocked declined pending exchange rate interest overdraft cash atm contactless "
          "verify identity address phone app password dispute charge subscription").split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def make_events(n: int, seed: int = 7) -> list[bytes]:
    """``n`` realistic events (~700 bytes of JSON each); one in ten is feedback."""
    rng = random.Random(seed)
    # Yesterday: inside the collector's accepted range [now - retention, now + 1 day] on any day it runs.
    day = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")
    out = []
    for i in range(n):
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if i % 10 == 9:
            event: dict[str, Any] = {"type": "feedback", "schema_version": 1, "event_id": event_id,
                                     "trace_id": f"{i - 1:032x}", "ts": f"{day}T10:00:01.000000Z",
                                     "accepted": rng.random() < 0.8, "user_id": f"u{rng.randrange(5000)}"}
        else:
            event = {"type": "llm_call", "schema_version": 1, "event_id": event_id, "trace_id": f"{i:032x}",
                     "ts": f"{day}T10:00:00.123456Z", "service": "banking-assistant",
                     "environment": "production", "name": "answer", "model": "gpt-4o-mini",
                     "prompt_version": f"v{rng.randrange(1, 4)}", "input": _text(rng, 18),
                     "output": _text(rng, 60), "latency_ms": round(rng.uniform(200, 3000), 1),
                     "ttft_ms": round(rng.uniform(50, 400), 1), "tokens_in": rng.randrange(20, 200),
                     "tokens_out": rng.randrange(50, 400), "cost_usd": round(rng.uniform(0, 0.01), 6),
                     "user_id": f"u{rng.randrange(5000)}", "session_id": f"s{rng.randrange(20000)}",
                     "tags": {"channel": rng.choice(["web", "ios", "android"])}, "metadata": None}
        out.append(json.dumps(event, separators=(",", ":")).encode())
    return out


def _start_broker(state: Path) -> str:
    script = Path(__file__).resolve().parents[1] / "scripts" / "kafka-dev"
    if not script.exists():
        raise typer.BadParameter("no scripts/kafka-dev here: pass --bootstrap host:port")
    out = subprocess.run([sys.executable, str(script), "start", "--dir", str(state)],
                         capture_output=True, text=True, timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


def _stop_broker(state: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "kafka-dev"
    subprocess.run([sys.executable, str(script), "stop", "--dir", str(state)], capture_output=True, timeout=120)


def _progress(step: str) -> None:
    """One line on stderr per phase, so a run that stalls shows where."""
    print(f"bench ingest: {step}", file=sys.stderr, flush=True)


def _produce(bootstrap: str, topic: str, values: list[bytes], partitions: int) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="llmsight-bench")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20, acks=1,
                             compression_type="lz4")
    try:
        for value in values:
            producer.send(topic, value)
        producer.flush(timeout=120)
    finally:
        producer.close()


def _raw_loop(bootstrap: str, topic: str, n: int, batch: int, timeout_s: float) -> float:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
                             enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=batch,
                             max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    loads = json.loads
    seen = 0
    first = None
    deadline = time.monotonic() + timeout_s
    try:
        while seen < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bench: the raw loop read {seen} of {n} messages in {timeout_s:.0f} s "
                                   f"(assigned: {sorted(tp.partition for tp in consumer.assignment())})")
            polled = consumer.poll(timeout_ms=1000)
            if polled and first is None:
                first = time.perf_counter()
            for records in polled.values():
                for record in records:
                    loads(record.value)
                seen += len(records)
        assert first is not None
        return n / (time.perf_counter() - first)
    finally:
        consumer.close(autocommit=False)


def _timed_collector(source: Any, client: Any, n: int, batch: int, timeout_s: float) -> tuple[float, Any]:
    from llmsight.collector import Collector

    first: list[float] = []
    poll = source.poll

    def timed_poll(*args: Any, **kwargs: Any) -> Any:
        chunks = poll(*args, **kwargs)
        if chunks and not first:
            first.append(time.perf_counter())
        return chunks

    last_commit: list[float] = []
    commit = source.commit

    def timed_commit(checkpoint: Any) -> None:
        commit(checkpoint)
        last_commit[:] = [time.perf_counter()]

    source.poll, source.commit = timed_poll, timed_commit
    collector = Collector(source, client, http_port=0, batch_events=batch)
    try:
        stats = collector.run_until_idle(timeout_s=timeout_s)
    finally:
        collector.close()  # leave the consumer group now, not at exit
    if stats.messages != n:
        raise RuntimeError(f"bench: the collector read {stats.messages} messages, expected {n}")
    # From the first message read to the last batch stored and committed (the idle check after it,
    # which only --until-idle needs, is not throughput).
    return n / (last_commit[0] - first[0]), stats


def main(
    json_out: bool = typer.Option(False, "--json", help="Print the figures as one JSON line last."),
    events: int = typer.Option(100_000, "--events", help="Events per measurement."),
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka host:port; default: start scripts/kafka-dev."),
    partitions: int = typer.Option(4, "--partitions", help="Partitions of the benchmark topic."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Raw-loop/collector pairs; the medians are reported."),
    batch: int = typer.Option(None, "--batch", help="Collector batch size (messages); default: "
                                                     "LLMSIGHT_COLLECTOR_BATCH_EVENTS's."),
    timeout_s: float = typer.Option(600, "--timeout", min=1, help="Seconds each read of the topic may take "
                                                                   "before the run fails, saying where."),
) -> None:
    import logging

    from llmsight import config, store
    from llmsight.bench.report import emit
    from llmsight.collector import settings as collector_settings
    from llmsight.collector.kafka_source import KafkaSource
    from llmsight.collector.spool_source import SpoolSource
    from llmsight.spool import SpoolWriter

    batch = batch or config.resolve(collector_settings.COLLECTOR_BATCH_EVENTS, strict=True)
    logging.getLogger("llmsight.collector").setLevel(logging.WARNING)  # one line per batch is noise here
    logging.getLogger("kafka").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="llmsight-bench-ingest-"))
    started_broker = bootstrap is None
    try:
        if bootstrap is None:
            bootstrap = _start_broker(work / "kafka")
        values = make_events(events)
        topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
        _progress(f"producing {events} events to {topic} on {bootstrap}")
        _produce(bootstrap, topic, values, partitions)

        # Rounds of (raw loop, collector) on the same topic, each with fresh consumer groups and a
        # fresh database: a burst of load from a neighbour then spoils one round, not the figure.
        raw_rates, kafka_rates, ratios, stored = [], [], [], []
        for round_no in range(rounds):
            _progress(f"round {round_no + 1}/{rounds}: raw loop")
            raw_rates.append(_raw_loop(bootstrap, topic, events, batch, timeout_s))
            _progress(f"round {round_no + 1}/{rounds}: collector from Kafka")
            client = store.connect(f"chdb://{work / 'chdb'}", f"bench_kafka_{round_no}")
            store.migrate(client)
            source = KafkaSource([bootstrap], topic, group_id=f"bench-collector-{uuid.uuid4().hex[:8]}")
            kafka_rate, kafka_stats = _timed_collector(source, client, events, batch, timeout_s)
            kafka_rates.append(kafka_rate)
            ratios.append(kafka_rate / raw_rates[-1])
            stored.append(int(client.query("SELECT count() FROM events FINAL").result_rows[0][0]) + int(
                client.query("SELECT count() FROM feedback FINAL").result_rows[0][0]))
        raw_eps, kafka_eps, ratio = (statistics.median(x) for x in (raw_rates, kafka_rates, ratios))

        spool = work / "spool"
        writer = SpoolWriter(spool, segment_bytes=64 * 1024 * 1024, fsync="never")
        for start in range(0, events, 5000):
            writer.write([v + b"\n" for v in values[start:start + 5000]])
        writer.close()
        spool_client = store.connect(f"chdb://{work / 'chdb'}", "bench_spool")
        store.migrate(spool_client)
        _progress("collector from the spool")
        spool_eps, _ = _timed_collector(SpoolSource(spool), spool_client, events, batch, timeout_s)

        from llmsight.collector.batch import Chunk, decode_chunk

        sample = values[:5000]
        started = time.perf_counter()
        decode_chunk(Chunk("kafka://bench/0/", range(len(sample)), sample), 1 << 20)
        validate_us = (time.perf_counter() - started) / len(sample) * 1e6
        figures = {
            "events": events,
            "avg_event_bytes": round(sum(map(len, values)) / len(values)),
            "partitions": partitions,
            "batch": batch,
            "rounds": rounds,
            "raw_loop_eps": round(raw_eps),
            "collector_kafka_eps": round(kafka_eps),
            "collector_vs_raw": round(ratio, 3),
            "collector_vs_raw_per_round": [round(r, 3) for r in ratios],
            "collector_spool_eps": round(spool_eps),
            "decode_validate_columns_us_per_event": round(validate_us, 1),
            "stored_final": min(stored),
            "batches": kafka_stats.batches,
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
            "target_eps_met": kafka_eps >= 20_000,
            "target_ratio_met": ratio >= 0.6,
        }
        emit("llmsight bench ingest", figures, json_out)
    finally:
        store.close_all()
        if started_broker:
            _stop_broker(work / "kafka")
        shutil.rmtree(work, ignore_errors=True)
