"""OTLP/HTTP (``/v1/traces``, ``/v1/logs``) and OTLP/gRPC (the trace and logs services) in front of a :class:`Receiver`.

HTTP answers (the OTLP spec's): 200 with an Export*ServiceResponse (``partial_success`` when some items
were rejected), in the request's encoding; 400 for a payload that cannot be read; 401 without the bearer
token; 413 over the size limit (compressed or decompressed); 415 for another content type; 429 with
Retry-After when the sink is slow or full; 503 with Retry-After when it is unreachable. gRPC answers
the same with INVALID_ARGUMENT, UNAUTHENTICATED, RESOURCE_EXHAUSTED (with a google.rpc.RetryInfo) and
UNAVAILABLE. ``/healthz``, ``/readyz`` (the sink is connected) and ``/metrics`` need no token.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from llmsight.errors import ConfigError
from llmsight.otlp import decode
from llmsight.otlp.receiver import Outcome, Receiver
from llmsight.otlp.writer import Busy, Unavailable

log = logging.getLogger("llmsight.otlp")

READ_TIMEOUT_S = 30.0


def is_loopback(address: str) -> bool:
    if address in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(address: str, token: str) -> None:
    """Refuse to listen beyond localhost without a bearer token."""
    if not is_loopback(address) and not token:
        raise ConfigError(f"the OTLP receiver would listen on {address} without a token: set LLMSIGHT_OTLP_TOKEN "
                          "(clients send Authorization: Bearer TOKEN, e.g. OTEL_EXPORTER_OTLP_HEADERS), or listen "
                          "on 127.0.0.1")


def _response(kind: str, outcome: Outcome) -> Any:
    if kind == "traces":
        response = trace_service_pb2.ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_spans = outcome.rejected
            response.partial_success.error_message = outcome.message
        return response
    logs = logs_service_pb2.ExportLogsServiceResponse()
    if outcome.rejected:
        logs.partial_success.rejected_log_records = outcome.rejected
        logs.partial_success.error_message = outcome.message
    return logs


# -- HTTP -------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llmsight-otlp"
    timeout = READ_TIMEOUT_S  # a client that stops sending in the middle of a body is dropped
    receiver: Receiver  # set on the subclass made by HttpServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("otlp http %s: " + format, self.client_address[0], *args)

    def setup(self) -> None:
        super().setup()
        # Answers are one write (below), and a client waits for each: never hold a segment back.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, code: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        """The status line, headers and body in one write: as two, Nagle's algorithm and the client's
        delayed ACK could hold the body back up to 40 ms."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self._headers_buffer.append(b"\r\n")
        if body and self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _status(self, code: int, message: str, json_body: bool, headers: dict[str, str] | None = None) -> None:
        """An error answer: a google.rpc.Status-shaped body, as the OTLP spec asks."""
        from google.rpc import status_pb2

        status = status_pb2.Status(code=code, message=message[:1000])
        if json_body:
            self._send(code, json_format.MessageToJson(status, indent=None).encode(), "application/json", headers)
        else:
            self._send(code, status.SerializeToString(), "application/x-protobuf", headers)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        if path == "/healthz":
            self._send(200, b"ok\n")
        elif path == "/readyz":
            ready = self.receiver.writer.ready
            self._send(200 if ready else 503, b"ready\n" if ready else b"the sink is not connected\n")
        elif path == "/metrics":
            self._send(200, self.receiver.metrics_text().encode(), "text/plain; version=0.0.4")
        else:
            self._send(404, b"not found\n")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        kind = {"/v1/traces": "traces", "/v1/logs": "logs"}.get(path)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        as_json = ctype == "application/json"
        receiver = self.receiver
        if kind is None:
            self._drain_or_close()
            self._status(404, f"no OTLP endpoint at {path} (/v1/traces or /v1/logs)", as_json)
            return
        if not receiver.authorized(self.headers.get("Authorization")):
            self.close_connection = True
            self._status(401, "missing or wrong bearer token", as_json, {"WWW-Authenticate": "Bearer"})
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            self.close_connection = True
            self._status(411, "Content-Length is required", as_json)
            return
        length = int(length_text)
        if length > receiver.max_request_bytes:
            self.close_connection = True  # the body is not read
            receiver.counters.add(bad_requests=1)
            self._status(413, f"request of {length} bytes is over the limit of {receiver.max_request_bytes}", as_json)
            return
        try:
            body = self.rfile.read(length)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if len(body) != length:
            self.close_connection = True
            return
        source = f"otlp http {path} from {self.client_address[0]}"
        try:
            data = decode.decompress(body, self.headers.get("Content-Encoding", ""), receiver.max_request_bytes)
            if kind == "traces":  # parsed where it is mapped: in a worker process if there are some
                outcome = receiver.export_trace_bytes(data, ctype)
            else:
                outcome = receiver.export_logs(decode.parse_logs(data, ctype))
        except decode.BadRequest as exc:
            code = 413 if isinstance(exc, decode.TooLarge) else 415 if "Content-Type" in str(exc) else 400
            receiver.dead_letter(str(exc), source, body, ctype)
            self._status(code, str(exc), as_json)
            return
        except (Busy, Unavailable) as exc:
            code = 429 if isinstance(exc, Busy) else 503
            self._status(code, str(exc), as_json, {"Retry-After": str(exc.retry_after)})
            return
        response = _response(kind, outcome)
        if as_json:
            self._send(200, json_format.MessageToJson(response, indent=None).encode(), "application/json")
        else:
            self._send(200, response.SerializeToString(), "application/x-protobuf")

    def _drain_or_close(self) -> None:
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= 1 << 20:
            self.rfile.read(int(length))
        else:
            self.close_connection = True


class HttpServer:
    def __init__(self, receiver: Receiver, address: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"receiver": receiver})
        server_class = ThreadingHTTPServer
        if ":" in address:
            server_class = type("Server6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        self.server = server_class((address, port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="otlp-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- gRPC -------------------------------------------------------------------------------------------


def _abort(context: Any, receiver: Receiver, exc: Exception) -> None:
    import grpc

    if isinstance(exc, Busy):
        try:
            from google.protobuf import duration_pb2
            from google.rpc import code_pb2, error_details_pb2, status_pb2

            info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=exc.retry_after))
            status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=str(exc))
            status.details.add().Pack(info)
            context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),
                                           ("retry-after", str(exc.retry_after))))
        except ImportError:
            pass
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    context.set_trailing_metadata((("retry-after", str(getattr(exc, "retry_after", 2))),))
    context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))


def _authorize(context: Any, receiver: Receiver) -> None:
    import grpc

    if not receiver.token:
        return
    header = dict(context.invocation_metadata()).get("authorization")
    if not receiver.authorized(header):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")


class _TraceService:
    """TraceService/Export on the request's bytes (no deserializer): they go as they came to where the
    request is mapped (a worker process, if there are some), as over HTTP. A payload that cannot be read
    is INVALID_ARGUMENT and a dead letter."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, data: bytes, context: Any) -> Any:  # noqa: N802
        import grpc

        _authorize(context, self.receiver)
        try:
            return _response("traces", self.receiver.export_trace_bytes(data, "application/x-protobuf"))
        except decode.BadRequest as exc:
            peer = context.peer() if hasattr(context, "peer") else ""
            self.receiver.dead_letter(str(exc), f"otlp grpc traces from {peer}"[:256], data, "application/grpc")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)[:1000])
            raise
        except (Busy, Unavailable) as exc:
            _abort(context, self.receiver, exc)
            raise

    def handler(self) -> Any:
        import grpc

        return grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(
                self.Export, request_deserializer=None,
                response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString)})


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
        _authorize(context, self.receiver)
        try:
            return _response("logs", self.receiver.export_logs(request))
        except (Busy, Unavailable) as exc:
            _abort(context, self.receiver, exc)
            raise


class GrpcServer:
    """gRPC decompresses the message itself, bounded by ``max_receive_message_length`` (checked after
    decompression); trace requests are parsed by the receiver (:class:`_TraceService`), log requests by
    gRPC (a message it cannot decode is INVALID_ARGUMENT or INTERNAL from gRPC)."""

    def __init__(self, receiver: Receiver, address: str, port: int, workers: int = 8) -> None:
        import grpc

        options = [("grpc.max_receive_message_length", receiver.max_request_bytes),
                   ("grpc.max_send_message_length", 4 * 1024 * 1024),
                   ("grpc.so_reuseport", 0)]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlp-grpc"),
                                  options=options, maximum_concurrent_rpcs=workers * 8)
        self.server.add_generic_rpc_handlers((_TraceService(receiver).handler(),))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsService(receiver), self.server)
        host = f"[{address}]" if ":" in address else address
        try:
            self.port = self.server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as exc:  # grpcio >= 1.50 raises where older ones returned 0
            raise ConfigError(f"cannot listen for OTLP/gRPC on {host}:{port}: {exc}") from None
        if self.port == 0:
            raise ConfigError(f"cannot listen for OTLP/gRPC on {host}:{port}")

    def start(self) -> None:
        self.server.start()

    def stop(self, grace: float = 5.0) -> None:
        self.server.stop(grace).wait(grace + 1)
