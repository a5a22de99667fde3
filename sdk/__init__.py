"""llmsight: monitoring for LLM features in production.

::

    import llmsight

    llmsight.init(service="support-bot")          # optional: LLMSIGHT_* variables work too

    @llmsight.monitor(model="gpt-4o-mini", prompt_version="v3")
    def answer(question: str) -> str:
        ...

    with llmsight.context(user_id="u-42", session_id="s-7"):
        text = answer("Where is my card?")
        trace_id = llmsight.current_trace_id()     # the trace of the call that just returned

    llmsight.feedback(trace_id, accepted=True)     # later, from any request or process

Nothing here raises into the host application or blocks it: events are queued in memory and
sent by a background thread to the sink (``file://`` spool by default, or ``kafka://``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from llmsight import client as _client
from llmsight.decorator import monitor
from llmsight.guard import internal_error as _internal_error
from llmsight.sinks import Sink as _Sink
from llmsight.tracing import context, current_trace_id

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "context",
    "current_trace_id",
    "feedback",
    "flush",
    "init",
    "monitor",
    "shutdown",
    "stats",
]


def init(
    sink: str | _Sink | None = None,
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
    - ``redact``: True (default: e-mails, phones, cards, IBANs, keys, tokens, IPs), False, or
      your own ``str -> str`` function.
    - ``prices``: ``{"model": [input, output]}`` in USD per 1M tokens, over the defaults and
      the ``LLMSIGHT_PRICES`` file.
    - ``max_text_chars``, ``queue_size``, ``batch_size``, ``flush_interval``: see the settings.
    - ``disabled``: monitored functions run untouched and nothing is recorded.

    Calling ``init`` again replaces the previous configuration (its queue is flushed first).
    """
    try:
        _client.configure(sink, service, environment, sample_rate, redact, prices=prices,
                          max_text_chars=max_text_chars, queue_size=queue_size, batch_size=batch_size,
                          flush_interval=flush_interval, disabled=disabled)
    except Exception as exc:
        _internal_error("init", exc)


def feedback(
    trace_id: str,
    accepted: bool | None = None,
    score: float | None = None,
    comment: str | None = None,
    edited_output: str | None = None,
    user_id: str | None = None,
) -> None:
    """Record what the user did with the answer of trace ``trace_id`` (a ``feedback`` event).

    ``trace_id`` comes from :func:`current_trace_id`; it can be sent from another request or
    process. ``score`` must be a finite number (anything else is recorded as null).
    """
    try:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            score = None
        _client.submit_feedback(trace_id, accepted, score, comment, edited_output, user_id)
    except Exception as exc:
        _internal_error("feedback", exc)


def flush(timeout: float = 5.0) -> bool:
    """Send everything queued so far; returns True if it was all sent (or spilled) within ``timeout`` s."""
    try:
        done: bool = _client.flush(timeout)
        return done
    except Exception as exc:
        _internal_error("flush", exc)
        return False


def shutdown(timeout: float = 5.0) -> bool:
    """Flush and stop the worker within ``timeout`` s. Later calls run unmonitored until ``init``."""
    try:
        done: bool = _client.shutdown(timeout)
        return done
    except Exception as exc:
        _internal_error("shutdown", exc)
        return False


def stats() -> dict[str, int]:
    """Counters of this process: ``sent``, ``dropped``, ``spilled`` and ``failed`` events."""
    try:
        counts: dict[str, int] = _client.stats()
        return counts
    except Exception as exc:
        _internal_error("stats", exc)
        return {"sent": 0, "dropped": 0, "spilled": 0, "failed": 0}
