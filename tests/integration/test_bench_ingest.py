"""`llmsight bench ingest` end to end on the test broker: it runs, stores every event once and
reports the figures the closing notes quote (the rates themselves are not asserted: the machine
is shared, and performance is measured, not asserted in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def test_bench_ingest_reports_both_rates_and_stores_every_event(kafka_broker) -> None:
    command = [str(Path(sys.executable).with_name("llmsight")), "bench", "ingest", "--json", "--events", "3000",
               "--rounds", "2", "--batch", "1000", "--bootstrap", kafka_broker.bootstrap, "--timeout", "90"]
    # Five reads of the topic at most 90 s each: the bench fails and says where before this does.
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr)
        pytest.fail(f"bench ingest still running after 600 s; its stderr ends with:\n{stderr[-3000:]}")
    # On failure: the phases and warnings (which read stalled, and how), then the traceback's end.
    story = [line for line in done.stderr.splitlines() if line.startswith("bench ingest:") or " WARNING " in line]
    assert done.returncode == 0, "\n".join(story[-40:]) + "\n...\n" + done.stderr[-1500:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert (figures["events"], figures["rounds"], figures["batch"], figures["stored_final"]) == (3000, 2, 1000, 3000)
    assert figures["batches"] >= 3  # at most 1000 messages per insert (more batches if one closes on age)
    assert len(figures["collector_vs_raw_per_round"]) == 2
    for key in ("raw_loop_eps", "collector_kafka_eps", "collector_spool_eps"):
        assert figures[key] > 0, key
    assert figures["target_ratio_met"] == (figures["collector_vs_raw"] >= 0.6)
