"""OpenTelemetry GenAI spans → llmsight events: the one mapping table.

:data:`TABLE` lists, per ``llm_call`` field, the attributes read in order (the first one present wins);
:func:`table_markdown` renders it for the README, and :func:`map_span` reads the same tuples, so the
table and the code cannot drift. The conventions covered: the current GenAI semantic conventions
(``gen_ai.*``, with their older names), OpenLLMetry (indexed ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``,
``llm.*``), OpenInference (``llm.*``, ``input.value``/``output.value``, ``openinference.span.kind``) and
OpenLIT (``gen_ai.*`` plus the ``gen_ai.content.prompt``/``gen_ai.content.completion`` events).

Spans arrive here as :class:`Span` (plain Python values, decoded from protobuf or JSON by
:mod:`llmsight.otlp.decode`); nothing in this module raises on odd input: a value of an unexpected
type is ignored, as if absent.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgspec

from llmsight.pricing import PriceTable
from llmsight.redact import redact as default_redact
from llmsight.schema import FEEDBACK, LLM_CALL, SCHEMA_VERSION
from llmsight.serialize import bounded_json, bounded_text, clean_text, cut, encode_line

MAX_ID_CHARS = 256  # names, models, ids: as the SDK
SHORT_CACHE = 8192  # distinct short values whose redaction is remembered
_SHORT_CACHED_CHARS = 1024  # short values up to this length are remembered (as bounded, cut and redacted)
_OTEL_METADATA = (("response_id", "gen_ai.response.id"), ("finish_reasons", "gen_ai.response.finish_reasons"),
                  ("server_address", "server.address"))
_MAX_INDEXED = 256  # OpenLLMetry/OpenInference indexed messages read per span, at most


@dataclass
class Event:
    """A span event or a log record: its name, time, attributes and (logs only) body."""

    name: str
    time_ns: int
    attrs: dict[str, Any]
    body: Any = None
    trace_id: str = ""
    span_id: str = ""


@dataclass
class Span:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str  # "" for a root span
    name: str
    start_ns: int
    end_ns: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attrs: dict[str, Any]
    resource: dict[str, Any]
    scope: str = ""
    events: list[Event] = field(default_factory=list)


# -- the table -------------------------------------------------------------------------------------

MODEL = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name", "llm.request.model")
PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
OPERATION = ("gen_ai.operation.name", "llm.request.type")
TOKENS_IN = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt",
             "llm.usage.prompt_tokens")
TOKENS_OUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion",
              "llm.usage.completion_tokens")
TTFT_S = ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token", "gen_ai.server.ttft")
COST = ("gen_ai.usage.cost", "llm.cost.total")
SESSION = ("gen_ai.conversation.id", "session.id")
USER = ("user.id", "enduser.id")
PROMPT_NAME = ("gen_ai.prompt.name",)
PROMPT_VERSION = ("gen_ai.prompt.version", "llm.prompt_template.version")
ENVIRONMENT = ("deployment.environment.name", "deployment.environment")
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
EVALUATION_EVENT = "gen_ai.evaluation.result"
MESSAGE_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                  "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}
CHOICE_EVENT = "gen_ai.choice"
OPENLIT_PROMPT_EVENT, OPENLIT_COMPLETION_EVENT = "gen_ai.content.prompt", "gen_ai.content.completion"
# Operations that are one call of a model with a prompt and an answer; other gen_ai operations
# (embeddings, execute_tool, invoke_agent, create_agent, ...) and OpenInference kinds other than LLM are
# skipped and counted.
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "completion"})

TABLE: tuple[tuple[str, str], ...] = (
    ("is an LLM call", "`gen_ai.operation.name` (or OpenLLMetry `llm.request.type`) is one of "
                       + ", ".join(f"`{o}`" for o in sorted(LLM_OPERATIONS))
                       + "; else OpenInference `openinference.span.kind` = `LLM`; else a model or provider "
                         "attribute below is present. Other spans (HTTP, DB, tools, agents, embeddings) are "
                         "skipped and counted"),
    ("`event_id`", "derived from the trace and span ids (an exporter's retry is deduplicated by the store)"),
    ("`trace_id`, `parent_id`", "the span's trace id and parent span id, as hex; the span id is in "
                                "`metadata.otel.span_id`"),
    ("`ts`, `latency_ms`", "span start time; end − start"),
    ("`service`", "resource `service.name` (else `LLMSIGHT_SERVICE`)"),
    ("`environment`", "resource " + ", ".join(f"`{a}`" for a in ENVIRONMENT) + " (else `LLMSIGHT_ENVIRONMENT`)"),
    ("`name`", "span name, else `gen_ai.operation.name`"),
    ("`model`", ", ".join(f"`{a}`" for a in MODEL)),
    ("`prompt_version`", "`LLMSIGHT_OTLP_PROMPT_VERSION_ATTRIBUTE` if set; else `gen_ai.prompt.name` and "
                         + ", ".join(f"`{a}`" for a in PROMPT_VERSION) + " (`name:version` when both)"),
    ("`input`", f"`{SYSTEM_INSTRUCTIONS}` + `{INPUT_MESSAGES}` (span attribute, else the `{DETAILS_EVENT}` "
                "event); the `gen_ai.system.message`/`gen_ai.user.message`/`gen_ai.assistant.message`/"
                "`gen_ai.tool.message` events; OpenLLMetry `gen_ai.prompt.N.role`/`.content`; OpenInference "
                "`llm.input_messages.N.message.role`/`.content`; `gen_ai.prompt` (attribute, or OpenLIT's "
                f"`{OPENLIT_PROMPT_EVENT}` event); `input.value`. Rendered as `role: text` lines, as the SDK does"),
    ("`output`", f"`{OUTPUT_MESSAGES}` (span attribute, else the `{DETAILS_EVENT}` event); the `{CHOICE_EVENT}` "
                 "event; `gen_ai.completion.N.content`; `llm.output_messages.N.message.content`; "
                 f"`gen_ai.completion` (attribute, or the `{OPENLIT_COMPLETION_EVENT}` event); `output.value`. "
                 "The first choice's text"),
    ("`tokens_in`", ", ".join(f"`{a}`" for a in TOKENS_IN)),
    ("`tokens_out`", ", ".join(f"`{a}`" for a in TOKENS_OUT)),
    ("`ttft_ms`", ", ".join(f"`{a}`" for a in TTFT_S) + " (seconds) × 1000"),
    ("`cost_usd`", ", ".join(f"`{a}`" for a in COST) + "; else the price table (`LLMSIGHT_PRICES`)"),
    ("`session_id`", ", ".join(f"`{a}`" for a in SESSION)),
    ("`user_id`", ", ".join(f"`{a}`" for a in USER)),
    ("`error`, `error_type`", "span status ERROR or `error.type`: `error.type` (else the `exception` event's "
                              "`exception.type`, else `error`) and the status message or `exception.message`"),
    ("`tags`", "`provider` (" + ", ".join(f"`{a}`" for a in PROVIDER) + "), `operation`, `instrumentation` "
               "(the scope name), `via` = `otlp`"),
    ("`metadata.otel`", "span id, `gen_ai.response.id`, `gen_ai.response.finish_reasons`, `server.address`"),
    ("feedback", f"a `{EVALUATION_EVENT}` span event or log record: `trace_id` of its span; `score` ← "
                 "`gen_ai.evaluation.score.value`; `accepted` ← `gen_ai.evaluation.score.label` (pass/fail, "
                 "true/false, yes/no, good/bad, correct/incorrect, accepted/rejected); `comment` ← "
                 "`evaluation NAME: LABEL` + `gen_ai.evaluation.explanation`"),
    ("redaction, caps", "as the SDK: `LLMSIGHT_REDACT` on input, output, error, ids and tags; "
                        "`LLMSIGHT_MAX_TEXT_CHARS`; names, models and ids cut to 256 characters"),
)


def table_markdown() -> str:
    """The mapping as the README's table."""
    lines = ["| llmsight | read from (first present wins) |", "|---|---|"]
    lines += [f"| {target} | {source.replace('|', '/')} |" for target, source in TABLE]
    return "\n".join(lines)


# -- reading values ------------------------------------------------------------------------------------


def _first(attrs: dict[str, Any], names: Iterable[str]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            return None
        value = int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value < 1 << 32:
        return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _string(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, (bool, int, float)):
        return str(value)
    return None


_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode


def _json(value: Any) -> Any:
    """A JSON string decoded (messages sent as span attributes are JSON strings), else the value as is.

    msgspec decodes in C; what it refuses (NaN, numbers out of range, very deep nesting) goes to
    ``json.loads``, which decides, so the result is json's."""
    if isinstance(value, str):
        text = value.lstrip()
        if text[:1] in ("[", "{"):
            try:
                return _decode_json(text)
            except (msgspec.DecodeError, RecursionError):
                pass
            try:
                return json.loads(text)
            except (ValueError, RecursionError):
                return value
    return value


def encode_event(event: dict[str, Any]) -> bytes:
    """An event as one compact UTF-8 JSON line, as :func:`llmsight.serialize.encode_line` writes it, in C:
    msgspec's bytes differ from ``json.dumps``'s only in how some floats are spelled (``1e16``, not
    ``1e+16``), and decode to the same values. What msgspec refuses (a lone surrogate, an int past 64
    bits) goes to ``encode_line``."""
    try:
        return _encode_json(event) + b"\n"
    except (TypeError, ValueError, OverflowError, RecursionError):
        return encode_line(event)


def _part_text(part: Any) -> str | None:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return None
    value = part.get("content")
    if isinstance(value, str):
        return str(value)
    value = part.get("text")
    if isinstance(value, str):
        return str(value)
    kind = part.get("type")
    if kind == "tool_call":
        return f"[tool call {part.get('name', '')}({_compact(part.get('arguments'))})]"
    if kind == "tool_call_response":
        return f"[tool result {_compact(part.get('response', part.get('result')))}]"
    return None


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (ValueError, TypeError, RecursionError):
        return ""


def _content_text(message: Any) -> str | None:
    """The text of one message: new-style ``parts``, or ``content`` as a string or a list of parts."""
    if isinstance(message, str):
        return message
    if not isinstance(message, dict):
        return None
    inner = message.get("message")
    if isinstance(inner, dict) and "parts" not in message and "content" not in message:
        return _content_text(inner)
    for key in ("parts", "content", "contents"):
        value = message.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            texts = []
            for part in value:
                text = _part_text(part)
                if text is not None:
                    texts.append(text)
            if texts:
                return texts[0] if len(texts) == 1 else "\n".join(texts)
    return None


def _role(message: Any, default: str | None = None) -> str | None:
    if isinstance(message, dict):
        role = message.get("role")
        if isinstance(role, str):
            return role
        inner = message.get("message")
        if isinstance(inner, dict) and isinstance(inner.get("role"), str):
            return str(inner["role"])
    return default


def _message_list(messages: Any) -> str | list[Any] | None:
    """A message attribute as a list of messages, or the plain text it already is (None: neither)."""
    messages = _json(messages)
    if isinstance(messages, dict):
        return [messages]
    return messages if isinstance(messages, (str, list)) else None


def _messages_text(messages: Any) -> str | None:
    """``role: text`` lines of a message list (as the SDK renders an OpenAI ``messages`` argument)."""
    messages = _message_list(messages)
    if messages is None or isinstance(messages, str):
        return messages
    lines = []
    for message in messages:
        text = _content_text(message)
        if text is None:
            continue
        role = _role(message)
        lines.append(f"{role}: {text}" if role else text)
    return "\n".join(lines) if lines else None


def _first_output(messages: Any) -> str | None:
    """The text of the first output message (the first choice)."""
    messages = _message_list(messages)
    if messages is None or isinstance(messages, str):
        return messages
    for message in messages:
        text = _content_text(message)
        if text is not None:
            return text
    return None


def _system_text(value: Any) -> str | None:
    value = _json(value)
    if isinstance(value, str):
        return f"system: {value}"
    if isinstance(value, list):
        texts = [t for t in (_part_text(p) for p in value) if t is not None]
        return "system: " + "\n".join(texts) if texts else None
    return None


def _indexed(attrs: dict[str, Any], prefix: str, role_suffix: str, content_suffix: str) -> list[tuple[str | None, str]]:
    """OpenLLMetry's ``gen_ai.prompt.0.content`` and OpenInference's ``llm.input_messages.0.message.content``."""
    out: list[tuple[str | None, str]] = []
    for i in range(_MAX_INDEXED):
        role = attrs.get(f"{prefix}{i}{role_suffix}")
        content = attrs.get(f"{prefix}{i}{content_suffix}")
        if role is None and content is None:
            break
        text = _string(content) if not isinstance(content, (list, dict)) else _content_text({"content": content})
        if text is not None:
            out.append((role if isinstance(role, str) else None, text))
    return out


def _lines(pairs: list[tuple[str | None, str]]) -> str:
    return "\n".join(f"{role}: {text}" if role else text for role, text in pairs)


def _event_content(event: Event) -> Any:
    """The content of a legacy message event: its log body, else ``gen_ai.event.content`` or ``content``."""
    if event.body is not None:
        return event.body
    for key in ("gen_ai.event.content", "content", "message"):
        if key in event.attrs:
            return _json(event.attrs[key])
    return None


def _input_text(span: Span, attrs: dict[str, Any]) -> str | None:
    system = _system_text(attrs.get(SYSTEM_INSTRUCTIONS))
    messages = _messages_text(attrs.get(INPUT_MESSAGES)) if INPUT_MESSAGES in attrs else None
    if messages is None:
        for event in span.events:
            if event.name == DETAILS_EVENT:
                messages = _messages_text(event.attrs.get(INPUT_MESSAGES))
                system = system or _system_text(event.attrs.get(SYSTEM_INSTRUCTIONS))
                if messages is not None:
                    break
    if messages is None:
        pairs = []
        for event in span.events:
            role = MESSAGE_EVENTS.get(event.name)
            if role is None:
                continue
            content = _event_content(event)
            text = _content_text(content) if not isinstance(content, str) else content
            if text is not None:
                pairs.append((_role(content, role), text))
        if pairs:
            messages = _lines(pairs)
    if messages is None and ("gen_ai.prompt.0.content" in attrs or "gen_ai.prompt.0.role" in attrs):
        messages = _lines(_indexed(attrs, "gen_ai.prompt.", ".role", ".content")) or None
    if messages is None and ("llm.input_messages.0.message.role" in attrs
                             or "llm.input_messages.0.message.content" in attrs):
        messages = _lines(_indexed(attrs, "llm.input_messages.", ".message.role", ".message.content")) or None
    if messages is None:
        prompt = attrs.get("gen_ai.prompt")
        if prompt is None:
            for event in span.events:
                if event.name == OPENLIT_PROMPT_EVENT:
                    prompt = event.attrs.get("gen_ai.prompt")
                    break
        if prompt is not None:
            messages = _messages_text(prompt)
    if messages is None:
        messages = _string(attrs.get("input.value"))
    if system and messages:
        return f"{system}\n{messages}"
    return messages or system


def _output_text(span: Span, attrs: dict[str, Any]) -> str | None:
    if OUTPUT_MESSAGES in attrs:
        text = _first_output(attrs[OUTPUT_MESSAGES])
        if text is not None:
            return text
    for event in span.events:
        if event.name == DETAILS_EVENT and OUTPUT_MESSAGES in event.attrs:
            text = _first_output(event.attrs[OUTPUT_MESSAGES])
            if text is not None:
                return text
    choices = [e for e in span.events if e.name == CHOICE_EVENT]
    if choices:
        def index(event: Event) -> int:
            content = _event_content(event)
            i = content.get("index") if isinstance(content, dict) else None
            return i if isinstance(i, int) else 0

        content = _event_content(min(choices, key=index))
        text = _content_text(content) if not isinstance(content, str) else content
        if text is not None:
            return text
    if "gen_ai.completion.0.content" in attrs:
        pairs = _indexed(attrs, "gen_ai.completion.", ".role", ".content")
        if pairs:
            return pairs[0][1]
    if "llm.output_messages.0.message.content" in attrs:
        pairs = _indexed(attrs, "llm.output_messages.", ".message.role", ".message.content")
        if pairs:
            return pairs[0][1]
    completion = attrs.get("gen_ai.completion")
    if completion is None:
        for event in span.events:
            if event.name == OPENLIT_COMPLETION_EVENT:
                completion = event.attrs.get("gen_ai.completion")
                break
    if completion is not None:
        text = _first_output(completion)
        if text is not None:
            return text
    return _string(attrs.get("output.value"))


def is_llm_call(span: Span) -> bool:
    attrs = span.attrs
    operation = _first(attrs, OPERATION)
    if isinstance(operation, str):
        return operation.lower() in LLM_OPERATIONS
    kind = attrs.get("openinference.span.kind")
    if isinstance(kind, str):
        return kind.upper() == "LLM"
    if _first(attrs, MODEL) is not None or _first(attrs, PROVIDER) is not None:
        return True
    return any(e.name == DETAILS_EVENT for e in span.events)


_last_second: tuple[int, str] = (-1, "")  # the spans of a request mostly start within one second


def iso_ns(time_ns: int) -> str:
    global _last_second
    if time_ns <= 0:
        return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    seconds, rest = divmod(time_ns, 1_000_000_000)
    last = _last_second
    if last[0] == seconds:
        return f"{last[1]}{rest // 1000:06d}Z"
    try:
        prefix = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
    except (OverflowError, OSError, ValueError):
        return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _last_second = (seconds, prefix)
    return f"{prefix}{rest // 1000:06d}Z"


def event_id(*parts: str) -> str:
    """A stable UUID for an OTLP item: a retried export maps to the same event_id (deduplicated in the store)."""
    digest = bytearray(hashlib.blake2b("\x1f".join(parts).encode("utf-8", "replace"), digest_size=16).digest())
    # As uuid_text(int.from_bytes(digest, "big")), on the bytes: version 4, RFC 4122 variant.
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# -- building events ---------------------------------------------------------------------------------


class Mapper:
    """Turns spans and evaluation events into encoded ``llm_call`` and ``feedback`` events.

    ``redactor`` is a ``str -> str`` (the SDK's :func:`llmsight.redact.redact` by default) or None; the
    text rules (cleaning, the cap, redacting a little past the cut) are the SDK's.
    """

    def __init__(self, *, service: str, environment: str, prices: PriceTable, max_text_chars: int,
                 redactor: Callable[[str], str] | None = default_redact, prompt_version_attribute: str = "") -> None:
        # What another process needs to build the same mapper (llmsight.otlp.workers).
        self.arguments = {"service": service, "environment": environment, "prices": prices,
                          "max_text_chars": max_text_chars, "redactor": redactor,
                          "prompt_version_attribute": prompt_version_attribute}
        self.service = service
        self.environment = environment
        self.prices = prices
        self.max_text_chars = max_text_chars
        self.redactor = redactor
        self.prompt_version_attribute = prompt_version_attribute
        # Short values (provider, operation, scope, metadata keys, user and session ids) repeat from span
        # to span: each distinct one is redacted once. The redactor must be a pure function (the SDK's is).
        self._redact_short = functools.lru_cache(maxsize=SHORT_CACHE)(self._redact_short_uncached)
        # And each distinct (value, limit, redact) is bounded, cut and redacted once: ~10 per span.
        self._short_cached = functools.lru_cache(maxsize=SHORT_CACHE)(self._short_uncached)

    def text(self, value: str | None) -> tuple[str | None, bool]:
        """A text field by the SDK's rules (:func:`llmsight.serialize.bounded_text`)."""
        return bounded_text(value, self.max_text_chars, self.redactor)

    def short(self, value: Any, limit: int = MAX_ID_CHARS, redact: bool = True) -> tuple[str | None, bool]:
        if value is None:  # most optional fields of most spans
            return None, False
        if type(value) is str and len(value) <= _SHORT_CACHED_CHARS:
            return self._short_cached(value, limit, redact)
        return self._short_uncached(value, limit, redact)

    def _short_uncached(self, value: Any, limit: int, redact: bool) -> tuple[str | None, bool]:
        text = _string(value)
        if text is None:
            return None, False
        text, was_cut = cut(clean_text(text), limit)
        if redact and self.redactor is not None:
            return self._redact_short(text)[:limit], was_cut
        return text, was_cut

    def _redact_short_uncached(self, text: str) -> str:
        return self.text(text)[0] or ""

    def prompt_version(self, span: Span) -> Any:
        attrs = span.attrs
        if self.prompt_version_attribute:
            value = attrs.get(self.prompt_version_attribute, span.resource.get(self.prompt_version_attribute))
            if value is not None:
                return value
        name, version = _string(_first(attrs, PROMPT_NAME)), _string(_first(attrs, PROMPT_VERSION))
        if name and version:
            return f"{name}:{version}"
        return version or name

    def llm_call(self, span: Span) -> tuple[str, bytes]:
        """(key, encoded llm_call) for a span that :func:`is_llm_call`."""
        key, line, _ = self.llm_call_with_content(span)
        return key, line

    def llm_call_with_content(self, span: Span) -> tuple[str, bytes, bool]:
        """(key, encoded llm_call, whether it has both an input and an output)."""
        attrs = span.attrs
        model_raw = _string(_first(attrs, MODEL))
        operation = _string(_first(attrs, OPERATION))
        tokens_in = _count(_first(attrs, TOKENS_IN))
        tokens_out = _count(_first(attrs, TOKENS_OUT))
        ttft_s = _number(_first(attrs, TTFT_S))
        cost = _number(_first(attrs, COST))
        error = error_type = None
        if span.status_code == 2 or attrs.get("error.type") is not None:
            exception = next((e for e in span.events if e.name == "exception"), None)
            error_type = _string(attrs.get("error.type"))
            message = span.status_message or None
            if exception is not None:
                error_type = error_type or _string(exception.attrs.get("exception.type"))
                message = message or _string(exception.attrs.get("exception.message"))
            error_type = error_type or "error"
            error = f"{error_type}: {message}" if message else error_type
        text_in, cut_in = self.text(_input_text(span, attrs))
        text_out, cut_out = self.text(_output_text(span, attrs))
        text_err, cut_err = self.text(error)
        name, cut_name = self.short(span.name or operation or "call", redact=False)
        model, cut_model = self.short(model_raw, redact=False)
        prompt_version, cut_version = self.short(self.prompt_version(span), redact=False)
        error_type, cut_type = self.short(error_type, redact=False)
        user_id, cut_user = self.short(_first(attrs, USER))
        session_id, cut_session = self.short(_first(attrs, SESSION))
        service, cut_service = self.short(span.resource.get("service.name") or self.service, redact=False)
        environment, _ = self.short(_first(span.resource, ENVIRONMENT) or self.environment, redact=False)
        tags: dict[str, str] = {"via": "otlp"}
        provider = _string(_first(attrs, PROVIDER))
        for key, value in (("provider", provider), ("operation", operation), ("instrumentation", span.scope)):
            if value:
                tags[key] = self.short(value, 1024)[0] or ""
        # The span id is an id of ours (16 hex digits, checked by decode), like the trace id: not redacted.
        otel: dict[str, Any] = {"span_id": span.span_id}
        extra = {key: attrs[attr] for key, attr in _OTEL_METADATA if attrs.get(attr) is not None}
        cut_meta = False
        if extra:
            values, cut_meta = bounded_json(extra, self._redact_short, depth=3)
            otel.update(values)
        metadata = {"otel": otel}
        latency_ms = max(0, span.end_ns - span.start_ns) / 1e6 if span.end_ns and span.start_ns else 0.0
        event = {
            "type": LLM_CALL,
            "schema_version": SCHEMA_VERSION,
            "event_id": event_id(span.trace_id, span.span_id),
            "trace_id": span.trace_id,
            "parent_id": span.parent_id or None,
            "ts": iso_ns(span.start_ns),
            "service": service or self.service,
            "environment": environment or self.environment,
            "name": name or "call",
            "model": model,
            "prompt_version": prompt_version,
            "input": text_in,
            "output": text_out,
            "error": text_err,
            "error_type": error_type,
            "latency_ms": latency_ms,
            "ttft_ms": None if ttft_s is None else ttft_s * 1000.0,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost_usd": cost if cost is not None else self.prices.cost(model, tokens_in, tokens_out),
            "user_id": user_id,
            "session_id": session_id,
            "tags": tags,
            "metadata": metadata,
            "truncated": any((cut_in, cut_out, cut_err, cut_name, cut_model, cut_version, cut_type, cut_user,
                              cut_session, cut_service, cut_meta)),
        }
        return span.trace_id, encode_event(event), text_in is not None and text_out is not None

    def feedback(self, event: Event) -> tuple[str, bytes] | None:
        """(key, encoded feedback) for a ``gen_ai.evaluation.result`` event, None without a trace id."""
        if not event.trace_id:
            return None
        attrs = event.attrs
        body = event.body if isinstance(event.body, dict) else {}
        name = _string(attrs.get("gen_ai.evaluation.name", body.get("gen_ai.evaluation.name"))) or "evaluation"
        label = _string(attrs.get("gen_ai.evaluation.score.label", body.get("gen_ai.evaluation.score.label")))
        score = _signed_number(attrs.get("gen_ai.evaluation.score.value", body.get("gen_ai.evaluation.score.value")))
        explanation = _string(attrs.get("gen_ai.evaluation.explanation", body.get("gen_ai.evaluation.explanation")))
        comment = f"evaluation {name}: {label}" if label else f"evaluation {name}"
        if explanation:
            comment += f" ({explanation})"
        text, _ = self.text(comment)
        user_id, _ = self.short(_first(attrs, USER))
        record = {
            "type": FEEDBACK,
            "schema_version": SCHEMA_VERSION,
            "event_id": event_id("evaluation", event.trace_id, event.span_id, name, str(event.time_ns)),
            "trace_id": event.trace_id,
            "ts": iso_ns(event.time_ns),
            "accepted": _verdict(label),
            "score": score,
            "comment": text,
            "edited_output": None,
            "user_id": user_id,
        }
        return event.trace_id, encode_event(record)


_YES = frozenset({"pass", "passed", "accepted", "accept", "true", "yes", "good", "correct", "relevant"})
_NO = frozenset({"fail", "failed", "rejected", "reject", "false", "no", "bad", "incorrect", "irrelevant"})


def _verdict(label: str | None) -> bool | None:
    if label is None:
        return None
    word = label.strip().lower()
    return True if word in _YES else False if word in _NO else None


def _signed_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
