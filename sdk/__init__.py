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

from llmsight import client as _client
from llmsight.client import init
from llmsight.decorator import monitor
from llmsight.guard import internal_error as _internal_error
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
