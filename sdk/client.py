"""The SDK's state: configuration, event building, and the lifecycle (init, flush, shutdown, fork, exit).

There is one :class:`Client` per process, held in :data:`_state`. ``init()`` builds it from
arguments, then ``LLMSIGHT_*`` environment variables, then defaults; without ``init()`` the first
monitored call builds it from the environment alone. ``LLMSIGHT_DISABLED`` (or
``init(disabled=True)``) leaves monitored functions running untouched.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from llmsight import config
from llmsight import redact as redact_module
from llmsight.extract import input_text, model_of, output_text, stream_summary, usage_of
from llmsight.guard import guard, internal_error
from llmsight.pricing import PriceTable, load_prices
from llmsight.redact import redact as default_redact
from llmsight.schema import FEEDBACK, HEARTBEAT, LLM_CALL, SCHEMA_VERSION
from llmsight.serialize import (
    REDACT_SLACK,
    bounded_json,
    bounded_text,
    clean_text,
    cut,
    encode_line,
    iso_utc,
    json_value,
    safe_repr,
    uuid_text,
)
from llmsight.sinks import FileSink, Pacer, Sink, make_sink, spool_path
from llmsight.tracing import (
    MAX_ID_CHARS,
    MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
    MAX_TAGS,
    CallContext,
    bounded_id,
    new_id,
    reseed,
)
from llmsight.worker import Worker

log = logging.getLogger("llmsight")

_HOST = socket.gethostname()[:MAX_ID_CHARS] or None


class CallMeta:
    """What the decorator knows about a function before it is ever called."""

    __slots__ = ("name", "model", "prompt_version", "tags", "params", "skip_self")

    def __init__(self, name: str, model: str | None, prompt_version: str | None, tags: dict[str, str],
                 params: tuple[str, ...], skip_self: bool) -> None:
        self.name = name
        self.model = model
        self.prompt_version = prompt_version
        self.tags = tags
        self.params = params
        self.skip_self = skip_self


class Client:
    """Settings plus the worker; builds events from the records monitored calls leave behind."""

    def __init__(self, *, sink: Sink, sink_url: str, service: str, environment: str, sample_rate: float,
                 redactor: Callable[[str], str] | None, prices: PriceTable, max_text_chars: int,
                 queue_size: int, batch_size: int, flush_interval: float,
                 queue_max_bytes: int = 64 * 1024 * 1024, heartbeat_s: float = 0.0) -> None:
        self.sink_url = sink_url
        self.service = clean_text(service[:MAX_ID_CHARS])
        self.environment = clean_text(environment[:MAX_ID_CHARS])
        self.sample_rate = sample_rate
        self.redactor = redactor
        self.prices = prices
        self.max_text_chars = max_text_chars
        # Host-side cut of call arguments and results: one past what the worker keeps, so it still flags.
        self.queue_cap = max_text_chars + REDACT_SLACK + 1
        self._pacer = Pacer()  # used by the worker thread only, while it redacts
        self.started_at = iso_utc(time.time())
        self.producer_id = str(uuid.uuid4())
        self.worker = Worker(sink, self.build, queue_size=queue_size, batch_size=batch_size,
                             flush_interval=flush_interval, max_bytes=queue_max_bytes,
                             heartbeat=self.heartbeat_line if heartbeat_s > 0 else None, heartbeat_s=heartbeat_s)
        self._sample_rng = random.Random()

    def after_fork(self) -> None:
        """A forked child is a new producer for the loss audit: new id, its own counters from zero."""
        self.producer_id = str(uuid.uuid4())
        self.started_at = iso_utc(time.time())
        self._sample_rng.seed()
        self._pacer = Pacer()
        self.worker.reset_after_fork()

    def heartbeat_line(self, counts: dict[str, int]) -> tuple[str, bytes]:
        """The ``heartbeat`` event of this producer with its cumulative ``counts`` (see llmsight.schema)."""
        event = {
            "type": HEARTBEAT,
            "schema_version": SCHEMA_VERSION,
            "event_id": str(uuid.uuid4()),
            "ts": iso_utc(time.time()),
            "producer_id": self.producer_id,
            "service": self.service,
            "environment": self.environment,
            "host": _HOST,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "sent": counts["sent"],
            "dropped": counts["dropped"],
            "spilled": counts["spilled"],
            "failed": counts["failed"],
        }
        return self.producer_id, encode_line(event)

    def sampled(self) -> bool:
        rate = self.sample_rate
        return rate >= 1.0 or (rate > 0.0 and self._sample_rng.random() < rate)

    # -- building events (worker thread) ------------------------------------------------------------

    def _text(self, text: str | None) -> tuple[str | None, bool]:
        """Clean, redact and cut one text field; returns (text, truncated)."""
        redactor = self.redactor
        if redactor is default_redact:
            self._pacer.tick()

            def redactor(value: str) -> str:  # gives the GIL back as it goes
                return str(redact_module.redact(value, self._pacer.tick))

        field: tuple[str | None, bool] = bounded_text(text, self.max_text_chars, redactor,
                                                      lambda exc: internal_error("the redact function", exc))
        return field

    def _short(self, value: Any, limit: int = MAX_ID_CHARS, redact: bool = True) -> tuple[str | None, bool]:
        """An id, name or tag: text cut to ``limit`` (flagged), then redacted like the texts."""
        if value is None:
            return None, False
        text, was_cut = cut(clean_text(value if isinstance(value, str) else safe_repr(value)), limit)
        if redact and self.redactor is not None:
            redacted, _ = self._text(text)
            return (redacted or "")[:limit], was_cut
        return text, was_cut

    def _tags(self, tags: dict[str, str]) -> tuple[dict[str, str], bool]:
        cut_any = len(tags) > MAX_TAGS
        out: dict[str, str] = {}
        for key, value in list(tags.items())[:MAX_TAGS]:
            name, key_cut = self._short(key, MAX_TAG_KEY_CHARS)
            text, value_cut = self._short(value, MAX_TAG_VALUE_CHARS)
            out[name or ""] = text or ""
            cut_any = cut_any or key_cut or value_cut
        return out, cut_any

    def build(self, record: Any) -> tuple[str, bytes] | None:
        if record[0] == FEEDBACK:
            return self._build_feedback(record[1])
        (_, meta, trace, args, kwargs, result, chunks, exc, t_wall, latency_ns, ttft_ns, ctx, event_id, parent) = record
        budget = self.max_text_chars + REDACT_SLACK
        raw_input = input_text(meta.params, meta.skip_self, args, kwargs, budget)
        if chunks is not None:
            raw_output, tokens_in, tokens_out, found_model = stream_summary(chunks, budget)
        else:
            raw_output = output_text(result, budget) if exc is None else None
            tokens_in, tokens_out = usage_of(result)
            found_model = model_of(result)
        model = meta.model or found_model
        if model is None and isinstance(kwargs.get("model"), str):
            model = kwargs["model"]
        error = error_type = None
        if exc is not None:
            error_type = type(exc).__name__
            error = f"{error_type}: {exception_text(exc)}"
        text_in, cut_in = self._text(raw_input)
        text_out, cut_out = self._text(raw_output)
        text_err, cut_err = self._text(error)
        tags = dict(ctx.tags) if ctx is not None else {}
        tags.update(meta.tags)
        tags, cut_tags = self._tags(tags)
        trace_id = uuid_text(trace)
        metadata = None
        cut_meta = False
        if chunks is not None:
            metadata, cut_meta = bounded_json({"stream": True, "chunks": len(chunks)}, self._redact_short)
        name, cut_name = self._short(meta.name, redact=False)
        model, cut_model = self._short(model, redact=False)
        prompt_version, cut_version = self._short(meta.prompt_version, redact=False)
        error_type, cut_type = self._short(error_type, redact=False)
        user_id, cut_user = self._short(ctx.user_id if ctx is not None else None)
        session_id, cut_session = self._short(ctx.session_id if ctx is not None else None)
        event = {
            "type": LLM_CALL,
            "schema_version": SCHEMA_VERSION,
            "event_id": uuid_text(event_id),
            "trace_id": trace_id,
            "parent_id": uuid_text(parent) if parent else None,
            "ts": iso_utc(t_wall),
            "service": self.service,
            "environment": self.environment,
            "name": name or "call",
            "model": model,
            "prompt_version": prompt_version,
            "input": text_in,
            "output": text_out,
            "error": text_err,
            "error_type": error_type,
            "latency_ms": latency_ns / 1e6,
            "ttft_ms": None if ttft_ns is None else ttft_ns / 1e6,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost_usd": self.prices.cost(model, tokens_in, tokens_out),
            "user_id": user_id,
            "session_id": session_id,
            "tags": tags,
            "metadata": metadata,
            "producer_id": self.producer_id,  # an envelope field: the loss audit counts stored rows by it
            "truncated": any((cut_in, cut_out, cut_err, cut_tags, cut_meta, cut_name, cut_model, cut_version,
                              cut_type, cut_user, cut_session)),
        }
        return trace_id, encode_line(event)

    def _redact_short(self, text: str) -> str:
        redacted, _ = self._text(text)
        return redacted or ""

    def _build_feedback(self, fields: dict[str, Any]) -> tuple[str, bytes]:
        comment, _ = self._text(fields["comment"])
        edited, _ = self._text(fields["edited_output"])
        user_id, _ = self._short(fields["user_id"])
        trace_id, _ = self._short(fields["trace_id"], redact=False)
        event = {
            "type": FEEDBACK,
            "schema_version": SCHEMA_VERSION,
            "event_id": uuid_text(fields["event"]),
            "trace_id": trace_id,
            "ts": iso_utc(fields["t_wall"]),
            "accepted": fields["accepted"],
            "score": json_value(fields["score"]),
            "comment": comment,
            "edited_output": edited,
            "user_id": user_id,
            "producer_id": self.producer_id,
        }
        return trace_id or "", encode_line(event)


def exception_text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__
        return str(safe_repr(exc))


class _State:
    """The process's client, created by ``init()`` or lazily by the first monitored call."""

    def __init__(self) -> None:
        self.client: Client | None = None
        self.retired: Client | None = None  # the client shut down last, so stats() still reports it
        self.disabled = False  # LLMSIGHT_DISABLED / init(disabled=True), or after shutdown()
        self.configured = False
        self.lock = threading.Lock()
        self.atexit_registered = False


_state = _State()


def _redactor(redact: Any) -> Callable[[str], str] | None:
    if callable(redact):
        return redact  # type: ignore[no-any-return]
    return default_redact if config.resolve(config.REDACT, redact, check=True) else None


def init(
    sink: str | Sink | None = None,
    service: str | None = None,
    environment: str | None = None,
    sample_rate: float | None = None,
    redact: bool | Callable[[str], str] | None = None,
    *,
    prices: Mapping[str, Any] | None = None,
    max_text_chars: int | None = None,
    queue_size: int | None = None,
    batch_size: int | None = None,
    flush_interval: float | None = None,
    disabled: bool | None = None,
) -> None:
    """Configure the SDK. Each argument falls back to its ``LLMSIGHT_*`` variable, then the default.

    - ``sink``: ``file:///path/to/spool`` (default ``file://~/.llmsight/spool``) or
      ``kafka://host:9092[,host2:9092]/topic``. A malformed URL logs a warning and falls back
      to the default spool.
    - ``sample_rate``: fraction of traces recorded, decided once per trace.
    - ``redact``: True (default: personal data and secrets, see :mod:`llmsight.redact`), False, or
      your own ``str -> str`` function.
    - ``prices``: ``{"model": [input, output]}`` in USD per 1M tokens, over the defaults and
      the ``LLMSIGHT_PRICES`` file.
    - ``max_text_chars``, ``queue_size``, ``batch_size``, ``flush_interval``: see the settings.
    - ``disabled``: monitored functions run untouched and nothing is recorded.

    Each argument is checked by its variable's parser in :mod:`llmsight.config`; a bad one is
    logged once and its default used. Calling ``init`` again replaces the previous configuration
    (its queue is flushed first). ``init`` never raises: a failure is logged and monitored
    functions run unmonitored.
    """
    try:
        previous = _state.client
        if previous is not None:
            with guard("shutting down the previous client"):
                previous.worker.shutdown(2.0)
        _state.client = None
        _state.retired = None
        _state.configured = True
        _state.disabled = config.resolve(config.DISABLED, disabled, check=True)
        if _state.disabled:
            log.info("llmsight: disabled; monitored functions run untouched")
            return
        sink_url, sink_obj = _sink(sink)
        _state.client = Client(
            sink=sink_obj,
            sink_url=sink_url,
            service=config.resolve(config.SERVICE, service, check=True),
            environment=config.resolve(config.ENVIRONMENT, environment, check=True),
            sample_rate=config.resolve(config.SAMPLE_RATE, sample_rate, check=True),
            redactor=_redactor(redact),
            prices=load_prices(config.resolve(config.PRICES), prices),
            max_text_chars=config.resolve(config.MAX_TEXT_CHARS, max_text_chars, check=True),
            queue_size=config.resolve(config.QUEUE_SIZE, queue_size, check=True),
            batch_size=config.resolve(config.BATCH_SIZE, batch_size, check=True),
            flush_interval=config.resolve(config.FLUSH_INTERVAL_S, flush_interval, check=True),
            queue_max_bytes=config.resolve(config.QUEUE_MAX_BYTES),
            heartbeat_s=config.resolve(config.HEARTBEAT_S),
        )
        with guard("starting the worker"):
            _state.client.worker.start()
        if not _state.atexit_registered:
            atexit.register(_at_exit)
            _state.atexit_registered = True
        log.debug("llmsight: configured, sink %s", sink_url)
    except Exception as exc:
        internal_error("init", exc)


def _sink(sink: str | Sink | None) -> tuple[str, Sink]:
    """(URL, sink): a Sink object as it is, else one built from the URL, else the default spool."""
    if isinstance(sink, Sink):
        return "<object>", sink
    segment_bytes = config.resolve(config.SPOOL_SEGMENT_BYTES)
    fsync = config.resolve(config.SPOOL_FSYNC)
    sink_url = str(config.resolve(config.SINK, sink, check=True))
    try:
        return sink_url, make_sink(sink_url, segment_bytes=segment_bytes, fsync=fsync,
                                   spill_dir=config.resolve(config.SPILL_DIR),
                                   spill_max_bytes=config.resolve(config.SPILL_MAX_BYTES),
                                   spool_max_bytes=config.resolve(config.SPOOL_MAX_BYTES))
    except Exception as exc:
        default = str(config.SINK.default)
        log.warning("llmsight: cannot use sink %r (%s); writing to the default spool %s instead",
                    sink_url, exc, default)
        return default, FileSink(spool_path(default), segment_bytes, fsync, config.resolve(config.SPOOL_MAX_BYTES))


def active_client() -> Client | None:
    """The client, configuring from the environment on first use; None when disabled or shut down."""
    client = _state.client
    if client is not None:
        return client
    if _state.configured:
        return None
    with _state.lock:
        if not _state.configured:
            init()  # never raises; after a failure later calls run unmonitored
    return _state.client


def submit_feedback(trace_id: str, accepted: bool | None, score: float | None, comment: str | None,
                    edited_output: str | None, user_id: str | None) -> None:
    client = active_client()
    if client is None:
        return
    client.worker.submit((FEEDBACK, {
        "event": new_id(128),
        "trace_id": clean_text(bounded_id(trace_id) or ""),
        "t_wall": time.time(),
        "accepted": None if accepted is None else bool(accepted),
        "score": score,
        "comment": None if comment is None else _host_text(comment, client.queue_cap),
        "edited_output": None if edited_output is None else _host_text(edited_output, client.queue_cap),
        "user_id": bounded_id(user_id),
    }), 512 + client.queue_cap * 2)


def _host_text(value: Any, cap: int) -> str:
    """A feedback text cut on the host before it waits in the queue (the worker flags nothing here)."""
    return value[:cap] if isinstance(value, str) else str(value)[:cap]


def flush(timeout: float) -> bool:
    client = _state.client
    return True if client is None else client.worker.flush(timeout)


def shutdown(timeout: float) -> bool:
    client = _state.client
    _state.client = None
    _state.retired = client or _state.retired
    _state.configured = True  # later monitored calls run untouched until init() is called again
    return True if client is None else client.worker.shutdown(timeout)


def stats() -> dict[str, int]:
    client = _state.client or _state.retired
    if client is None:
        return {"sent": 0, "dropped": 0, "spilled": 0, "failed": 0}
    counts: dict[str, int] = client.worker.counters()
    return counts


def _at_exit() -> None:
    with guard("flushing at exit"):
        client = _state.client
        _state.client, _state.retired = None, client
        if client is not None:
            timeout = config.resolve(config.EXIT_TIMEOUT_S)
            if not client.worker.shutdown(timeout):
                log.warning("llmsight: exit flush did not finish within %.1f s; %s", timeout, client.worker.counters())


def _after_fork_in_child() -> None:
    with guard("resetting after fork"):
        reseed()
        Pacer.hurry = False  # the parent may have forked in the middle of a flush
        _state.lock = threading.Lock()
        client = _state.client
        if client is not None:
            client.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["CallContext", "CallMeta", "Client", "active_client", "flush", "init", "shutdown", "stats"]
