"""The redactor's cheaper guards redact exactly what the guards before them did.

``redact`` decides with ``in`` tests whether each pattern is worth running. Those tests were made cheaper
(a single character looked for before a word that holds it, a GitHub token's prefix instead of any ``gh``,
one count of colons); the patterns and their order are unchanged. ``_redact_before`` below is ``redact`` as it was at 0f6f7d2, on the same patterns: every text
here must come out of both the same, character for character.
"""

from __future__ import annotations

import csv
import random

from llmsight import redact as R
from llmsight.redact import redact


def _redact_before(text: str) -> str:
    """``llmsight.redact.redact`` as it was (0f6f7d2), without ``pace``, and with one fix made since: a
    fine-grained GitHub token (``github_pat_``, which holds no ``gh``) is a marker of its own (it leaked when
    the text held no other marker)."""
    if not text:
        return text
    work = R._Work(None)
    if "PRIVATE KEY" in text:
        text = R._PEM.sub("[PRIVATE_KEY]", text)
    if "://" in text:
        text = R._URL_PASSWORD.sub(r"\1:[PASSWORD]@", text)
        if "hooks.slack.com/" in text:
            text = R._SLACK_WEBHOOK.sub(r"\1[SLACK_WEBHOOK]", text)
    lower = text.lower()
    if "bearer" in lower or "token" in lower:
        text = R._BEARER.sub(r"\1 [TOKEN]", text)
    if "basic" in lower:
        text = R._checked_sub(R._BASIC, R._basic, text, work, lambda rest: R._BASIC.sub(r"\1 [TOKEN]", rest))
    if any(marker in text for marker in ("sk-", "AKIA", "ASIA", "gh", "xox", "xapp-", "k_live_", "k_test_", "AIza",
                                         "eyJ", "github_pat_")):
        text = R._API_KEYS.sub("[API_KEY]", text)
    if ("=" in text or ":" in text) and any(word in lower for word in ("key", "secret", "passw", "token")):
        text = R._KEY_ASSIGNMENT.sub(r"\1[API_KEY]", text)
        text = R._SECRET_ASSIGNMENT.sub(r"\1[SECRET]", text)
    if "aws" in lower or "akia" in lower or "asia" in lower:
        text = R._checked_sub(R._AWS_SECRET, R._aws_secret, text, work,
                              lambda rest: R._AWS_SECRET.sub("[AWS_SECRET]", rest))
    if "@" in text:
        text = R._EMAIL.sub("[EMAIL]", text)
    digits = any(d in text for d in "0123456789") if text.isascii() else R._DIGIT.search(text) is not None
    ipv6 = "::" in text or text.count(":") >= 2
    if digits:
        if "-" in text:
            text = R._checked_sub(R._SSN, R._ssn, text, work, lambda rest: R._SSN.sub("[SSN]", rest))
        text = R._ibans(text, work)
        if "." in text:
            text = R._checked_sub(R._IPV4, R._ipv4, text, work, lambda rest: R._IPV4.sub("[IP]", rest))
    if digits or ipv6:
        text = R._checked_sub(R._NUMBER_RUN, R._number_run, text, work, R._blunt_numbers)
    if ipv6:
        text = R._checked_sub(R._IPV6, R._ipv6, text, work, lambda rest: R._IPV6.sub("[IP]", rest))
    return text


# Pieces of what each pattern looks for, near misses, and the characters whose case folding differs
# (the long s, the Kelvin sign, dotted and dotless i).
_PIECES = [
    "sk-", "sk-abcdefghijklmnop1234", "sk-ant-AAAAAAAAAAAAAAAAAAAAAA", "sk-proj-x", "AKIAIOSFODNN7EXAMPLE", "ASIA",
    "ASIAABCDEFGHIJKLMNOP", "AIza", "AIzaSyA-1234567890abcdefghijklmnopqrstu", "ghp_", "ghp_" + "a1" * 18,
    "gho_" + "B" * 36, "ghu_x", "ghs_" + "9" * 31, "ghr_" + "z" * 30, "github_pat_11ABCDEFGHIJKLMNOPQRSTUV_x",
    "github_pat_" + "Q" * 30, "gh", "though", "right", "xox", "xoxb-1234567890-abcdef", "xapp-1-A0123456789-xyz",
    "sk_live_abcdefghij12", "rk_test_0123456789ab", "k_live_", "k_test_", "eyJ",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "Bearer abc.def.ghi12345", "token", "TOKEN abcdefgh12", "bearer", "Basic dXNlcjpwYXNzd29yZA==", "basic",
    "Baſic dXNlcjpwYXNz", "api_key=supersecret123", "API-KEY: 'abcdef12'", "apikey", "access_token = zzzzzzzz",
    "to\u212aen=abcdefgh", "paſſword=hunter2hunter2", "password: hunter22", "secret", "ſecret=abcdefgh", "passw",
    "private_key=abcdefgh", "key", "\u212aey", "aws", "AWS", "akia", "asia",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "@", "bob.smith+x@example.co.uk", "a@b", "x@y.io",
    "://", "https://user:pass@host.example/x", "hooks.slack.com/services/T000/B000/XXXX",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----", "PRIVATE KEY", "078-05-1120",
    "123-45-6789", "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "de89370400440532013000",
    "4111 1111 1111 1111", "4012-8888-8888-1881", "+44 20 7946 0958", "(555) 123-4567", "192.168.1.20",
    "10.0.0.256", "2001:db8::8a2e:370:7334", "::1", "12:30:45", "a:b:c", "2026-11-21", "3.14159", "((((((((",
    "٣٤٥٦٧٨٩٠١٢", "İ", "ı", "ſ", "\u212a", "=", ":", "_", "-", "A", "J", "g", "h", " ", "\n", "é", "😉",
    "user: ", "assistant: ", "card", "refund", "the", "of", "\ud800", "V", "w", "k", "x", "PRIVATE", "KEY",
    "-----BEGIN PRIVATE KEY-----", "aw", "ws", "aki", "sia", "tok", "oken", "bearer abcdefghijk",
]


def _generated(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = [rng.choice(_PIECES) for _ in range(rng.randint(1, 12))]
        separator = rng.choice(["", " ", "  ", "\n", ", ", "_", "-", "="])
        texts.append(separator.join(parts))
    return texts


def test_the_guards_change_nothing_on_adversarial_texts():
    texts = _PIECES + _generated(20_000, 17)
    different = [t for t in texts if redact(t) != _redact_before(t)]
    assert not different, different[:5]
    # The texts reach every pattern: many are changed, many are not.
    changed = sum(redact(t) != t for t in texts)
    assert 0.3 * len(texts) < changed < 0.97 * len(texts)


def test_the_guards_change_nothing_on_the_shared_data(shared_data):
    texts = []
    for path in [shared_data / "banking77" / "test.csv", shared_data / "banking77" / "train.csv",
                 *sorted((shared_data / "toxicity").glob("*.csv"))]:
        with open(path, encoding="utf-8", newline="") as handle:
            texts += [row[0] for row in csv.reader(handle) if row]
    assert len(texts) > 50_000
    # As the OTLP receiver sees them: one text, or a few as "role: text" lines.
    rng = random.Random(5)
    joined = ["\n".join(f"user: {t}" for t in rng.sample(texts, 3)) for _ in range(5_000)]
    different = [t for t in texts + joined if redact(t) != _redact_before(t)]
    assert not different, different[:5]
    assert sum(redact(t) != t for t in texts) > 40  # the data sets hold some e-mails, numbers, handles (80)


def test_a_github_token_is_found_behind_other_words():
    # The narrowed guard still sends each GitHub token shape to the pattern.
    for token in ("ghp_" + "a1" * 18, "gho_" + "B" * 36, "ghs_" + "9" * 31, "ghr_" + "z" * 30, "ghu_" + "Y" * 30):
        assert redact(f"the token is {token} right") == "the token is [API_KEY] right"
    assert redact("I thought it right, though high") == "I thought it right, though high"


def test_every_country_length_of_an_iban_is_checked():
    # A country code and two digits used to look the rest up for 16 of the 35 lengths only: "be 18" or
    # "NL91..." raised KeyError, and the SDK and the receiver shipped "[redaction failed]" for the field.
    assert redact("Do you have to be 18 to make an account?") == "Do you have to be 18 to make an account?"
    assert redact("no 12 more, ch 10, fi 20, nl 18") == "no 12 more, ch 10, fi 20, nl 18"
    for iban in ("NL91ABNA0417164300", "NL91 ABNA 0417 1643 00", "BE68539007547034", "CH9300762011623852957",
                 "FI2112345600000785", "NO9386011117947", "DK5000400440116243"):
        assert R.iban_ok(iban), iban
        assert redact(f"iban {iban} ok") == "iban [IBAN] ok", iban
    for country, length in R._IBAN_LENGTHS.items():  # any text of the right shape is looked at, none raises
        assert redact(f"{country}00" + "1" * (length - 4)) in (f"{country}00" + "1" * (length - 4), "[IBAN]")
