"""GenAI content sent as OTLP log records, joined with its span by trace and span id, in either order.

Instrumentations may put a call's prompt and answer on log records instead of the span: the official
OpenAI instrumentation sends ``gen_ai.user.message``/``gen_ai.choice`` (and the other message events)
by default, and ``gen_ai.client.inference.operation.details`` with ``span_and_event``/``event_only``.
The OpenTelemetry SDK exports logs and spans on separate schedules, so either may come first.

One :class:`Joiner` per receiver process keeps, per ``(trace id, span id)``, for a window
(``LLMSIGHT_OTLP_JOIN_WINDOW_S``) and at most ``LLMSIGHT_OTLP_JOIN_MAX_ENTRIES`` keys (oldest out first):

* a span whose call still lacks an input or an output (its content may come as logs), with the
  content records received so far: each new record re-maps the span with all of them and the
  receiver writes the call again under the same ``event_id`` (the events table keeps the last);
* a marker for a call that already has both: records for it add nothing and are dropped (counted);
* content records whose span has not come yet: the span, when it comes, is mapped with them.

Records whose span never comes within the window are dropped and counted (``content_unjoined``):
a call is its span. Content that arrives before its span is held in this process's memory until the
span comes (usually within the exporters' few-second batch delay); a receiver that dies meanwhile
loses it, though not the call. Both halves must reach the same replica: the chart's Service pins
each client to one pod (``sessionAffinity: ClientIP``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from llmsight.otlp.mapping import Event, Span


@dataclass
class _Entry:
    expires: float
    span: Span | None = None  # a span still lacking content; None: not come yet
    content: list[Event] = field(default_factory=list)


class Joiner:
    def __init__(self, window_s: float = 30.0, max_entries: int = 50_000,
                 clock: object = time.monotonic) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        # Calls that have their content, by key -> expiry: kept apart (a few bytes each) so that a stream of
        # complete spans never pushes out the spans and records still waiting for each other.
        self._complete: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.unjoined = 0  # content records dropped without their span (expired or evicted)
        self.duplicates = 0  # content records for calls that already had their content

    def __len__(self) -> int:
        """Spans and content records waiting for each other."""
        return len(self._entries)

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def _expire(self, now: float) -> None:
        """Drop expired entries and, over the cap, the oldest (both maps are in order of last refresh).
        Called with the lock held."""
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry.expires > now and len(entries) <= self.max_entries:
                break
            del entries[key]
            if entry.span is None:
                self.unjoined += len(entry.content)
        complete = self._complete
        while complete:
            key, expires = next(iter(complete.items()))
            if expires > now and len(complete) <= self.max_entries:
                break
            del complete[key]

    def span(self, span: Span) -> Span:
        """The span to map: ``span`` with the content records that came before it."""
        key = (span.trace_id, span.span_id)
        with self._lock:
            entry = self._entries.get(key)
            content = list(entry.content) if entry is not None else []
        return replace(span, events=[*span.events, *content]) if content else span

    def waiting(self, trace_id: str, span_id: str) -> bool:
        """Content records wait for this call (:meth:`span` would add them)."""
        entry = self._entries.get((trace_id, span_id))  # a dict read: atomic under the GIL
        return entry is not None and bool(entry.content)

    def any_waiting(self, keys: Iterable[tuple[str, str]]) -> bool:
        """:meth:`waiting` for any of ``keys`` (trace id, span id); at once when nothing waits at all."""
        entries = self._entries
        if not entries:
            return False
        return any(self.waiting(trace_id, span_id) for trace_id, span_id in keys)

    def mapped_complete(self, trace_id: str, span_id: str) -> None:
        """A call that has its input and output was written, mapped without content records
        (:meth:`waiting` said none waited): as :meth:`mapped` with ``complete``, without the span."""
        self.mapped_complete_many([(trace_id, span_id)])

    def mapped_complete_many(self, keys: list[tuple[str, str]]) -> None:
        """:meth:`mapped_complete` for each of ``keys`` (trace id, span id), under one lock: a request's calls."""
        if not keys:
            return
        now = self._now()
        expires = now + self.window_s
        with self._lock:
            entries, complete = self._entries, self._complete
            first = True
            for key in keys:
                if entries:
                    entry = entries.pop(key, None)
                    if entry is not None:  # records that came while it was written: they add nothing now
                        self.duplicates += len(entry.content)
                complete.pop(key, None)
                complete[key] = expires
                if first:
                    # As one by one: what expired goes now (a later key's record is then unjoined, not a
                    # duplicate). Past this, popping keys expires nothing and the entries stay under the cap;
                    # the complete keys over it are pushed out from the front, once, at the end.
                    self._expire(now)
                    first = False
            self._expire(now)

    def mapped(self, span: Span, complete: bool) -> Span | None:
        """``span`` (as mapped) was written; ``complete``: the call has its input and output.

        Returns the span to map and write once more when content records came for it while it was
        being written (they found no span yet, or raced another request's write); else None.
        """
        key = (span.trace_id, span.span_id)
        now = self._now()
        extra: list[Event] = []
        with self._lock:
            if complete:
                entry = self._entries.pop(key, None)
                if entry is not None:
                    self.duplicates += sum(1 for e in entry.content if e not in span.events)
                self._complete.pop(key, None)
                self._complete[key] = now + self.window_s
            elif key not in self._complete:
                entry = self._entries.pop(key, None) or _Entry(now)
                entry.expires = now + self.window_s
                entry.span = span
                extra = [e for e in entry.content if e not in span.events]
                self._entries[key] = entry
            self._expire(now)
        if not extra:
            return None
        return replace(span, events=sorted([*span.events, *extra], key=lambda e: e.time_ns))

    def content(self, record: Event) -> Span | None:
        """A content log record: the span to map again with it, or None (held for its span, or dropped)."""
        key = (record.trace_id, record.span_id)
        now = self._now()
        with self._lock:
            self._expire(now)
            if key in self._complete:
                self.duplicates += 1
                return None
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(now + self.window_s)
                self._expire(now)
            if not any(e.name == record.name and e.time_ns == record.time_ns and e.body == record.body
                       for e in entry.content):  # else an exporter's retry of a record already held
                entry.content.append(record)
            if entry.span is None:
                return None
            span = entry.span
            content = list(entry.content)
        base = [e for e in span.events if e not in content]
        return replace(span, events=[*base, *sorted(content, key=lambda e: e.time_ns)])
