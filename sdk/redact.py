"""Default redaction: personal data and secrets are replaced before an event leaves the process.

Covered, each replaced by a label such as ``[EMAIL]`` so that analysts still see that something
was there:

* secrets: PEM private keys, passwords in URLs (``scheme://user:pass@host``), bearer tokens and
  ``Basic`` authorization headers, API keys (OpenAI, Anthropic, AWS access key ids ``AKIA``/``ASIA``,
  GitHub ``ghp_``/``github_pat_``, Slack tokens, Stripe ``sk_live_``/``rk_live_``, Google, JWTs),
  Slack webhook URLs, AWS secret access keys (next to "aws"), and values assigned to names such as
  ``api_key``, ``password`` or ``*_secret_*``;
* personal data: e-mail addresses, US social security numbers, IBANs (any case, spaced or not,
  mod-97 checked), card numbers (Luhn checked), IPv4 and IPv6 addresses, and phone numbers.

The order matters: secrets and structured numbers (SSN, IBAN, card, IP) are replaced before the
loose phone pattern, so a card number is labelled ``[CARD]`` and not ``[PHONE]``.

**Cost.** Every pattern is linear in the length of the text: an unbounded run is either the last
thing a pattern matches (so it never has to give characters back) or starts where a run of its
characters starts (a look-behind), so no character is scanned again from a later start; all other
repetitions are bounded. Candidates that need a check in Python (Luhn, mod 97, an address parse)
share a budget per text (:data:`CHECK_BUDGET`); past it, the rest of the text is masked by the
same patterns without the checks, which can over-redact a pathological text but never leaks and
never takes longer. ``redact(text, pace)`` calls ``pace()`` between steps, so the SDK's worker can
give the GIL back to the host while it redacts.

``init(redact=callable)`` replaces all of this with the user's function (``str -> str``);
``init(redact=False)`` turns it off.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable

Redactor = Callable[[str], str]

# Python-checked candidates per text; past it, matches are masked without the check.
CHECK_BUDGET = 512

_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----|\Z)", re.S
)
_URL_PASSWORD = re.compile(r"(://[^\s/?#@:]{0,256}):[^\s/?#@]{1,256}@")
_SLACK_WEBHOOK = re.compile(r"(hooks\.slack\.com/)(?:services|workflows|triggers)/[A-Za-z0-9_/\-]+")
_BEARER = re.compile(r"(?i)(?=[bt])\b(bearer|token)\s+[A-Za-z0-9\-._~+/]{8,}=*")
_BASIC = re.compile(r"(?i)(?=b)\b(basic)\s{1,8}([A-Za-z0-9+/]{8,}={0,2})")
# Each alternative starts with one of these letters: a lookahead lets the engine skip other positions.
_API_KEYS = re.compile(
    r"(?=[sAgxrke])"
    r"\b(?:"
    r"sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"  # OpenAI, Anthropic
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id (long-term, temporary)
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
    r"|github_pat_[A-Za-z0-9_]{22,}"  # GitHub fine-grained
    r"|xox[abposre]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|xapp-[A-Za-z0-9\-]{10,}"  # Slack app-level
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}"  # Stripe secret and restricted keys
    r"|AIza[0-9A-Za-z\-_]{35}"  # Google
    r")"
    # A JWT starts where a run of its characters starts, so "eyJeyJeyJ..." is scanned once.
    r"|e(?<![A-Za-z0-9_\-]e)yJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
)
_API_KEY_MARKERS = ("sk-", "AKIA", "ASIA", "gh", "xox", "xapp-", "k_live_", "k_test_", "AIza", "eyJ")
_GITHUB_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")


def _api_key_marker(text: str) -> bool:
    """Whether ``_API_KEYS`` is applied: ``any(marker in text for marker in _API_KEY_MARKERS)``, except
    that a text whose only marker is ``gh`` (in English: "right", "though") is passed over unless it holds
    a GitHub token's prefix, since no alternative of the pattern can match it then. Single characters are
    tested first: ``in`` looks for one with memchr, ~20x faster than for a longer marker."""
    if "_" in text:
        if "k_live_" in text or "k_test_" in text:
            return True
        # "github_pat_" holds no "gh" (g-i-t-h): looked for on its own, or a fine-grained token would leak.
        if ("gh" in text and any(prefix in text for prefix in _GITHUB_PREFIXES)) or "github_pat_" in text:
            return True
    if "-" in text and ("sk-" in text or "xapp-" in text):
        return True
    if "A" in text and ("AKIA" in text or "ASIA" in text or "AIza" in text):
        return True
    return ("x" in text and "xox" in text) or ("J" in text and "eyJ" in text)
# Bounded name and separators; the value run ends the pattern, so it never backtracks.
_ASSIGNED = r"[A-Za-z0-9_\-]{0,40}[\"']?\s{0,4}[:=]\s{0,4}[\"']?)[^\s\"',;]{6,}"
_KEY_ASSIGNMENT = re.compile(
    r"(?i)((?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|access[_-]?key)" + _ASSIGNED
)
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)((?:secrets?|passw(?:or)?d|private[_-]?key)(?![A-Za-z])" + _ASSIGNED
)
_KEY_WORDS = ("key", "secret", "passw", "token")
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+](?<![A-Za-z0-9/+=][A-Za-z0-9/+])[A-Za-z0-9/+]{39}(?![A-Za-z0-9/+=])")
# The local part starts where a run of its characters starts: one attempt per run, not per character.
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-](?<![A-Za-z0-9._%+\-][A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_SSN = re.compile(r"\d(?<![\d\-]\d)\d\d-\d\d-\d{4}(?![\d\-])")
# The check digits, found first (a digit is a cheap first character to scan for), after a country
# code that starts a word, with or without a space between them.
_IBAN_DIGITS = re.compile(
    r"\d(?:(?<=[A-Za-z]{2}\d)(?<![A-Za-z0-9][A-Za-z]{2}\d)|(?<=[A-Za-z]{2} \d)(?<![A-Za-z0-9][A-Za-z]{2} \d))\d"
)
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
# A run of number characters from its first possible start; the callback cuts it at its last digit.
# (The old ``...{6,}\d`` gave characters back from every start: quadratic on "((((".)
_NUMBER_RUN = re.compile(r"[\d+(][\d .\-()]{6,}")
# Starts where a run of hex digits starts (or at a colon): one attempt per run, not per character.
_IPV6 = re.compile(r"(?=[0-9A-Fa-f:])(?<![0-9A-Fa-f])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[A-Za-z0-9]{1,16})?")

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGIT = re.compile(r"\d")

# IBAN length by country (the IBAN registry); the rest of the text after the check digits is cut there.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
# What follows the check digits, by its length (the IBAN's less 4): every country's length has its pattern.
_IBAN_BODIES: dict[int, re.Pattern[str]] = {
    n - 4: re.compile(r"(?:[ \-]?[A-Za-z0-9]){" + str(n - 4) + r"}(?![A-Za-z0-9])") for n in set(_IBAN_LENGTHS.values())
}


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    compact = text.replace(" ", "").replace("-", "").upper()
    if not 15 <= len(compact) <= 34 or not compact.isascii() or not compact.isalnum():
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


class _Work:
    """The checks left for one text, and the caller's pace function."""

    __slots__ = ("left", "pace")

    def __init__(self, pace: Callable[[], None] | None) -> None:
        self.left = CHECK_BUDGET
        self.pace = pace

    def step(self) -> None:
        if self.pace is not None:
            self.pace()


def _checked_sub(pattern: re.Pattern[str], check: Callable[[re.Match[str]], str], text: str, work: _Work,
                 blunt: Callable[[str], str]) -> str:
    """``pattern.sub(check, text)`` within the budget; once it is spent, ``blunt`` masks the rest."""
    if work.left <= 0:
        return blunt(text)
    out: list[str] = []
    pos = 0
    for match in pattern.finditer(text):
        if work.left <= 0:
            out.append(blunt(text[match.start():]))
            return "".join(out)
        work.left -= 1
        if not work.left & 15:
            work.step()
        out.append(text[pos:match.start()])
        out.append(check(match))
        pos = match.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _basic(match: re.Match[str]) -> str:
    token = match.group(2)
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return f"{match.group(1)} [TOKEN]" if b":" in decoded else match.group(0)


def _aws_secret(match: re.Match[str]) -> str:
    text = match.group(0)
    mixed = any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text)
    return "[AWS_SECRET]" if mixed else text


def _ssn(match: re.Match[str]) -> str:
    text = match.group(0)
    area, group, serial = text[:3], text[4:6], text[7:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return text
    return "[SSN]"


def _ibans(text: str, work: _Work) -> str:
    out: list[str] = []
    pos = 0
    search = _IBAN_DIGITS.search
    match = search(text)
    while match is not None:
        digits_at = match.start()
        start = digits_at - (3 if text[digits_at - 1] == " " else 2)
        if start < pos:  # inside the IBAN just replaced
            match = search(text, match.end())
            continue
        if work.left <= 0:  # budget spent: mask every remaining IBAN-shaped start, unchecked
            out.append(text[pos:start])
            out.append(_IBAN_DIGITS.sub("##", text[start:]))
            return "".join(out)
        work.left -= 1
        if not work.left & 15:
            work.step()
        length = _IBAN_LENGTHS.get(text[start:start + 2].upper())
        body = _IBAN_BODIES[length - 4].match(text, match.end()) if length else None
        if body is not None and iban_ok(text[start:body.end()]):
            out.append(text[pos:start])
            out.append("[IBAN]")
            pos = body.end()
        match = search(text, body.end() if body is not None and pos == body.end() else match.end())
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _ipv4(match: re.Match[str]) -> str:
    text, source, start, end = match.group(0), match.string, match.start(), match.end()
    if (start and (source[start - 1].isdigit() or source[start - 1] == ".")) or (
        end < len(source) and (source[end].isdigit() or (source[end] == "." and source[end + 1: end + 2].isdigit()))
    ):
        return text
    if all(int(part) <= 255 for part in text.split(".")):
        return "[IP]"
    return text


def _number_run(match: re.Match[str]) -> str:
    """A card number (13-19 digits, Luhn) or a phone number (9-15 digits), else unchanged."""
    text = match.group(0)
    # The run is cut after its last digit: trailing separators belong to the sentence, not the number.
    last = len(text) - 1
    while last >= 0 and not text[last].isdigit():
        last -= 1
    if last < 7:  # fewer than 8 characters up to the last digit
        return text
    core, tail = text[: last + 1], text[last + 1:]
    source, start, end = match.string, match.start(), match.start() + len(core)
    if (start and (source[start - 1].isalnum() or source[start - 1] in ".+")) or (
        end < len(source) and (source[end].isalnum() or source[end] in "@")
    ):
        return text
    digits = "".join(_DIGIT.findall(core))
    if 13 <= len(digits) <= 19 and luhn_ok(digits) and not any(ch in core for ch in "()+."):
        return "[CARD]" + tail
    plain = core.isdigit()  # no separators: an order number is as likely as a phone number
    if (10 if plain else 9) <= len(digits) <= 15 and not _ISO_DATE.fullmatch(core) and "." not in core:
        return "[PHONE]" + tail
    return text


def _blunt_numbers(text: str) -> str:
    """Past the budget: every digit is masked (no Luhn or length check, no Python per match)."""
    return _DIGIT.sub("#", text)


def _ipv6(match: re.Match[str]) -> str:
    text = match.group(0)
    if ":::" in text or ("::" not in text and text.count(":") != 7):
        return text  # a time of day, a ratio, a Python slice: not an address
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return text
    return "[IP]"


def _no_step() -> None:
    pass


def redact(text: str, pace: Callable[[], None] | None = None) -> str:
    """The default redactor: replace personal data and secrets in ``text`` with labels.

    ``pace``, if given, is called between steps (the SDK's worker passes one that yields the GIL).
    """
    if not text:
        return text
    work = _Work(pace)
    step = work.step if pace is not None else _no_step
    # Each test below is the condition for a step to be able to change the text, written to be cheap:
    # a single character is looked for with memchr, ~10x faster than a word (the same answer: the word
    # holds that character).
    if "V" in text and "PRIVATE KEY" in text:
        text = _PEM.sub("[PRIVATE_KEY]", text)
    if ":" in text and "://" in text:
        text = _URL_PASSWORD.sub(r"\1:[PASSWORD]@", text)
        if "hooks.slack.com/" in text:
            text = _SLACK_WEBHOOK.sub(r"\1[SLACK_WEBHOOK]", text)
    step()
    lower = text.lower()
    token = "token" in lower
    if token or "bearer" in lower:
        text = _BEARER.sub(r"\1 [TOKEN]", text)
    if "basic" in lower:
        text = _checked_sub(_BASIC, _basic, text, work, lambda rest: _BASIC.sub(r"\1 [TOKEN]", rest))
    if _api_key_marker(text):
        text = _API_KEYS.sub("[API_KEY]", text)
    step()
    if ("=" in text or ":" in text) and (
            token or "key" in lower or "secret" in lower or "passw" in lower):  # _KEY_WORDS
        text = _KEY_ASSIGNMENT.sub(r"\1[API_KEY]", text)
        text = _SECRET_ASSIGNMENT.sub(r"\1[SECRET]", text)
    if ("w" in lower and "aws" in lower) or ("k" in lower and "akia" in lower) or "asia" in lower:
        text = _checked_sub(_AWS_SECRET, _aws_secret, text, work, lambda rest: _AWS_SECRET.sub("[AWS_SECRET]", rest))
    step()
    if "@" in text:
        text = _EMAIL.sub("[EMAIL]", text)
    step()
    # SSNs, IBANs, IPv4 addresses, card and phone numbers all need a digit: without one, none of those
    # steps can change the text. The number runs' step still runs when an IPv6 step follows, since the
    # budget it spends decides how that step masks.
    digits = (("0" in text or "1" in text or "2" in text or "3" in text or "4" in text or "5" in text or "6" in text
               or "7" in text or "8" in text or "9" in text) if text.isascii() else _DIGIT.search(text) is not None)
    ipv6 = ":" in text and text.count(":") >= 2  # as '"::" in text or ...': "::" is two colons
    if digits:
        if "-" in text:
            text = _checked_sub(_SSN, _ssn, text, work, lambda rest: _SSN.sub("[SSN]", rest))
        text = _ibans(text, work)
        step()
        if "." in text:
            text = _checked_sub(_IPV4, _ipv4, text, work, lambda rest: _IPV4.sub("[IP]", rest))
        step()
    if digits or ipv6:
        text = _checked_sub(_NUMBER_RUN, _number_run, text, work, _blunt_numbers)
        step()
    if ipv6:
        text = _checked_sub(_IPV6, _ipv6, text, work, lambda rest: _IPV6.sub("[IP]", rest))
    return text
