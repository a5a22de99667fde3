"""Traces, spans and the caller's context, carried by ``contextvars``.

* Every monitored call is a span. A call made while another monitored call is running (in the
  same thread, or the same asyncio task) joins its trace: same ``trace_id``, and its
  ``parent_id`` is the outer call's ``event_id``.
* The sampling decision is taken once, at the root of a trace, and inherited by its children.
* :func:`context` attaches ``user_id``, ``session_id`` and ``tags`` to every call inside it.

**Getting a trace id for feedback.** :func:`current_trace_id` returns

1. inside a monitored function (sync, async, or a streaming generator's body): the id of the
   trace that call belongs to;
2. outside any monitored call: the trace id of the most recent *top-level* monitored call that
   finished in this thread or asyncio task, so ``answer = ask(q); tid = current_trace_id()``
   works right after the call returns, and ``answer = await ask(q)`` does too.

A call started with ``asyncio.create_task`` or ``asyncio.gather`` runs in a copy of the
context, so case 2 does not see it from the outside: call ``current_trace_id()`` inside the
monitored function (or return it from there). Store the id with the answer to send
``feedback(trace_id, ...)`` later, from any request or process.

Ids are random 128-bit integers on the hot path; they become UUID strings only when read.
"""

from __future__ import annotations

import contextvars
import random
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from llmsight.guard import internal_error
from llmsight.serialize import uuid_text

_rng = random.Random()
new_id = _rng.getrandbits  # new_id(128): about 0.1 µs, against 2 µs for uuid.uuid4()


def reseed() -> None:
    """Called in a forked child: without it, parent and child would draw the same ids."""
    _rng.seed()


class Span:
    """One monitored call in flight: its ids and whether its trace is sampled."""

    __slots__ = ("trace", "event", "parent", "sampled")

    def __init__(self, trace: int, event: int, parent: int, sampled: bool) -> None:
        self.trace = trace
        self.event = event
        self.parent = parent  # 0 at the root of a trace
        self.sampled = sampled


CURRENT_SPAN: contextvars.ContextVar[Span | None] = contextvars.ContextVar("llmsight_span", default=None)
LAST_TRACE: contextvars.ContextVar[int] = contextvars.ContextVar("llmsight_last_trace", default=0)
CURRENT_CONTEXT: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("llmsight_context", default=None)


def current_trace_id() -> str | None:
    """The trace id to attach feedback to (see the module docstring), or None if there is none yet."""
    span = CURRENT_SPAN.get()
    if span is not None:
        return str(uuid_text(span.trace))
    last = LAST_TRACE.get()
    return str(uuid_text(last)) if last else None


class CallContext:
    """The user, session and tags that :func:`context` attaches to calls."""

    __slots__ = ("user_id", "session_id", "tags")

    def __init__(self, user_id: str | None, session_id: str | None, tags: dict[str, str]) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.tags = tags


# Bounds on tags and ids. The host side keeps one item or character more than the bound, so the
# worker, which cuts to the bound, knows to flag the event truncated.
MAX_TAGS = 64
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 1024
MAX_ID_CHARS = 256


def _text_of(value: Any, limit: int) -> str:
    if isinstance(value, str):
        return value[: limit + 1]
    try:
        return str(value)[: limit + 1]
    except Exception:
        return "<unprintable>"


def normalise_tags(tags: Mapping[str, Any] | Iterable[str] | None) -> dict[str, str]:
    """Tags as a string-to-string map; a plain list of names becomes ``{name: "true"}``.

    Never raises: anything that is not a mapping or an iterable of names (``tags=5``) is logged
    once and ignored. At most ``MAX_TAGS + 1`` tags are kept, each key and value cut just past its bound.
    """
    if not tags:
        return {}
    try:
        out: dict[str, str] = {}
        if isinstance(tags, Mapping):
            pairs: Iterable[tuple[Any, Any]] = tags.items()
        elif isinstance(tags, str):
            pairs = ((tags, "true"),)
        else:
            pairs = ((t, "true") for t in tags)
        for key, value in pairs:
            if len(out) > MAX_TAGS:
                break
            out[_text_of(key, MAX_TAG_KEY_CHARS)] = "" if value is None else _text_of(value, MAX_TAG_VALUE_CHARS)
        return out
    except Exception as exc:
        internal_error(f"reading tags of type {type(tags).__name__} (expected a mapping or a list of names)", exc)
        return {}


def bounded_id(value: Any) -> str | None:
    """A user, session or trace id as text, cut just past ``MAX_ID_CHARS``; None stays None."""
    return None if value is None else _text_of(value, MAX_ID_CHARS)


class context:  # noqa: N801 - a function-like context manager, as in ``with llmsight.context(...)``
    """Attach ``user_id``, ``session_id`` and ``tags`` to every monitored call inside the block.

    Nested blocks inherit from the outer one (tags are merged, inner values win). Works in
    threads and asyncio tasks alike, because it is carried by ``contextvars``::

        with llmsight.context(user_id="u-42", session_id="s-7", tags={"plan": "pro"}):
            answer = ask(question)
    """

    def __init__(
        self,
        user_id: str | None = None,
        session_id: str | None = None,
        tags: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> None:
        self._values = (user_id, session_id, tags)
        self._tokens: list[contextvars.Token[CallContext | None]] = []

    def __enter__(self) -> context:
        user_id, session_id, tags = self._values
        outer = CURRENT_CONTEXT.get()
        merged_tags = dict(outer.tags) if outer is not None else {}
        try:
            merged_tags.update(normalise_tags(tags))
        except Exception:  # a tags object that cannot be read must not break the host's block
            pass
        ctx = CallContext(
            bounded_id(user_id) if user_id is not None else (outer.user_id if outer else None),
            bounded_id(session_id) if session_id is not None else (outer.session_id if outer else None),
            merged_tags if len(merged_tags) <= MAX_TAGS + 1 else dict(list(merged_tags.items())[: MAX_TAGS + 1]),
        )
        self._tokens.append(CURRENT_CONTEXT.set(ctx))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._tokens:
            try:
                CURRENT_CONTEXT.reset(self._tokens.pop())
            except ValueError:  # exited in another context (e.g. a generator moved between tasks)
                CURRENT_CONTEXT.set(None)

    async def __aenter__(self) -> context:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)
