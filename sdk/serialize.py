"""Turning whatever the host passes us into safe JSON: never raising, always bounded.

The decorator sees arbitrary objects: recursive structures, 10 MB strings, lone surrogates,
NaN, bytes, objects whose ``__repr__`` raises. Everything here returns *something* and raises
nothing, and its cost is bounded by a character budget rather than by the size of the input.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

_MAX_DEPTH = 12
_SURROGATE = re.compile("[\ud800-\udfff]")
_ELLIPSIS = "…"


class _BudgetSpent(Exception):
    """Raised inside :func:`render` once the character budget is used up."""


def uuid_text(n: int) -> str:
    """Format a 128-bit random integer as a version-4 UUID string (the variant and version bits are set here)."""
    n = (n & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def iso_utc(epoch_s: float) -> str:
    """Epoch seconds as the schema's timestamp: ISO 8601 UTC with microseconds and a ``Z``."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def clean_text(text: str) -> str:
    """Replace lone surrogates (which UTF-8 cannot encode) with U+FFFD; other text is returned as is."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


def safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:
        try:
            return f"<unrepresentable {type(obj).__name__}>"
        except Exception:
            return "<unrepresentable>"


def render(obj: Any, budget: int) -> str:
    """Render any object as JSON-like text of at most about ``budget`` characters.

    Strings come back as they are (the caller truncates); containers are walked with a depth
    limit and a cycle check; pydantic models and dataclasses are rendered by their fields;
    anything else by ``repr``. The cost is proportional to the budget, not to the object.
    """
    if isinstance(obj, str):
        return obj
    parts: list[str] = []
    remaining = [max(budget, 16)]
    try:
        _render_into(obj, parts, remaining, 0, set())
    except _BudgetSpent:
        parts.append(_ELLIPSIS)
    except Exception:  # anything unexpected: fall back to repr, which cannot raise here
        return safe_repr(obj)[:budget]
    return "".join(parts)


def _emit(parts: list[str], remaining: list[int], text: str) -> None:
    if len(text) >= remaining[0]:
        parts.append(text[: remaining[0]])
        remaining[0] = 0
        raise _BudgetSpent
    parts.append(text)
    remaining[0] -= len(text)


def _render_into(obj: Any, parts: list[str], remaining: list[int], depth: int, seen: set[int]) -> None:
    if obj is None or isinstance(obj, bool):
        _emit(parts, remaining, "null" if obj is None else ("true" if obj else "false"))
    elif isinstance(obj, int):
        try:
            _emit(parts, remaining, str(obj))
        except ValueError:  # beyond sys.get_int_max_str_digits
            _emit(parts, remaining, f'"<int of {obj.bit_length()} bits>"')
    elif isinstance(obj, float):
        _emit(parts, remaining, repr(obj))  # nan/inf render as text: this is a text field, not a number
    elif isinstance(obj, str):
        _emit(parts, remaining, json.dumps(obj[: remaining[0] + 1], ensure_ascii=False))
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj[: remaining[0] + 1])
        _emit(parts, remaining, json.dumps(raw.decode("utf-8", "replace"), ensure_ascii=False))
    elif depth >= _MAX_DEPTH or id(obj) in seen:
        _emit(parts, remaining, '"<recursion>"' if id(obj) in seen else f'"{_ELLIPSIS}"')
    elif isinstance(obj, Mapping):
        seen.add(id(obj))
        _emit(parts, remaining, "{")
        for i, (key, value) in enumerate(obj.items()):
            if i:
                _emit(parts, remaining, ", ")
            _emit(parts, remaining, json.dumps(key if isinstance(key, str) else safe_repr(key), ensure_ascii=False))
            _emit(parts, remaining, ": ")
            _render_into(value, parts, remaining, depth + 1, seen)
        _emit(parts, remaining, "}")
        seen.discard(id(obj))
    elif isinstance(obj, (list, tuple, set, frozenset)):
        seen.add(id(obj))
        _emit(parts, remaining, "[")
        for i, value in enumerate(obj):
            if i:
                _emit(parts, remaining, ", ")
            _render_into(value, parts, remaining, depth + 1, seen)
        _emit(parts, remaining, "]")
        seen.discard(id(obj))
    else:
        fields = _fields_of(obj)
        if fields is not None:
            seen.add(id(obj))
            _render_into(fields, parts, remaining, depth + 1, seen)
            seen.discard(id(obj))
        else:
            _emit(parts, remaining, json.dumps(safe_repr(obj)[: remaining[0] + 1], ensure_ascii=False))


def _fields_of(obj: Any) -> Any:
    """The fields of a pydantic model (OpenAI/Anthropic responses are) or a dataclass, else None."""
    try:
        dump = getattr(obj, "model_dump", None)
        if callable(dump) and not isinstance(obj, type):
            return dump()
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
    except Exception:
        return None
    return None


def json_value(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of a tags/metadata value: finite numbers, text, lists and string-keyed objects."""
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 63:
            return str(value)
        return clean_text(value) if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth < _MAX_DEPTH and isinstance(value, Mapping):
        return {clean_text(k if isinstance(k, str) else safe_repr(k)): json_value(v, depth + 1) for k, v in value.items()}
    if depth < _MAX_DEPTH and isinstance(value, (list, tuple)):
        return [json_value(v, depth + 1) for v in value]
    return clean_text(render(value, 1024))


def encode_line(event: dict[str, Any]) -> bytes:
    """One event as compact UTF-8 JSON terminated by a newline; never raises for a well-formed event dict."""
    try:
        text = json.dumps(event, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):
        text = json.dumps(json_value(event), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    # errors="replace" is the last line of defence against a lone surrogate that slipped through.
    return text.encode("utf-8", "replace") + b"\n"


# -- bounds applied before an event is queued or built ---------------------------------------------

_HOST_NODES = 256  # containers and strings bounded per call record on the host, at most


def bound_for_queue(value: Any, cap: int) -> tuple[Any, int]:
    """A copy of a call argument or result that is safe to hold in the queue, and its approximate size.

    Runs on the host's call path, so its cost is bounded: strings and bytes longer than ``cap`` are
    cut to ``cap`` (the worker still sees that they were longer than the text limit and flags the
    event truncated); lists, tuples and dicts are copied (so later changes by the host do not show),
    keeping at most ``cap // 8`` items (more could never fit in the rendered text), three levels deep
    (the arguments, a message list, a message), at most 256 containers and strings per call.
    Other objects are kept as they are and counted at a nominal size.
    """
    budget = [_HOST_NODES]
    return _bound(value, cap, 0, budget)


def _bound(value: Any, cap: int, depth: int, budget: list[int]) -> tuple[Any, int]:
    kind = type(value)
    if kind is str or kind is bytes or kind is bytearray:
        if len(value) > cap:
            value = value[:cap]
        return value, len(value) + 64
    if kind is list or kind is tuple or kind is dict:
        if budget[0] <= 0:
            return value, 64 + 16 * len(value)
        budget[0] -= 1
        keep = max(1, cap // 8)
        size = 64
        if kind is dict:
            out: dict[Any, Any] = {}
            for i, (key, item) in enumerate(value.items()):
                if i >= keep:
                    out["…"] = f"{len(value) - keep} more"
                    break
                if depth < 3 and budget[0] > 0:
                    item, item_size = _bound(item, cap, depth + 1, budget)
                else:
                    item_size = 64
                out[key] = item
                size += item_size + 16
            return out, size
        items: list[Any] = []
        for i, item in enumerate(value):
            if i >= keep:
                items.append("…")
                break
            if depth < 3 and budget[0] > 0:
                item, item_size = _bound(item, cap, depth + 1, budget)
            else:
                item_size = 64
            items.append(item)
            size += item_size + 8
        return (tuple(items) if kind is tuple else items), size
    return value, 256


def cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, and whether it was cut."""
    if len(text) > limit:
        return text[:limit], True
    return text, False


def bounded_json(value: Any, redact: Any, *, depth: int = 4, items: int = 64, text: int = 1024) -> tuple[Any, bool]:
    """A JSON-safe copy of a metadata value within bounds, strings redacted; returns (value, truncated).

    At most ``depth`` levels and ``items`` entries per container; strings (and keys) cut to ``text``
    characters and passed through ``redact`` (``str -> str``, or None).
    """
    cut_any = [False]

    def walk(obj: Any, level: int) -> Any:
        if obj is None or isinstance(obj, bool):
            return obj
        if isinstance(obj, int):
            return obj if abs(obj) < 1 << 63 else walk(render(obj, 64), level)
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else None
        if isinstance(obj, str):
            value, was_cut = cut(clean_text(obj), text)
            cut_any[0] |= was_cut
            return redact(value) if redact is not None else value
        if level >= depth:
            cut_any[0] = True
            return _ELLIPSIS
        if isinstance(obj, Mapping):
            out = {}
            for i, (key, item) in enumerate(obj.items()):
                if i >= items:
                    cut_any[0] = True
                    break
                name = walk(key if isinstance(key, str) else safe_repr(key), level)
                out[name] = walk(item, level + 1)
            return out
        if isinstance(obj, (list, tuple)):
            seq = []
            for i, item in enumerate(obj):
                if i >= items:
                    cut_any[0] = True
                    break
                seq.append(walk(item, level + 1))
            return seq
        return walk(render(obj, text + 1), level)

    return walk(value, 0), cut_any[0]


REDACT_SLACK = 256  # redact a little past the cut so a secret is not half-kept at the boundary


def bounded_text(text: str | None, limit: int, redact: Callable[[str], Any] | None,
                 on_error: Callable[[Exception], Any] | None = None) -> tuple[str | None, bool]:
    """One text field as it may leave the process: cleaned, redacted, cut to ``limit``; returns (text, truncated).

    The text is cut a little past ``limit`` before redaction (so redaction's work is bounded and a secret
    at the boundary is still seen whole), then to ``limit``. A redactor that raises makes the field
    ``[redaction failed]``: text that was to be redacted is never shipped as it is. The SDK's client and
    the OTLP receiver both use this, so a field means the same whichever way it came in.
    """
    if text is None:
        return None, False
    truncated = len(text) > limit
    if truncated:
        text = text[: limit + REDACT_SLACK]
    text = clean_text(text)
    if redact is not None:
        try:
            redacted = redact(text)
        except Exception as exc:
            if on_error is not None:
                on_error(exc)
            return "[redaction failed]", truncated
        text = redacted if isinstance(redacted, str) else clean_text(safe_repr(redacted))
    if len(text) > limit:
        text, truncated = text[:limit], True
    return text, truncated
