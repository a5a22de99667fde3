"""Monitors scored against reviewers: how often the toxicity flag and each evaluator agree with people.

For the calls of a week that reviewers labelled (:func:`llmsight.review.labels.labels_of_week`):

* **what people said.** A call is *bad* when at least half of its reviewers rejected it, and *toxic*
  when at least half of them tagged it ``toxic`` (each reviewer's latest label counts once);
* **what the toxicity monitor said.** The window metrics keep only the three most toxic examples of
  a window as evidence, so they cannot tell that a call was *not* flagged. The reviewed outputs are
  scored again with :class:`llmsight.analyzers.toxicity.ToxicityScorer` (a few hundred texts a week at
  most) and flagged at its threshold, as the analyzers flag them;
* **what each evaluator said.** ``evaluations.flagged`` (1 when the evaluator judged the answer bad),
  on the reviewed calls that evaluator scored; a store without the evaluations table has none.

Each monitor gets precision (of the calls it flagged, the share people found bad/toxic) and recall
(of the calls people found bad/toxic, the share it flagged), with the counts behind them: a week has
few reviewed calls, and a figure from 4 calls is shown as such, never hidden or smoothed.

**A suggested toxicity threshold.** When the toxicity flag's precision or recall is below
:data:`TARGET` or moved by more than :data:`DRIFT` since the week before, :func:`suggest_threshold`
picks the threshold with the best F1 on this week's reviewed scores (ties: the higher threshold, which
flags less). It is a suggestion from a small labelled set, printed with its size; it is not applied.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmsight.review.labels import EVALUATIONS, Label, has_table, labels_of_week
from llmsight.review.weeks import IsoWeek

log = logging.getLogger("llmsight.review.precision")

TARGET = 0.8   # precision or recall below this asks for a threshold suggestion
DRIFT = 0.15   # ... as does a move of more than this since the week before
TOXICITY = "toxicity"
MONITOR_COLUMNS = ["week", "monitor", "reviewed", "flagged", "human_positive", "true_positive", "precision",
                   "recall"]


@dataclass(frozen=True)
class MonitorScore:
    week: str
    monitor: str            # "toxicity" or "eval_<evaluator>"
    reviewed: int           # reviewed calls this monitor judged
    flagged: int            # of those, flagged by the monitor
    human_positive: int     # of those, found bad (toxic, for the toxicity flag) by reviewers
    true_positive: int

    @property
    def precision(self) -> float | None:
        return None if not self.flagged else self.true_positive / self.flagged

    @property
    def recall(self) -> float | None:
        return None if not self.human_positive else self.true_positive / self.human_positive

    def row(self) -> dict[str, Any]:
        return {"week": self.week, "monitor": self.monitor, "reviewed": self.reviewed, "flagged": self.flagged,
                "human_positive": self.human_positive, "true_positive": self.true_positive,
                "precision": _round(self.precision), "recall": _round(self.recall)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class ThresholdSuggestion:
    current: float
    suggested: float
    precision: float
    recall: float
    reviewed: int
    toxic: int
    reason: str

    def text(self) -> str:
        return (f"Toxicity threshold: {self.reason}; on this week's {self.reviewed} reviewed calls ({self.toxic} "
                f"toxic to reviewers) a threshold of {self.suggested:.3f} (now {self.current:.3f}) would give "
                f"precision {self.precision:.0%} and recall {self.recall:.0%}. A suggestion from a small labelled "
                "set: set LLMSIGHT_TOXICITY_THRESHOLD to apply it.")


def human_verdicts(labels: Sequence[Label]) -> dict[str, tuple[bool, bool]]:
    """trace id -> (bad, toxic): at least half of its reviewers rejected it / tagged it toxic."""
    by_trace: dict[str, list[Label]] = {}
    for label in labels:
        by_trace.setdefault(label.trace_id, []).append(label)
    out = {}
    for trace, given in by_trace.items():
        bad = sum(lb.verdict == "reject" for lb in given) * 2 >= len(given)
        toxic = sum("toxic" in lb.tags for lb in given) * 2 >= len(given)
        out[trace] = (bad, toxic)
    return out


def score(week: str, monitor: str, flagged: dict[str, bool], positive: dict[str, bool]) -> MonitorScore:
    """Precision and recall of ``flagged`` against ``positive`` over the traces both know."""
    traces = [t for t in flagged if t in positive]
    return MonitorScore(week, monitor, len(traces), sum(flagged[t] for t in traces),
                        sum(positive[t] for t in traces), sum(flagged[t] and positive[t] for t in traces))


def suggest_threshold(scores: Sequence[float], toxic: Sequence[bool], current: float) -> tuple[float, float, float] | None:
    """(threshold, precision, recall) with the best F1 on these labelled scores; None without both classes."""
    if not any(toxic) or all(toxic):
        return None
    best: tuple[float, float, float, float] | None = None  # (f1, threshold, precision, recall)
    for threshold in sorted(set(scores), reverse=True):
        flagged = [s >= threshold for s in scores]
        tp = sum(f and t for f, t in zip(flagged, toxic, strict=True))
        precision, recall = tp / sum(flagged), tp / sum(toxic)
        f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
        if best is None or f1 > best[0] + 1e-12:
            best = (f1, threshold, precision, recall)
    assert best is not None
    return best[1], best[2], best[3]


def _outputs(client: Any, traces: list[str]) -> dict[str, str]:
    rows = client.query("SELECT trace_id, argMin(output, ts) FROM events FINAL WHERE has({t:Array(String)}, trace_id) "
                        "GROUP BY trace_id", parameters={"t": sorted(traces)}).result_rows
    return {str(trace): str(text) for trace, text in rows}


def _evaluator_flags(client: Any, traces: list[str]) -> dict[str, dict[str, bool]]:
    """evaluator -> trace -> flagged (any of its rows on the trace), on ``traces``."""
    if not traces or not has_table(client, EVALUATIONS):
        return {}
    rows = client.query(f"SELECT evaluator, trace_id, max(flagged) FROM {EVALUATIONS} "
                        "WHERE has({t:Array(String)}, trace_id) GROUP BY evaluator, trace_id ORDER BY evaluator",
                        parameters={"t": sorted(traces)}).result_rows
    out: dict[str, dict[str, bool]] = {}
    for evaluator, trace, flagged in rows:
        out.setdefault(str(evaluator), {})[str(trace)] = bool(flagged)
    return out


@dataclass
class WeekScores:
    week: IsoWeek
    monitors: list[MonitorScore]
    toxicity_scores: dict[str, float]   # reviewed trace -> output toxicity probability
    threshold: float | None


def week_scores(client: Any, week: IsoWeek, *, scorer: Any = None) -> WeekScores:
    """Every monitor's precision and recall on ``week``'s reviewed calls. ``scorer``: a ToxicityScorer (default
    a new one, loaded only when the week has reviewed calls)."""
    verdicts = human_verdicts(labels_of_week(client, week))
    if not verdicts:
        return WeekScores(week, [], {}, None)
    traces = sorted(verdicts)
    outputs = _outputs(client, traces)
    if scorer is None:
        from llmsight.analyzers.toxicity import ToxicityScorer

        scorer = ToxicityScorer()
    scored = [t for t in traces if outputs.get(t, "").strip()]
    probabilities = [float(p) for p in scorer.score([outputs[t] for t in scored])] if scored else []
    tox = dict(zip(scored, probabilities, strict=True))
    threshold = float(scorer.threshold)
    monitors = [score(week.label, TOXICITY, {t: p >= threshold for t, p in tox.items()},
                      {t: verdicts[t][1] for t in scored})]
    for evaluator, flags in sorted(_evaluator_flags(client, traces).items()):
        monitors.append(score(week.label, f"eval_{evaluator}", flags, {t: v[0] for t, v in verdicts.items()}))
    log.info("review: %s: %d reviewed calls scored against %d monitor(s)", week.label, len(traces), len(monitors))
    return WeekScores(week, monitors, tox, threshold)


def threshold_advice(this: WeekScores, previous: WeekScores | None, verdicts_toxic: dict[str, bool]) -> ThresholdSuggestion | None:
    """A threshold suggestion when the toxicity flag's precision or recall is below TARGET or drifted by more
    than DRIFT since ``previous``; None when it holds, or when the week's labels cannot support one."""
    now = next((m for m in this.monitors if m.monitor == TOXICITY), None)
    if now is None or this.threshold is None:
        return None
    before = None if previous is None else next((m for m in previous.monitors if m.monitor == TOXICITY), None)
    reasons = []
    for name in ("precision", "recall"):
        value = getattr(now, name)
        if value is not None and value < TARGET:
            reasons.append(f"{name} {value:.0%} is below {TARGET:.0%}")
        old = None if before is None else getattr(before, name)
        if value is not None and old is not None and abs(value - old) > DRIFT:
            reasons.append(f"{name} moved from {old:.0%} to {value:.0%} since {before.week}")  # type: ignore[union-attr]
    if not reasons:
        return None
    traces = [t for t in this.toxicity_scores if t in verdicts_toxic]
    found = suggest_threshold([this.toxicity_scores[t] for t in traces], [verdicts_toxic[t] for t in traces],
                              this.threshold)
    if found is None:
        return None
    threshold, precision, recall = found
    return ThresholdSuggestion(this.threshold, threshold, precision, recall, len(traces),
                               sum(verdicts_toxic[t] for t in traces), "; ".join(reasons))


@dataclass
class MonitorReport:
    rows: list[dict[str, Any]]
    suggestion: ThresholdSuggestion | None
    reviewed: int


def monitor_report(client: Any, week: IsoWeek, *, scorer: Any = None) -> MonitorReport:
    """The monitors' precision and recall for ``week`` and the week before, and a threshold suggestion."""
    if scorer is None and labels_of_week(client, week):
        from llmsight.analyzers.toxicity import ToxicityScorer

        scorer = ToxicityScorer()  # loaded once for both weeks
    this = week_scores(client, week, scorer=scorer)
    previous = week_scores(client, week.previous(), scorer=scorer) if this.monitors else None
    toxic = {t: v[1] for t, v in human_verdicts(labels_of_week(client, week)).items()}
    suggestion = threshold_advice(this, previous, toxic) if this.monitors else None
    rows = [m.row() for m in this.monitors] + ([m.row() for m in previous.monitors] if previous else [])
    return MonitorReport(rows, suggestion, len(toxic))
