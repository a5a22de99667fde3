"""The one guard around every SDK-side step: llmsight must never raise into the host app.

Compare Sentry's ``capture_internal_exceptions()``: every step the SDK takes on its own behalf
(building an event, redacting it, writing it, talking to Kafka) runs inside :func:`guard` or is
wrapped by :func:`internal_error`. A failure is logged (once per distinct message, so a broken
sink cannot flood the host's logs) and swallowed; the host's own call always goes on.
"""

from __future__ import annotations

import logging
from types import TracebackType

log = logging.getLogger("llmsight")

_seen: set[str] = set()
_SEEN_LIMIT = 256


def internal_error(where: str, exc: BaseException) -> None:
    """Log an SDK-internal failure; the first time a given (where, type) pair fails it includes the traceback."""
    try:
        key = f"{where}:{type(exc).__name__}"
        if key in _seen:
            log.debug("llmsight: %s failed again: %r", where, exc)
            return
        if len(_seen) < _SEEN_LIMIT:
            _seen.add(key)
        log.warning("llmsight: %s failed (the host app is not affected): %r", where, exc, exc_info=exc)
    except Exception:  # logging itself failed (a closed stream at exit): nothing more we can do
        pass


class guard:  # noqa: N801 - used like a function: ``with guard("spool write"):``
    """Context manager that swallows and logs any ``Exception`` raised inside it.

    ``BaseException``s that are not ``Exception`` (KeyboardInterrupt, SystemExit) pass through:
    they are the host's, not ours.
    """

    __slots__ = ("where",)

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is not None and isinstance(exc, Exception):
            internal_error(self.where, exc)
            return True
        return False


_last_warned: dict[str, float] = {}
_suppressed: dict[str, int] = {}
WARN_EVERY_S = 60.0


def warn_every(key: str, message: str, *args: object, interval: float = WARN_EVERY_S) -> None:
    """Log a warning at most once per ``interval`` seconds per ``key`` (a full disk fails every batch);
    the next warning says how many were held back."""
    try:
        import time

        now = time.monotonic()
        last = _last_warned.get(key)
        if last is not None and now - last < interval:
            _suppressed[key] = _suppressed.get(key, 0) + 1
            return
        _last_warned[key] = now
        held = _suppressed.pop(key, 0)
        suffix = f" ({held} more like this in the last {interval:.0f} s)" if held else ""
        log.warning("llmsight: " + message + suffix, *args)
    except Exception:
        pass
