"""The chart's probes against the real processes: each component is started with the arguments
and environment `helm template` renders, and its liveness and readiness paths must answer 200.

Two things differ from a cluster, and only where this machine requires it: the store is a chdb
directory per process (there is no ClickHouse server here), and the ports are free ones handed
through the same variables and flags the chart sets (other test runs may hold 9464, 9465, 8501).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.processes import LLMSIGHT, free_port, http_status, start_llmsight, stop
from tests.unit.test_helm import container, effective_env, render

COMPONENTS = ("collector", "analyzers", "dashboard")
PORT_VARIABLES = {"collector": "LLMSIGHT_COLLECTOR_HTTP_PORT", "analyzers": "LLMSIGHT_ANALYZERS_HTTP_PORT"}


def _launch(name: str, spec: dict[str, Any], env: dict[str, Any], kafka_url: str, tmp_path: Path
            ) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    args = list(spec["args"])
    if name == "collector":
        args[args.index("--source") + 1] = kafka_url
    if name == "dashboard":
        args[args.index("--port") + 1] = str(port)
    plain = {k: v for k, v in env.items() if isinstance(v, str)}  # secrets come from Secrets in a cluster
    home = tmp_path / name
    home.mkdir()
    plain.update({
        "HOME": str(home),
        "LLMSIGHT_CLICKHOUSE_URL": f"chdb://{home / 'db'}",
        "LLMSIGHT_SINK": kafka_url,
        "LLMSIGHT_DASHBOARD_PASSWORD": "probe-test-password",
        "LLMSIGHT_EXPORT_DIR": str(home / "exports"),
    })
    if "LLMSIGHT_ANALYSIS_QUEUE" in plain:  # the analyzer replicas share their work on the test broker
        plain["LLMSIGHT_ANALYSIS_QUEUE"] = f"{kafka_url}-analysis"
    if name in PORT_VARIABLES:
        plain[PORT_VARIABLES[name]] = str(port)
    log = home / "output.log"
    if name == "dashboard":  # the chart's migrations job runs first: the dashboard never changes the schema
        subprocess.run([LLMSIGHT, "db", "migrate"], env={**os.environ, **plain}, check=True, timeout=300,
                       capture_output=True)
    return start_llmsight(args, plain, log), port, log


def test_each_component_answers_its_probes(kafka_broker: Any, tmp_path: Path) -> None:
    docs = render()
    topic = kafka_broker.create_topic()
    kafka_url = f"kafka://{kafka_broker.bootstrap}/{topic}"
    running = {}
    try:
        for name in COMPONENTS:
            spec = container(docs, "Deployment", f"rel-llmsight-{name}")
            running[name] = (spec, *_launch(name, spec, effective_env(docs, spec), kafka_url, tmp_path))
        pending = {(name, kind) for name in COMPONENTS for kind in ("livenessProbe", "readinessProbe")}
        deadline = time.monotonic() + 180
        while pending and time.monotonic() < deadline:
            for name, kind in sorted(pending):
                spec, process, port, log = running[name]
                assert process.poll() is None, f"{name} exited with {process.returncode}:\n{log.read_text()[-3000:]}"
                if http_status(f"http://127.0.0.1:{port}{spec[kind]['httpGet']['path']}") == 200:
                    pending.discard((name, kind))
            time.sleep(0.5)
        assert pending == set(), {n: running[n][3].read_text()[-2000:] for n, _ in pending}
    finally:
        stop(process for _spec, process, _port, _log in running.values())
