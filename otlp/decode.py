"""Reading OTLP requests: bounded decompression, protobuf or JSON, into :class:`~llmsight.otlp.mapping.Span`.

The messages are the official ``opentelemetry-proto`` ones. OTLP/JSON differs from protobuf's
canonical JSON in one place that matters here: trace and span ids are hex, not base64; they are
converted before ``json_format.ParseDict`` (unknown fields are ignored, as the OTLP spec asks).
Everything that cannot be read raises :class:`BadRequest` (answered 400, and a dead letter).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llmsight.otlp.mapping import Event, Span

_MAX_DEPTH = 16  # nested AnyValue arrays/maps read, at most


class BadRequest(Exception):
    """The payload cannot be read: the reason says why (answered 400)."""


class TooLarge(BadRequest):
    """The payload, or what it decompresses to, is over the limit (answered 413)."""


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded per ``Content-Encoding`` (identity, gzip or deflate), never more than ``limit`` bytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity", "none"):
        if len(body) > limit:
            raise TooLarge(f"request of {len(body)} bytes is over the limit of {limit}")
        return body
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r} (gzip, deflate or none)")
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    out: list[bytes] = []
    size = 0
    data = body
    while data:
        inflater = zlib.decompressobj(wbits)
        try:
            chunk = inflater.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise BadRequest(f"bad {encoding} data: {exc}") from None
        size += len(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise TooLarge(f"request decompresses to more than the limit of {limit} bytes")
        out.append(chunk)
        if not inflater.eof:
            raise BadRequest(f"truncated {encoding} data")
        data = inflater.unused_data if encoding != "deflate" else b""  # gzip may hold several members
    return b"".join(out)


def _hex_to_b64(value: Any, what: str) -> Any:
    if not isinstance(value, str) or not value:
        return value
    try:
        return base64.b64encode(binascii.unhexlify(value)).decode("ascii")
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what} {value[:64]!r} is not hex") from None


def _fix_ids(items: Any, kind: str) -> None:
    """Turn the hex ids of OTLP/JSON into the base64 protobuf's JSON parser expects, in place."""
    if not isinstance(items, list):
        return
    for resource in items:
        if not isinstance(resource, dict):
            continue
        scopes = resource.get("scopeSpans" if kind == "spans" else "scopeLogs")
        if not isinstance(scopes, list):
            continue
        for scope in scopes:
            if not isinstance(scope, dict):
                continue
            records = scope.get("spans" if kind == "spans" else "logRecords")
            if not isinstance(records, list):
                continue
            for record in records:
                if not isinstance(record, dict):
                    continue
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in record:
                        record[key] = _hex_to_b64(record[key], key)
                for link in record.get("links") or []:
                    if isinstance(link, dict):
                        for key in ("traceId", "spanId"):
                            if key in link:
                                link[key] = _hex_to_b64(link[key], key)


def _parse(data: bytes, content_type: str, message: Message, kind: str) -> Message:
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"bad JSON: {str(exc)[:200]}") from None
        if not isinstance(obj, dict):
            raise BadRequest("the JSON body must be an object")
        _fix_ids(obj.get("resourceSpans" if kind == "spans" else "resourceLogs"), kind)
        try:
            json_format.ParseDict(obj, message, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
            raise BadRequest(f"bad OTLP JSON: {str(exc)[:200]}") from None
        return message
    if ctype in ("application/x-protobuf", "application/protobuf", ""):
        try:
            message.ParseFromString(data)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise BadRequest(f"bad protobuf: {str(exc)[:200] or type(exc).__name__}") from None
        return message
    raise BadRequest(f"unsupported Content-Type {ctype!r} (application/x-protobuf or application/json)")


def parse_traces(data: bytes, content_type: str = "application/x-protobuf") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    _parse(data, content_type, request, "spans")
    return request


def parse_logs(data: bytes, content_type: str = "application/x-protobuf") -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    _parse(data, content_type, request, "logs")
    return request


def any_value(value: Any, depth: int = 0) -> Any:
    """An OTLP ``AnyValue`` as a Python value (bytes as base64 text); unknown or empty values are None."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if depth >= _MAX_DEPTH:
        return None
    if kind == "array_value":
        return [any_value(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def attributes(items: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in items}


class InvalidItem(Exception):
    """One span or log record that cannot be used (bad ids): rejected in partial_success, the rest go on."""


def spans(request: ExportTraceServiceRequest) -> Any:
    """Yield each span of the request as a :class:`Span`, or an :class:`InvalidItem` for one with bad ids."""
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                trace_id, span_id = span.trace_id, span.span_id
                if len(trace_id) != 16 or len(span_id) != 8 or not any(trace_id) or not any(span_id):
                    yield InvalidItem(f"span {span.name[:80]!r} has an invalid trace or span id")
                    continue
                trace_hex = trace_id.hex()
                span_hex = span_id.hex()
                # Each field read from a protobuf message costs a call into its runtime: each is read once.
                span_events = span.events
                events = [Event(e.name, e.time_unix_nano, attributes(e.attributes), None, trace_hex, span_hex)
                          for e in span_events] if span_events else []
                parent, status = span.parent_span_id, span.status
                yield Span(trace_hex, span_hex, parent.hex() if len(parent) == 8 else "", span.name,
                           span.start_time_unix_nano, span.end_time_unix_nano, status.code, status.message,
                           attributes(span.attributes), resource, scope, events)


def log_events(request: ExportLogsServiceRequest) -> Any:
    """Yield each log record as an :class:`Event` (its name from ``event_name`` or the ``event.name``
    attribute) with the resource attributes merged under its own."""
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attrs = attributes(record.attributes)
                name = record.event_name or attrs.get("event.name") or ""
                body = any_value(record.body) if record.HasField("body") else None
                trace_id = record.trace_id.hex() if len(record.trace_id) == 16 and any(record.trace_id) else ""
                span_id = record.span_id.hex() if len(record.span_id) == 8 else ""
                yield Event(name if isinstance(name, str) else "", record.time_unix_nano or record.observed_time_unix_nano,
                            {**resource, **attrs}, body, trace_id, span_id)
