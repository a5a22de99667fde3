"""``llmsight store serve``: one process owns a chdb data directory and serves ClickHouse's HTTP interface.

chdb allows one process per data directory. This gateway is that one process: every other process
(analyzer workers, the dashboard, the collector) uses a plain ``http://127.0.0.1:8123/<db>`` store
URL, so :func:`llmsight.store.connect` hands them clickhouse-connect's unchanged HTTP client.

What it speaks, as clickhouse-connect sends it:

* the statement in the body, or in the ``query`` URL parameter with the body appended (ClickHouse's
  rule); ``multipart/form-data`` bodies (clickhouse-connect's form encoding of large ``param_*``);
* ``database``, ``default_format``, ``query_id``, ``param_<name>`` (server-side ``{name:Type}``
  binding, handed to chdb as bare names), every other URL parameter as a ClickHouse setting;
* inserts whose data follows ``INSERT ... FORMAT <fmt>`` (in the body or after the ``query``
  parameter): the data is written to a private temporary file and inserted with
  ``INSERT ... FROM INFILE``, the request's settings (``insert_deduplication_token``) applied;
* request bodies compressed with lz4 (frame), zstd, gzip, deflate or br; answers are uncompressed
  (no ``Content-Encoding``, which clickhouse-connect reads as identity);
* errors as ClickHouse sends them: HTTP 4xx/5xx, a ``Code: N. DB::Exception: ...`` body and the
  ``X-ClickHouse-Exception-Code`` header, so clickhouse-connect raises its ``DatabaseError``;
* ``GET /ping``; HTTP basic auth or ``X-ClickHouse-User``/``X-ClickHouse-Key`` when a password is set.

Requests run on a pool of chdb connection handles (``--connections``, default 4): chdb gives each
handle its own session on the one engine, so a request borrows a handle, switches it to the
request's database (``USE``) and settings (``SET``, only those that differ from that handle's
previous request, so a client sending the same settings every time pays nothing), and runs. Up to
that many statements run at once inside the engine; more wait for a free handle. Because a handle's
session outlives the request, ``SET``, ``USE`` and temporary tables from clients are refused (they
would leak into other clients' queries); ``session_id`` is accepted and ignored.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import hmac
import ipaddress
import json
import logging
import os
import queue
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from llmsight.errors import ConfigError, StoreError
from llmsight.store.client import close_all, connect, parse_url

log = logging.getLogger("llmsight.store.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8123
DEFAULT_USER = "default"
DEFAULT_CONNECTIONS = 4  # chdb handles: requests that may run at once
IDLE_TIMEOUT_S = 120  # a keep-alive connection idle this long is closed (urllib3 notices and reconnects)
STOP_WAIT_S = 5.0  # how long a stop waits for the running statement before giving up on a clean close

# URL parameters that are HTTP transport, not ClickHouse settings (ClickHouse's HTTP handler
# reserves the same names). The http_*/progress/compression settings steer the HTTP layer,
# which is this module: they are accepted and not forwarded.
_TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "query_id", "session_id", "session_timeout", "session_check",
    "compress", "decompress", "buffer_size", "wait_end_of_query", "client_protocol_version", "quota_key",
    "role", "user", "password", "stacktrace", "with_stacktrace",
})
_HTTP_ONLY_SETTINGS = frozenset({
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "enable_http_compression",
    "cancel_http_readonly_queries_on_client_close", "http_zlib_compression_level",
    "http_native_compression_disable_checksumming_on_decompress", "http_wait_end_of_query",
    "http_response_buffer_size", "add_http_cors_header",
})
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_FORMAT_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_CODE = re.compile(r"Code: (\d+)\.")
# The statements that produce a result (ClickHouse then sends X-ClickHouse-Format, and
# clickhouse-connect's command() returns '' for an empty one instead of a summary).
_RESULT_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESC", "DESCRIBE", "EXISTS", "EXPLAIN", "CHECK", "VALUES"})
_READ_ONLY_KEYWORDS = _RESULT_KEYWORDS
_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8", "TSV": "text/tab-separated-values; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8", "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
}

# ClickHouse's HTTP status for an error code (HTTPHandler's exceptionCodeToHTTPStatus, the common ones).
_STATUS_BY_CODE: dict[int, int] = {
    194: 401,  # REQUIRED_PASSWORD
    516: 403,  # AUTHENTICATION_FAILED
    164: 403,  # READONLY
    60: 404, 81: 404, 82: 400,  # UNKNOWN_TABLE, UNKNOWN_DATABASE, DATABASE_ALREADY_EXISTS
    48: 501,  # NOT_IMPLEMENTED
    **{code: 400 for code in (
        6, 25, 26, 27, 32, 33, 38, 41, 42, 43, 44, 46, 47, 50, 53, 62, 69, 70, 72, 73, 80, 115, 117, 130, 167, 168,
        169, 170, 202, 306, 390, 456, 457, 472,
    )},
}


# --------------------------------------------------------------------------------------- errors


class ClickHouseError(Exception):
    """An error answered the way ClickHouse answers it: a code, a name and a message."""

    def __init__(self, code: int, name: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message
        self.status = status or _STATUS_BY_CODE.get(code, 500)

    def body(self, version: str) -> str:
        return f"Code: {self.code}. DB::Exception: {self.message}. ({self.name}) (version {version})\n"


class _EngineError(Exception):
    """An error chdb raised: its text already reads ``Code: N. DB::Exception: ... (NAME)``."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text

    @property
    def status(self) -> int:
        return _STATUS_BY_CODE.get(self.code, 500)

    def body(self, version: str) -> str:
        text = self.text.strip()
        if not text.startswith("Code:"):
            text = f"Code: {self.code}. DB::Exception: {text}"
        return f"{text} (version {version})\n"


def _engine_error(exc: Exception) -> _EngineError:
    text = str(exc)
    found = _CODE.search(text)
    if found:
        return _EngineError(int(found.group(1)), text[found.start():])
    return _EngineError(1001, text)  # STD_EXCEPTION


# ------------------------------------------------------------------------------------ SQL shape


_QUOTED_OR_COMMENT = re.compile(
    r"""'(?:[^'\\]|\\.)*(?:'|$)|"(?:[^"\\]|\\.)*(?:"|$)|`(?:[^`\\]|\\.)*(?:`|$)"""
    r"|--[^\n]*|#[^\n]*|/\*.*?(?:\*/|$)",
    re.DOTALL,
)


def _blank(found: re.Match[str]) -> str:
    text = found.group(0)
    if text[0] in "'\"`":  # keep the quotes, blank what they hold
        inner = len(text) - (2 if len(text) > 1 and text[-1] == text[0] else 1)
        return text[0] + " " * inner + text[1 + inner:]
    return " " * len(text)


def _blank_quoted(sql: str) -> str:
    """``sql`` with the insides of string literals, quoted identifiers and comments blanked out.

    Same length, so positions found in the result index the original: keywords are then looked
    for without being fooled by a column called `format` or a string holding 'SETTINGS'.
    """
    return _QUOTED_OR_COMMENT.sub(_blank, sql)


def _keyword(blanked: str) -> str:
    """The statement's first keyword (``SELECT``, ``INSERT``, ...), upper-case."""
    found = re.match(r"[\s(;]*([A-Za-z]+)", blanked)
    return found.group(1).upper() if found else ""


_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)[\s;]*$", re.IGNORECASE)
_TRAILING_VALUES = re.compile(r"\bVALUES[\s;]*$", re.IGNORECASE)
_INLINE_FORMAT = re.compile(r"\bFORMAT[ \t\r\n]+([A-Za-z0-9_]+)", re.IGNORECASE)
_SETTINGS_CLAUSE = re.compile(r"\bSETTINGS\b", re.IGNORECASE)


def _split_inline_insert(head: bytes | bytearray, final: bool) -> tuple[str, str, int]:
    """Where the data of ``INSERT ... FORMAT fmt\\n<data>`` starts in the first bytes of a body.

    Returns ``("insert", statement, offset)``; ``("text", "", 0)`` when the body is a statement to run
    as it is (a query, an ``INSERT ... VALUES (...)`` or ``INSERT ... SELECT``); ``("more", "", 0)``
    when ``head`` is too short to tell and more of the body is coming (``final`` False).
    The data starts after the format name, one run of spaces and one line break: clickhouse-connect
    writes ``FORMAT Native\\n`` before binary blocks, whose first byte may itself be a tab or a newline.
    """
    window = 4096
    while True:  # the statement is short and the data may be megabytes: look at a growing window
        text = bytes(head[:window]).decode("latin-1")  # 1:1 with the bytes, so offsets carry over
        blanked = _blank_quoted(text)
        if _keyword(blanked) != "INSERT":
            return ("more", "", 0) if not final and len(blanked.strip(" \t\r\n(;")) < 8 else ("text", "", 0)
        found = _INLINE_FORMAT.search(blanked)
        if (found and found.end() < len(text)) or window >= min(len(head), 1 << 20):
            break
        window *= 8
    if not found or (found.end() == len(text) and not final):
        return ("more", "", 0) if not final and len(head) < (1 << 20) else ("text", "", 0)
    end = found.end()
    while end < len(text) and text[end] == " ":
        end += 1
    if not final and end >= len(text) - 1:
        return "more", "", 0  # the line break may be in the next chunk
    if text.startswith("\r\n", end):
        end += 2
    elif text.startswith("\n", end):
        end += 1
    try:
        statement = bytes(head[: found.end()]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClickHouseError(27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
                              f"the INSERT statement is not UTF-8: {exc}") from None
    return "insert", statement, end


def _infile_insert(statement: str, path: str) -> str:
    """``INSERT INTO t (cols) [SETTINGS ...] FORMAT fmt`` → the same reading its data from ``path``."""
    blanked = _blank_quoted(statement)
    found = _TRAILING_FORMAT.search(blanked)
    if found:
        fmt = found.group(1)
    elif (values := _TRAILING_VALUES.search(blanked)) is not None:
        found, fmt = values, "Values"
    else:
        raise ClickHouseError(62, "SYNTAX_ERROR", "an INSERT with data must end with FORMAT <format> or VALUES")
    prefix, blanked_prefix = statement[: found.start()], blanked[: found.start()]
    settings = ""
    clauses = list(_SETTINGS_CLAUSE.finditer(blanked_prefix))
    if clauses:
        clause = clauses[-1]
        prefix, settings = statement[: clause.start()], " " + statement[clause.start(): found.start()].strip()
    quoted = path.replace("\\", "\\\\").replace("'", "\\'")
    return f"{prefix.rstrip()} FROM INFILE '{quoted}'{settings} FORMAT {fmt}"


def _output_format(blanked: str, default: str) -> str:
    found = _TRAILING_FORMAT.search(blanked)
    return found.group(1) if found else default


# --------------------------------------------------------------------------------- the engine


@dataclass
class Result:
    data: memoryview  # chdb's result buffer, answered without a copy
    summary: dict[str, str]
    fmt: str | None  # the output format, for statements that produce a result


class _Session:
    """One chdb connection handle and its session state: the current database and the settings SET on it.

    chdb gives each handle its own session on the one engine (``USE`` and ``SET`` on one handle leave
    the others alone), so a request owns a handle while it runs and switches that handle's state to
    what the request asks.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.database: str | None = None
        self.applied: dict[str, str] = {}

    def run(self, sql: str, fmt: str, database: str, settings: dict[str, str], params: dict[str, str]) -> Any:
        self._use(database)
        self._apply(settings)
        try:
            return self.conn.query(sql, fmt, params=params)
        except Exception as exc:
            raise _engine_error(exc) from None
        finally:
            if re.match(r"\s*(DROP|DETACH|RENAME)\b", sql, re.IGNORECASE):
                self.database = None  # the current database may be gone: USE again next time

    def _use(self, database: str) -> None:
        if database == self.database:
            return
        try:
            self.conn.query(f"USE `{database}`", "TabSeparated")
        except Exception as exc:
            self.database = None
            raise _engine_error(exc) from None
        self.database = database

    def _apply(self, settings: dict[str, str]) -> None:
        """SET what changed since this handle's previous request, and back to DEFAULT what it no longer asks."""
        for name in [n for n in self.applied if n not in settings]:
            self._set(name, None)
        for name, value in settings.items():
            if self.applied.get(name) != value:
                self._set(name, value)

    def _set(self, name: str, value: str | None) -> None:
        # Quoted: chdb reads a bare 123 as UInt64, which a String setting (insert_deduplication_token)
        # refuses; ClickHouse converts a quoted value to a numeric setting's type.
        literal = "DEFAULT" if value is None else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        try:
            self.conn.query(f"SET {name} = {literal}", "TabSeparated")
        except Exception as exc:
            self.applied.pop(name, None)
            raise _engine_error(exc) from None
        if value is None:
            self.applied.pop(name, None)
        else:
            self.applied[name] = value


class Engine:
    """A pool of chdb connection handles on one data directory; a request borrows one while it runs.

    Requests on different handles run at the same time inside the engine (chdb releases the GIL);
    a request waits for a free handle when all are busy.
    """

    def __init__(self, path: str, size: int) -> None:
        import chdb

        self.size = size
        self.closing = False
        self._free: queue.Queue[_Session] = queue.Queue()
        for _ in range(size):
            self._free.put(_Session(chdb.connect(path)))  # type: ignore[no-untyped-call,unused-ignore]
        first = self._free.get()
        try:
            row = first.conn.query("SELECT version(), timezone()", "TabSeparated").bytes().decode().strip()
        finally:
            self._free.put(first)
        self.version, _, self.timezone = row.partition("\t")

    def execute(self, sql: str, fmt: str, database: str, settings: dict[str, str],
                params: dict[str, str]) -> Any:
        if self.closing:
            raise ClickHouseError(210, "NETWORK_ERROR", "the store server is stopping", status=503)
        session = self._free.get()
        try:
            if self.closing:
                raise ClickHouseError(210, "NETWORK_ERROR", "the store server is stopping", status=503)
            return session.run(sql, fmt, database, settings, params)
        finally:
            self._free.put(session)

    def close(self, timeout: float) -> bool:
        """Close every handle once its request is done; False if one is still busy after ``timeout`` s."""
        self.closing = True
        deadline = time.monotonic() + timeout
        for _ in range(self.size):
            try:
                session = self._free.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            try:
                session.conn.close()
            except Exception:
                log.debug("store server: closing a chdb handle failed", exc_info=True)
        return True


# ---------------------------------------------------------------------------- request bodies


def _read_chunked(rfile: Any) -> Iterator[bytes]:
    while True:
        line = rfile.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ClickHouseError(1001, "STD_EXCEPTION", "malformed chunked request body") from None
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        chunk = rfile.read(size)
        if len(chunk) != size:
            raise ClickHouseError(1001, "STD_EXCEPTION", "the request body ended early")
        rfile.readline(16)
        yield chunk


def _read_sized(rfile: Any, length: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        chunk = rfile.read(min(left, 1 << 20))
        if not chunk:
            raise ClickHouseError(1001, "STD_EXCEPTION", "the request body ended early")
        left -= len(chunk)
        yield chunk


def _decompressor(encoding: str) -> Callable[[Iterator[bytes]], Iterator[bytes]]:
    """A streaming decoder for a request's Content-Encoding (several concatenated frames allowed)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return lambda chunks: chunks
    if encoding in ("gzip", "deflate"):
        wbits = 31 if encoding == "gzip" else 15

        def inflate(chunks: Iterator[bytes]) -> Iterator[bytes]:
            d = zlib.decompressobj(wbits)
            for chunk in chunks:
                while chunk:
                    yield d.decompress(chunk)
                    chunk = d.unused_data if d.eof else b""
                    if d.eof:
                        d = zlib.decompressobj(wbits)
            yield d.flush()
        return inflate
    if encoding == "lz4":
        import lz4.frame

        def unlz4(chunks: Iterator[bytes]) -> Iterator[bytes]:
            d = lz4.frame.LZ4FrameDecompressor()
            for chunk in chunks:
                while chunk:
                    yield d.decompress(chunk)
                    chunk = d.unused_data if d.eof else b""
                    if d.eof:
                        d = lz4.frame.LZ4FrameDecompressor()
        return unlz4
    if encoding == "zstd":
        try:
            from backports import zstd as zstd_module  # type: ignore[import-not-found,unused-ignore]
        except ImportError:  # Python 3.14+
            from compression import zstd as zstd_module  # type: ignore[import-not-found,no-redef,unused-ignore]

        def unzstd(chunks: Iterator[bytes]) -> Iterator[bytes]:
            d = zstd_module.ZstdDecompressor()
            for chunk in chunks:
                while chunk:
                    yield d.decompress(chunk)
                    chunk = d.unused_data if d.eof else b""
                    if d.eof:
                        d = zstd_module.ZstdDecompressor()
        return unzstd
    if encoding == "br":
        try:
            import brotli  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise ClickHouseError(48, "NOT_IMPLEMENTED", "br request bodies need the brotli package") from None

        def unbr(chunks: Iterator[bytes]) -> Iterator[bytes]:
            d = brotli.Decompressor()
            for chunk in chunks:
                yield d.process(chunk)
        return unbr
    raise ClickHouseError(48, "NOT_IMPLEMENTED", f"unknown Content-Encoding {encoding!r}")


def _form_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The fields of a multipart/form-data body: ``query`` and ``param_*`` (external data is refused)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        if part.get_param("filename", header="content-disposition") is not None:
            raise ClickHouseError(48, "NOT_IMPLEMENTED",
                                  "external data (temporary tables sent with the query) is not supported by "
                                  "the llmsight store server")
        payload = part.get_payload(decode=True)
        fields[name] = payload.decode("utf-8") if isinstance(payload, bytes) else str(payload)
    return fields


# ------------------------------------------------------------------------------- the HTTP side


class _Masker:
    """Hides the password in anything logged or answered."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __call__(self, text: str) -> str:
        if self.secret:
            text = text.replace(self.secret, "******")
        return re.sub(r"(?i)(password=)[^&\s]*", r"\1******", text)


class StoreHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], engine: Engine, *, user: str, password: str,
                 tmpdir: str, loopback_only: bool) -> None:
        self.engine = engine
        self.user = user
        self.password = password
        self.tmpdir = tmpdir
        self.loopback_only = loopback_only
        self.mask = _Masker(password)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    # TCP_NODELAY: without it the answer's second segment waits for the client's delayed ACK (40 ms a request).
    disable_nagle_algorithm = True
    server: StoreHTTPServer
    server_version = "llmsight-store"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("store server: %s", self.server.mask(format % args))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # each request is logged once, by _handle, without its query string

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    # -- one request

    def _handle(self) -> None:
        started = time.perf_counter()
        query_id = ""
        status = 200
        try:
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            query_id = params.get("query_id") or str(uuid.uuid4())
            self._check_origin()
            if url.path in ("/ping", "/replicas_status"):
                self._drain_body()
                self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            if url.path not in ("", "/"):
                self._drain_body()
                raise ClickHouseError(0, "UNKNOWN", f"there is no handler for {url.path}; use / or /ping", status=404)
            self._authenticate(params)
            statement, data_path = self._receive(params)
            try:
                result = self._run(params, statement, data_path)
            finally:
                if data_path is not None:
                    os.unlink(data_path)
            if result is None:
                self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            headers = {
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Timezone": params.get("session_timezone") or self.server.engine.timezone,
                "X-ClickHouse-Summary": json.dumps(result.summary, separators=(",", ":")),
                "Content-Type": _CONTENT_TYPES.get(result.fmt or "", "application/octet-stream")
                if result.fmt else "text/plain; charset=UTF-8",
            }
            if result.fmt:
                headers["X-ClickHouse-Format"] = result.fmt
            self._reply(200, result.data, headers)
        except (ClickHouseError, _EngineError) as exc:
            status = exc.status
            self._error(exc, query_id)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            status = 499
        except Exception as exc:  # an unexpected failure still answers like ClickHouse
            log.exception("store server: unexpected error")
            status = 500
            self._error(ClickHouseError(1001, "STD_EXCEPTION", f"{type(exc).__name__}: {exc}"), query_id)
        finally:
            log.debug("store server: %s %s -> %s in %.1f ms", self.command, urlsplit(self.path).path, status,
                      (time.perf_counter() - started) * 1000)

    def _receive(self, params: dict[str, str]) -> tuple[str, str | None]:
        """Read the request body: the statement, and the file holding an INSERT's data (None without data).

        An INSERT's data is streamed to a private temporary file as it arrives (decompressed), never
        held whole in memory: chdb reads it from there (``FROM INFILE``), having no stdin to stream to.
        """
        try:
            chunks = iter(_decompressor(self.headers.get("Content-Encoding", ""))(self._body_chunks()))
            content_type = self.headers.get("Content-Type", "")
            statement = params.get("query", "")
            if content_type.startswith("multipart/form-data"):
                params.update(_form_fields(b"".join(chunks), content_type))
                return params.get("query", ""), None
            if statement and _keyword(_blank_quoted(statement)) == "INSERT":
                return statement, self._spool(b"", chunks)
            head = bytearray()
            undecided = not statement
            for chunk in chunks:
                head += chunk
                if undecided:
                    kind, inline, offset = _split_inline_insert(head, final=False)
                    if kind == "insert":
                        return inline, self._spool(bytes(head[offset:]), chunks)
                    undecided = kind == "more"
            if statement:
                return (statement + "\n" + self._text(head) if head else statement), None
            kind, inline, offset = _split_inline_insert(head, final=True)
            if kind == "insert":
                return inline, self._spool(bytes(head[offset:]), iter(()))
            return self._text(head), None
        except (ClickHouseError, OSError):
            raise
        except Exception as exc:  # a corrupt compressed body: lz4, zstd and zlib each raise their own
            self.close_connection = True
            raise ClickHouseError(
                27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
                f"cannot decode the request body ({self.headers.get('Content-Encoding') or 'identity'}): {exc}",
                status=400) from None

    def _spool(self, first: bytes, rest: Iterator[bytes]) -> str:
        fd, path = tempfile.mkstemp(dir=self.server.tmpdir, suffix=".data")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(first)
                for chunk in rest:
                    handle.write(chunk)
        except BaseException:
            os.unlink(path)
            raise
        return path

    def _run(self, params: dict[str, str], statement: str, data_path: str | None) -> Result | None:
        engine = self.server.engine
        if not statement.strip():
            if self.command == "GET":
                return None  # GET / is ClickHouse's "Ok." too
            raise ClickHouseError(62, "SYNTAX_ERROR", "Empty query")

        blanked = _blank_quoted(statement)
        keyword = _keyword(blanked)
        if keyword in ("SET", "USE"):
            raise ClickHouseError(48, "NOT_IMPLEMENTED",
                                  f"{keyword} is refused by the llmsight store server: every client shares one chdb "
                                  "session; pass settings and the database with each query")
        if re.search(r"\bTEMPORARY\b", blanked, re.IGNORECASE) and keyword == "CREATE":
            raise ClickHouseError(48, "NOT_IMPLEMENTED",
                                  "temporary tables are refused by the llmsight store server (one chdb session "
                                  "is shared by every client)")
        if self.command == "GET" and keyword not in _READ_ONLY_KEYWORDS:
            raise ClickHouseError(164, "READONLY", "Cannot execute query in readonly mode: a GET request is read-only; "
                                  "use POST")

        settings, bind = self._settings_and_params(params)
        database = params.get("database") or "default"
        default_format = params.get("default_format") or "TabSeparated"
        if not _FORMAT_NAME.match(default_format):
            raise ClickHouseError(73, "UNKNOWN_FORMAT", f"unknown format {default_format!r}")

        empty_file = None
        if keyword == "INSERT" and (_TRAILING_FORMAT.search(blanked) or _TRAILING_VALUES.search(blanked)):
            if data_path is None:  # no data: an empty file, never chdb's stdin
                data_path = empty_file = self._spool(b"", iter(()))
            statement = _infile_insert(statement, data_path)
            blanked = _blank_quoted(statement)
        elif data_path is not None and os.path.getsize(data_path):
            raise ClickHouseError(62, "SYNTAX_ERROR", "data was sent with a statement that takes none "
                                  "(an INSERT with data ends with FORMAT <format>)")
        try:
            started = time.perf_counter()
            res = engine.execute(statement, default_format, database, settings, bind)
            elapsed_ns = int((time.perf_counter() - started) * 1e9)
        finally:
            if empty_file is not None:
                os.unlink(empty_file)
        out = _payload(res)
        summary = {
            "read_rows": str(_stat(res, "rows_read")), "read_bytes": str(_stat(res, "bytes_read")),
            "written_rows": str(_stat(res, "rows_written")), "written_bytes": str(_stat(res, "bytes_written")),
            "total_rows_to_read": "0", "result_rows": "0", "result_bytes": str(out.nbytes),
            "elapsed_ns": str(elapsed_ns),
        }
        fmt = _output_format(blanked, default_format) if keyword in _RESULT_KEYWORDS else None
        return Result(out, summary, fmt)

    def _settings_and_params(self, params: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        settings: dict[str, str] = {}
        bind: dict[str, str] = {}
        for name, value in params.items():
            if name.startswith("param_"):
                bind[name[len("param_"):]] = value
            elif name in _TRANSPORT_PARAMS or name in _HTTP_ONLY_SETTINGS:
                continue
            elif not _SETTING_NAME.match(name):
                raise ClickHouseError(115, "UNKNOWN_SETTING", f"Unknown setting '{name[:100]}'")
            else:
                settings[name] = value
        return settings, bind

    @staticmethod
    def _text(body: bytes | bytearray) -> str:
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClickHouseError(62, "SYNTAX_ERROR", f"the query is not UTF-8: {exc}") from None

    # -- HTTP plumbing

    def _check_origin(self) -> None:
        """Refuse what a web page could send: browsers add Origin to cross-site POSTs, and a DNS
        rebinding attack reaches a loopback server under a foreign Host name."""
        if self.headers.get("Origin"):
            raise ClickHouseError(516, "AUTHENTICATION_FAILED", "requests from a web page (with an Origin header) are refused")
        if self.server.loopback_only:
            host = (self.headers.get("Host") or "").strip()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            name = name.strip("[]")
            if host and not _is_loopback_name(name):
                raise ClickHouseError(516, "AUTHENTICATION_FAILED",
                                      f"Host {name!r} is not a loopback name; this server listens on loopback only")

    def _authenticate(self, params: dict[str, str]) -> None:
        expected = self.server.password
        if not expected:
            return
        user, password = params.get("user"), params.get("password")
        if self.headers.get("X-ClickHouse-User") is not None:
            user, password = self.headers.get("X-ClickHouse-User"), self.headers.get("X-ClickHouse-Key", "")
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = password = None
        if user is None and password is None:
            raise ClickHouseError(194, "REQUIRED_PASSWORD", "this server needs a user and password "
                                  "(http://user:password@host:port/db)")
        ok_user = hmac.compare_digest((user or DEFAULT_USER).encode(), self.server.user.encode())
        ok_password = hmac.compare_digest((password or "").encode(), expected.encode())
        if not (ok_user and ok_password):
            raise ClickHouseError(516, "AUTHENTICATION_FAILED",
                                  f"{(user or DEFAULT_USER)[:64]}: Authentication failed: password is incorrect, "
                                  "or there is no user with such name")

    def _body_chunks(self) -> Iterator[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _read_chunked(self.rfile)
        length = int(self.headers.get("Content-Length") or 0)
        return _read_sized(self.rfile, length)

    def _drain_body(self) -> None:
        for _ in self._body_chunks():
            pass

    def _reply(self, status: int, data: bytes | memoryview, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(memoryview(data).nbytes))
        self.send_header("Keep-Alive", f"timeout={IDLE_TIMEOUT_S}")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, exc: ClickHouseError | _EngineError, query_id: str) -> None:
        text = self.server.mask(exc.body(self.server.engine.version))
        log.info("store server: error %s: %s", exc.code, text.strip()[:300])
        try:
            self._reply(exc.status, text.encode("utf-8", "replace"), {
                "Content-Type": "text/plain; charset=UTF-8",
                "X-ClickHouse-Exception-Code": str(exc.code),
                "X-ClickHouse-Query-Id": query_id,
            })
        except OSError:
            self.close_connection = True


def _payload(res: Any) -> memoryview:
    if res is None:
        return memoryview(b"")
    try:
        view = res.get_memview()
        return view if isinstance(view, memoryview) else memoryview(view)
    except Exception:  # an older chdb: copy
        return memoryview(res.bytes())


def _stat(res: Any, name: str) -> int:
    try:
        return int(getattr(res, name)())
    except Exception:
        return 0


def _is_loopback_name(name: str) -> bool:
    if name.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only ever reaches this machine."""
    if _is_loopback_name(host):
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%", 1)[0]).is_loopback for a in addresses)


# ----------------------------------------------------------------------------- the server


class StoreServer:
    """Owns the chdb data directory and serves it over HTTP until :meth:`stop`.

    ``url`` is a ``chdb://`` store URL (default: ``LLMSIGHT_CLICKHOUSE_URL``). A host that is not
    loopback needs a password: the server then answers only requests that carry it.
    """

    def __init__(self, url: str | None = None, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 user: str = DEFAULT_USER, password: str = "", connections: int = DEFAULT_CONNECTIONS) -> None:
        target = parse_url(url)
        if connections < 1:
            raise ConfigError(f"connections must be at least 1, not {connections}")
        if target.kind != "chdb":
            raise ConfigError(f"store serve needs a chdb store (chdb:///path), not {target.display()}: "
                              "it is the one process that opens that data directory")
        loopback = is_loopback(host)
        if not loopback and not password:
            raise ConfigError(
                f"refusing to listen on {host}, which other machines can reach, without a password: "
                "give --password (clients then use http://default:PASSWORD@host:port/db), or listen on 127.0.0.1")
        self.target = target
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.loopback = loopback
        self.connections = connections
        self._tmpdir = ""
        self._httpd: StoreHTTPServer | None = None
        self._engine: Engine | None = None
        self._stopping = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        assert self._httpd is not None, "call open() first"
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def client_url(self, database: str | None = None) -> str:
        """The store URL other processes use (the password shown as PASSWORD)."""
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        auth = f"{self.user}:PASSWORD@" if self.password else ""
        return f"http://{auth}{shown}:{port}/{database or self.target.database}"

    def open(self) -> None:
        """Open the chdb data directory (taking its lock) and bind the listening socket."""
        assert self.target.path is not None
        # connect() takes the data directory's lock file (a second process gets a clear error naming
        # this one); the pool's handles are more connections to the engine it opened.
        connect(f"chdb://{self.target.path}", "default", create_database=False)
        self._tmpdir = tempfile.mkdtemp(prefix="llmsight-store-serve-")  # 0700: the insert data files
        try:
            engine = Engine(os.path.realpath(self.target.path), self.connections)
            self._httpd = StoreHTTPServer((self.host, self.port), engine, user=self.user, password=self.password,
                                          tmpdir=self._tmpdir, loopback_only=self.loopback)
        except OSError as exc:
            self._abandon()
            raise StoreError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        except Exception as exc:
            self._abandon()
            raise StoreError(f"cannot open the chdb store at {self.target.path}: {exc}") from exc
        self._engine = engine

    def _abandon(self) -> None:
        close_all()
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def serve_forever(self) -> None:
        assert self._httpd is not None, "call open() first"
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving (from a signal handler or another thread); :meth:`serve_forever` then returns."""
        if self._stopping.is_set() or self._httpd is None:
            return
        self._stopping.set()
        if self._engine is not None:
            self._engine.closing = True
        threading.Thread(target=self._httpd.shutdown, name="store-server-stop", daemon=True).start()

    def _close(self) -> None:
        """Close the socket, wait for the running statements, then release chdb and its directory."""
        assert self._httpd is not None and self._engine is not None
        self._httpd.server_close()
        if self._engine.close(STOP_WAIT_S):
            close_all()
            log.info("store server: stopped; %s closed", self.target.path)
        else:
            log.warning("store server: a statement still runs after %.0f s; leaving chdb to the process exit",
                        STOP_WAIT_S)
        shutil.rmtree(self._tmpdir, ignore_errors=True)
