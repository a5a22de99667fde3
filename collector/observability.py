"""The collector's Prometheus metrics and its small HTTP server: /metrics, /healthz, /readyz.

Each collector has its own registry, so several collectors (tests, ``llmsight up``) can live in
one process without clashing over metric names.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from llmsight.errors import ConfigError

log = logging.getLogger("llmsight.collector")


class CollectorMetrics:
    """The collector's counters, gauges and histograms, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter("llmsight_collector_messages", "Messages read from the source.", registry=r)
        self.rows = Counter("llmsight_collector_rows", "Rows inserted, by table.", ["table"], registry=r)
        self.dead_letters = Counter("llmsight_collector_dead_letters",
                                    "Messages sent to dead_letters, by kind.", ["kind"], registry=r)
        self.batches = Counter("llmsight_collector_batches", "Batches inserted and committed.", registry=r)
        self.insert_errors = Counter("llmsight_collector_insert_errors",
                                     "Failed insert attempts (each is retried).", registry=r)
        self.commit_errors = Counter("llmsight_collector_commit_errors",
                                     "Failed source commits (the batch is replayed and deduplicated).", registry=r)
        self.dropped_batches = Counter("llmsight_collector_dropped_batches",
                                       "Uncommitted batches given up (partitions lost, or shutdown "
                                       "while the store was down); they are read again.", registry=r)
        self.batch_seconds = Histogram("llmsight_collector_batch_seconds", "Time to insert one batch.",
                                       buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.lag = Gauge("llmsight_collector_lag",
                         "Not yet read: messages (Kafka) or bytes (spool); -1 when unknown.", registry=r)
        self.rows_per_second = Gauge("llmsight_collector_rows_per_second",
                                     "Messages stored per second between the last two batches.", registry=r)
        self.store_up = Gauge("llmsight_collector_store_up", "1 when the last insert succeeded.", registry=r)
        self.store_up.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """Serves /metrics, /healthz (the loop is alive) and /readyz (alive and the store is up)."""

    def __init__(self, port: int, metrics: CollectorMetrics, healthy: Callable[[], bool],
                 ready: Callable[[], bool], host: str = "0.0.0.0") -> None:
        handler = _make_handler(metrics, healthy, ready)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"collector: cannot serve /metrics on port {port} ({exc}); set "
                              "LLMSIGHT_COLLECTOR_HTTP_PORT to a free port, or 0 to turn it off") from None
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="llmsight-collector-http",
                                        daemon=True)
        self._thread.start()
        log.info("collector: /metrics, /healthz and /readyz on port %d", self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _make_handler(metrics: CollectorMetrics, healthy: Callable[[], bool],
                  ready: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = healthy()
                self._send(200 if ok else 503, b"ok\n" if ok else b"collector loop stalled\n")
            elif path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready: store down or not started\n")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet access log
            log.debug("collector http: " + format, *args)

    return Handler
