"""One analyzer replica when analysis is shared through Kafka (``LLMSIGHT_ANALYSIS_QUEUE`` is set).

``llmsight analyzers`` runs a :class:`Replica`: a worker thread and a coordinator-candidate thread
(:mod:`llmsight.scheduler.roles`), plus ``/healthz``, ``/readyz`` and ``/metrics`` on
``LLMSIGHT_ANALYSIS_HTTP_PORT`` with the lag gauges an HPA can scale on. ``--role worker`` or
``--role coordinator`` runs one of the two only.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

from llmsight.analyzers.window_metrics import AnalysisSettings, WindowAnalyzer
from llmsight.scheduler.roles import Coordinator, QueueSettings, Worker, ensure_topics, member_name
from llmsight.scheduler.service import ScheduleSettings, serve_health
from llmsight.store.queries import analysis_lag

log = logging.getLogger("llmsight.scheduler.replica")

ROLES = ("all", "worker", "coordinator")


class Replica:
    """A worker and/or a coordinator candidate, each on a thread of its own."""

    def __init__(self, client: Any, queue: QueueSettings, *, role: str = "all", schedule: ScheduleSettings | None = None,
                 analysis: AnalysisSettings | None = None, rules: list[Any] | None = None, notifier: Any = None,
                 name: str | None = None, weekly_export: bool = True) -> None:
        from llmsight.alerts.notify import Notifier
        from llmsight.alerts.rules import load_rules
        from llmsight.errors import ConfigError

        if role not in ROLES:
            raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
        self.client = client
        self.queue = queue
        self.schedule = schedule or ScheduleSettings.from_env()
        self.name = name or member_name()
        self.notifier = notifier if notifier is not None else Notifier.from_settings()
        self.worker = Worker(client, WindowAnalyzer(client, analysis), queue, self.name) \
            if role in ("all", "worker") else None
        self.coordinator = Coordinator(client, queue, window_s=self.schedule.window_s, lag_s=self.schedule.lag_s,
                                       catchup=self.schedule.catchup,
                                       rules=rules if rules is not None else load_rules(), notifier=self.notifier,
                                       name=self.name, weekly_export=weekly_export) \
            if role in ("all", "coordinator") else None
        self._threads: list[threading.Thread] = []
        self._http: Any = None
        self._gauges = _Gauges()
        self._failed: list[str] = []

    def start(self) -> None:
        ensure_topics(self.queue)
        for role, target in (("worker", self.worker), ("coordinator", self.coordinator)):
            if target is not None:
                thread = threading.Thread(target=self._guard, args=(role, target.run), name=f"llmsight-{role}",
                                          daemon=True)
                thread.start()
                self._threads.append(thread)
        if self.schedule.http_port:
            self._http = serve_health(self.schedule.http_port, self.ready, self.render)
        log.info("analyzers: replica %s started (%s) on %s", self.name,
                 ", ".join(t.name.removeprefix("llmsight-") for t in self._threads), self.queue.topic)

    def _guard(self, role: str, run: Any) -> None:
        try:
            run()
        except Exception:
            self._failed.append(role)
            log.exception("analyzers: the %s stopped on an error", role)

    def wait(self, stop: threading.Event) -> None:
        """Block until ``stop`` is set or a role's thread died."""
        while not stop.wait(1.0):
            if self._failed:
                raise RuntimeError(f"the analyzers' {', '.join(self._failed)} stopped on an error (see the log)")

    def shutdown(self, timeout_s: float = 8.0) -> None:
        """Stop both roles (a unit under way is dropped uncommitted and redone elsewhere), then the endpoints."""
        for target in (self.worker, self.coordinator):
            if target is not None:
                target.stop()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        if self.coordinator is not None:
            self.coordinator.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self.notifier is not None:
            self.notifier.close(timeout=2.0)

    # -- health ------------------------------------------------------------------------------------
    def ready(self) -> tuple[bool, str]:
        if self._failed:
            return False, f"{', '.join(self._failed)} stopped on an error"
        try:
            self.client.query("SELECT 1")
        except Exception as exc:
            return False, f"store unreachable: {exc}"
        return True, "ok"

    def render(self) -> tuple[bytes, str]:
        lag = analysis_lag(self.client, datetime.now(timezone.utc))
        return self._gauges.render(lag, self)


class _Gauges:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Gauge

        self.registry = CollectorRegistry()
        self.lag_seconds = Gauge("llmsight_analysis_lag_seconds",
                                 "Seconds since the end of the newest analysed base window", registry=self.registry)
        self.lag_windows = Gauge("llmsight_analysis_lag_windows",
                                 "Whole base windows since the newest analysed one (0 or 1 when keeping up)",
                                 registry=self.registry)
        self.unfinished = Gauge("llmsight_analysis_unfinished_windows", "Planned windows not yet evaluated",
                                registry=self.registry)
        self.coordinator = Gauge("llmsight_analysis_coordinator", "1 on the replica that coordinates",
                                 registry=self.registry)
        self.units = Gauge("llmsight_analysis_units_done", "Work units this replica analysed", registry=self.registry)

    def render(self, lag: Any, replica: Replica) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.lag_seconds.set(lag.seconds)
        self.lag_windows.set(lag.windows)
        self.unfinished.set(lag.unfinished)
        self.coordinator.set(1 if replica.coordinator is not None and replica.coordinator.leading else 0)
        self.units.set(replica.worker.units_done if replica.worker is not None else 0)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
