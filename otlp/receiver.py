"""The receiver's core, shared by OTLP/HTTP and OTLP/gRPC: map a request, write it, say what happened.

``export_trace_bytes``/``export_logs`` return an :class:`Outcome` once every mapped event is written (or raise
:class:`~llmsight.otlp.writer.Busy` / :class:`~llmsight.otlp.writer.Unavailable`, and nothing is
acknowledged). Items that cannot be used are *rejected* and reported in OTLP's ``partial_success``;
spans that are not LLM calls and logs that are not GenAI events are *skipped*: accepted, counted,
not stored. GenAI content sent as log records (message, choice and operation-details events) is
joined with its span by :class:`~llmsight.otlp.join.Joiner`, whichever comes first. Trace requests are
parsed and mapped by worker processes when there are some (:mod:`llmsight.otlp.workers`); the join, the
write and the answer stay here.

Dead letters: the receiver has no store, so a payload it cannot read goes to the same sink as the
events, as a small JSON event of type ``otlp_dead_letter`` (the reason, where it came from, and the
first 4 KB of the payload as text, redacted). The collector does not know that type, so it stores it
in ``dead_letters`` with the whole message: the one place operators already look, across every
receiver replica, and a disk in a pod would not survive a restart. At most
``DEAD_LETTERS_PER_S`` per second are written (a flood of garbage must not fill Kafka); the rest are
counted and logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from llmsight.otlp import decode
from llmsight.otlp.join import Joiner
from llmsight.otlp.mapping import (
    CHOICE_EVENT,
    DETAILS_EVENT,
    EVALUATION_EVENT,
    MESSAGE_EVENTS,
    OPENLIT_COMPLETION_EVENT,
    OPENLIT_PROMPT_EVENT,
    Mapper,
)
from llmsight.otlp.workers import Call, Mapped, Pool, map_request
from llmsight.otlp.writer import Batch, Busy, Unavailable, Writer

log = logging.getLogger("llmsight.otlp")

DEAD_LETTERS_PER_S = 5.0
DEAD_LETTER_TYPE = "otlp_dead_letter"
_CONTENT_LOGS = frozenset({DETAILS_EVENT, CHOICE_EVENT, OPENLIT_PROMPT_EVENT, OPENLIT_COMPLETION_EVENT,
                           *MESSAGE_EVENTS})
CONTENT_LOG_MESSAGE = "GenAI content log records without a trace and span id cannot be joined with their call"


@dataclass
class Outcome:
    accepted: int = 0  # events written (llm_call and feedback)
    skipped: int = 0  # items that are not LLM calls or GenAI evaluations: accepted, not stored
    rejected: int = 0  # items refused for good (reported in partial_success)
    message: str = ""


class Counters:
    NAMES = ("requests", "spans_received", "llm_calls", "feedback", "skipped", "rejected", "bad_requests",
             "busy", "unavailable", "unauthorized", "dead_letters", "dead_letters_dropped", "content_logs",
             "content_joined", "worker_requests")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = dict.fromkeys(self.NAMES, 0)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                self.values[name] += value

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.values)


class Receiver:
    def __init__(self, mapper: Mapper, writer: Writer, *, token: str = "", write_timeout: float = 5.0,
                 max_request_bytes: int = 16 * 1024 * 1024, joiner: Joiner | None = None,
                 pool: Pool | None = None) -> None:
        self.mapper = mapper
        self.pool = pool
        self.joiner = joiner if joiner is not None else Joiner()
        self.writer = writer
        self.token = token
        self.write_timeout = write_timeout
        self.max_request_bytes = max_request_bytes
        self.counters = Counters()
        self._dead_lock = threading.Lock()
        self._dead_tokens = DEAD_LETTERS_PER_S
        self._dead_at = time.monotonic()

    def authorized(self, header: str | None) -> bool:
        if not self.token:
            return True
        expected = f"Bearer {self.token}".encode()
        ok = header is not None and hmac.compare_digest(header.strip().encode("utf-8", "replace"), expected)
        if not ok:
            self.counters.add(unauthorized=1)
        return ok

    # -- traces and logs ---------------------------------------------------------------------------

    def export_trace_bytes(self, data: bytes, content_type: str) -> Outcome:
        """A trace request's bytes (HTTP decompressed, or gRPC's): parsed and mapped by a worker if there is a
        pool, else here. Raises :class:`~llmsight.otlp.decode.BadRequest` for a payload that cannot be read."""
        pool = self.pool
        mapped = None
        if pool is not None and pool.ready:
            mapped = pool.map(data, content_type, self.write_timeout)
        request = None
        if mapped is None:
            request = decode.parse_traces(data, content_type)
            mapped = map_request(self.mapper, request)
        else:
            self.counters.add(worker_requests=1)
        return self._export_mapped(mapped, lambda: request or decode.parse_traces(data, content_type))

    def _export_mapped(self, mapped: Mapped, request: Any) -> Outcome:
        """Join what waits for the mapped calls, write, answer. ``request()`` gives the parsed request
        again, for the rare call mapped in a worker whose content log records came first."""
        joiner = self.joiner
        if joiner.any_waiting((call.trace_id, call.span_id) for call in mapped.calls):
            if any(call.span is None for call in mapped.calls):  # mapped by a worker, which kept no span
                mapped = map_request(self.mapper, request())
            for call in mapped.calls:
                if call.span is None or not joiner.waiting(call.trace_id, call.span_id):
                    continue
                span = joiner.span(call.span)
                try:
                    key, line, complete = self.mapper.llm_call_with_content(span)
                except Exception as exc:  # as for a span alone: it keeps the line mapped without the records
                    log.warning("otlp: cannot map span %r with its content logs: %r", span.name[:80], exc)
                    continue
                mapped.batch[call.index] = (key, line)
                call.span, call.complete = span, complete
        outcome = Outcome(skipped=mapped.skipped, rejected=mapped.rejected)
        self.counters.add(spans_received=mapped.received)
        result = self._finish(mapped.batch, outcome, mapped.reasons, len(mapped.calls), mapped.feedback)
        self._settle(mapped.calls)
        return result

    def export_logs(self, request: Any) -> Outcome:
        outcome = Outcome()
        batch: Batch = []
        reasons: list[str] = []
        feedback = joined = content = 0
        mapped: list[Call] = []
        for event in decode.log_events(request):
            if event.name == EVALUATION_EVENT:
                item = self.mapper.feedback(event)
                if item is None:
                    outcome.rejected += 1
                    reasons.append(f"{EVALUATION_EVENT} without a trace id cannot be tied to a call")
                else:
                    batch.append(item)
                    feedback += 1
            elif event.name in _CONTENT_LOGS:
                if not event.trace_id or not event.span_id:
                    outcome.rejected += 1
                    reasons.append(CONTENT_LOG_MESSAGE)
                    continue
                content += 1
                span = self.joiner.content(event)
                if span is None:
                    continue  # held until its span comes, or its call already has its content
                try:
                    key, line, complete = self.mapper.llm_call_with_content(span)
                except Exception as exc:  # as for a span: this record only
                    log.warning("otlp: cannot map span %r with its content logs: %r", span.name[:80], exc)
                    outcome.rejected += 1
                    reasons.append(f"span {span.name[:80]!r} could not be mapped with its content: {type(exc).__name__}")
                    continue
                mapped.append(Call(len(batch), span.trace_id, span.span_id, complete, span))
                batch.append((key, line))
                joined += 1
            else:
                outcome.skipped += 1
        result = self._finish(batch, outcome, reasons, 0, feedback)
        self.counters.add(content_logs=content, content_joined=joined)
        self._settle(mapped)
        return result

    def _settle(self, calls: list[Call]) -> None:
        """Tell the joiner what was written; write again the calls whose content logs came meanwhile
        (the last row written for a call is the one the store keeps). Raises as ``_finish`` does."""
        joiner = self.joiner
        for _ in range(4):  # each round catches records that raced the previous one; more is pathological
            # Calls mapped by a worker with their content come without a span: told in one go.
            joiner.mapped_complete_many([(call.trace_id, call.span_id) for call in calls if call.span is None])
            again = [s for s in (joiner.mapped(call.span, call.complete) for call in calls if call.span is not None)
                     if s is not None]
            if not again:
                return
            batch: Batch = []
            calls = []
            for span in again:
                key, line, complete = self.mapper.llm_call_with_content(span)
                calls.append(Call(len(batch), span.trace_id, span.span_id, complete, span))
                batch.append((key, line))
            self._write(batch)
            self.counters.add(content_joined=len(batch))

    def _write(self, batch: Batch) -> tuple[int, str]:
        """Write ``batch`` to the sink, counting a busy or unavailable sink before the error goes up."""
        try:
            return self.writer.write(batch, self.write_timeout)
        except Busy:
            self.counters.add(busy=1)
            raise
        except Unavailable:
            self.counters.add(unavailable=1)
            raise

    def _finish(self, batch: Batch, outcome: Outcome, reasons: list[str], calls: int, feedback: int) -> Outcome:
        refused, message = self._write(batch)
        if refused:
            outcome.rejected += refused
            reasons.append(message)
        outcome.accepted = len(batch) - refused
        outcome.message = "; ".join(dict.fromkeys(reasons))[:1000]
        self.counters.add(requests=1, llm_calls=calls, feedback=feedback, skipped=outcome.skipped,
                          rejected=outcome.rejected)
        return outcome

    # -- bad input -----------------------------------------------------------------------------------

    def dead_letter(self, reason: str, source: str, payload: bytes, content_type: str) -> None:
        """Write one ``otlp_dead_letter`` event to the sink (rate-limited; best effort, never raises)."""
        self.counters.add(bad_requests=1)
        with self._dead_lock:
            now = time.monotonic()
            self._dead_tokens = min(DEAD_LETTERS_PER_S, self._dead_tokens + (now - self._dead_at) * DEAD_LETTERS_PER_S)
            self._dead_at = now
            allowed = self._dead_tokens >= 1.0
            if allowed:
                self._dead_tokens -= 1.0
        if not allowed:
            self.counters.add(dead_letters_dropped=1)
            log.warning("otlp: bad request from %s (%s); over %g dead letters/s, not kept", source, reason,
                        DEAD_LETTERS_PER_S)
            return
        head, _ = self.mapper.text(payload[:4096].decode("utf-8", "replace"))
        event = {"type": DEAD_LETTER_TYPE, "schema_version": 1, "event_id": str(uuid.uuid4()),
                 "ts": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "reason": reason[:1000],
                 "source": source[:256], "content_type": content_type[:128], "payload_bytes": len(payload),
                 "payload_head": head}
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace") + b"\n"
        try:
            self.writer.write([("otlp-dead-letter", line)], min(self.write_timeout, 2.0))
            self.counters.add(dead_letters=1)
        except Exception as exc:
            self.counters.add(dead_letters_dropped=1)
            log.warning("otlp: bad request from %s (%s); its dead letter could not be written: %s", source, reason, exc)

    def metrics_text(self) -> str:
        """The counters in Prometheus' text format."""
        lines = []
        counts = self.counters.snapshot()
        counts["content_unjoined"] = self.joiner.unjoined
        counts["content_duplicates"] = self.joiner.duplicates
        for name, value in counts.items():
            lines.append(f"# TYPE llmsight_otlp_{name}_total counter")
            lines.append(f"llmsight_otlp_{name}_total {value}")
        pool = self.pool
        lines.append("# TYPE llmsight_otlp_mapping_workers gauge")  # processes mapping trace requests now
        lines.append(f"llmsight_otlp_mapping_workers {len(pool.pids) if pool is not None and pool.ready else 0}")
        lines.append("# TYPE llmsight_otlp_sink_ready gauge")
        lines.append(f"llmsight_otlp_sink_ready {1 if self.writer.ready else 0}")
        return "\n".join(lines) + "\n"
