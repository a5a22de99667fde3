"""The figures of the weekly export, read from the store for one ISO week and the week before it.

* segments: per (service, name, model, prompt_version), this week against the previous week: volume,
  latency p50/p95, error rate, cost, acceptance (with its Wilson interval), output toxicity, drift;
* daily volume and acceptance per segment (the report's chart);
* acceptance by prompt version with Wilson confidence intervals;
* the drift topics that changed most, gathered from the drift rows' explanations
  (``details.topics`` written by :mod:`llmsight.analyzers.topics`; rows without it are skipped);
* flagged toxic outputs (the analyzers' toxic examples, joined to their calls, redacted);
* the alerts that fired and how long each took to resolve.

Everything read here is cut at the end of the week, and the feedback at the week's
``feedback_until`` (:func:`llmsight.review.export.feedback_cutoff`: the end of its grace period,
or the moment of the export if earlier), so a rerun after the grace sees the same rows.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from llmsight.analyzers import drift
from llmsight.review.weeks import IsoWeek, feedback_cutoff
from llmsight.store import names
from llmsight.store.names import SEGMENT_KEYS
from llmsight.store.times import between, iso_ms, sql_time, utc

log = logging.getLogger("llmsight.review.export")

TOP_TOPICS = 8
SEGMENT_FIGURES = ["volume", "latency_p50_ms", "latency_p95_ms", "error_rate", "cost_usd", "cost_per_call_usd",
                   "acceptance_rate", "acceptance_ci_low", "acceptance_ci_high", "feedback_judged",
                   "toxicity_rate_output", "drift_input_mean", "drift_input_windows_drifted"]
SEGMENT_COLUMNS = [*SEGMENT_KEYS, *SEGMENT_FIGURES, *(f"prev_{f}" for f in SEGMENT_FIGURES)]
ACCEPTANCE_COLUMNS = [*SEGMENT_KEYS, "week", "judged", "accepted", "acceptance_rate", "ci_low", "ci_high"]
ALERT_COLUMNS = ["alert_id", "rule", "metric", "severity", *SEGMENT_KEYS, "fired_at", "resolved_at",
                 "minutes_to_resolve", "acked_by", "value", "threshold"]
TOXIC_COLUMNS = ["trace_id", "ts", *SEGMENT_KEYS, "toxicity_score", "input", "output"]
TOPIC_COLUMNS = ["scope", "metric", "direction", "label", "windows", "share_prev", "share_week", "mean_delta",
                 "max_delta", "max_z", "segments", "examples"]
WEEKLY_TOPIC_SAMPLE = 400  # inputs per week clustered for the week-against-week topics
DAILY_COLUMNS = ["day", *SEGMENT_KEYS, "volume", "judged", "accepted"]


@dataclass
class WeeklySummary:
    week: IsoWeek
    segments: list[dict[str, Any]] = field(default_factory=list)
    acceptance: list[dict[str, Any]] = field(default_factory=list)
    daily: list[dict[str, Any]] = field(default_factory=list)
    topics: list[dict[str, Any]] = field(default_factory=list)
    toxic: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    toxic_scores: dict[str, float] = field(default_factory=dict)  # trace id -> highest score, inputs and outputs
    totals: dict[str, Any] = field(default_factory=dict)
    feedback_until: datetime | None = None  # this week's feedback counted while ts < this
    monitors: list[dict[str, Any]] = field(default_factory=list)  # precision/recall against reviewers
    threshold_suggestion: str = ""  # a suggested toxicity threshold when its precision or recall drift

    def tables(self) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
        """The summary tables written as CSV beside the review sample."""
        topics = [{**t, "segments": "; ".join(t["segments"]), "examples": " | ".join(t["examples"])}
                  for t in self.topics]
        return {
            "segments": (self.segments, SEGMENT_COLUMNS),
            "acceptance_by_version": (self.acceptance, ACCEPTANCE_COLUMNS),
            "daily": (self.daily, DAILY_COLUMNS),
            "drift_topics": (topics, TOPIC_COLUMNS),
            "toxic_outputs": (self.toxic, TOXIC_COLUMNS),
            "alerts": (self.alerts, ALERT_COLUMNS),
        }


def _params(week: IsoWeek) -> dict[str, str]:
    return {"start": sql_time(week.start), "end": sql_time(week.end)}


def _r(value: Any, digits: int = 4) -> Any:
    """Rounded, so float noise cannot change a CSV byte between runs; None stays None."""
    return None if value is None else round(float(value), digits)


_SEG = ", ".join(SEGMENT_KEYS)
_E_SEG = ", ".join("e." + k for k in SEGMENT_KEYS)  # the same columns, of the joined events
_FEEDBACK_BY_TRACE = (
    "SELECT trace_id, argMax(accepted, ts) AS verdict FROM feedback FINAL "
    "WHERE {grace} AND accepted IS NOT NULL GROUP BY trace_id"
)


def _operations(client: Any, week: IsoWeek) -> dict[tuple[str, ...], dict[str, Any]]:
    rows = client.query(
        f"SELECT {_SEG}, count(), quantileExact(0.5)(latency_ms), quantileExact(0.95)(latency_ms), "
        f"countIf(error != '') / count(), sum(cost_usd), countIf(cost_usd IS NOT NULL) "
        f"FROM events FINAL WHERE {between('ts')} GROUP BY {_SEG} ORDER BY {_SEG}",
        parameters=_params(week),
    ).result_rows
    out = {}
    for *key, volume, p50, p95, errors, cost, priced in rows:
        out[tuple(key)] = {
            "volume": int(volume), "latency_p50_ms": _r(p50, 2), "latency_p95_ms": _r(p95, 2),
            "error_rate": _r(errors), "cost_usd": _r(cost, 6) if priced else None,
            "cost_per_call_usd": _r(cost / priced, 8) if priced else None,
        }
    return out


def _acceptance(daily: list[dict[str, Any]]) -> dict[tuple[str, ...], tuple[int, int]]:
    """(judged, accepted) per segment: the week's daily rows summed; segments nobody judged are left out."""
    totals: dict[tuple[str, ...], tuple[int, int]] = {}
    for row in daily:
        key = tuple(row[k] for k in SEGMENT_KEYS)
        judged, accepted = totals.get(key, (0, 0))
        totals[key] = (judged + row["judged"], accepted + row["accepted"])
    return {key: counts for key, counts in totals.items() if counts[0]}


def _window_metrics(client: Any, week: IsoWeek) -> dict[tuple[str, ...], dict[str, Any]]:
    """Toxicity (weighted by sample size) and input drift (mean score, share of windows drifted) per segment."""
    rows = client.query(
        f"SELECT {_SEG}, metric, sum(value * n) / greatest(sum(n), 1), avg(value), "
        f"avg({drift.row_drifted_sql()}) "
        f"FROM metrics FINAL WHERE granularity = '1m' AND metric IN ({{metrics:Array(String)}}) "
        f"AND {between('window_start')} GROUP BY {_SEG}, metric ORDER BY {_SEG}, metric",
        parameters={**_params(week), "metrics": [names.TOXICITY_OUTPUT, names.DRIFT_INPUT]},
    ).result_rows
    out: dict[tuple[str, ...], dict[str, Any]] = defaultdict(dict)
    for *key, metric, weighted, mean, drifted in rows:
        if metric == names.TOXICITY_OUTPUT:
            out[tuple(key)]["toxicity_rate_output"] = _r(weighted)
        else:
            out[tuple(key)]["drift_input_mean"] = _r(mean)
            out[tuple(key)]["drift_input_windows_drifted"] = _r(drifted)
    return out


def _week_figures(client: Any, week: IsoWeek, daily: list[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Any]]:
    """The segment figures of ``week``; acceptance comes from ``daily``, the week's :func:`_daily` rows."""
    from llmsight.analyzers.acceptance import wilson_interval

    figures: dict[tuple[str, ...], dict[str, Any]] = defaultdict(dict)
    for key, values in _operations(client, week).items():
        figures[key].update(values)
    for key, (judged, accepted) in _acceptance(daily).items():
        low, high = wilson_interval(accepted, judged)
        figures[key].update(acceptance_rate=_r(accepted / judged), acceptance_ci_low=_r(low),
                            acceptance_ci_high=_r(high), feedback_judged=judged, _accepted=accepted)
    for key, values in _window_metrics(client, week).items():
        figures[key].update(values)
    return figures


def _daily(client: Any, week: IsoWeek, feedback_until: datetime) -> list[dict[str, Any]]:
    """Calls, judged and accepted per day and segment: the week's calls joined to their user's latest verdict
    given before ``feedback_until``.

    The one feedback join of a week: the report's chart shows these rows and :func:`_acceptance` sums them.
    """
    rows = client.query(
        f"SELECT toDate(e.ts) AS day, {_E_SEG}, count(), "
        f"countIf(f.verdict IS NOT NULL), countIf(f.verdict = 1) "
        f"FROM (SELECT trace_id, ts, {_SEG} FROM events FINAL WHERE {between('ts')}) AS e "
        f"LEFT JOIN ({_FEEDBACK_BY_TRACE.format(grace=between('ts', 'start', 'feedback_until'))}) AS f "
        f"ON f.trace_id = e.trace_id GROUP BY day, {_E_SEG} "
        f"ORDER BY day, {_E_SEG}",
        parameters={**_params(week), "feedback_until": sql_time(feedback_until)}, settings={"join_use_nulls": 1},
    ).result_rows
    return [{"day": day.isoformat(), **dict(zip(SEGMENT_KEYS, key, strict=True)), "volume": int(volume),
             "judged": int(judged), "accepted": int(accepted)} for day, *key, volume, judged, accepted in rows]


def _details(raw: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _explained_windows(client: Any, week: IsoWeek, metrics: list[str], columns: str) -> list[tuple[Any, ...]]:
    """``columns`` of the week's minute windows of ``metrics`` that carry details (their explanation
    or examples), in metric, segment and time order."""
    return client.query(
        f"SELECT {columns} FROM metrics FINAL WHERE granularity = '1m' "
        f"AND metric IN ({{metrics:Array(String)}}) AND details != '' AND {between('window_start')} "
        f"ORDER BY metric, {_SEG}, window_start",
        parameters={**_params(week), "metrics": metrics},
    ).result_rows


def _topics(client: Any, week: IsoWeek) -> list[dict[str, Any]]:
    """The drift topics that moved most over the week, gathered across the windows' explanations."""
    rows = _explained_windows(client, week, [names.DRIFT_INPUT, names.DRIFT_OUTPUT],
                              f"metric, {_SEG}, window_start, details")
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for metric, *rest in rows:
        segment, details = rest[:4], _details(rest[5])
        topics = details.get("topics")
        if not isinstance(topics, dict):
            continue
        for direction in ("grown", "shrunk"):
            for entry in topics.get(direction) or []:
                if not isinstance(entry, dict) or not isinstance(entry.get("delta"), (int, float)):
                    continue
                # c-TF-IDF labels list a cluster's words by weight; the same topic comes back with its
                # words in another order from window to window, so the words as a set are the key.
                label = " ".join(sorted(str(entry.get("label", "")).split())) or "(unlabelled)"
                group = groups.setdefault((metric, direction, label), {
                    "metric": metric, "direction": direction, "label": label, "windows": 0, "deltas": [],
                    "max_z": None, "segments": set(), "examples": [], "best": -1.0,
                })
                delta = abs(float(entry["delta"]))
                group["windows"] += 1
                group["deltas"].append(delta)
                z = entry.get("z")
                if isinstance(z, (int, float)):
                    group["max_z"] = max(abs(float(z)), group["max_z"] or 0.0)
                group["segments"].add("/".join(segment))
                if delta > group["best"]:
                    group["best"] = delta
                    group["examples"] = [str(x)[:200] for x in entry.get("examples") or []][:3]
    out = []
    for group in groups.values():
        deltas = group.pop("deltas")
        group.pop("best")
        out.append({**group, "scope": "windows", "share_prev": None, "share_week": None,
                    "mean_delta": _r(sum(deltas) / len(deltas)), "max_delta": _r(max(deltas)),
                    "max_z": _r(group["max_z"], 2), "segments": sorted(group["segments"]),
                    "weight": sum(deltas)})
    ranked = []
    for metric in (names.DRIFT_INPUT, names.DRIFT_OUTPUT):
        for direction in ("grown", "shrunk"):
            chosen = [g for g in out if g["metric"] == metric and g["direction"] == direction]
            chosen.sort(key=lambda g: (-g["weight"], g["label"]))
            ranked.extend(chosen[:TOP_TOPICS])
    for group in ranked:
        group.pop("weight")
    return ranked


def _input_sample(client: Any, week: IsoWeek, size: int) -> list[str]:
    """A repeatable sample of the week's inputs (ordered by a hash of the event id)."""
    return [row[0] for row in client.query(
        f"SELECT input FROM events FINAL WHERE {between('ts')} AND input != '' "
        f"ORDER BY cityHash64(toString(event_id)), event_id LIMIT {int(size)}",
        parameters=_params(week)).result_rows]


def weekly_topics(client: Any, week: IsoWeek, size: int | None = None,
                  embedder: Any = None) -> list[dict[str, Any]]:
    """The topics of user inputs that grew or shrank most from last week to this week, all segments pooled.

    Embeds a sample of each week's inputs through the store's embedding cache (vectors the
    scheduler already made are reused, new ones are stored, so a rerun reads the same vectors)
    and clusters them with :func:`llmsight.analyzers.topics.explain_drift`. Returns nothing, with a
    warning, when either week has fewer than 20 inputs or no embedding model can be loaded.
    """
    size = size or WEEKLY_TOPIC_SAMPLE
    reference, current = _input_sample(client, week.previous(), size), _input_sample(client, week, size)
    if len(reference) < 20 or len(current) < 20:
        log.info("export: too few inputs for week-against-week topics (%d and %d)", len(reference), len(current))
        return []
    try:
        from llmsight.analyzers import topics
        from llmsight.analyzers.embeddings import Embedder, EmbeddingCache

        cache = EmbeddingCache(client, embedder or Embedder())
        result = topics.explain_drift(cache.encode(reference), cache.encode(current), reference, current,
                                      top=TOP_TOPICS, seed=0)
    except Exception:  # the weekly topics are a help; the rest of the report does not depend on them
        log.warning("export: week-against-week topics failed", exc_info=True)
        return []
    rows = []
    for direction in ("grown", "shrunk"):
        # Most significant first: a small cluster that appeared from nothing (a new topic) beats a big
        # mixed cluster that moved a little, which is what sorting by the change in share would favour.
        entries = sorted(result.get(direction, []), key=lambda e: (-abs(e.get("z") or 0.0), e["label"]))
        for entry in entries:
            z = entry.get("z")
            rows.append({
                "scope": "week", "metric": names.DRIFT_INPUT, "direction": direction, "label": entry["label"],
                "windows": None, "share_prev": _r(entry["share_ref"]), "share_week": _r(entry["share_cur"]),
                "mean_delta": _r(abs(entry["delta"])), "max_delta": _r(abs(entry["delta"])),
                "max_z": None if z is None else _r(abs(z), 2), "segments": ["all"],
                "examples": [str(x)[:200] for x in entry.get("examples", [])],
            })
    return rows


def _toxic(client: Any, week: IsoWeek) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The calls the analyzers flagged toxic this week (their examples), outputs listed with their texts."""
    from llmsight.redact import redact

    rows = _explained_windows(client, week, [names.TOXICITY_OUTPUT, names.TOXICITY_INPUT], "metric, details")
    scores: dict[str, float] = {}
    output_scores: dict[str, float] = {}
    for metric, raw in rows:
        for example in _details(raw).get("examples") or []:
            if not isinstance(example, dict) or not example.get("trace_id"):
                continue
            trace, score = str(example["trace_id"]), float(example.get("score") or 0.0)
            scores[trace] = max(score, scores.get(trace, 0.0))
            if metric == names.TOXICITY_OUTPUT:
                output_scores[trace] = max(score, output_scores.get(trace, 0.0))
    if not output_scores:
        return [], scores
    calls = client.query(
        f"SELECT trace_id, ts, {_SEG}, input, output FROM events FINAL WHERE {between('ts')} "
        f"AND has({{traces:Array(String)}}, trace_id) ORDER BY ts, event_id",
        parameters={**_params(week), "traces": sorted(output_scores)},
    ).result_rows
    toxic = [{"trace_id": trace, "ts": iso_ms(ts), **dict(zip(SEGMENT_KEYS, seg, strict=True)),
              "toxicity_score": _r(output_scores[trace]), "input": redact(text_in), "output": redact(text_out)}
             for trace, ts, *seg, text_in, text_out in calls]
    return toxic, scores


def _monitors(client: Any, week: IsoWeek, scorer: Any) -> tuple[list[dict[str, Any]], str]:
    """The monitors' precision and recall against the reviewers' labels (see :mod:`llmsight.review.precision`)."""
    from llmsight.review.precision import monitor_report

    report = monitor_report(client, week, scorer=scorer)
    return report.rows, report.suggestion.text() if report.suggestion else ""


def toxic_scores(client: Any, week: IsoWeek) -> dict[str, float]:
    """trace id -> the highest toxicity score the analyzers gave one of its texts this week (their examples)."""
    return _toxic(client, week)[1]


def _alerts(client: Any, week: IsoWeek) -> list[dict[str, Any]]:
    """Firing episodes that overlap the week: when each fired, when (if) it resolved, and how long that took."""
    rows = client.query(
        "SELECT alert_id, rule, metric, severity, state, transition, service, name, model, prompt_version, "
        "fired_at, changed_at, acked_by, value, threshold FROM alerts "
        "WHERE changed_at < toDateTime64({end:String}, 3, 'UTC') AND alert_id IN ("
        f"  SELECT alert_id FROM alerts WHERE {between('changed_at')}) "
        "ORDER BY alert_id, changed_at, transition",
        parameters=_params(week),
    ).result_rows
    episodes: list[dict[str, Any]] = []
    open_episode: dict[str, dict[str, Any]] = {}
    for (alert, rule, metric, severity, state, transition, *segment, fired_at, changed_at, acked_by, value,
         threshold) in rows:
        current = open_episode.get(alert)
        if transition == "firing":
            current = {"alert_id": alert, "rule": rule, "metric": metric, "severity": severity,
                       **dict(zip(SEGMENT_KEYS, segment, strict=True)), "fired": fired_at or changed_at,
                       "resolved": None, "acked_by": "", "value": _r(value), "threshold": _r(threshold)}
            open_episode[alert] = current
            episodes.append(current)
        elif current is not None:
            if severity == "critical":
                current["severity"] = "critical"
            if acked_by:
                current["acked_by"] = acked_by
            if transition == "resolved" or state == "resolved":
                current["resolved"] = changed_at
                del open_episode[alert]
    out = []
    for ep in episodes:
        fired, resolved = utc(ep.pop("fired")), utc(ep.pop("resolved"))
        if resolved is not None and resolved < week.start:
            continue
        minutes = None if resolved is None else round((resolved - fired).total_seconds() / 60.0, 1)
        out.append({**ep, "fired_at": iso_ms(fired), "resolved_at": "" if resolved is None else iso_ms(resolved),
                    "minutes_to_resolve": minutes})
    out.sort(key=lambda a: (a["fired_at"], a["rule"], a["alert_id"]))
    return out


def summarize(client: Any, week: IsoWeek, *, topics_by_week: bool = True, embedder: Any = None,
              now: datetime | None = None, toxicity_scorer: Any = None) -> WeeklySummary:
    """Every figure of the report for ``week``, compared with the week before.

    Each week's feedback counts until its :func:`~llmsight.review.export.feedback_cutoff` at ``now``
    (default: the clock, read once). ``topics_by_week`` adds the week-against-week topics (it needs the
    embedding model)."""
    now = now or datetime.now(timezone.utc)
    previous = week.previous()
    until = feedback_cutoff(week, now)
    daily = _daily(client, week, until)
    this = _week_figures(client, week, daily)
    prev = _week_figures(client, previous, _daily(client, previous, feedback_cutoff(previous, now)))
    summary = WeeklySummary(week, feedback_until=until)
    for key in sorted(set(this) | set(prev)):
        row: dict[str, Any] = dict(zip(SEGMENT_KEYS, key, strict=True))
        for name in SEGMENT_FIGURES:
            row[name] = this.get(key, {}).get(name)
            row[f"prev_{name}"] = prev.get(key, {}).get(name)
        summary.segments.append(row)
    for label, figures in ((week.label, this), (previous.label, prev)):
        for key in sorted(figures):
            judged = figures[key].get("feedback_judged")
            if judged:
                summary.acceptance.append({
                    **dict(zip(SEGMENT_KEYS, key, strict=True)), "week": label, "judged": judged,
                    "accepted": figures[key]["_accepted"], "acceptance_rate": figures[key]["acceptance_rate"],
                    "ci_low": figures[key]["acceptance_ci_low"], "ci_high": figures[key]["acceptance_ci_high"],
                })
    summary.daily = daily
    summary.topics = (weekly_topics(client, week, embedder=embedder) if topics_by_week else []) + _topics(client, week)
    summary.toxic, summary.toxic_scores = _toxic(client, week)
    summary.alerts = _alerts(client, week)
    summary.monitors, summary.threshold_suggestion = _monitors(client, week, toxicity_scorer)
    calls = sum(v.get("volume", 0) for v in this.values())
    judged = sum(v.get("feedback_judged", 0) for v in this.values())
    accepted = sum(v.get("_accepted", 0) for v in this.values())
    summary.totals = {"calls": calls, "judged": judged, "acceptance_rate": _r(accepted / judged) if judged else None,
                      "toxic_outputs": len(summary.toxic), "alerts": len(summary.alerts),
                      "prev_calls": sum(v.get("volume", 0) for v in prev.values())}
    log.info("export: %s summary: %d segments, %d topics, %d toxic outputs, %d alerts", week.label,
             len(summary.segments), len(summary.topics), len(summary.toxic), len(summary.alerts))
    return summary


def evidently_drift_html(client: Any, week: IsoWeek, sample: int = 200) -> str | None:
    """Evidently's text drift report, this week's inputs against last week's (None when it cannot run)."""
    try:
        import pandas as pd
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except Exception:  # evidently is optional for the export
        log.warning("export: evidently is not importable; the report goes without its drift section", exc_info=True)
        return None

    def texts(w: IsoWeek) -> list[str]:
        return [r[0] for r in client.query(
            f"SELECT input FROM events FINAL WHERE {between('ts')} AND input != '' "
            f"ORDER BY cityHash64(toString(event_id)), event_id LIMIT {int(sample)}",
            parameters=_params(w)).result_rows]

    reference, current = texts(week.previous()), texts(week)
    if len(reference) < 10 or len(current) < 10:
        return None
    definition = DataDefinition(text_columns=["input"])
    try:
        ref = Dataset.from_pandas(pd.DataFrame({"input": reference}), data_definition=definition)
        cur = Dataset.from_pandas(pd.DataFrame({"input": current}), data_definition=definition)
        snapshot = Report([DataDriftPreset()]).run(cur, ref)
        return snapshot.get_html_str(as_iframe=False)
    except Exception:
        log.warning("export: evidently's drift report failed", exc_info=True)
        return None
