"""The OTLP receiver: OpenTelemetry GenAI spans in, ``llm_call`` and ``feedback`` events out to the sink.

A second way in beside the SDK: ``llmsight otlp`` listens for OTLP/HTTP (4318) and OTLP/gRPC (4317),
maps each GenAI span with the table in :mod:`llmsight.otlp.mapping`, and writes the events to the
same sink as the SDK (``LLMSIGHT_SINK``), answering only once they are written. Everything downstream
(collector, analyzers, alerts, dashboard) is unchanged.

This room imports the SDK (schema, sinks, spool, redaction, pricing, settings) and nothing of the
other server rooms; only the CLI imports it.
"""

from __future__ import annotations

from typing import Any

from llmsight.otlp.mapping import Mapper, table_markdown
from llmsight.otlp.receiver import Receiver

__all__ = ["Mapper", "Receiver", "Service", "build", "table_markdown"]


class Service:
    """The receiver with its listeners; :meth:`start`, then :meth:`stop` (which closes the sink)."""

    def __init__(self, receiver: Receiver, http: Any, grpc: Any) -> None:
        self.receiver = receiver
        self.http = http
        self.grpc = grpc

    @property
    def http_port(self) -> int:
        return int(self.http.port) if self.http is not None else 0

    @property
    def grpc_port(self) -> int:
        return int(self.grpc.port) if self.grpc is not None else 0

    def start(self) -> Service:
        if self.receiver.pool is not None:
            self.receiver.pool.start()  # in the background: requests are mapped here until it is up
        if self.http is not None:
            self.http.start()
        if self.grpc is not None:
            self.grpc.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self.grpc is not None:
            self.grpc.stop(timeout / 2)
        if self.http is not None:
            self.http.stop()
        if self.receiver.pool is not None:
            self.receiver.pool.close()
        self.receiver.writer.close(timeout / 2)


def build(*, sink: str | None = None, address: str | None = None, http_port: int | None = None,
          grpc_port: int | None = None, token: str | None = None, redact: Any = None,
          workers: int | str | None = None) -> Service:
    """A :class:`Service` from arguments, else the ``LLMSIGHT_*`` settings (strict: a bad value raises).
    ``workers``: processes that map trace requests (``LLMSIGHT_OTLP_WORKERS``; 0: in this process)."""
    from llmsight import config
    from llmsight.otlp import settings
    from llmsight.otlp.join import Joiner
    from llmsight.otlp.server import GrpcServer, HttpServer, check_exposure
    from llmsight.otlp.workers import Pool, worker_count
    from llmsight.otlp.writer import make_writer
    from llmsight.pricing import load_prices
    from llmsight.redact import redact as default_redact

    address = address or config.resolve(settings.OTLP_ADDRESS, strict=True)
    token = config.resolve(settings.OTLP_TOKEN, token, strict=True)
    check_exposure(address, token)
    if redact is None:
        redact = config.resolve(config.REDACT, strict=True)
    redactor = redact if callable(redact) else (default_redact if redact else None)
    mapper = Mapper(service=config.resolve(config.SERVICE, strict=True),
                    environment=config.resolve(config.ENVIRONMENT, strict=True),
                    prices=load_prices(config.resolve(config.PRICES, strict=True), None),
                    max_text_chars=config.resolve(config.MAX_TEXT_CHARS, strict=True), redactor=redactor,
                    prompt_version_attribute=config.resolve(settings.OTLP_PROMPT_VERSION_ATTRIBUTE, strict=True))
    processes = worker_count(config.resolve(settings.OTLP_WORKERS, workers, strict=True, check=True))
    url = sink or config.resolve(config.SINK, strict=True)
    writer = make_writer(url, max_in_flight=config.resolve(settings.OTLP_MAX_IN_FLIGHT, strict=True))
    max_bytes = config.resolve(settings.OTLP_MAX_REQUEST_BYTES, strict=True)
    joiner = Joiner(config.resolve(settings.OTLP_JOIN_WINDOW_S, strict=True),
                    config.resolve(settings.OTLP_JOIN_MAX_ENTRIES, strict=True))
    receiver = Receiver(mapper, writer, token=token,
                        write_timeout=config.resolve(settings.OTLP_WRITE_TIMEOUT_S, strict=True),
                        max_request_bytes=max_bytes, joiner=joiner,
                        pool=Pool(processes, mapper.arguments) if processes > 0 else None)
    http_port = config.resolve(settings.OTLP_HTTP_PORT, http_port, strict=True)
    grpc_port = config.resolve(settings.OTLP_GRPC_PORT, grpc_port, strict=True)
    http = grpc = None
    try:
        http = HttpServer(receiver, address, http_port) if http_port else None
        grpc = GrpcServer(receiver, address, grpc_port) if grpc_port else None
    except Exception:
        if http is not None:  # the gRPC port failed: free the HTTP one too
            http.server.server_close()
        writer.close(1.0)
        raise
    return Service(receiver, http, grpc)
