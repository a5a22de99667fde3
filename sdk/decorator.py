"""``@llmsight.monitor``: record each call of a function, whatever kind of function it is.

Used bare (``@monitor``) or with arguments (``@monitor(name=..., model=..., prompt_version=...,
tags=...)``) on sync functions, async functions, generators and async generators (streaming:
the output is assembled from the chunks and the time to first token recorded), and on methods.

On the host's call path the wrapper only takes ids and timestamps and queues a small record;
everything else (input and output text, token usage, cost, redaction, JSON) is done by the
worker thread. Lists and dicts passed as arguments are copied shallowly first, so a chat
history appended to after the call is recorded as it was at the call. The host's exception is
recorded and re-raised unchanged; a failure inside llmsight never reaches the host.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from typing import Any, TypeVar, overload

from llmsight.client import CallMeta, Client, active_client
from llmsight.guard import internal_error
from llmsight.schema import LLM_CALL
from llmsight.serialize import bound_for_queue
from llmsight.tracing import (
    CURRENT_CONTEXT,
    CURRENT_SPAN,
    LAST_TRACE,
    MAX_ID_CHARS,
    Span,
    bounded_id,
    new_id,
    normalise_tags,
)

F = TypeVar("F", bound=Callable[..., Any])

_now = time.time
_clock = time.perf_counter_ns


def _open_span(client: Client) -> tuple[Span, Span | None]:
    parent = CURRENT_SPAN.get()
    if parent is None:
        return Span(new_id(128), new_id(128), 0, client.sampled()), None
    return Span(parent.trace, new_id(128), parent.event, parent.sampled), parent


def _begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[
        Client, Span, Span | None, tuple[Any, ...], dict[str, Any], int] | None:
    """Open the call's span: the client, the span, its parent and the arguments as they are now (for
    the record: a list or dict the function changes later is recorded as it was passed); None when
    the call is not monitored (before init, disabled, or llmsight failed). The last item is the
    approximate size of the recorded arguments, for the queue's byte bound."""
    try:
        client = active_client()
        if client is None:
            return None
        span, parent = _open_span(client)
        if span.sampled and (args or kwargs):
            # Bounded copies: a list or dict the function changes later is recorded as it was passed,
            # and a 10 MB argument waits in the queue as at most the text cap.
            args, size_args = bound_for_queue(args, client.queue_cap)
            kwargs, size_kwargs = bound_for_queue(kwargs, client.queue_cap)
            return client, span, parent, args, kwargs, size_args + size_kwargs
        return client, span, parent, args, kwargs, 0
    except Exception as error:
        internal_error("starting a monitored call", error)
        return None


def _finish(client: Client, meta: CallMeta, span: Span, parent: Span | None, args: tuple[Any, ...],
            kwargs: dict[str, Any], args_size: int, result: Any, chunks: list[Any] | None, exc: BaseException | None,
            t_wall: float, latency_ns: int, ttft_ns: int | None) -> None:
    """Close the call: remember a root span's trace, and queue the record if it is sampled."""
    if parent is None:
        LAST_TRACE.set(span.trace)
    if span.sampled:
        try:
            size = 512 + args_size
            if result is not None:
                result, result_size = bound_for_queue(result, client.queue_cap)
                size += result_size
            if chunks is not None:
                size += 64 * len(chunks)
            # The span's ids, not the span: the record is then the one object per call that waits in the
            # queue for the garbage collector to count (see Worker._fresh_state).
            client.worker.submit((LLM_CALL, meta, span.trace, args, kwargs, result, chunks, exc, t_wall, latency_ns,
                                  ttft_ns, CURRENT_CONTEXT.get(), span.event, span.parent), size)
        except Exception as error:
            internal_error("queueing an event", error)


def _text_of_id(value: Any) -> str | None:
    text: str | None = bounded_id(value)
    return text


def _optional_text(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return str(value[: MAX_ID_CHARS + 1]) if isinstance(value, str) else None
    internal_error(f"@monitor({what}=...)", TypeError(f"{what} must be a string, got {type(value).__name__}"))
    return _text_of_id(value)


def _meta_for(fn: Callable[..., Any], name: Any, model: Any, prompt_version: Any, tags: Any) -> CallMeta:
    """What is known before the first call; bad arguments are logged once and replaced, never raised."""
    try:
        params = tuple(inspect.signature(fn).parameters)
    except Exception:  # no signature (a builtin), or a broken __signature__
        params = ()
    fallback = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or "call"
    return CallMeta(
        name=_optional_text(name, "name") or _optional_text(fallback if isinstance(fallback, str) else None,
                                                            "name") or "call",
        model=_optional_text(model, "model"),
        prompt_version=_optional_text(prompt_version, "prompt_version"),
        tags=normalise_tags(tags),
        params=params,
        skip_self=bool(params) and params[0] in ("self", "cls"),
    )


def _wrap_function(fn: Callable[..., Any], meta: CallMeta) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _begin(args, kwargs)
        if call is None:  # before init, disabled, or llmsight failed: the plain call
            return fn(*args, **kwargs)
        client, span, parent, rec_args, rec_kwargs, rec_size = call
        token = CURRENT_SPAN.set(span)
        t_wall = _now()
        start = _clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            latency = _clock() - start
            CURRENT_SPAN.reset(token)
            _finish(client, meta, span, parent, rec_args, rec_kwargs, rec_size, None, None, exc, t_wall, latency, None)
            raise
        latency = _clock() - start
        CURRENT_SPAN.reset(token)
        _finish(client, meta, span, parent, rec_args, rec_kwargs, rec_size, result, None, None, t_wall, latency, None)
        return result

    return wrapper


def _wrap_coroutine(fn: Callable[..., Any], meta: CallMeta) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _begin(args, kwargs)
        if call is None:  # before init, disabled, or llmsight failed: the plain call
            return await fn(*args, **kwargs)
        client, span, parent, rec_args, rec_kwargs, rec_size = call
        token = CURRENT_SPAN.set(span)
        t_wall = _now()
        start = _clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            latency = _clock() - start
            CURRENT_SPAN.reset(token)
            _finish(client, meta, span, parent, rec_args, rec_kwargs, rec_size, None, None, exc, t_wall, latency, None)
            raise
        latency = _clock() - start
        CURRENT_SPAN.reset(token)
        _finish(client, meta, span, parent, rec_args, rec_kwargs, rec_size, result, None, None, t_wall, latency, None)
        return result

    return wrapper


def _wrap_generator(fn: Callable[..., Any], meta: CallMeta) -> Callable[..., Any]:
    # The span is set around each step only (not across yields): the consumer's code between
    # chunks is not part of this call, and a token must be reset in the context that set it.
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        call = _begin(args, kwargs)
        if call is None:
            return (yield from fn(*args, **kwargs))
        client, span, parent, rec_args, rec_kwargs, rec_size = call
        chunks: list[Any] = []
        ttft: int | None = None
        t_wall = _now()
        start = _clock()
        gen = fn(*args, **kwargs)
        step: Callable[[Any], Any] = gen.send
        value: Any = None
        while True:
            token = CURRENT_SPAN.set(span)
            try:
                chunk = step(value)
            except StopIteration as stop:
                _finish_stream(client, meta, span, parent, rec_args, rec_kwargs, rec_size, chunks, None, t_wall, start, ttft)
                return stop.value
            except BaseException as exc:
                _finish_stream(client, meta, span, parent, rec_args, rec_kwargs, rec_size, chunks, exc, t_wall, start, ttft)
                raise
            finally:
                CURRENT_SPAN.reset(token)
            if ttft is None:
                ttft = _clock() - start
            chunks.append(chunk)
            try:
                value = yield chunk
                step = gen.send
            except GeneratorExit:  # the consumer stopped early: record what was streamed so far
                gen.close()
                _finish_stream(client, meta, span, parent, rec_args, rec_kwargs, rec_size, chunks, None, t_wall, start, ttft)
                raise
            except BaseException as exc:
                step, value = gen.throw, exc

    return wrapper


def _wrap_async_generator(fn: Callable[..., Any], meta: CallMeta) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        call = _begin(args, kwargs)
        if call is None:
            async for item in fn(*args, **kwargs):
                yield item
            return
        client, span, parent, rec_args, rec_kwargs, rec_size = call
        chunks: list[Any] = []
        ttft: int | None = None
        t_wall = _now()
        start = _clock()
        agen = fn(*args, **kwargs)
        step: Callable[[Any], Any] = agen.asend
        value: Any = None
        while True:
            token = CURRENT_SPAN.set(span)
            try:
                chunk = await step(value)
            except StopAsyncIteration:
                _finish_stream(client, meta, span, parent, rec_args, rec_kwargs, rec_size, chunks, None, t_wall, start, ttft)
                return
            except BaseException as exc:
                _finish_stream(client, meta, span, parent, rec_args, rec_kwargs, rec_size, chunks, exc, t_wall, start, ttft)
                raise
            finally:
                CURRENT_SPAN.reset(token)
            if ttft is None:
                ttft = _clock() - start
            chunks.append(chunk)
            try:
                value = yield chunk
                step = agen.asend
            except GeneratorExit:
                await agen.aclose()
                _finish_stream(client, meta, span, parent, rec_args, rec_kwargs, rec_size, chunks, None, t_wall, start, ttft)
                raise
            except BaseException as exc:
                step, value = agen.athrow, exc

    return wrapper


def _finish_stream(client: Client, meta: CallMeta, span: Span, parent: Span | None, args: tuple[Any, ...],
                   kwargs: dict[str, Any], args_size: int, chunks: list[Any], exc: BaseException | None, t_wall: float,
                   start: int, ttft: int | None) -> None:
    _finish(client, meta, span, parent, args, kwargs, args_size, None, chunks, exc, t_wall, _clock() - start, ttft)


def _wrap(fn: Any, meta_args: tuple[Any, Any, Any, Any]) -> Any:
    try:
        if isinstance(fn, (classmethod, staticmethod)):
            return type(fn)(_wrap(fn.__func__, meta_args))
        if not callable(fn):
            internal_error("@monitor", TypeError(f"expected a function, got {type(fn).__name__}; left unmonitored"))
            return fn
        meta = _meta_for(fn, *meta_args)
        if inspect.isasyncgenfunction(fn):
            return _wrap_async_generator(fn, meta)
        if inspect.isgeneratorfunction(fn):
            return _wrap_generator(fn, meta)
        if inspect.iscoroutinefunction(fn):
            return _wrap_coroutine(fn, meta)
        return _wrap_function(fn, meta)
    except Exception as exc:  # never break the host's import: the function runs unmonitored
        internal_error("@monitor", exc)
        return fn


@overload
def monitor(fn: F) -> F: ...


@overload
def monitor(
    fn: None = None,
    *,
    name: str | None = None,
    model: str | None = None,
    prompt_version: str | None = None,
    tags: Mapping[str, Any] | Iterable[str] | None = None,
) -> Callable[[F], F]: ...


def monitor(
    fn: Any = None,
    *,
    name: str | None = None,
    model: str | None = None,
    prompt_version: str | None = None,
    tags: Mapping[str, Any] | Iterable[str] | None = None,
) -> Any:
    """Record every call of the decorated function as an ``llm_call`` event.

    ``name`` defaults to the function's qualified name; ``model`` defaults to the ``model`` the
    response reports (or a ``model=`` keyword argument); ``tags`` are added to the context's.
    """
    meta_args = (name, model, prompt_version, tags)
    if fn is not None and not callable(fn) and not isinstance(fn, (classmethod, staticmethod)):
        # ``@monitor("name")`` or ``@monitor(5)``: a misplaced argument. Decorate anyway, unnamed.
        internal_error("@monitor", TypeError(f"arguments must be keywords (name=...), got {type(fn).__name__}"))
        return lambda f: _wrap(f, meta_args)
    if fn is not None:
        return _wrap(fn, meta_args)
    return lambda f: _wrap(f, meta_args)
