"""Analyzers shared by worker processes through Kafka: one window with 1 worker, then with 2.

Real components: a Kafka broker (``--kafka``, or one started with the checkout's ``scripts/kafka-dev``),
the chdb store shared by every process through ``llmsight store serve``, and worker processes started
as ``llmsight analyzers --role worker``, each pinned to one core (``taskset``) with one thread for the
math libraries. For each worker count the same workload is seeded into a fresh database (a cold
embedding cache), the workers load their models and join the group, and then the window's units are
published; the time is from publishing until every unit is done. The scaling ratio is the 2-worker
rate over the 1-worker rate, measured in the same run.

On a 2-core machine the store server and the broker share the cores with the workers: the 1-worker
run has a core of its own beside them, the 2-worker run does not, so the ratio is a floor. Each run
therefore also reports where the CPU went while the window ran (the workers' CPU seconds from
``/proc/<pid>/stat``, the rest of the machine's busy time from ``/proc/stat``) and the calls per
worker CPU second, which stays flat when the work itself splits cleanly across workers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@contextmanager
def _store_server(folder: Path) -> Any:
    """``llmsight store serve`` on a free port; yields its base URL."""
    log = folder / "store-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llmsight.cli.app", "store", "serve", "--path",
                                 str(folder / "db"), "--port", "0"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("store: serving"):
                    yield line.split(" on ", 1)[1].split()[0]
                    return
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("the store server did not start:\n" + log.read_text(errors="replace")[-2000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def _broker(bootstrap: str | None, folder: Path) -> Any:
    if bootstrap:
        yield bootstrap
        return
    script = SCRIPTS / "kafka-dev"
    if not script.exists():
        raise RuntimeError("no --kafka given and no scripts/kafka-dev beside the package to start a broker")
    state = folder / "kafka"
    started = subprocess.run([sys.executable, str(script), "start", "--dir", str(state)], capture_output=True,
                             text=True, timeout=300)
    if started.returncode != 0:
        raise RuntimeError(f"kafka-dev start failed: {started.stderr[-2000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([sys.executable, str(script), "stop", "--dir", str(state)], capture_output=True, timeout=120)


def _members(bootstrap: str, group: str) -> int:
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="llmsight-bench")
    try:
        described = admin.describe_groups([group])[group]
        return len(described.get("members") or []) if described.get("group_state") == "Stable" else 0
    except KafkaError:
        return 0
    finally:
        admin.close()


def _start_worker(index: int, url: str, bootstrap: str, topic: str, group: str, unit_segments: int,
                  log: Path) -> subprocess.Popen[bytes]:
    one_thread = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    env = {**os.environ, **one_thread, "LLMSIGHT_CLICKHOUSE_URL": url, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "LLMSIGHT_ANALYSIS_QUEUE": f"kafka://{bootstrap}/{topic}",
           "LLMSIGHT_ANALYSIS_GROUP": group, "LLMSIGHT_ANALYSIS_UNIT_SEGMENTS": str(unit_segments),
           "LLMSIGHT_ANALYZERS_HTTP_PORT": "0", "LLMSIGHT_ANALYSIS_SESSION_TIMEOUT_S": "10"}
    command = [sys.executable, "-m", "llmsight.cli.app", "analyzers", "--role", "worker"]
    cores = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") and cores:
        command = ["taskset", "-c", str(cores[index % len(cores)]), *command]
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used; 0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime and stime, fields 14 and 15
    except (OSError, IndexError, ValueError):
        return 0.0


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (every core: not idle, not waiting for I/O)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        return (sum(values) - values[3] - values[4]) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def run_workers(url_base: str, bootstrap: str, folder: Path, workers: int, segments: int, calls: int,
                reference_calls: int, unit_segments: int, data: Path, timeout_s: float = 900,
                embed_phase: bool = True) -> dict[str, Any]:
    """Seed a fresh database, start ``workers`` pinned worker processes, publish one window, time it."""
    from llmsight import store
    from llmsight.analyzers.windows import floor_time, segments_in
    from llmsight.bench.analyzers import seed
    from llmsight.scheduler.roles import Coordinator, QueueSettings

    name = uuid.uuid4().hex[:8]
    client = store.connect(f"{url_base}/bench_{name}")
    store.migrate(client)
    window_start = floor_time(datetime.now(timezone.utc), 60) - timedelta(minutes=2)
    window = seed(client, segments, calls, window_start, reference_calls=reference_calls, data=data)
    chosen = segments_in(client, window)
    n_calls = int(client.query("SELECT count() FROM events WHERE ts >= {a:DateTime64(3, 'UTC')} AND "
                               "ts < {b:DateTime64(3, 'UTC')}", parameters={"a": window.start, "b": window.end})
                  .result_rows[0][0])
    queue = QueueSettings((bootstrap,), f"bench-analysis-{name}", f"bench-analyzers-{name}", 24, unit_segments,
                          10.0, 3600.0)
    procs = [_start_worker(i, f"{url_base}/bench_{name}", bootstrap, queue.topic, queue.group, unit_segments,
                           folder / f"worker-{workers}-{i}.log") for i in range(workers)]
    coordinator = Coordinator(client, queue, window_s=60, lag_s=1, catchup=1, rules=[], notifier=None,
                              name="bench", weekly_export=False, embed_phase=embed_phase)
    try:
        from llmsight.scheduler.roles import ensure_topics

        ensure_topics(queue)
        deadline = time.monotonic() + 300
        while _members(bootstrap, queue.group) < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{workers} workers did not join; see {folder}/worker-{workers}-*.log")
            time.sleep(0.5)
        started = time.perf_counter()
        busy_before, workers_before = _machine_busy_s(), sum(_process_cpu_s(p.pid) for p in procs)
        units = coordinator.publish(window, chosen)
        deadline = time.monotonic() + timeout_s
        while True:
            coordinator.release_embedded()  # the analysis units, once the window's texts are embedded
            done = int(client.query("SELECT uniqExact(unit_id) FROM analysis_units WHERE window_start = "
                                    "{w:DateTime('UTC')} AND granularity = '1m'", parameters={"w": window.start})
                       .result_rows[0][0])
            if done >= units:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{done} of {units} units done after {timeout_s:.0f} s")
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        busy = _machine_busy_s() - busy_before
        worker_cpu = sum(_process_cpu_s(p.pid) for p in procs) - workers_before
        by_worker = dict(client.query("SELECT worker, count() FROM analysis_units WHERE window_start = "
                                      "{w:DateTime('UTC')} AND granularity = '1m' GROUP BY worker",
                                      parameters={"w": window.start}).result_rows)
        # The embedding units: how many, and the texts they found or embedded (each distinct text once).
        shards, sharded = client.query("SELECT uniqExact(unit_id), sum(metric_rows) FROM analysis_units FINAL "
                                       "WHERE window_start = {w:DateTime('UTC')} AND granularity = '1m+embed'",
                                       parameters={"w": window.start}).result_rows[0]
        distinct = int(client.query("SELECT uniqExact(text_hash) FROM embeddings").result_rows[0][0])
    finally:
        coordinator.close()
        _stop(procs)
    # What reached the model, from the workers' logs: above the distinct texts, texts embedded twice.
    embedded = sum(int(match) for i in range(workers) for match in re.findall(
        r"embeddings: (\d+) new vectors stored", (folder / f"worker-{workers}-{i}.log").read_text(errors="replace")))
    return {"workers": workers, "embed_phase": embed_phase, "segments": len(chosen), "units": units, "calls": n_calls, "texts": 2 * n_calls,
            "seconds": round(seconds, 2), "calls_per_s": round(n_calls / seconds, 1),
            "texts_per_s": round(2 * n_calls / seconds, 1), "units_by_worker": sorted(by_worker.values()),
            "embedding_units": int(shards), "window_texts_sharded": int(sharded or 0), "texts_embedded": embedded, "distinct_texts": distinct,
            # Where the machine's CPU went while the window ran: the workers, and everything else (the
            # store server, the broker, the coordinator); and the work per call, which should not grow
            # with the worker count if the units split cleanly.
            "worker_cpu_s": round(worker_cpu, 1), "other_cpu_s": round(max(0.0, busy - worker_cpu), 1),
            "machine_busy_share": round(busy / (seconds * len(os.sched_getaffinity(0))), 2),
            "calls_per_worker_cpu_s": round(n_calls / worker_cpu, 1) if worker_cpu > 0 else None}


def scale(worker_counts: list[int], segments: int, calls: int, reference_calls: int, unit_segments: int,
          data: Path, kafka: str | None = None, embed_phases: tuple[bool, ...] = (True,)) -> dict[str, Any]:
    """The window with each worker count, in this order, and the scaling ratio against the first.

    With ``embed_phases=(False, True)`` each count runs without the embedding phase, then with it (the
    way replicas ran before it, side by side in the same session), and each gets its own ratio."""
    import tempfile

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llmsight-bench-scale-")))
        url = stack.enter_context(_store_server(folder))
        bootstrap = stack.enter_context(_broker(kafka, folder))
        runs = []
        for workers in worker_counts:
            for phase in embed_phases:
                print(f"bench analyzers: {workers} worker process(es), one core each, embedding phase "
                      f"{'on' if phase else 'off'} ...", file=sys.stderr, flush=True)
                runs.append(run_workers(url, bootstrap, folder, workers, segments, calls, reference_calls,
                                        unit_segments, data, embed_phase=phase))
                print(f"bench analyzers:   {runs[-1]['seconds']} s, {runs[-1]['calls_per_s']} calls/s",
                      file=sys.stderr, flush=True)
    result: dict[str, Any] = {"runs": runs}
    for phase in embed_phases:
        chosen = [r for r in runs if r["embed_phase"] == phase]
        base = chosen[0]["calls_per_s"]
        ratios = {str(r["workers"]): round(r["calls_per_s"] / base, 2) for r in chosen}
        result["scaling" if phase == embed_phases[-1] else "scaling_without_embedding_phase"] = ratios
    return result
