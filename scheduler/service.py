"""The analyzers service: APScheduler jobs that compute each closed window, then evaluate the alert rules.

Three jobs, each ``max_instances=1`` (a job never overlaps itself), ``coalesce`` (a backlog of runs
collapses into one) and with a misfire grace time:

* ``windows``: every base window (``LLMSIGHT_WINDOW_SECONDS``, default 60 s), once it has been
  closed for ``LLMSIGHT_WINDOW_LAG_SECONDS``, is analyzed (:mod:`window_metrics`), its metric rows
  are upserted, and the alert rules are evaluated on them right away. Missed windows (a pause, a
  restart) are caught up, at most ``LLMSIGHT_CATCHUP_WINDOWS`` of them, oldest first.
* ``rollup-1h`` and ``rollup-1d``: the same analysis over each closed hour and day;
* the weekly quality-review export (:mod:`llmsight.review.export`);
* ``evaluators``, when ``LLMSIGHT_EVALUATORS_FILE`` enables any: the online evaluators on a sample of
  each window's calls, then the alert rules on their ``eval_*`` metrics, on a thread of their own
  (:mod:`llmsight.scheduler.evaluation`).

A job that fails is logged and retried on its next run; the other jobs go on. ``/healthz``,
``/readyz`` and ``/metrics`` (Prometheus) are served on ``LLMSIGHT_ANALYZERS_HTTP_PORT``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llmsight.alerts.engine import AlertEngine
from llmsight.analyzers.window_metrics import AnalysisSettings, WindowAnalyzer
from llmsight.analyzers.windows import (
    BASE_GRANULARITY,
    ROLLUPS,
    Window,
    due_windows,
    floor_time,
    last_window_start,
    read_metrics,
    write_metrics,
)
from llmsight.scheduler.evaluation import EvaluatorJob, is_eval_rule
from llmsight.scheduler.progress import EVALUATED, LAG_METRICS, lag_rows, record_lag, record_window

log = logging.getLogger("llmsight.scheduler.service")


@dataclass(frozen=True)
class ScheduleSettings:
    window_s: int = 60
    lag_s: float = 20.0
    catchup: int = 60
    http_port: int = 9465

    @classmethod
    def from_env(cls) -> ScheduleSettings:
        from llmsight import config
        from llmsight.scheduler import settings

        return cls(window_s=config.resolve(settings.WINDOW_SECONDS, strict=True),
                   lag_s=config.resolve(settings.WINDOW_LAG_SECONDS, strict=True),
                   catchup=config.resolve(settings.CATCHUP_WINDOWS, strict=True),
                   http_port=config.resolve(settings.ANALYZERS_HTTP_PORT, strict=True))


class AnalyzerService:
    """Runs windows through the analyzers and the alert engine, on demand or on a schedule."""

    def __init__(self, client: Any, *, schedule: ScheduleSettings | None = None,
                 analysis: AnalysisSettings | None = None, rules: list | None = None, notifier: Any = None,
                 analyzer: WindowAnalyzer | None = None, evaluators: list | None = None) -> None:
        from llmsight.alerts.notify import Notifier
        from llmsight.alerts.rules import load_rules

        self.client = client
        self.schedule = schedule or ScheduleSettings.from_env()
        self.analyzer = analyzer or WindowAnalyzer(client, analysis)
        self.notifier = notifier if notifier is not None else Notifier.from_settings()
        rules = rules if rules is not None else load_rules()
        self.alerts = AlertEngine(client, [r for r in rules if r.metric not in LAG_METRICS and not is_eval_rule(r)],
                                  self.notifier)
        self.lag_alerts = AlertEngine(client, [r for r in rules if r.metric in LAG_METRICS], self.notifier)
        # The online evaluators (None when none is enabled): a job of their own, see start().
        self.evaluators = EvaluatorJob.from_settings(
            client, rules, self.notifier, window_s=self.schedule.window_s, lag_s=self.schedule.lag_s,
            catchup=self.schedule.catchup, evaluators=evaluators)
        self._last: dict[str, datetime | None] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._scheduler: Any = None
        self._http: ThreadingHTTPServer | None = None
        self.windows_done = 0
        self.job_failures = 0
        self.last_success: float | None = None
        self._metrics = _PromMetrics()

    # -- the work ------------------------------------------------------------------------------
    def run_window(self, window: Window, *, evaluate_alerts: bool = True, now: datetime | None = None) -> int:
        """Analyze one window, upsert its metric rows, then evaluate the alert rules on them."""
        started = time.perf_counter()
        rows = self.analyzer.analyze(window)
        if self._stopping.is_set():
            return 0  # cut short by shutdown: write nothing partial; the window is redone on restart
        write_metrics(self.client, rows)
        if evaluate_alerts:
            metrics = [r for r in read_metrics(self.client, window) if r["metric"] not in LAG_METRICS]
            self.alerts.evaluate(window.start, metrics, window.granularity, now=now)
        planned = datetime.now(timezone.utc)
        record_window(self.client, window, 1, EVALUATED, planned.replace(microsecond=planned.microsecond // 1000 * 1000))
        self.windows_done += 1
        self._metrics.observe(window.granularity, time.perf_counter() - started, len(rows))
        return len(rows)

    def run_due(self, granularity: str = BASE_GRANULARITY, now: datetime | None = None) -> list[Window]:
        """Every window of ``granularity`` that has closed since the last one done; returns them."""
        now = now or datetime.now(timezone.utc)
        seconds = self.schedule.window_s if granularity == BASE_GRANULARITY else ROLLUPS[granularity]
        catchup = self.schedule.catchup if granularity == BASE_GRANULARITY else (24 if granularity == "1h" else 7)
        with self._lock:
            if granularity not in self._last:
                self._last[granularity] = last_window_start(self.client, granularity)
            windows = due_windows(self._last[granularity], now, seconds, self.schedule.lag_s, catchup, granularity)
        # How far behind this run begins (a long catch-up shows, and can alert), written with the
        # newest window once it is done (the scheduler resumes after the newest window with rows).
        lag = lag_rows(self.client, windows[-1], now) if windows and granularity == BASE_GRANULARITY else []
        for window in windows:
            if self._stopping.is_set():
                break
            self.run_window(window)
            with self._lock:
                self._last[granularity] = window.start
        if lag and not self._stopping.is_set():
            record_lag(self.client, lag, now, self.lag_alerts)
        self.last_success = time.monotonic()
        return windows

    def backfill(self, start: datetime, end: datetime) -> int:
        """Recompute every whole base window, hour and day inside ``start``..``end`` (no alerts, no notifications).

        A window that starts before ``start`` is left alone, as is one that ends after ``end``:
        backfilling 02:58..03:00 recomputes two minute windows, not the hour 02:00..03:00.
        """
        count = 0
        for granularity, seconds in ((BASE_GRANULARITY, self.schedule.window_s), *ROLLUPS.items()):
            cursor = floor_time(start, seconds)
            if cursor < start:
                cursor += timedelta(seconds=seconds)
            while cursor + timedelta(seconds=seconds) <= end:
                self.run_window(Window(cursor, cursor + timedelta(seconds=seconds), granularity),
                                evaluate_alerts=False)
                cursor += timedelta(seconds=seconds)
                count += 1
        log.info("scheduler: backfill of %d windows from %s to %s done", count, start, end)
        return count

    # -- the schedule --------------------------------------------------------------------------
    def _job(self, granularity: str) -> None:
        try:
            self.run_due(granularity)
        except Exception:
            self.job_failures += 1
            self._metrics.failures.labels(granularity).inc()
            log.exception("scheduler: %s job failed; it runs again at its next tick", granularity)

    def start(self, *, blocking: bool = False, weekly_export: bool = True) -> None:
        """Start the jobs (and the HTTP endpoints); with ``blocking`` this call runs the scheduler.

        ``weekly_export`` adds the quality-review export job (``LLMSIGHT_EXPORT_CRON``).
        """
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.schedulers.blocking import BlockingScheduler

        # The window job ticks every few seconds and a slow window makes APScheduler log every
        # skipped tick as a warning; our own log lines say what each window did.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        kind = BlockingScheduler if blocking else BackgroundScheduler
        window = self.schedule.window_s
        self._scheduler = kind(timezone=timezone.utc, job_defaults={
            "max_instances": 1, "coalesce": True, "misfire_grace_time": max(30, window)})
        # Ticks are short so a window is analyzed soon after its lag passes; an idle tick is cheap.
        tick = max(1, min(5, window // 5))
        self._scheduler.add_job(self._job, "interval", seconds=tick, args=[BASE_GRANULARITY], id="windows",
                                next_run_time=datetime.now(timezone.utc))
        for granularity in ROLLUPS:
            self._scheduler.add_job(self._job, "interval", minutes=5, args=[granularity], id=f"rollup-{granularity}",
                                    next_run_time=datetime.now(timezone.utc) + timedelta(seconds=30))
        if weekly_export:
            from llmsight.review.export import schedule_weekly_export

            schedule_weekly_export(self._scheduler, client=self.client)
        if self.evaluators is not None:
            self.evaluators.schedule(self._scheduler, max(tick, min(30, window // 2)))
        if self.schedule.http_port:
            self.serve_http(self.schedule.http_port)
        log.info("scheduler: started (window %d s, lag %.0f s, %d rules)", window, self.schedule.lag_s,
                 len(self.alerts.rules))
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop the jobs (a window under way finishes its current segment), the endpoints and the notifier."""
        self._stopping.set()
        self.analyzer.stop()
        if self.evaluators is not None:
            self.evaluators.stop()
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self.notifier.close(timeout=5.0)

    # -- health --------------------------------------------------------------------------------
    def ready(self) -> tuple[bool, str]:
        """Ready when the store answers and the window job succeeded recently."""
        try:
            self.client.query("SELECT 1")
        except Exception as exc:
            return False, f"store unreachable: {exc}"
        if self._scheduler is not None and not self._scheduler.running:
            return False, "scheduler not running"
        limit = 3 * self.schedule.window_s + self.schedule.lag_s + 60
        if self.last_success is not None and time.monotonic() - self.last_success > limit:
            return False, f"no window analyzed for {time.monotonic() - self.last_success:.0f} s"
        return True, "ok"

    def serve_http(self, port: int, address: str = "0.0.0.0") -> int:
        """Serve /healthz, /readyz and /metrics on a daemon thread; returns the bound port."""
        self._http = serve_health(port, self.ready, self._metrics.render, address)
        return int(self._http.server_address[1])


def serve_health(port: int, ready: Any, render: Any, address: str = "0.0.0.0") -> ThreadingHTTPServer:
    """/healthz (alive), /readyz (``ready() -> (ok, why)``) and /metrics (``render() -> (body, type)``)
    on a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                self._reply(200, b"ok\n", "text/plain")
            elif self.path == "/readyz":
                ok, why = ready()
                self._reply(200 if ok else 503, (why + "\n").encode(), "text/plain")
            elif self.path == "/metrics":
                body, content_type = render()
                self._reply(200, body, content_type)
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, name="llmsight-analyzers-http", daemon=True).start()
    log.info("scheduler: /healthz, /readyz and /metrics on port %d", int(server.server_address[1]))
    return server


class _PromMetrics:
    """The service's Prometheus figures, in a registry of its own (several services can share a process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.windows = Counter("llmsight_analyzer_windows", "Windows analyzed", ["granularity"], registry=self.registry)
        self.rows = Counter("llmsight_analyzer_metric_rows", "Metric rows written", ["granularity"],
                            registry=self.registry)
        self.failures = Counter("llmsight_analyzer_job_failures", "Scheduler jobs that failed", ["granularity"],
                                registry=self.registry)
        self.seconds = Histogram("llmsight_analyzer_window_seconds", "Time to analyze one window", ["granularity"],
                                 registry=self.registry, buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300))

    def observe(self, granularity: str, seconds: float, rows: int) -> None:
        self.windows.labels(granularity).inc()
        self.rows.labels(granularity).inc(rows)
        self.seconds.labels(granularity).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
