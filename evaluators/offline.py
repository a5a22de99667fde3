"""The offline evaluators: pure functions from a call's texts (and, for relevance, its two vectors)
to a :class:`Verdict`. No I/O here; the runner reads the calls and the cached embeddings.

Scores are in [0, 1], 1 the best; ``None`` when the check cannot tell (a language it cannot decide).
A call is flagged when its score is under the evaluator's ``flag_below`` (0.5 by default).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from llmsight.evaluators import language
from llmsight.redact import redact

# The cosine of an answer that is clearly about the question (MiniLM on question-answer pairs).
RELEVANCE_FULL_COSINE = 0.6

_LABEL = re.compile(r"\[([A-Z][A-Z_]*)\]")
_DANGLING_WORDS = frozenset(
    "and or but the a an to of with for because which that if when as by from in on at is are was "
    "y o de la el que con para und oder der die das mit et ou le les des pour".split())
_DANGLING_END = re.compile(r"(?:[,:;(\[{\-/]|\b(\w+))\s*$")
_LENGTH_REASONS = ("length", "max_tokens", "max_output_tokens")


@dataclass(frozen=True)
class Verdict:
    """One evaluator's judgement of one call."""

    score: float | None
    label: str
    flagged: bool
    reason: str = ""
    tokens: int = 0
    cost_usd: float = 0.0


def relevance(cosine: float, *, min_cosine: float = 0.15, flag_below: float = 0.5) -> Verdict:
    """Prompt-answer cosine as a score: 0 at or under 0, 0.5 at ``min_cosine``, 1 from
    :data:`RELEVANCE_FULL_COSINE` up (piecewise linear)."""
    if cosine <= min_cosine:
        score = max(0.0, 0.5 * cosine / min_cosine) if min_cosine > 0 else 0.0
    else:
        span = max(RELEVANCE_FULL_COSINE - min_cosine, 1e-9)
        score = min(1.0, 0.5 + 0.5 * (cosine - min_cosine) / span)
    flagged = score < flag_below
    return Verdict(score, "off_topic" if flagged else "relevant", flagged, f"cosine {cosine:.3f}")


def finish_reasons(metadata: str | dict[str, Any]) -> list[str]:
    """The finish reasons a call's metadata records (the SDK's ``finish_reason``, OTLP's list)."""
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata) if metadata.strip() else {}
        except ValueError:
            return []
    if not isinstance(metadata, dict):
        return []
    found: list[str] = []
    otel = metadata.get("otel")
    for holder in (metadata, otel if isinstance(otel, dict) else {}):
        for key in ("finish_reason", "finish_reasons", "stop_reason"):
            value = holder.get(key)
            if isinstance(value, str):
                found.append(value.lower())
            elif isinstance(value, list):
                found.extend(str(v).lower() for v in value)
    return found


def empty_or_truncated(output: str, metadata: str | dict[str, Any] = "", *, min_chars: int = 1) -> Verdict:
    """Empty (shorter than ``min_chars`` once blanks are stripped), or cut off: the model stopped on
    its token limit, a code block is left open, or the text ends on a comma, colon or a word that
    cannot end a sentence ("and", "the", ...)."""
    text = output.strip()
    if len(text) < min_chars:
        return Verdict(0.0, "empty", True, f"{len(text)} characters")
    reasons = finish_reasons(metadata)
    if any(reason in _LENGTH_REASONS for reason in reasons):
        return Verdict(0.0, "truncated", True, "finish reason " + ",".join(reasons))
    if text.count("```") % 2 == 1:
        return Verdict(0.0, "truncated", True, "a code block is left open")
    end = _DANGLING_END.search(text[-40:])
    if end and (end.group(1) is None or end.group(1).lower() in _DANGLING_WORDS):
        return Verdict(0.0, "truncated", True, f"ends on {text[-20:]!r}")
    return Verdict(1.0, "complete", False)


def language_mismatch(prompt: str, output: str) -> Verdict:
    """The answer's language against the prompt's (:mod:`language`); undecided when either is."""
    asked, answered = language.detect(prompt), language.detect(output)
    if asked is None or answered is None:
        return Verdict(None, "undetermined", False, f"prompt {asked or '?'}, answer {answered or '?'}")
    if asked != answered:
        return Verdict(0.0, "mismatch", True, f"prompt {asked}, answer {answered}")
    return Verdict(1.0, "match", False, asked)


def pii_leak(output: str) -> Verdict:
    """Personal data or secrets in the stored answer: what the SDK's redaction would replace.

    The SDK redacts before events leave the app by default, so this finds leaks where redaction was
    turned off or replaced, or where a pattern was added since the call was stored. Labels already in
    the text (``[EMAIL]``, from redaction at the source) do not count.
    """
    masked = redact(output)
    if masked == output:
        return Verdict(1.0, "clean", False)
    before: dict[str, int] = {}
    for label in _LABEL.findall(output):
        before[label] = before.get(label, 0) + 1
    leaked: dict[str, int] = {}
    for label in _LABEL.findall(masked):
        if before.get(label, 0) > 0:
            before[label] -= 1
        else:
            leaked[label] = leaked.get(label, 0) + 1
    kinds = ",".join(sorted(leaked)) or "redacted"
    return Verdict(0.0, "leak", True, f"{sum(leaked.values()) or 1} found: {kinds}")
