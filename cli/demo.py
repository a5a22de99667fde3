"""``llmsight demo``: the embedded stack plus a synthetic LLM app that ships a bad prompt version partway.

The demo never touches your own store or spool: it runs on a fresh temporary chdb directory and
spool (removed at exit unless ``--data-dir`` is given), with 10-second analysis windows so alerts
appear within a couple of minutes. Timeline, from the moment the models are loaded and traffic starts:

* ``0 .. switch``: prompt version v1; this stretch is the fixed baseline every window is compared with;
* ``switch``: v2 ships: new topics (drift), abusive answers (toxicity), fewer accepted answers;
* about three windows later the drift, toxicity and acceptance alerts fire (the default rules need
  two breaching windows each, plus the window lag).

``--headless --json`` prints one JSON line at the end:
``{"switch_at": ..., "alerts": [{"rule", "metric", "severity", "segment", "fired_at"}, ...]}``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer

log = logging.getLogger("llmsight.demo")

WINDOW_S = 10
LAG_S = 4.0
DEFAULT_SWITCH_S = 60.0


def switch_after(duration: float | None) -> float:
    """Seconds of v1 traffic before v2 ships: 60 s, or 40% of a shorter run (at least 20 s)."""
    if duration is None:
        return DEFAULT_SWITCH_S
    return max(20.0, min(DEFAULT_SWITCH_S, 0.4 * duration))


def demo(
    headless: bool = typer.Option(False, "--headless", help="No dashboard: run, report the alerts, exit."),
    duration: float = typer.Option(None, "--duration", min=10,
                                   help="Seconds of traffic before exiting (default: until Ctrl-C)."),
    as_json: bool = typer.Option(False, "--json", help="Print the alerts that fired as one JSON line."),
    port: int = typer.Option(8501, "--port", help="Port of the dashboard."),
    rate: float = typer.Option(8.0, "--rate", min=1.0, max=200.0, help="Synthetic calls per second."),
    switch: float = typer.Option(None, "--switch-after",
                                 help="Seconds of v1 traffic before v2 ships (default 60, or 40% of --duration)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Keep the demo's store and spool here (default: a temp dir)."),
) -> None:
    """Run the embedded stack with a synthetic app that ships a bad prompt version partway through."""
    from llmsight import config, store
    from llmsight.analyzers.window_metrics import AnalysisSettings
    from llmsight.cli import stopping
    from llmsight.cli.up import EmbeddedStack
    from llmsight.demo.app import SyntheticApp
    from llmsight.scheduler.service import ScheduleSettings
    from llmsight.store import settings as store_settings
    from llmsight.store.times import iso_ms

    if headless and duration is None:
        raise typer.BadParameter("--headless needs --duration", param_hint="--duration")
    root = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="llmsight-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    store_url = f"chdb://{root / 'db'}"
    sink_url = f"file://{root / 'spool'}"
    # The dashboard and the SDK read these; set them for this process only.
    os.environ[store_settings.CLICKHOUSE_URL.name] = store_url
    os.environ[config.SINK.name] = sink_url
    switch_s = switch if switch is not None else switch_after(duration)
    stack = None
    app = None
    try:
        # No health endpoints: the demo must not collide with a collector or analyzers already running.
        stack = EmbeddedStack(store_url, sink_url, http_port=0, collector_http_port=0,
                              schedule=ScheduleSettings(window_s=WINDOW_S, lag_s=LAG_S, catchup=30, http_port=0),
                              analysis=AnalysisSettings(reference="baseline", sample=300, drift_min_n=20))
        started = time.perf_counter()
        stack.service.analyzer.warm_up()
        log.info("demo: models loaded in %.1f s", time.perf_counter() - started)
        begin = datetime.now(timezone.utc)
        switch_at = begin + timedelta(seconds=switch_s)
        # The baseline is the v1 stretch: every window is compared with it (the window itself cut out).
        stack.service.analyzer.settings = AnalysisSettings(reference="baseline", baseline=(begin, switch_at),
                                                           sample=300, drift_min_n=20)
        stack.start(warm_up=False, weekly_export=False)  # a demo lasts minutes, not weeks
        app = SyntheticApp(sink_url, switch_at, rate=rate)
        app.start()
        if not as_json:
            typer.echo(f"llmsight demo: data in {root}; v2 ships at {iso_ms(switch_at)} ({switch_s:.0f} s from now)")
        if headless:
            _wait(duration)
        else:
            from llmsight.dashboard import server

            typer.echo(f"llmsight demo: dashboard on http://127.0.0.1:{port} (Ctrl-C stops the demo)")
            if duration is not None:
                timer = threading.Timer(duration, lambda: os.kill(os.getpid(), signal.SIGINT))
                timer.daemon = True
                timer.start()
            server.run(port=port, address="127.0.0.1")
            stopping.arm("llmsight demo")  # the server stopped on SIGTERM or Ctrl-C: the rest ends within seconds
        app.stop()
        app = None
        if stack.error is not None:
            raise stack.error
        from llmsight.alerts.engine import fired_alerts

        alerts = fired_alerts(stack.client)
        report = {"switch_at": iso_ms(switch_at), "alerts": [
            {k: a[k] for k in ("rule", "metric", "severity", "segment", "fired_at")} for a in alerts]}
        if as_json:
            typer.echo(json.dumps(report))
        else:
            _print_summary(report, switch_at)
    except KeyboardInterrupt:
        if stack is None or stack.error is None:
            raise
        raise stack.error from None
    finally:
        if app is not None:
            app.stop()
        if stack is not None:
            stack.stop()
        store.close_all()
        if not data_dir:
            shutil.rmtree(root, ignore_errors=True)


def _wait(duration: float) -> None:
    deadline = time.monotonic() + duration
    try:
        while time.monotonic() < deadline:
            time.sleep(min(1.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        log.info("demo: interrupted")


def _print_summary(report: dict, switch_at: datetime) -> None:
    typer.echo(f"v2 shipped at {report['switch_at']}; {len(report['alerts'])} alerts fired:")
    for alert in report["alerts"]:
        fired = datetime.fromisoformat(alert["fired_at"].replace("Z", "+00:00"))
        seg = alert["segment"]
        typer.echo(f"  {alert['fired_at']} (+{(fired - switch_at).total_seconds():.0f} s) {alert['severity']:8} "
                   f"{alert['rule']} [{alert['metric']}] on {seg['service']}/{seg['name']}/{seg['prompt_version']}")
