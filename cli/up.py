"""``llmsight up``: the embedded stack in one process: collector, scheduler, dashboard and OTLP receiver.

chdb allows one process per data directory, so in embedded mode the three services share this
process and one store client: the collector consumes the sink (``LLMSIGHT_SINK``: a spool
directory or Kafka) on a thread, the analyzers run on APScheduler's background threads, and the
Streamlit dashboard serves from the main thread. The OTLP receiver (``llmsight otlp``: OTLP/HTTP
4318 and OTLP/gRPC 4317 on 127.0.0.1 by default) writes into the same sink the collector reads, so an
app instrumented with OpenTelemetry shows up on the dashboard; ``--no-otlp`` or ``LLMSIGHT_UP_OTLP=false``
leaves it out.
"""

from __future__ import annotations

import _thread
import logging
import threading
import time
from typing import Any

import typer

log = logging.getLogger("llmsight.up")


class EmbeddedStack:
    """The collector thread and the analyzers' scheduler around one store client (no dashboard)."""

    def __init__(self, store_url: str | None = None, sink_url: str | None = None, *, http_port: int | None = None,
                 collector_http_port: int | None = None, schedule: Any = None, analysis: Any = None,
                 otlp: bool = False) -> None:
        from llmsight import config, store
        from llmsight.collector import settings as collector_settings
        from llmsight.scheduler.service import AnalyzerService, ScheduleSettings
        from llmsight.store import settings as store_settings

        # Every setting is read (strictly) before anything starts: a bad value stops us here.
        self.sink_url = sink_url or config.resolve(config.SINK, strict=True)
        self.client = store.connect(store_url)
        store.migrate(self.client, cluster=config.resolve(store_settings.CLICKHOUSE_CLUSTER, strict=True) or None)
        schedule = schedule or ScheduleSettings.from_env()
        if http_port is not None:
            schedule = ScheduleSettings(schedule.window_s, schedule.lag_s, schedule.catchup, http_port)
        self.service = AnalyzerService(self.client, schedule=schedule, analysis=analysis)
        self.collector_http_port = config.resolve(collector_settings.COLLECTOR_HTTP_PORT, collector_http_port, strict=True)
        self._stop = threading.Event()
        self.error: Exception | None = None
        self._collector_thread: threading.Thread | None = None
        self.collector: Any = None
        self.run_otlp = otlp
        self.otlp: Any = None  # the receiver's llmsight.otlp.Service once started

    def start(self, *, warm_up: bool = True, weekly_export: bool = True) -> None:
        from llmsight.collector import Collector, source_from_url

        # The collector first: it ingests while the models load, and a setting of its that cannot
        # work stops the process before the slow part.
        self.collector = Collector(source_from_url(self.sink_url), self.client, http_port=self.collector_http_port)
        self._collector_thread = threading.Thread(target=self._collect, name="llmsight-collector", daemon=True)
        self._collector_thread.start()
        if self.run_otlp:
            self.otlp = start_otlp(self.sink_url)
        if warm_up:
            started = time.perf_counter()
            self.service.analyzer.warm_up()
            log.info("up: embedding model and toxicity scorer loaded in %.1f s", time.perf_counter() - started)
        self.service.start(blocking=False, weekly_export=weekly_export)
        log.info("up: collector reading %s, analyzers scheduled", _display(self.sink_url))

    def _collect(self) -> None:
        from llmsight.errors import ConfigError

        while not self._stop.is_set():
            try:
                self.collector.run(self._stop)
            except ConfigError as exc:
                # A setting that cannot work (a port in use, a bad source) will not fix itself:
                # stop the whole process, as a service on its own would.
                log.error("up: the collector cannot run: %s", exc)
                self.error = exc
                _thread.interrupt_main()
                return
            except Exception:
                log.exception("up: the collector stopped on an error; restarting it in 2 s")
                self._stop.wait(2.0)

    def stop(self) -> None:
        if self.otlp is not None:  # no new requests first; the ones in hand are written before it returns
            self.otlp.stop(timeout=2.0)
            self.otlp = None
        self._stop.set()
        if self._collector_thread is not None:
            # The batch in hand is committed within a second or two; the process's stop deadline
            # (llmsight.cli.stopping) bounds the whole stop anyway.
            self._collector_thread.join(timeout=5)
        self.service.shutdown()
        log.info("up: stopped")


def start_otlp(sink_url: str) -> Any:
    """The OTLP receiver on the ``LLMSIGHT_OTLP_*`` settings, writing to ``sink_url``; a port in use or a
    bad setting stops ``up`` with what to change."""
    from llmsight import config, otlp
    from llmsight.errors import ConfigError
    from llmsight.otlp import settings

    try:
        service = otlp.build(sink=sink_url).start()
    except OSError as exc:
        ports = f"{config.resolve(settings.OTLP_HTTP_PORT, strict=True)}/{config.resolve(settings.OTLP_GRPC_PORT, strict=True)}"
        raise ConfigError(f"llmsight up cannot start the OTLP receiver on ports {ports}: {exc.strerror or exc}; "
                          "stop what holds them, choose others with LLMSIGHT_OTLP_HTTP_PORT and "
                          "LLMSIGHT_OTLP_GRPC_PORT, or run without the receiver: llmsight up --no-otlp") from None
    except ConfigError as exc:
        raise ConfigError(f"llmsight up cannot start the OTLP receiver: {exc} (or run llmsight up --no-otlp)") from None
    log.info("up: OTLP receiver writing to %s (http %s, grpc %s)", _display(sink_url), service.http_port or "off",
             service.grpc_port or "off")
    return service


def _display(url: str) -> str:
    return url.split("@")[-1] if url.startswith("kafka://") else url


def up(
    port: int = typer.Option(8501, "--port", help="Port of the dashboard."),
    address: str = typer.Option("127.0.0.1", "--address", help="Address the dashboard listens on."),
    otlp: bool = typer.Option(None, "--otlp/--no-otlp", help="Also run the OTLP receiver (OTLP/HTTP 4318, "
                              "OTLP/gRPC 4317 on LLMSIGHT_OTLP_ADDRESS, 127.0.0.1); default LLMSIGHT_UP_OTLP (on)."),
) -> None:
    """Run the embedded stack in one process: collector, analyzers, the dashboard and the OTLP receiver."""
    from llmsight import config
    from llmsight.cli import stopping
    from llmsight.dashboard import server
    from llmsight.otlp import settings as otlp_settings

    stack = EmbeddedStack(otlp=config.resolve(otlp_settings.UP_OTLP, otlp, strict=True))
    try:
        stack.start()
        if stack.otlp is not None:
            typer.echo(f"llmsight up: OpenTelemetry receiver on {_host(stack.otlp)}: OTLP/HTTP "
                       f"{stack.otlp.http_port or 'off'}, OTLP/gRPC {stack.otlp.grpc_port or 'off'} (--no-otlp leaves it out)")
        typer.echo(f"llmsight up: dashboard on http://{address}:{port} (Ctrl-C stops everything)")
        server.run(port=port, address=address)
    except KeyboardInterrupt:
        if stack.error is None:
            raise
    finally:
        stopping.arm("llmsight up")  # SIGTERM or Ctrl-C stopped the dashboard's server: end within seconds
        stack.stop()
    if stack.error is not None:
        raise stack.error


def _host(service: Any) -> str:
    host = str(service.http.server.server_address[0]) if service.http is not None else "127.0.0.1"
    return f"[{host}]" if ":" in host else host
