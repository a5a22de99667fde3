"""Alert notifications: a generic JSON webhook, Slack incoming webhooks and e-mail, sent off the analyzers' thread.

:class:`Notifier` owns one daemon thread. ``send(notification)`` only appends to a bounded queue and
returns at once, so a slow or dead receiver never delays a window's analysis. The thread posts each
notification to every target; a failure that can succeed later (a network error, HTTP 429 or 5xx)
is retried with exponential backoff, up to ``max_attempts``; any other 4xx is a permanent refusal
and is logged once, not retried. A redirect (3xx) is a failure too, never followed: the body and the
bearer token go to the configured URL only. Each attempt has an overall deadline (``deadline_s``), so a
receiver that answers one byte at a time cannot hold the thread.

Example texts (the users' prompts and outputs behind an alert) are sent only when
``LLMSIGHT_NOTIFY_EXAMPLES`` is on: they carry user text to a third party. Without it, a notification
names the example traces (their ids) but not their texts; that holds for the drift evidence too (the
grown topic's examples and every topic's examples), while the topic's label and shares are always sent.

What changed (:mod:`llmsight.alerts.evidence`): a drift alert's Slack message names the topic that
grew, its share before → after with intervals and (opt-in) its examples; a score is shown with its own
critical value and the p-value apart, with the rule's p-value level. Every message of one episode
carries the same ``incident_id`` (a flap re-fires that incident, kind ``flapping``). Slack messages escape ``& < >`` in every
value, so a text cannot make a link or a mention.

The webhook URLs are secrets (a Slack incoming-webhook URL is a credential), so they come from the
environment (``LLMSIGHT_WEBHOOK_URL``, ``LLMSIGHT_SLACK_WEBHOOK_URL``) and never appear in logs.

E-mail (``LLMSIGHT_SMTP_*``, :mod:`llmsight.alerts.mail`) is one more target on the same thread, with the
same retries: the message has the Slack message's content, goes to the rule's own recipients or the
global ones, and a 4xx SMTP reply or a network error is retried while a 5xx reply is not. With
``LLMSIGHT_DASHBOARD_URL`` set, the Slack message, the e-mail and the webhook body link to the alert.
"""

from __future__ import annotations

import copy
import heapq
import http.client
import itertools
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from llmsight.alerts.evidence import grown_topic, levels_text, share_text
from llmsight.alerts.mail import Mailer, alert_link, build_message, fmt_value
from llmsight.store.names import SEGMENT_KEYS

log = logging.getLogger("llmsight.alerts.notify")

WEBHOOK = "webhook"
SLACK = "slack"
EMAIL = "email"

_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "resolved": ":white_check_mark:",
          "flapping": ":repeat:"}


@dataclass(frozen=True)
class Target:
    """One receiver: ``kind`` is ``webhook`` (the notification as JSON), ``slack`` (a Slack message) or
    ``email`` (an e-mail through ``mailer``'s SMTP server; ``url`` is then only a name)."""

    kind: str
    url: str
    token: str = ""  # sent as "Authorization: Bearer <token>" to a generic webhook when set
    mailer: Mailer | None = field(default=None, compare=False, repr=False)

    def display(self) -> str:
        """The receiver without its secret path (or an SMTP login), for logs."""
        if self.mailer is not None:
            return self.mailer.display()
        parsed = urlparse(self.url)
        return f"{self.kind} {parsed.scheme}://{parsed.hostname}{':' + str(parsed.port) if parsed.port else ''}"


def _no_text(items: Any) -> Any:
    """Examples without their text: dicts keep their other keys (trace ids, scores), bare texts go."""
    if not isinstance(items, list):
        return items
    kept = [{k: v for k, v in e.items() if k != "text"} for e in items if isinstance(e, dict)]
    return [e for e in kept if e]


def _topic_without_texts(topic: Any) -> Any:
    """A topic without its example texts; the examples' trace ids stay when they have them."""
    if not isinstance(topic, dict) or "examples" not in topic:
        return topic
    kept = {k: v for k, v in topic.items() if k != "examples"}
    named = _no_text(topic["examples"])
    return {**kept, "examples": named} if named else kept


def without_texts(notification: dict[str, Any]) -> dict[str, Any]:
    """``notification`` without the users' texts: the evidence's examples keep their trace ids and scores,
    the drift topics (``grown_topic``, ``topics``) their labels, shares and trace ids, but no example text."""
    evidence = notification.get("evidence")
    if not isinstance(evidence, dict):
        return notification
    evidence = copy.deepcopy(evidence)
    if "examples" in evidence:
        evidence["examples"] = _no_text(evidence["examples"])
    if "grown_topic" in evidence:
        evidence["grown_topic"] = _topic_without_texts(evidence["grown_topic"])
    topics = evidence.get("topics")
    if isinstance(topics, list):
        evidence["topics"] = [_topic_without_texts(t) for t in topics]
    elif isinstance(topics, dict):
        # explain_drift's form: {"grown": [...], "shrunk": [...], ...}
        evidence["topics"] = {k: [_topic_without_texts(t) for t in v] if isinstance(v, list) else v
                              for k, v in topics.items()}
    return {**notification, "evidence": evidence}


def webhook_payload(notification: dict[str, Any], *, examples: bool = False, link: str = "") -> dict[str, Any]:
    """The generic webhook body: the notification itself (its example texts only with ``examples``), plus a
    version so receivers can evolve, and ``dashboard_url`` (the alert on the dashboard) when ``link`` is given."""
    return {"version": 1, "source": "llmsight", **(notification if examples else without_texts(notification)),
            **({"dashboard_url": link} if link else {})}


def slack_escape(value: Any) -> str:
    """``value`` as Slack message text: ``& < >`` escaped, so it cannot form a link, a mention or a command."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(notification: dict[str, Any], *, examples: bool = False, link: str = "") -> dict[str, Any]:
    """A Slack incoming-webhook message: a one-line ``text`` fallback plus blocks with the evidence (the
    example texts only with ``examples``) and a link to the alert on the dashboard when ``link`` is given;
    every value is escaped."""
    kind = notification.get("kind", "firing")
    severity = slack_escape(notification.get("severity", ""))
    emoji = _EMOJI[kind] if kind in ("resolved", "flapping") else _EMOJI.get(str(severity), ":bell:")
    segment = notification.get("segment") or {}
    where = " / ".join(slack_escape(segment.get(k) or "-") for k in SEGMENT_KEYS)
    headline = (f"{emoji} [{slack_escape(str(kind).upper())}] {slack_escape(notification.get('rule'))} "
                f"({severity}) on {where}")
    evidence = notification.get("evidence") or {}
    value_text, p_text = levels_text(notification.get("value"), notification.get("threshold"),
                                     notification.get("p_value"), evidence)
    if p_text is None:  # a value with its threshold in the same units
        facts = [
            f"*metric* `{slack_escape(notification.get('metric'))}`",
            f"*value* {slack_escape(fmt_value(notification.get('value')))}",
            f"*threshold* {slack_escape(fmt_value(notification.get('threshold')))}",
            f"*baseline* {slack_escape(fmt_value(notification.get('baseline')))}",
            f"*p-value* {slack_escape(fmt_value(notification.get('p_value')))}",
        ]
    else:  # a score with its own critical value; the p-value apart, with the rule's level
        facts = [f"*metric* `{slack_escape(notification.get('metric'))}`", f"*{slack_escape(value_text)}*",
                 slack_escape(p_text), f"*baseline* {slack_escape(fmt_value(notification.get('baseline')))}"]
    facts.append(f"*window* {slack_escape(notification.get('window_start'))}")
    episode = notification.get("episode") or {}
    if notification.get("incident_id"):
        flapping = f", flapping ({episode.get('flaps', 0)} re-fires)" if episode.get("flapping") else ""
        facts.append(f"*incident* `{slack_escape(notification['incident_id'])}`{slack_escape(flapping)}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "  ·  ".join(facts)}},
    ]
    topic = grown_topic(evidence)
    if topic is not None:
        lines = [f"*What changed:* the topic _{slack_escape(topic['label'])}_ grew: "
                 f"{slack_escape(share_text(topic))} of traffic"]
        for example in topic["examples"]:
            if examples and example["text"]:
                lines.append(f"• `{slack_escape(example['trace_id'] or '-')}` {slack_escape(example['text'][:160])}")
            elif example["trace_id"]:
                lines.append(f"• `{slack_escape(example['trace_id'])}`")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    found = evidence.get("examples") or [] if topic is None else []
    found = [e for e in found if isinstance(e, dict)]
    if found:
        if examples:
            lines = [f"• `{slack_escape(e.get('trace_id', ''))}` {slack_escape(str(e.get('text', ''))[:160])}"
                     for e in found[:3]]
        else:
            lines = [f"• `{slack_escape(e.get('trace_id', ''))}`" for e in found[:3]]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*examples*\n" + "\n".join(lines)}})
    if link:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"<{slack_escape(link)}|Open the alert in the dashboard>"}})
    return {"text": headline, "blocks": blocks}


@dataclass(order=True)
class _Attempt:
    due: float
    seq: int
    target: Target = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(compare=False, default=1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib then raises the 3xx as an HTTPError, and the attempt fails."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


class _Connections:
    """urllib's HTTP(S) handlers, remembering each connection they open so a deadline can cut it."""

    def __init__(self) -> None:
        self.opened: list[http.client.HTTPConnection] = []
        self.cut = False
        keep = self.opened

        def track(factory: Any) -> Any:
            def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
                connection = factory(host, **kwargs)
                keep.append(connection)
                return connection
            return make

        class Http(urllib.request.HTTPHandler):
            def http_open(self, req: Any) -> Any:
                return self.do_open(track(http.client.HTTPConnection), req)

        class Https(urllib.request.HTTPSHandler):
            def https_open(self, req: Any) -> Any:
                return self.do_open(track(http.client.HTTPSConnection), req, context=self._context)  # type: ignore[attr-defined]

        self.handlers = (Http(), Https(), _NoRedirect())

    def cut_all(self) -> None:
        """The deadline passed: shut the sockets down, which wakes a read blocked on them."""
        self.cut = True
        for connection in list(self.opened):
            sock = connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Notifier:
    """Sends notifications to its targets from one background thread, with retries and backoff."""

    def __init__(self, targets: list[Target], *, max_attempts: int = 5, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, timeout_s: float = 5.0, deadline_s: float = 15.0,
                 queue_size: int = 1000, examples: bool = False, dashboard_url: str = "") -> None:
        self.targets = list(targets)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s  # per connect and read
        self.deadline_s = deadline_s  # per attempt, whatever the receiver does
        self.examples = examples  # send the example texts (LLMSIGHT_NOTIFY_EXAMPLES)
        self.dashboard_url = dashboard_url  # link to the alert (LLMSIGHT_DASHBOARD_URL)
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
        """A notifier for the targets configured in the environment (none is fine: nothing is sent); a setting
        that cannot work (an SMTP port that is not a number, no recipients...) raises :class:`ConfigError`."""
        from llmsight import config
        from llmsight.alerts import settings

        targets = []
        webhook = config.resolve(settings.WEBHOOK_URL, strict=True)
        if webhook:
            targets.append(Target(WEBHOOK, webhook, config.resolve(settings.WEBHOOK_TOKEN, strict=True)))
        slack = config.resolve(settings.SLACK_WEBHOOK_URL, strict=True)
        if slack:
            targets.append(Target(SLACK, slack))
        mailer = Mailer.from_settings()
        if mailer is not None:
            targets.append(Target(EMAIL, f"smtp://{mailer.host}:{mailer.port}", mailer=mailer))
        return cls(targets, max_attempts=config.resolve(settings.NOTIFY_MAX_ATTEMPTS, strict=True),
                   examples=config.resolve(settings.NOTIFY_EXAMPLES, strict=True),
                   dashboard_url=config.resolve(settings.DASHBOARD_URL, strict=True))

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
                        if body is not None:
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

    def _body(self, target: Target, notification: dict[str, Any]) -> bytes | None:
        """What ``target`` receives for ``notification``; None when it gets nothing (a rule without recipients,
        a notification that cannot be built: logged, counted as failed, never raised into the thread)."""
        link = alert_link(self.dashboard_url, notification)
        try:
            if target.mailer is not None:
                to = target.mailer.recipients(str(notification.get("rule", "")))
                if not to:
                    log.info("notify: no e-mail recipients for rule %r (LLMSIGHT_SMTP_TO is empty)",
                             notification.get("rule"))
                    return None
                return build_message(notification, sender=target.mailer.sender, to=to, examples=self.examples,
                                     dashboard_url=self.dashboard_url)
            payload = (slack_payload(notification, examples=self.examples, link=link) if target.kind == SLACK
                       else webhook_payload(notification, examples=self.examples, link=link))
            return json.dumps(payload, default=str, ensure_ascii=False).encode("utf-8")
        except Exception as exc:  # a malformed notification must not stop the thread for the others
            self.failed += 1
            log.error("notify: could not build the message for %s (%s: %s)", target.display(), type(exc).__name__, exc)
            return None

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
        """POST (or, for e-mail, send) once; returns (worth retrying, failure reason or None on success)."""
        if target.mailer is not None:
            return target.mailer.deliver(body, timeout_s=self.timeout_s, deadline_s=self.deadline_s)
        headers = {"Content-Type": "application/json", "User-Agent": "llmsight-notify/1"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")
        connections = _Connections()
        deadline = threading.Timer(self.deadline_s, connections.cut_all)
        deadline.daemon = True
        deadline.start()
        try:
            with urllib.request.build_opener(*connections.handlers).open(request, timeout=self.timeout_s) as response:
                response.read(1 << 16)
            if connections.cut:
                return True, f"no complete answer within {self.deadline_s:g} s"
            return False, None
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                return False, f"HTTP {exc.code}: a redirect, not followed (set the final URL)"
            return exc.code == 429 or exc.code >= 500, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
            if connections.cut:
                return True, f"no complete answer within {self.deadline_s:g} s"
            return True, type(exc).__name__ + ": " + str(getattr(exc, "reason", exc))[:200]
        finally:
            deadline.cancel()
            for connection in connections.opened:
                connection.close()
