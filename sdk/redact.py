"""Default redaction: personal data and secrets are replaced before an event leaves the process.

Covered: e-mail addresses, bearer tokens and API keys, IBANs (mod-97 checked), card numbers
(Luhn checked), IPv4 and IPv6 addresses, and phone numbers. Each match becomes a label such
as ``[EMAIL]`` so that analysts still see that something was there.

The order matters: secrets and structured numbers (IBAN, card, IP) are replaced before the
loose phone pattern, so a card number is labelled ``[CARD]`` and not ``[PHONE]``.

``init(redact=callable)`` replaces all of this with the user's function (``str -> str``);
``init(redact=False)`` turns it off.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

Redactor = Callable[[str], str]

_BEARER = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9\-._~+/]{8,}=*")
_API_KEYS = re.compile(
    r"\b(?:"
    r"sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"  # OpenAI, Anthropic
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z\-_]{35}"  # Google
    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # JWT
    r")"
)
_KEY_ASSIGNMENT = re.compile(
    r"(?i)\b((?:api[_-]?key|secret|password|passwd|access[_-]?token|auth[_-]?token)\s*[:=]\s*)[\"']?[^\s\"',;]{6,}"
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_CARD = re.compile(r"(?<![\d\w])\d(?:[ \-]?\d){12,18}(?![\d\w])")
_IPV4 = re.compile(r"(?<![\d.])(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
_DIGIT = re.compile(r"\d")
_PHONE = re.compile(r"(?<![\w+])\+?(?:\(\d{1,4}\)[ .\-]?)?\d[\d .\-()]{6,18}\d(?![\w])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)


def _iban(match: re.Match[str]) -> str:
    return "[IBAN]" if iban_ok(match.group(0)) else match.group(0)


def _ipv6(match: re.Match[str]) -> str:
    text = match.group(0)
    if text.count(":") < 2 or not any(c.isalnum() for c in text):
        return text
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return text
    return "[IP]"


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    # 9-15 digits: short enough to exclude card numbers, long enough to exclude dates (20261121).
    if not 9 <= digits <= 15:
        return text
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        return text
    return "[PHONE]"


def redact(text: str) -> str:
    """The default redactor: replace personal data and secrets in ``text`` with labels."""
    if not text:
        return text
    text = _BEARER.sub(lambda m: f"{m.group(1)} [TOKEN]", text)
    text = _API_KEYS.sub("[API_KEY]", text)
    text = _KEY_ASSIGNMENT.sub(lambda m: f"{m.group(1)}[API_KEY]", text)
    if "@" in text:
        text = _EMAIL.sub("[EMAIL]", text)
    text = _IBAN.sub(_iban, text)
    if _DIGIT.search(text):
        text = _CARD.sub(_card, text)
        text = _IPV4.sub("[IP]", text)
        text = _PHONE.sub(_phone, text)
    if "::" in text or text.count(":") >= 2:
        text = _IPV6.sub(_ipv6, text)
    return text
