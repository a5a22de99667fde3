"""Alert notifications: a generic JSON webhook and Slack incoming webhooks, sent off the analyzers' thread.

:class:`Notifier` owns one daemon thread. ``send(notification)`` only appends to a bounded queue and
returns at once, so a slow or dead receiver never delays a window's analysis. The thread posts each
notification to every target; a failure that can succeed later (a network error, HTTP 429 or 5xx)
is retried with exponential backoff, up to ``max_attempts``; any other 4xx is a permanent refusal
and is logged once, not retried.

The webhook URLs are secrets (a Slack incoming-webhook URL is a credential), so they come from the
environment (``LLMSIGHT_WEBHOOK_URL``, ``LLMSIGHT_SLACK_WEBHOOK_URL``) and never appear in logs.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from llmsight.store.names import SEGMENT_KEYS

log = logging.getLogger("llmsight.alerts.notify")

WEBHOOK = "webhook"
SLACK = "slack"

_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "resolved": ":white_check_mark:"}


@dataclass(frozen=True)
class Target:
    """One receiver: ``kind`` is ``webhook`` (the notification as JSON) or ``slack`` (a Slack message)."""

    kind: str
    url: str
    token: str = ""  # sent as "Authorization: Bearer <token>" to a generic webhook when set

    def display(self) -> str:
        """The receiver without its secret path, for logs."""
        parsed = urlparse(self.url)
        return f"{self.kind} {parsed.scheme}://{parsed.hostname}{':' + str(parsed.port) if parsed.port else ''}"


def webhook_payload(notification: dict[str, Any]) -> dict[str, Any]:
    """The generic webhook body: the notification itself, plus a version so receivers can evolve."""
    return {"version": 1, "source": "llmsight", **notification}


def slack_payload(notification: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: a one-line ``text`` fallback plus blocks with the evidence."""
    kind = notification.get("kind", "firing")
    severity = notification.get("severity", "")
    emoji = _EMOJI["resolved"] if kind == "resolved" else _EMOJI.get(severity, ":bell:")
    segment = notification.get("segment") or {}
    where = " / ".join(str(segment.get(k) or "-") for k in SEGMENT_KEYS)
    headline = f"{emoji} [{kind.upper()}] {notification.get('rule')} ({severity}) on {where}"
    facts = [
        f"*metric* `{notification.get('metric')}`",
        f"*value* {_fmt(notification.get('value'))}",
        f"*threshold* {_fmt(notification.get('threshold'))}",
        f"*baseline* {_fmt(notification.get('baseline'))}",
        f"*p-value* {_fmt(notification.get('p_value'))}",
        f"*window* {notification.get('window_start')}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "  ·  ".join(facts)}},
    ]
    examples = (notification.get("evidence") or {}).get("examples") or []
    if examples:
        lines = [f"• `{e.get('trace_id', '')}` {str(e.get('text', ''))[:160]}" for e in examples[:3]]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*examples*\n" + "\n".join(lines)}})
    return {"text": headline, "blocks": blocks}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass(order=True)
class _Attempt:
    due: float
    seq: int
    target: Target = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(compare=False, default=1)


class Notifier:
    """Sends notifications to its targets from one background thread, with retries and backoff."""

    def __init__(self, targets: list[Target], *, max_attempts: int = 5, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, timeout_s: float = 5.0, queue_size: int = 1000) -> None:
        self.targets = list(targets)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._incoming: deque[dict[str, Any]] = deque(maxlen=queue_size)
        self._retries: list[_Attempt] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @classmethod
    def from_settings(cls) -> Notifier:
        """A notifier for the targets configured in the environment (none is fine: nothing is sent)."""
        from llmsight import config
        from llmsight.alerts import settings

        targets = []
        webhook = config.resolve(settings.WEBHOOK_URL, strict=True)
        if webhook:
            targets.append(Target(WEBHOOK, webhook, config.resolve(settings.WEBHOOK_TOKEN, strict=True)))
        slack = config.resolve(settings.SLACK_WEBHOOK_URL, strict=True)
        if slack:
            targets.append(Target(SLACK, slack))
        return cls(targets, max_attempts=config.resolve(settings.NOTIFY_MAX_ATTEMPTS, strict=True))

    def send(self, notification: dict[str, Any]) -> None:
        """Queue one notification for every target; returns at once."""
        if not self.targets:
            return
        with self._wake:
            if len(self._incoming) == self._incoming.maxlen:
                self.dropped += 1
                log.warning("notify: queue full, dropped the oldest notification")
            self._incoming.append(notification)
            self._ensure_thread()
            self._wake.notify()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued, retrying or in flight; True if that happened before the deadline."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self._incoming or self._retries or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Flush for at most ``timeout`` seconds, then stop the thread; pending retries are abandoned."""
        self.flush(timeout)
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="llmsight-notify", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._wake:
                job = self._next_job()
                if job is None:
                    return
                self._in_flight += 1
            try:
                if isinstance(job, dict):
                    for target in self.targets:
                        body = self._body(target, job)
                        self._attempt(_Attempt(0.0, next(self._seq), target, body))
                else:
                    self._attempt(job)
            finally:
                with self._wake:
                    self._in_flight -= 1
                    self._wake.notify_all()

    def _next_job(self) -> dict[str, Any] | _Attempt | None:
        """Under the lock: the next new notification or due retry; None once stopping."""
        while not self._stopping:
            if self._incoming:
                return self._incoming.popleft()
            now = time.monotonic()
            if self._retries and self._retries[0].due <= now:
                return heapq.heappop(self._retries)
            wait = (self._retries[0].due - now) if self._retries else 1.0
            self._wake.wait(max(0.01, wait))
        return None

    @staticmethod
    def _body(target: Target, notification: dict[str, Any]) -> bytes:
        payload = slack_payload(notification) if target.kind == SLACK else webhook_payload(notification)
        return json.dumps(payload, default=str, ensure_ascii=False).encode("utf-8")

    def _attempt(self, attempt: _Attempt) -> None:
        retry, reason = self._post(attempt.target, attempt.body)
        if reason is None:
            self.sent += 1
            if attempt.attempt > 1:
                log.info("notify: %s accepted after %d attempts", attempt.target.display(), attempt.attempt)
            return
        if retry and attempt.attempt < self.max_attempts:
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt.attempt - 1))
            log.warning("notify: %s failed (%s); retry %d in %.1f s", attempt.target.display(), reason,
                        attempt.attempt + 1, delay)
            with self._wake:
                heapq.heappush(self._retries, _Attempt(time.monotonic() + delay, next(self._seq), attempt.target,
                                                       attempt.body, attempt.attempt + 1))
            return
        self.failed += 1
        log.error("notify: %s gave up after %d attempts (%s)", attempt.target.display(), attempt.attempt, reason)

    def _post(self, target: Target, body: bytes) -> tuple[bool, str | None]:
        """POST once; returns (worth retrying, failure reason or None on success)."""
        headers = {"Content-Type": "application/json", "User-Agent": "llmsight-notify/1"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
            return False, None
        except urllib.error.HTTPError as exc:
            return exc.code == 429 or exc.code >= 500, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            return True, type(exc).__name__ + ": " + str(getattr(exc, "reason", exc))[:200]
