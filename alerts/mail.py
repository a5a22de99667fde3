"""Alert e-mails over SMTP (the standard library's :mod:`smtplib`), sent by the notifier's thread.

:class:`Mailer` holds one SMTP configuration (``LLMSIGHT_SMTP_*``, checked at start by :meth:`Mailer.from_settings`:
a port that is not a number, implicit TLS and STARTTLS both on, a login without TLS, no sender or no
recipients stop the service with a message that says what to set). :func:`build_message` turns a notification
into an e-mail with the content of the Slack message: the subject names the transition, the rule, its
severity and the segment; a plain-text part and an HTML part carry the value beside its own threshold or
critical value, the p-value apart with the rule's level, the topic that grew with its shares and intervals,
the example trace ids (their texts only with ``LLMSIGHT_NOTIFY_EXAMPLES``) and, when
``LLMSIGHT_DASHBOARD_URL`` is set, a link to the alert.

:meth:`Mailer.deliver` sends one message and says whether a failure is worth a retry, like a webhook's
POST: a network error, a timeout or a 4xx SMTP reply (temporary) is retried by the notifier with backoff;
a 5xx reply (a refused login, an unknown recipient), a certificate that does not verify or a server that
does not offer STARTTLS is permanent. Every socket operation has ``timeout_s`` and the whole attempt a
deadline after which the socket is shut down, so a server that answers one byte at a time cannot hold
the thread. The password is given to the server only over TLS and never appears in a log line or an
error message; values from traffic (rule, segment) cannot add a header, since line breaks are removed.
"""

from __future__ import annotations

import fnmatch
import html
import logging
import os
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, getaddresses, make_msgid
from typing import Any
from urllib.parse import urlencode

from llmsight.alerts.evidence import grown_topic, levels_text, share_text
from llmsight.errors import ConfigError
from llmsight.store.names import SEGMENT_KEYS

log = logging.getLogger("llmsight.alerts.mail")

EXAMPLE_CHARS = 160  # as in the Slack message
# Query parameters of the dashboard's filters that a segment key maps to (the segment's name has none).
_FILTERS = ("service", "model", "prompt_version")


@dataclass(frozen=True)
class Mailer:
    """One SMTP server and the addresses alert e-mails go to; ``password`` never shows in its repr."""

    host: str
    port: int
    sender: str
    to: tuple[str, ...] = ()
    rule_to: tuple[tuple[str, tuple[str, ...]], ...] = ()
    starttls: bool = True
    tls: bool = False
    user: str = ""
    password: str = field(default="", repr=False)
    cafile: str = ""

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ConfigError(problem)

    def problem(self) -> str | None:
        """What makes this configuration unusable, as an actionable message (None when it can work)."""
        if not self.host:
            return "LLMSIGHT_SMTP_HOST is empty: name the SMTP server (e.g. smtp.example.com)"
        if self.tls and self.starttls:
            return ("LLMSIGHT_SMTP_TLS and LLMSIGHT_SMTP_STARTTLS are both on: use one, implicit TLS (usually port "
                    "465, LLMSIGHT_SMTP_STARTTLS=false) or STARTTLS (usually port 587, LLMSIGHT_SMTP_TLS=false)")
        if not 1 <= self.port <= 65535:
            return f"LLMSIGHT_SMTP_PORT is {self.port}: expected a TCP port from 1 to 65535"
        if not self.sender:
            return "LLMSIGHT_SMTP_FROM is empty: set the sender address of alert e-mails (e.g. llmsight@example.com)"
        if not self.to and not self.rule_to:
            return ("LLMSIGHT_SMTP_HOST is set but no recipient is: set LLMSIGHT_SMTP_TO (comma-separated addresses) "
                    "or LLMSIGHT_SMTP_RULE_TO (rule=address;...)")
        if bool(self.user) != bool(self.password):
            return ("LLMSIGHT_SMTP_USER and LLMSIGHT_SMTP_PASSWORD go together: set both for a login, or neither "
                    "for a relay that needs none")
        if self.user and not (self.tls or self.starttls):
            return ("LLMSIGHT_SMTP_USER is set but neither LLMSIGHT_SMTP_STARTTLS nor LLMSIGHT_SMTP_TLS is on: the "
                    "password would cross the network in clear; turn one of them on")
        if self.cafile and not os.path.isfile(self.cafile):
            return f"LLMSIGHT_SMTP_CAFILE is {self.cafile}, which is not a readable file: give a PEM CA bundle"
        return None

    @classmethod
    def from_settings(cls) -> Mailer | None:
        """The mailer the environment configures, or None without ``LLMSIGHT_SMTP_HOST``; a setting that cannot
        work raises :class:`ConfigError` (the service then stops at start, naming the variable)."""
        from llmsight import config
        from llmsight.alerts import settings

        host = config.resolve(settings.SMTP_HOST, strict=True)
        given = [s.name for s in (settings.SMTP_USER, settings.SMTP_PASSWORD, settings.SMTP_FROM, settings.SMTP_TO,
                                  settings.SMTP_RULE_TO) if os.environ.get(s.name, "").strip()]
        port = config.resolve(settings.SMTP_PORT, strict=True)
        tls = config.resolve(settings.SMTP_TLS, strict=True)
        # STARTTLS is on by default, but implicit TLS turns that default off; both given as on is a mistake.
        starttls = config.resolve(settings.SMTP_STARTTLS, strict=True)
        if tls and not os.environ.get(settings.SMTP_STARTTLS.name, "").strip():
            starttls = False
        if not host:
            if given:
                raise ConfigError(f"{', '.join(given)} set but LLMSIGHT_SMTP_HOST is empty: name the SMTP server "
                                  "that sends alert e-mails (or unset them)")
            return None
        return cls(host=host, port=port or (465 if tls else 587 if starttls else 25),
                   sender=config.resolve(settings.SMTP_FROM, strict=True),
                   to=config.resolve(settings.SMTP_TO, strict=True) or (),
                   rule_to=config.resolve(settings.SMTP_RULE_TO, strict=True) or (),
                   starttls=starttls, tls=tls, user=config.resolve(settings.SMTP_USER, strict=True),
                   password=config.resolve(settings.SMTP_PASSWORD, strict=True),
                   cafile=config.resolve(settings.SMTP_CAFILE, strict=True))

    def display(self) -> str:
        """The server for logs: no user, no password."""
        mode = "tls" if self.tls else "starttls" if self.starttls else "plain"
        return f"email smtp://{self.host}:{self.port} ({mode})"

    def recipients(self, rule: str) -> tuple[str, ...]:
        """The rule's own recipients (the first ``LLMSIGHT_SMTP_RULE_TO`` entry that matches), else the global ones."""
        for pattern, to in self.rule_to:
            if fnmatch.fnmatchcase(rule, pattern):
                return to
        return self.to

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile or None)

    def deliver(self, message: bytes, *, timeout_s: float, deadline_s: float) -> tuple[bool, str | None]:
        """Send one built message to its ``To`` addresses; returns (worth retrying, failure reason or None)."""
        headers = BytesHeaderParser().parsebytes(message)
        to = [address for _name, address in getaddresses(headers.get_all("To", [])) if address]
        connection: smtplib.SMTP | None = None
        cut = threading.Event()

        def cut_socket() -> None:  # the deadline passed: wake a read blocked on the socket
            cut.set()
            sock = getattr(connection, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        deadline = threading.Timer(deadline_s, cut_socket)
        deadline.daemon = True
        deadline.start()
        try:
            # local_hostname: socket.getfqdn() (smtplib's default) can wait seconds on a reverse DNS lookup.
            if self.tls:
                connection = smtplib.SMTP_SSL(timeout=timeout_s, local_hostname=socket.gethostname(),
                                              context=self._context())
            else:
                connection = smtplib.SMTP(timeout=timeout_s, local_hostname=socket.gethostname())
            # smtplib names the server for the certificate check after the constructor's host only; connecting
            # apart (so that the deadline can reach the socket during the greeting) needs it set here.
            connection._host = self.host  # type: ignore[attr-defined]
            connection.connect(self.host, self.port)
            connection.ehlo()
            if self.starttls:
                if not connection.has_extn("starttls"):
                    return False, "the server does not offer STARTTLS (set LLMSIGHT_SMTP_STARTTLS=false only for " \
                                  "a trusted relay, or use LLMSIGHT_SMTP_TLS with its TLS port)"
                connection.starttls(context=self._context())
                connection.ehlo()
            if self.user:
                connection.login(self.user, self.password)
            refused = connection.sendmail(self.sender, to, message)
            if refused:
                log.warning("mail: %s refused %d of %d recipients: %s", self.display(), len(refused), len(to),
                            ", ".join(f"{address} ({code})" for address, (code, _text) in refused.items()))
            return False, None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _text in exc.recipients.values()]
            return any(400 <= code < 500 for code in codes), "every recipient refused: " + ", ".join(
                f"{address} ({code})" for address, (code, _text) in exc.recipients.items())
        except smtplib.SMTPResponseException as exc:
            # A login refusal names no password: smtplib's message is the server's reply.
            return 400 <= exc.smtp_code < 500, f"SMTP {exc.smtp_code}: {_reply(exc.smtp_error)}"
        except ssl.SSLCertVerificationError as exc:
            return False, (f"the server's certificate does not verify ({exc.verify_message}); set LLMSIGHT_SMTP_CAFILE "
                           "to the CA that signed it")
        except (smtplib.SMTPException, OSError) as exc:
            if cut.is_set():
                return True, f"no complete answer within {deadline_s:g} s"
            return True, f"{type(exc).__name__}: {str(exc)[:200]}"
        except Exception as exc:  # anything else is a bug or a setting smtplib refuses: never kill the thread
            return False, f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            deadline.cancel()
            if connection is not None:
                try:
                    connection.close()
                except OSError:
                    pass


def _reply(raw: Any) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:200]


def _one_line(value: Any) -> str:
    """A value for a header or a line of text: line breaks and other control characters become spaces."""
    return " ".join("".join(c if c.isprintable() else " " for c in str(value)).split())


def fmt_value(value: Any) -> str:
    """A value as notifications show it: ``-`` for none, floats to 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def alert_link(dashboard_url: str, notification: dict[str, Any]) -> str:
    """The alert on the dashboard's Alerts page, filtered to its segment; empty without a dashboard address."""
    if not dashboard_url:
        return ""
    segment = notification.get("segment") or {}
    query = [("alert", str(notification.get("alert_id", "")))]
    query += [(key, str(segment[key])) for key in _FILTERS if segment.get(key)]
    return f"{dashboard_url}/alerts?{urlencode(query)}"


def summary(notification: dict[str, Any], *, examples: bool = False,
            dashboard_url: str = "") -> dict[str, Any]:
    """The content every e-mail part shows (the Slack message's): headline, facts, what changed, examples, link.

    All plain text; each part escapes it for its own format."""
    kind = str(notification.get("kind", "firing"))
    severity = str(notification.get("severity") or "")
    segment = notification.get("segment") or {}
    where = " / ".join(str(segment.get(k) or "-") for k in SEGMENT_KEYS)
    rule = str(notification.get("rule", ""))
    evidence = notification.get("evidence") or {}
    value_text, p_text = levels_text(notification.get("value"), notification.get("threshold"),
                                     notification.get("p_value"), evidence)
    facts = [("metric", str(notification.get("metric", ""))), ("level", value_text)]
    if p_text is not None:
        facts.append(("p-value", p_text))
    elif notification.get("p_value") is not None:
        facts.append(("p-value", fmt_value(notification.get("p_value"))))
    facts += [("baseline", fmt_value(notification.get("baseline"))), ("window", str(notification.get("window_start", "")))]
    episode = notification.get("episode") or {}
    if notification.get("incident_id"):
        flapping = f", flapping ({episode.get('flaps', 0)} re-fires)" if episode.get("flapping") else ""
        facts.append(("incident", f"{notification['incident_id']}{flapping}"))
    topic = grown_topic(evidence)
    changed = None
    shown: list[tuple[str, str]] = []
    if topic is not None:
        changed = f"the topic \u201c{topic['label']}\u201d grew: {share_text(topic)} of traffic"
        shown = [(e["trace_id"], e["text"][:EXAMPLE_CHARS] if examples else "")
                 for e in topic["examples"] if e["trace_id"] or (examples and e["text"])]
    else:
        found = [e for e in evidence.get("examples") or [] if isinstance(e, dict)][:3]
        shown = [(str(e.get("trace_id", "")), str(e.get("text", ""))[:EXAMPLE_CHARS] if examples else "")
                 for e in found]
    return {
        "subject": _one_line(f"[llmsight] {kind.upper()}{' ' + severity if severity and kind != 'resolved' else ''}: "
                             f"{rule} on {where}"),
        "headline": f"{kind.upper()}: {rule}{f' ({severity})' if severity else ''} on {where}",
        "description": str(notification.get("description") or ""),
        "facts": facts, "changed": changed, "examples": [(t, x) for t, x in shown if t or x],
        "link": alert_link(dashboard_url, notification),
    }


def _text(content: dict[str, Any]) -> str:
    lines = [_one_line(content["headline"])]
    if content["description"]:
        lines.append(_one_line(content["description"]))
    lines.append("")
    lines += [f"{label}: {_one_line(value)}" for label, value in content["facts"]]
    if content["changed"]:
        lines += ["", f"What changed: {_one_line(content['changed'])}"]
    if content["examples"]:
        lines += ["", "Examples:" if not content["changed"] else "Examples of that topic:"]
        lines += [f"  - trace {trace or '-'}{': ' + _one_line(text) if text else ''}"
                  for trace, text in content["examples"]]
    if content["link"]:
        lines += ["", f"Open in the dashboard: {content['link']}"]
    return "\n".join(lines) + "\n"


def _html(content: dict[str, Any]) -> str:
    e = html.escape
    parts = [f"<h2>{e(content['headline'])}</h2>"]
    if content["description"]:
        parts.append(f"<p>{e(content['description'])}</p>")
    parts.append("<table>" + "".join(f"<tr><th align=\"left\">{e(label)}</th><td>{e(value)}</td></tr>"
                                     for label, value in content["facts"]) + "</table>")
    if content["changed"]:
        parts.append(f"<p><b>What changed:</b> {e(content['changed'])}</p>")
    if content["examples"]:
        items = "".join(f"<li><code>{e(trace or '-')}</code>{' ' + e(text) if text else ''}</li>"
                        for trace, text in content["examples"])
        parts.append(f"<p><b>{'Examples' if not content['changed'] else 'Examples of that topic'}</b></p><ul>{items}</ul>")
    if content["link"]:
        parts.append(f"<p><a href=\"{e(content['link'], quote=True)}\">Open the alert in the dashboard</a></p>")
    return "<!DOCTYPE html><html><body>" + "".join(parts) + "</body></html>\n"


def build_message(notification: dict[str, Any], *, sender: str, to: tuple[str, ...], examples: bool = False,
                  dashboard_url: str = "") -> bytes:
    """The e-mail for one notification (plain text with an HTML alternative), as bytes ready for SMTP."""
    content = summary(notification, examples=examples, dashboard_url=dashboard_url)
    message = EmailMessage()
    message["Subject"] = content["subject"]
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    if notification.get("incident_id"):
        message["X-Llmsight-Incident"] = _one_line(notification["incident_id"])
    message.set_content(_text(content))
    message.add_alternative(_html(content), subtype="html")
    # CRLF line ends: smtplib sends bytes as they are, and a server reads bare LFs as one endless line.
    return message.as_bytes(policy=SMTP_POLICY)
