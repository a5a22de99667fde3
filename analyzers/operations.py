"""Operational figures of a window: volume, errors, latency, tokens, cost, output length and refusals.

Pure functions, no I/O. The inputs are plain sequences, a pandas DataFrame of ``events`` rows
(columns as in :data:`llmsight.store.rows.EVENT_COLUMNS`), or the scheduler's
:class:`llmsight.analyzers.windows.Calls`. The results are keyed by the metric names of
:mod:`llmsight.store.names`, each with the number of values behind it, ready to be written as
``metrics`` rows.

Conventions, so the dashboard, the alerts and the export agree:

* percentiles are exact (numpy's linear interpolation between order statistics);
* unknown values (None, NaN: a call without token usage or price) are left out of their own figure,
  and a figure with no known value at all is left out of the result rather than written as 0;
* a call is an error when its ``error`` text is non-empty; output length and refusals are measured on
  calls without an error, since a failed call has no answer to measure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from llmsight.store import names

Figure = tuple[float, int]  # (value, n)

# A refusal is the assistant declining, not the assistant being unable to find something. The
# phrases come from the way current chat models word refusals; "I can't help but ..." and "I can
# help" are the classic false positives and are excluded by the patterns' shape.
_CANT = r"(?:can ?not|can't|won't|will not|(?:'m|am) (?:not able|unable|not allowed|not permitted) to)"
_ACTS = r"(?:help|assist|provide|do|comply|answer|share|give|support|fulfil+|engage|create|generate|write|discuss)"
_REFUSAL_PATTERNS = [
    rf"\bi ?{_CANT} (?:really )?(?:help|assist)(?! but\b)(?: you)?(?: with| on| in|\b)",
    rf"\bi ?{_CANT} (?:{_ACTS})\b(?! but\b)",
    r"\bi can only (?:help|assist|answer|discuss)\b",
    r"\bi(?:'m| am) sorry,? but i\b",
    r"\b(?:sorry|unfortunately),? (?:but )?i (?:can't|cannot|can not|won't|am unable|'m unable|am not able)",
    r"\bas an ai(?: language model| assistant| model)?,? i (?:can't|cannot|can not|don't|do not|won't|am not)",
    r"\bi (?:must|have to|need to) (?:respectfully )?decline\b",
    r"\b(?:that|this|it)(?:'s| is) not something i (?:can|am able to|'m able to) (?:help|assist)",
]
_REFUSAL = re.compile("|".join(f"(?:{p})" for p in _REFUSAL_PATTERNS), re.IGNORECASE)
# A refusal opens the answer; past this many characters a matching phrase is usually quoted or
# hedged ("... but I can't share the exact figure"), and counting it would inflate the rate.
REFUSAL_PREFIX_CHARS = 400
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def is_refusal(text: str | None) -> bool:
    """True when ``text`` opens with a refusal such as "I can't help with that" or "I'm sorry, but I cannot"."""
    if not text:
        return False
    head = text[:REFUSAL_PREFIX_CHARS].translate(_QUOTES)
    return _REFUSAL.search(head) is not None


def _known(values: Iterable[Any] | None) -> np.ndarray:
    """Float array of the values that are known (None and NaN dropped)."""
    if values is None:
        return np.zeros(0)
    array = np.array([np.nan if v is None else v for v in values], dtype=float)
    return array[~np.isnan(array)]


def percentiles(values: Iterable[Any], qs: Sequence[float] = (50, 95, 99)) -> list[float] | None:
    """Exact percentiles of the known values, or None when there are none."""
    known = _known(values)
    if known.size == 0:
        return None
    return [float(v) for v in np.percentile(known, qs)]


def error_flags(errors: Iterable[Any]) -> np.ndarray:
    """Boolean array: a call failed when its error is a non-empty string or a true value."""
    return np.array([bool(e) and not (isinstance(e, float) and math.isnan(e)) for e in errors], dtype=bool)


def refusal_rate(outputs: Iterable[str | None]) -> Figure | None:
    """Share of outputs that are refusals, with the number of outputs; None without outputs."""
    flags = [is_refusal(o) for o in outputs]
    return (sum(flags) / len(flags), len(flags)) if flags else None


def compute(*, latency_ms: Iterable[Any], errors: Iterable[Any], ttft_ms: Iterable[Any] | None = None,
            tokens_in: Iterable[Any] | None = None, tokens_out: Iterable[Any] | None = None,
            cost_usd: Iterable[Any] | None = None, output_chars: Iterable[Any] | None = None,
            outputs: Iterable[str | None] | None = None) -> dict[str, Figure]:
    """The figures of one window and segment from per-call columns (all the same length, one per call).

    ``output_chars`` and ``outputs`` may cover only the successful calls, or only a sample of them
    (refusals are then measured on the sample); when ``output_chars`` is missing it is taken from
    ``outputs``.
    """
    latency = np.array(list(latency_ms), dtype=float)
    failed = error_flags(errors)
    if failed.size != latency.size:
        raise ValueError(f"latency_ms has {latency.size} calls but errors has {failed.size}")
    n = int(latency.size)
    figures: dict[str, Figure] = {names.VOLUME: (float(n), n)}
    if n == 0:
        return figures
    figures[names.ERROR_RATE] = (float(failed.mean()), n)
    quantiles = percentiles(latency)
    if quantiles is not None:
        known = int(_known(latency).size)
        for name, value in zip((names.LATENCY_P50, names.LATENCY_P95, names.LATENCY_P99), quantiles, strict=True):
            figures[name] = (value, known)
    ttft = _known(ttft_ms)
    if ttft.size:
        figures[names.TTFT_P50] = (float(np.percentile(ttft, 50)), int(ttft.size))
    for name, column in ((names.TOKENS_IN, tokens_in), (names.TOKENS_OUT, tokens_out)):
        known = _known(column)
        if known.size:
            figures[name] = (float(known.sum()), int(known.size))
    cost = _known(cost_usd)
    if cost.size:
        figures[names.COST] = (float(cost.sum()), int(cost.size))
        figures[names.COST_PER_CALL] = (float(cost.mean()), int(cost.size))
    texts = None if outputs is None else list(outputs)
    if output_chars is None and texts is not None:
        output_chars = [len(t or "") for t in texts]
    chars = _known(output_chars)
    if chars.size:
        figures[names.OUTPUT_CHARS] = (float(chars.mean()), int(chars.size))
    if texts:
        rate = refusal_rate(texts)
        if rate is not None:
            figures[names.REFUSAL_RATE] = rate
    return figures


def _column(frame: Any, name: str) -> list[Any] | None:
    if name not in frame.columns:
        return None
    return [None if (v is None or v is _pd_na()) else v for v in frame[name].tolist()]


def _pd_na() -> Any:
    try:
        import pandas as pd

        return pd.NA
    except ImportError:  # pragma: no cover - pandas is a server dependency
        return None


def from_events(frame: Any) -> dict[str, Figure]:
    """Figures from a pandas DataFrame of ``events`` rows (at least ``latency_ms``; ``error`` if known)."""
    errors = _column(frame, "error") or [""] * len(frame)
    outputs = _column(frame, "output")
    ok_outputs = None if outputs is None else [o for o, e in zip(outputs, errors, strict=True) if not e]
    return compute(latency_ms=frame["latency_ms"].tolist(), errors=errors, ttft_ms=_column(frame, "ttft_ms"),
                   tokens_in=_column(frame, "tokens_in"), tokens_out=_column(frame, "tokens_out"),
                   cost_usd=_column(frame, "cost_usd"), outputs=ok_outputs)


def window_figures(calls: Any) -> dict[str, Figure]:
    """Figures of a window, from the scheduler's ``Calls`` (or any object with its attributes) or a DataFrame.

    ``Calls`` carries the numbers of every call and the texts of a sample, so the refusal rate is
    measured on the sampled outputs.
    """
    if hasattr(calls, "columns"):
        return from_events(calls)
    failed = error_flags(calls.errors)
    chars = np.asarray(calls.output_chars, dtype=float)
    if chars.size == failed.size:
        chars = chars[~failed]
    return compute(latency_ms=calls.latency_ms, errors=calls.errors, ttft_ms=calls.ttft_ms,
                   tokens_in=calls.tokens_in, tokens_out=calls.tokens_out, cost_usd=calls.cost_usd,
                   output_chars=chars, outputs=list(calls.sample_outputs))
