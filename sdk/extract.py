"""Reading a monitored call: its input as text, its output as text, token usage and the model.

LLM client libraries are read by their shape (duck typing), never imported:

* OpenAI chat completions: ``.choices[0].message.content``; streamed chunks ``.choices[0].delta.content``;
  usage ``.usage.prompt_tokens`` / ``.usage.completion_tokens``.
* OpenAI completions ``.choices[0].text``; the Responses API ``.output_text``.
* Anthropic messages: ``.content[i].text`` for text blocks; usage ``.usage.input_tokens`` /
  ``.usage.output_tokens``; stream events ``content_block_delta`` / ``message_start`` / ``message_delta``.
* The same shapes as plain dicts (raw JSON responses).

All of it runs in the worker thread, and every function here returns a value instead of raising.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from llmsight.serialize import render

_MISSING = object()


def _get(obj: Any, name: str) -> Any:
    """``obj[name]`` for a dict, ``obj.name`` otherwise; None when absent or when the access raises."""
    try:
        if isinstance(obj, dict):
            return obj.get(name)
        return getattr(obj, name, None)
    except Exception:
        return None


def _first(seq: Any) -> Any:
    if isinstance(seq, (list, tuple)) and seq:
        return seq[0]
    return None


def _count(value: Any) -> int | None:
    """A token count: a non-negative whole number, else None (NaN, strings and negatives are dropped)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    return None


def content_text(content: Any) -> str | None:
    """Text of a message ``content``: a string, or a list of parts/blocks whose text parts are joined."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
                continue
            text = _get(part, "text")
            if isinstance(text, str):
                texts.append(text)
        return "".join(texts) if texts else None
    return None


def messages_text(messages: Sequence[Any], budget: int) -> str:
    """A chat transcript as ``role: content`` lines (the usual ``messages`` argument)."""
    lines = []
    for message in messages:
        role = _get(message, "role")
        text = content_text(_get(message, "content"))
        if text is None:
            text = render(message, budget)
        lines.append(f"{role}: {text}" if isinstance(role, str) else text)
    return "\n".join(lines)


def _looks_like_messages(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(_get(m, "role") is not None for m in value[:8])


def input_text(params: tuple[str, ...], skip_self: bool, args: tuple[Any, ...], kwargs: dict[str, Any], budget: int) -> str | None:
    """The call's arguments as text.

    A ``prompt`` or ``messages`` keyword, or a single positional string or message list, is used
    as the text itself; anything else is rendered as a JSON-like object of argument names to values.
    """
    if skip_self and args:
        args = args[1:]
        params = params[1:]
    for key in ("messages", "prompt"):
        if key in kwargs:
            value = kwargs[key]
            if isinstance(value, str):
                return value
            if _looks_like_messages(value):
                return messages_text(value, budget)
            return str(render(value, budget))
    if len(args) == 1 and not kwargs:
        only = args[0]
        if isinstance(only, str):
            return only
        if _looks_like_messages(only):
            return messages_text(only, budget)
    if not args and not kwargs:
        return None
    named: dict[str, Any] = {}
    for i, value in enumerate(args):
        named[params[i] if i < len(params) else f"arg{i}"] = value
    named.update(kwargs)
    return str(render(named, budget))


def output_text(result: Any, budget: int) -> str | None:
    """The text of a return value: a string, an OpenAI/Anthropic-shaped response, or a rendering of it."""
    if result is None:
        return None
    if isinstance(result, str):
        return result
    choice = _first(_get(result, "choices"))
    if choice is not None:
        message = _get(choice, "message")
        if message is not None:
            text = content_text(_get(message, "content"))
            if text is not None:
                return text
            calls = _get(message, "tool_calls")
            if calls:
                return str(render(calls, budget))
        text = _get(choice, "text")
        if isinstance(text, str):
            return text
    text = content_text(_get(result, "content")) if not isinstance(result, (list, tuple)) else None
    if text is not None:
        return text
    text = _get(result, "output_text")
    if isinstance(text, str):
        return text
    return str(render(result, budget))


def usage_of(result: Any) -> tuple[int | None, int | None]:
    """(tokens_in, tokens_out) from ``result.usage`` in either the OpenAI or the Anthropic naming."""
    usage = _get(result, "usage")
    if usage is None or isinstance(result, str):
        return None, None
    tokens_in = _count(_get(usage, "prompt_tokens"))
    if tokens_in is None:
        tokens_in = _count(_get(usage, "input_tokens"))
    tokens_out = _count(_get(usage, "completion_tokens"))
    if tokens_out is None:
        tokens_out = _count(_get(usage, "output_tokens"))
    return tokens_in, tokens_out


def model_of(result: Any) -> str | None:
    if isinstance(result, (str, list, tuple)) or result is None:
        return None
    model = _get(result, "model")
    return model if isinstance(model, str) else None


def stream_summary(chunks: Sequence[Any], budget: int) -> tuple[str | None, int | None, int | None, str | None]:
    """Assemble streamed chunks into (text, tokens_in, tokens_out, model).

    Chunks may be strings, bytes, OpenAI chunks (``choices[0].delta.content``, a final chunk with
    ``usage``) or Anthropic stream events; anything else is rendered.
    """
    texts: list[str] = []
    size = 0
    tokens_in = tokens_out = None
    model = None
    for chunk in chunks:
        if size > budget:
            break
        text: str | None = None
        if isinstance(chunk, str):
            text = chunk
        elif isinstance(chunk, (bytes, bytearray)):
            text = bytes(chunk).decode("utf-8", "replace")
        else:
            model = model or model_of(chunk)
            kind = _get(chunk, "type")
            choice = _first(_get(chunk, "choices"))
            if choice is not None:
                delta = _get(choice, "delta")
                text = content_text(_get(delta, "content")) if delta is not None else _get(choice, "text")
                text = text if isinstance(text, str) else None
            elif kind == "content_block_delta":
                delta_text = _get(_get(chunk, "delta"), "text")
                text = delta_text if isinstance(delta_text, str) else None
            elif kind == "message_start":
                message = _get(chunk, "message")
                model = model or model_of(message)
                tokens_in, _ = usage_of(message)
            elif kind is None and _get(chunk, "usage") is None:
                plain = _get(chunk, "text")
                text = plain if isinstance(plain, str) else render(chunk, budget)
            chunk_in, chunk_out = usage_of(chunk)
            tokens_in = chunk_in if chunk_in is not None else tokens_in
            tokens_out = chunk_out if chunk_out is not None else tokens_out
        if text:
            texts.append(text)
            size += len(text)
    return ("".join(texts) if texts else None), tokens_in, tokens_out, model
