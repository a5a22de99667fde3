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
_API_KEY_MARKERS = ("sk-", "AKIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "AIza", "eyJ")
_KEY_ASSIGNMENT = re.compile(
    r"(?i)\b((?:api[_-]?key|secret|password|passwd|access[_-]?token|auth[_-]?token)\s*[:=]\s*)[\"']?[^\s\"',;]{6,}"
)
_KEY_WORDS = ("key", "secret", "passw", "token")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# Each pattern begins with a character class, which the regex engine scans for quickly; the
# boundaries and checksums are then checked in Python. (One alternation of all three, or
# patterns that begin with a look-behind or \b, cost three to ten times more on long texts.)
_IBAN = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?")
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_NUMBER_RUN = re.compile(r"[\d+(][\d .\-()]{6,}\d")
_IPV6 = re.compile(r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]{2,}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


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


def _iban(match: re.Match[str]) -> str:
    text = match.group(0)
    source, start, end = match.string, match.start(), match.end()
    if (start and source[start - 1].isalnum()) or (end < len(source) and source[end].isalnum()):
        return text
    return "[IBAN]" if iban_ok(text) else text


def _number_run(match: re.Match[str]) -> str:
    """A card number (13-19 digits, Luhn) or a phone number (9-15 digits), else unchanged."""
    text = match.group(0)
    # Trailing separators belong to the sentence, not the number.
    core = text.rstrip(" .-(")
    source, start, end = match.string, match.start(), match.start() + len(core)
    if (start and (source[start - 1].isalnum() or source[start - 1] in ".+")) or (
        end < len(source) and (source[end].isalnum() or source[end] in "@")
    ):
        return text
    digits = "".join(ch for ch in core if ch.isdigit())
    tail = text[len(core):]
    if 13 <= len(digits) <= 19 and luhn_ok(digits) and not any(ch in core for ch in "()+."):
        return "[CARD]" + tail
    plain = core.isdigit()  # no separators: an order number is as likely as a phone number
    if (10 if plain else 9) <= len(digits) <= 15 and not _ISO_DATE.fullmatch(core) and "." not in core:
        return "[PHONE]" + tail
    return text


def _ipv4(match: re.Match[str]) -> str:
    text, source, start, end = match.group(0), match.string, match.start(), match.end()
    if (start and (source[start - 1].isdigit() or source[start - 1] == ".")) or (
        end < len(source) and (source[end].isdigit() or (source[end] == "." and source[end + 1: end + 2].isdigit()))
    ):
        return text
    if all(int(part) <= 255 for part in text.split(".")):
        return "[IP]"
    return text


def _ipv6(match: re.Match[str]) -> str:
    text = match.group(0)
    if text.count(":") < 2:
        return text
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return text
    return "[IP]"


def redact(text: str) -> str:
    """The default redactor: replace personal data and secrets in ``text`` with labels."""
    if not text:
        return text
    lower = text.lower()
    if "bearer" in lower or "token" in lower:
        text = _BEARER.sub(lambda m: f"{m.group(1)} [TOKEN]", text)
    if any(marker in text for marker in _API_KEY_MARKERS):
        text = _API_KEYS.sub("[API_KEY]", text)
    if ("=" in text or ":" in text) and any(word in lower for word in _KEY_WORDS):
        text = _KEY_ASSIGNMENT.sub(lambda m: f"{m.group(1)}[API_KEY]", text)
    if "@" in text:
        text = _EMAIL.sub("[EMAIL]", text)
    text = _IBAN.sub(_iban, text)
    if "." in text:
        text = _IPV4.sub(_ipv4, text)
    text = _NUMBER_RUN.sub(_number_run, text)
    if "::" in text or text.count(":") >= 2:
        text = _IPV6.sub(_ipv6, text)
    return text
