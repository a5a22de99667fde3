"""``llmsight otlp``: the OpenTelemetry receiver as its own process (OTLP/HTTP and OTLP/gRPC into the sink)."""

from __future__ import annotations

import logging
import signal
import threading

import typer

log = logging.getLogger("llmsight.otlp")


def otlp(
    sink: str = typer.Option(None, "--sink", help="kafka://host:9092[,host:9092]/topic or file:///path/to/spool; "
                             "default LLMSIGHT_SINK (the variable the SDK reads)."),
    address: str = typer.Option(None, "--address", help="Address to listen on (default LLMSIGHT_OTLP_ADDRESS, "
                                "127.0.0.1); anything but localhost needs LLMSIGHT_OTLP_TOKEN."),
    http_port: int = typer.Option(None, "--http-port", help="OTLP/HTTP port (default 4318; 0 turns it off)."),
    grpc_port: int = typer.Option(None, "--grpc-port", help="OTLP/gRPC port (default 4317; 0 turns it off)."),
) -> None:
    """Receive OpenTelemetry GenAI spans (OTLP/HTTP and OTLP/gRPC) and write them to the sink as llm_call events.

    Point an app's OTEL_EXPORTER_OTLP_ENDPOINT here. A request is answered only once its events are
    written; SIGTERM stops listening and closes the sink.
    """
    from llmsight import otlp as receiver
    service = receiver.build(sink=sink, address=address, http_port=http_port, grpc_port=grpc_port).start()
    log.info("otlp: listening on %s (http %s, grpc %s)", address or "the configured address",
             service.http_port or "off", service.grpc_port or "off")
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("otlp: %s received; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stop.wait()
    service.stop()
    counts = service.receiver.counters.snapshot()
    typer.echo(f"otlp: {counts['llm_calls']} calls, {counts['feedback']} feedback, {counts['skipped']} skipped, "
               f"{counts['rejected']} rejected, {counts['bad_requests']} bad requests")
