"""What changed, read from an alert's evidence: the topic that grew, and the score beside its own level.

One reading for every screen (the dashboard's alerts page, Slack, the webhook), so they all say the
same thing in the same units:

* :func:`grown_topic`: the drift analyzer's ``grown_topic`` (label, share before and after with their
  intervals, examples with trace ids) when the row has one; else the first entry of
  ``topics.grown`` from :func:`llmsight.analyzers.topics.explain_drift` (``share_ref``/``share_cur``,
  example texts without trace ids); else None.
* :func:`share_text`: ``2.0% [1.1–3.4%] → 9.5% [7.8–11.4%]``.
* :func:`levels_text`: ``score 22.5 (critical value 4.07)`` and, apart, ``p-value 0.0004 (alerts at
  p ≤ 0.002)``: a score is never shown next to a p-value as if it were its threshold.

Pure: no I/O, no Streamlit.
"""

from __future__ import annotations

from typing import Any

EXAMPLES = 5


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _interval(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = _number(value[0]), _number(value[1])
        if low is not None and high is not None:
            return low, high
    return None


def grown_topic(evidence: Any) -> dict[str, Any] | None:
    """The topic that grew, normalised: ``label``, ``share_before``, ``share_after``, ``share_before_ci``,
    ``share_after_ci`` (``(low, high)`` or None) and up to 5 ``examples`` as ``{"trace_id", "text"}``."""
    if not isinstance(evidence, dict):
        return None
    found = evidence.get("grown_topic")
    if isinstance(found, dict):
        before, after = found.get("share_before"), found.get("share_after")
        before_ci, after_ci = found.get("share_before_ci"), found.get("share_after_ci")
    else:
        topics = evidence.get("topics")
        grown = topics.get("grown") if isinstance(topics, dict) else None
        if not isinstance(grown, list) or not grown or not isinstance(grown[0], dict):
            return None
        found = grown[0]
        before, after = found.get("share_ref"), found.get("share_cur")
        before_ci, after_ci = found.get("share_ref_ci"), found.get("share_cur_ci")
    examples = []
    for item in found.get("examples") or []:
        if isinstance(item, dict):
            examples.append({"trace_id": str(item.get("trace_id", "")), "text": str(item.get("text", ""))})
        elif isinstance(item, str):
            examples.append({"trace_id": "", "text": item})
    return {
        "label": str(found.get("label", "")) or "(unlabelled topic)",
        "share_before": _number(before), "share_after": _number(after),
        "share_before_ci": _interval(before_ci), "share_after_ci": _interval(after_ci),
        "examples": examples[:EXAMPLES],
    }


def _share(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    text = f"{value * 100:.1f}%"
    if interval is not None:
        text += f" [{interval[0] * 100:.1f}–{interval[1] * 100:.1f}%]"
    return text


def share_text(topic: dict[str, Any]) -> str:
    """``before [ci] → after [ci]`` in percent."""
    return (f"{_share(topic['share_before'], topic['share_before_ci'])} → "
            f"{_share(topic['share_after'], topic['share_after_ci'])}")


def fmt(value: Any) -> str:
    number = _number(value)
    return "–" if number is None else f"{number:.4g}"


def p_level(evidence: Any) -> float | None:
    """The rule's p-value level behind a significant-change alert (None for other comparisons)."""
    level = evidence.get("rule_level") if isinstance(evidence, dict) else None
    if isinstance(level, dict) and level.get("unit") == "p-value":
        return _number(level.get("level"))
    return None


def levels_text(value: Any, threshold: Any, p_value: Any, evidence: Any) -> tuple[str, str | None]:
    """The value beside its threshold, and (for a significant-change rule) the p-value beside its level."""
    level = p_level(evidence)
    if level is None:
        return f"value {fmt(value)} (threshold {fmt(threshold)})", None
    return (f"score {fmt(value)} (critical value {fmt(threshold)})",
            f"p-value {fmt(p_value)} (alerts at p ≤ {level:g})")
