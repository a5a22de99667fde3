"""Alerting's settings: the rules file and the notification targets (webhook, Slack, e-mail).

Each is a :class:`llmsight.config.Setting` in the one registry (:data:`llmsight.config.SETTINGS`);
the service reads it with ``config.resolve(setting, strict=True)`` and fails fast on a bad value.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from llmsight.config import define, parse_bool, parse_positive_int, parse_text

RULES = define("LLMSIGHT_RULES", "", parse_text,
                "Path to a YAML file of alert rules; empty means the default rules shipped in the package.", "alerts")

WEBHOOK_URL = define("LLMSIGHT_WEBHOOK_URL", "", parse_text,
                      "Generic JSON webhook that receives alert notifications (keep it in a secret).", "alerts")

WEBHOOK_TOKEN = define("LLMSIGHT_WEBHOOK_TOKEN", "", parse_text,
                        "Bearer token sent to LLMSIGHT_WEBHOOK_URL, if it needs one.", "alerts")

SLACK_WEBHOOK_URL = define("LLMSIGHT_SLACK_WEBHOOK_URL", "", parse_text,
                            "Slack incoming-webhook URL for alert notifications (keep it in a secret).", "alerts")

NOTIFY_MAX_ATTEMPTS = define("LLMSIGHT_NOTIFY_MAX_ATTEMPTS", 6, parse_positive_int,
                              "Attempts per notification (exponential backoff between them).", "alerts")

NOTIFY_EXAMPLES = define("LLMSIGHT_NOTIFY_EXAMPLES", False, parse_bool,
                          "Put the example texts behind an alert (users' prompts and outputs) in notifications; "
                          "off by default, since they carry user text to a third party (Slack, a webhook).",
                          "alerts")

# -- e-mail (SMTP): llmsight.alerts.mail ----------------------------------------------------------------
_ADDRESS = re.compile(r"^[^@\s,;<>\"'()\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def parse_address(raw: str) -> str:
    """One plain e-mail address (``alerts@example.com``), or empty."""
    value = raw.strip()
    if value and not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an e-mail address; expected a plain address such as alerts@example.com")
    return value


def parse_addresses(raw: str) -> tuple[str, ...]:
    """Comma-separated e-mail addresses (blanks around them ignored); empty means none."""
    return tuple(parse_address(part) for part in raw.split(",") if part.strip())


def parse_rule_recipients(raw: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``rule=addr,addr; other-*=addr``: per rule (a name or a glob), its own recipients."""
    routes = []
    for entry in raw.split(";"):
        if not entry.strip():
            continue
        rule, sep, addresses = entry.partition("=")
        if not sep or not rule.strip():
            raise ValueError(f"{entry.strip()!r} is not rule=address[,address]; entries are separated by ';', "
                             "e.g. input-drift=ml-team@example.com;output-*=trust@example.com")
        to = parse_addresses(addresses)
        if not to:
            raise ValueError(f"the rule {rule.strip()!r} has no address after '='")
        routes.append((rule.strip(), to))
    return tuple(routes)


def parse_smtp_port(raw: str) -> int:
    """A TCP port from 1 to 65535; 0 (the default) picks 465 with implicit TLS, 587 with STARTTLS, else 25."""
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("expected a port number such as 587 (STARTTLS), 465 (TLS) or 25, or 0 for the usual one") from None
    if not 0 <= value <= 65535:
        raise ValueError("expected a TCP port from 1 to 65535, or 0 for the usual one")
    return value


def parse_http_url(raw: str) -> str:
    """An http(s) URL without a query or fragment, trailing ``/`` removed; empty means none."""
    value = raw.strip().rstrip("/")
    if not value:
        return ""
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query or parsed.fragment:
        raise ValueError("expected the dashboard's address as http(s)://host[:port][/path], e.g. "
                         "https://llmsight.example.com")
    return value


SMTP_HOST = define("LLMSIGHT_SMTP_HOST", "", parse_text,
                    "SMTP server that sends alert e-mails (empty: no e-mail).", "alerts")

SMTP_PORT = define("LLMSIGHT_SMTP_PORT", 0, parse_smtp_port,
                    "SMTP port; 0 means 465 with LLMSIGHT_SMTP_TLS, 587 with STARTTLS, else 25.", "alerts")

SMTP_STARTTLS = define("LLMSIGHT_SMTP_STARTTLS", True, parse_bool,
                        "Upgrade the SMTP connection with STARTTLS, and send nothing when the server does not "
                        "offer it; on unless LLMSIGHT_SMTP_TLS is on.", "alerts")

SMTP_TLS = define("LLMSIGHT_SMTP_TLS", False, parse_bool,
                   "Implicit TLS from the first byte (SMTPS, usually port 465) instead of STARTTLS.", "alerts")

SMTP_USER = define("LLMSIGHT_SMTP_USER", "", parse_text,
                    "SMTP login user, if the server needs one (then LLMSIGHT_SMTP_PASSWORD too).", "alerts")

SMTP_PASSWORD = define("LLMSIGHT_SMTP_PASSWORD", "", lambda raw: raw,
                        "SMTP login password (keep it in a secret; never logged).", "alerts")

SMTP_FROM = define("LLMSIGHT_SMTP_FROM", "", parse_address,
                    "Sender address of alert e-mails (required with LLMSIGHT_SMTP_HOST).", "alerts")

SMTP_TO = define("LLMSIGHT_SMTP_TO", "", parse_addresses,
                  "Comma-separated recipients of every alert e-mail whose rule has none of its own.", "alerts")

SMTP_RULE_TO = define("LLMSIGHT_SMTP_RULE_TO", "", parse_rule_recipients,
                       "Per-rule recipients, rule=addr[,addr] separated by ';' (a rule may be a glob such as "
                       "output-*); the first match replaces LLMSIGHT_SMTP_TO for that rule.", "alerts")

SMTP_CAFILE = define("LLMSIGHT_SMTP_CAFILE", "", parse_text,
                      "PEM file of the CA that signed the SMTP server's certificate; empty means the system "
                      "trust store.", "alerts")

DASHBOARD_URL = define("LLMSIGHT_DASHBOARD_URL", "", parse_http_url,
                        "The dashboard's public address (https://llmsight.example.com): notifications then link to "
                        "the alert.", "alerts")
