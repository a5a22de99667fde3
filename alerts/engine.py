"""Alert state: one state machine per (rule, segment), kept in the ``alerts`` table.

The life of an alert::

    ok/resolved ──breach──► pending ──`for` breaching windows──► firing ──`recover_for` clean windows,──► resolved
                  ▲            │ clear (never fired, nothing sent)  │      fired ≥ `min_firing` ago         │
                  └────────────┘                                    │ severity up: escalated at once        │
                                                                    │ down: after `recover_for` windows     │
                                                                    │ not breaching, not past `clear`: held │
                                                                    ◄──── breach within `flap_window` ──────┘
                                                                          of resolving: "flapping"

An **episode** is one incident: it starts at the first breach, and its id (the alert id and the
episode's first window) travels in every notification as ``incident_id``. A breach within
``flap_window`` of a resolution does not open a new one: the same episode fires again at once
(transition and notification ``flapping``), counts the flap, and then resolves only after a whole
``flap_window`` of clean windows. Times are window times (a backfill behaves as live traffic). The
episode is kept in the row's evidence JSON under ``episode``, so the table needs no new column.

:func:`step` is the pure transition function (unit-tested on its own). :class:`AlertEngine` does
the I/O around it: it reads one window's metric rows, loads the current state of every alert
from the table (the latest row per ``alert_id``; acknowledgements written by the dashboard or the
CLI are therefore seen at once), writes a row for every change and hands notifications to the
:class:`~llmsight.alerts.notify.Notifier`, which never blocks. An active silence
(:mod:`~llmsight.alerts.silences`) holds an alert's notifications back but not its rows.

An alert's id is a hash of its rule and segment, so a (rule, segment) has one alert: that is the
deduplication. The table is append-only; its rows are the alert's history.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from llmsight.alerts import silences as silencing
from llmsight.alerts.rules import Observation, Rule
from llmsight.store.names import SEGMENT_KEYS
from llmsight.store.queries import latest_alerts_sql
from llmsight.store.times import iso_ms, utc

log = logging.getLogger("llmsight.alerts.engine")

OK, PENDING, FIRING, RESOLVED = "ok", "pending", "firing", "resolved"
# Transitions that are sent to the notification targets.
NOTIFYING = {"firing", "escalated", "deescalated", "renotify", "resolved", "flapping"}
_HISTORY = 10
ALERT_STATE_COLUMNS = [
    "alert_id", "rule", "metric", "severity", "state", "service", "name", "model", "prompt_version",
    "value", "threshold", "baseline", "p_value", "window_start", "evidence", "acked_by", "ack_note",
    "changed_at", "transition", "granularity", "streak", "ok_streak", "fired_at", "notified_at", "acked_at",
    "held_back", "silenced_by",
]


def alert_id(rule: str, segment: dict[str, str]) -> str:
    """The stable id of the one alert a (rule, segment) can have."""
    key = "\x1f".join([rule, *(segment.get(k, "") for k in SEGMENT_KEYS)])
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


@dataclass
class AlertState:
    """The current state of one (rule, segment), as stored in its latest ``alerts`` row."""

    alert_id: str
    rule: str
    metric: str
    segment: dict[str, str]
    state: str = OK
    severity: str = ""
    streak: int = 0
    ok_streak: int = 0
    window_start: datetime | None = None
    fired_at: datetime | None = None
    notified_at: datetime | None = None
    acked_at: datetime | None = None
    acked_by: str = ""
    ack_note: str = ""
    value: float | None = None
    threshold: float | None = None
    baseline: float | None = None
    p_value: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    granularity: str = "1m"
    held_back: str = ""  # the notification a silence held back, sent once the silence ends
    silenced_by: str = ""  # the silence that held it back
    # The episode (one incident): id, started, fired, resolved, clean_since, flaps, flapping (window times).
    # Stored in the row's evidence JSON under "episode", so the table needs no new column.
    episode: dict[str, Any] = field(default_factory=dict)


def _parse(stamp: Any) -> datetime | None:
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _since(episode: dict[str, Any], key: str, window_start: datetime) -> float | None:
    """Seconds of window time from the episode's ``key`` moment to ``window_start`` (None if unknown)."""
    moment = _parse(episode.get(key))
    if moment is None:
        return None
    current = window_start if window_start.tzinfo else window_start.replace(tzinfo=timezone.utc)
    return (current - moment).total_seconds()


def _flap(rule: Rule, state: AlertState, window_start: datetime) -> bool:
    """A breach now re-fires the episode that resolved less than ``flap_window`` ago."""
    if rule.flap_window_s <= 0 or state.state != RESOLVED or not state.episode.get("fired"):
        return False
    since = _since(state.episode, "resolved", window_start)
    return since is not None and since < rule.flap_window_s


def step(rule: Rule, state: AlertState, obs: Observation | None, window_start: datetime,
         now: datetime) -> tuple[AlertState, str | None]:
    """One window's transition of one alert: the new state and the transition's name, or None.

    ``obs`` is None when the window has no row for the metric; an observation with fewer than
    ``min_samples`` also counts as no data. A None transition means nothing changed.
    """
    if obs is None or obs.n < rule.min_samples:
        if rule.no_data == "keep":
            return state, None
        # Silence raises a warning, and never lowers the severity of an alert already firing.
        level = (state.severity if state.state == FIRING else "warning") if rule.no_data == "alert" else None
        clean = level is None
        obs_fields: dict[str, Any] = {"value": None, "baseline": None, "p_value": None}
        evidence_entry = {"window_start": iso_ms(window_start), "no_data": True, "n": obs.n if obs else 0}
        obs = None
    else:
        level = rule.judge(obs)
        clean = level is None and rule.clean(obs)
        obs_fields = {"value": obs.value, "baseline": obs.baseline, "p_value": obs.p_value}
        evidence_entry = {"window_start": iso_ms(window_start), "value": obs.value, "n": obs.n,
                          "baseline": obs.baseline, "p_value": obs.p_value}
    new = replace(state, window_start=window_start, **obs_fields)
    if level is not None:
        flap = _flap(rule, state, window_start)
        new.evidence = _evidence(state, obs, evidence_entry, fresh=state.state in (OK, RESOLVED) and not flap)
        new.evidence["rule_level"] = {"severity": level, "level": rule.level(level), "unit": rule.level_unit}
        new.threshold = rule.value_threshold(obs, level)
        if flap:
            return _reopened(state, new, level, window_start, now)
        return _breaching(rule, state, new, level, obs, window_start, now)
    return _not_breaching(rule, state, new, clean, window_start)


def _reopened(old: AlertState, new: AlertState, level: str, window_start: datetime,
              now: datetime) -> tuple[AlertState, str]:
    """A breach within the flap window: the same episode fires again, marked flapping, not a new incident."""
    episode = {k: v for k, v in old.episode.items() if k not in ("resolved", "clean_since", "lower_streak")}
    episode.update(flaps=int(episode.get("flaps", 0)) + 1, flapping=True, refired=iso_ms(window_start))
    new.episode = episode
    new.state, new.streak, new.ok_streak, new.severity, new.notified_at = FIRING, 1, 0, level, now
    new.acked_by, new.ack_note, new.acked_at = "", "", None
    return new, "flapping"


def _breaching(rule: Rule, old: AlertState, new: AlertState, level: str, obs: Observation | None,
               window_start: datetime, now: datetime) -> tuple[AlertState, str | None]:
    new.ok_streak = 0
    if old.state in (OK, RESOLVED, PENDING):
        new.streak = old.streak + 1 if old.state == PENDING else 1
        new.severity = level
        if old.state != PENDING:  # a new episode: its id is the incident's, in every notification
            stamp = window_start.strftime("%Y%m%dT%H%M%S")
            new.episode = {"id": f"{old.alert_id}-{stamp}", "started": iso_ms(window_start), "flaps": 0}
        if new.streak < rule.for_windows:
            new.state = PENDING
            return new, "pending"
        new.state, new.fired_at, new.notified_at = FIRING, now, now
        new.acked_by, new.ack_note, new.acked_at = "", "", None
        new.episode = {**new.episode, "fired": iso_ms(window_start)}
        return new, "firing"
    # Already firing.
    new.streak = old.streak + 1
    episode = {k: v for k, v in old.episode.items() if k != "clean_since"}
    lower = int(episode.pop("lower_streak", 0))
    if level == "warning" and old.severity == "critical":
        # Hysteresis on the severity too: step down only after recover_for windows at warning.
        lower += 1
        if lower < rule.recover_windows:
            new.severity, new.episode = old.severity, {**episode, "lower_streak": lower}
            new.evidence["rule_level"] = {"severity": old.severity, "level": rule.level(old.severity),
                                          "unit": rule.level_unit}
            new.threshold = rule.value_threshold(obs, old.severity)
            return new, "deescalating"
    new.episode = episode
    if level != old.severity:
        new.severity, new.notified_at = level, now
        return new, "escalated" if level == "critical" else "deescalated"
    due = (rule.renotify_s > 0 and not old.acked_by and old.notified_at is not None
           and now - old.notified_at >= timedelta(seconds=rule.renotify_s))
    if due:
        new.notified_at = now
        return new, "renotify"
    if old.ok_streak or lower:
        return new, "breaching"  # a recovery (or a step down) was under way and broke off: record the reset
    return old, None


def _not_breaching(rule: Rule, old: AlertState, new: AlertState, clean: bool,
                   window_start: datetime) -> tuple[AlertState, str | None]:
    if old.state == PENDING:
        new.state, new.streak, new.severity, new.episode = RESOLVED, 0, "", {}
        return new, "cleared"  # never fired, so nothing is sent: flapping stays quiet
    if old.state != FIRING:
        return old, None
    # Firing, and this window does not breach: the evidence and severity stay those of the breach.
    new.severity, new.evidence, new.threshold = old.severity, old.evidence, old.threshold
    episode = {k: v for k, v in old.episode.items() if k != "lower_streak"}
    if not clean:
        # In the hysteresis band (not breaching, not past `clear`): hold firing, restart the count.
        if not old.ok_streak:
            return old, None
        new.ok_streak, new.episode = 0, {k: v for k, v in episode.items() if k != "clean_since"}
        return new, "held"
    new.ok_streak = old.ok_streak + 1
    if "clean_since" not in episode:
        episode["clean_since"] = iso_ms(window_start)
    new.episode = episode
    if not _may_resolve(rule, new, window_start):
        return new, "recovering"
    new.state, new.streak = RESOLVED, 0
    new.acked_by, new.ack_note, new.acked_at = "", "", None
    new.episode = {k: v for k, v in episode.items() if k not in ("clean_since", "flapping")}
    new.episode["resolved"] = iso_ms(window_start)
    return new, "resolved"


def _may_resolve(rule: Rule, state: AlertState, window_start: datetime) -> bool:
    """Enough clean windows, fired long enough, and (when flapping) clean for a whole flap window."""
    if state.ok_streak < rule.recover_windows:
        return False
    fired_for = _since(state.episode, "fired", window_start)
    if rule.min_firing_s > 0 and fired_for is not None and fired_for < rule.min_firing_s:
        return False
    if state.episode.get("flapping") and rule.flap_window_s > 0:
        clean_for = _since(state.episode, "clean_since", window_start)
        if clean_for is not None and clean_for < rule.flap_window_s:
            return False
    return True


def _evidence(old: AlertState, obs: Observation | None, entry: dict[str, Any], *, fresh: bool) -> dict[str, Any]:
    """Evidence of a breach: the recent values, the baseline, the p-value and example traces."""
    history = [] if fresh else list(old.evidence.get("history", []))
    history = (history + [entry])[-_HISTORY:]
    evidence: dict[str, Any] = {"history": history}
    if obs is not None:
        evidence.update(value=obs.value, n=obs.n, baseline=obs.baseline, p_value=obs.p_value,
                        analyzer_threshold=obs.threshold)
        for key, value in obs.details.items():
            evidence.setdefault(key, value)  # examples, topics, the grown topic, rates with CIs...
    elif not fresh:
        for key in ("examples", "topics", "grown_topic"):
            if key in old.evidence:
                evidence[key] = old.evidence[key]
    return evidence


def notification(rule: Rule, state: AlertState, transition: str) -> dict[str, Any]:
    """The JSON a notification target receives (Slack gets a message built from it)."""
    return {
        "kind": transition, "alert_id": state.alert_id, "rule": rule.name, "metric": rule.metric,
        "description": rule.description, "severity": state.severity, "state": state.state,
        "segment": dict(state.segment), "value": state.value, "threshold": state.threshold,
        "baseline": state.baseline, "p_value": state.p_value, "window_start": iso_ms(state.window_start),
        "fired_at": iso_ms(state.fired_at), "evidence": state.evidence,
        **({"incident_id": state.episode.get("id", ""), "episode": dict(state.episode)} if state.episode else {}),
    }


# -- the table ---------------------------------------------------------------------------------------

def load_states(client: Any) -> dict[str, AlertState]:
    """The latest row of every alert, by id."""
    columns = ", ".join(ALERT_STATE_COLUMNS)
    result = client.query(latest_alerts_sql(columns))
    states = {}
    for row in result.result_rows:
        rec = dict(zip(ALERT_STATE_COLUMNS, row, strict=True))
        evidence = _details(rec["evidence"])
        stored = evidence.pop("episode", None)
        episode: dict[str, Any] = stored if isinstance(stored, dict) else {}
        states[rec["alert_id"]] = AlertState(
            alert_id=rec["alert_id"], rule=rec["rule"], metric=rec["metric"],
            segment={k: rec[k] for k in SEGMENT_KEYS}, state=rec["state"], severity=rec["severity"],
            streak=int(rec["streak"]), ok_streak=int(rec["ok_streak"]), window_start=utc(rec["window_start"]),
            fired_at=utc(rec["fired_at"]), notified_at=utc(rec["notified_at"]), acked_at=utc(rec["acked_at"]),
            acked_by=rec["acked_by"], ack_note=rec["ack_note"], value=rec["value"], threshold=rec["threshold"],
            baseline=rec["baseline"], p_value=rec["p_value"],
            evidence=evidence, granularity=rec["granularity"],
            held_back=rec["held_back"], silenced_by=rec["silenced_by"], episode=episode,
        )
    return states


def write_states(client: Any, changes: list[tuple[AlertState, str]], now: datetime) -> None:
    """Append one row per changed alert."""
    if not changes:
        return
    rows = []
    for offset, (st, transition) in enumerate(changes):
        # Rows of one evaluation share a clock reading; a microsecond apart keeps their order exact.
        changed_at = now + timedelta(microseconds=offset)
        rows.append([
            st.alert_id, st.rule, st.metric, st.severity, st.state,
            *(st.segment.get(k, "") for k in SEGMENT_KEYS),
            st.value, st.threshold, st.baseline, st.p_value,
            st.window_start or now, json.dumps(_stored_evidence(st), default=str, ensure_ascii=False),
            st.acked_by, st.ack_note, changed_at, transition, st.granularity, st.streak, st.ok_streak,
            st.fired_at, st.notified_at, st.acked_at, st.held_back, st.silenced_by,
        ])
    client.insert("alerts", rows, column_names=ALERT_STATE_COLUMNS)


def _stored_evidence(state: AlertState) -> dict[str, Any]:
    return {**state.evidence, "episode": state.episode} if state.episode else state.evidence


def acknowledge(client: Any, alert: str, by: str, note: str = "", now: datetime | None = None) -> AlertState:
    """Acknowledge a pending or firing alert: who, when, why. It stops re-notifications until it resolves."""
    from llmsight.errors import LlmsightError

    if not by.strip():
        raise LlmsightError("an acknowledgement needs the name of who acknowledges")
    state = load_states(client).get(alert)
    if state is None or state.state not in (PENDING, FIRING):
        raise LlmsightError(f"alert {alert!r} is not pending or firing, so there is nothing to acknowledge")
    now = now or datetime.now(timezone.utc)
    acked = replace(state, acked_by=by.strip(), ack_note=note, acked_at=now)
    write_states(client, [(acked, "ack")], now)
    log.info("alerts: %s (%s) acknowledged by %s", alert, state.rule, by)
    return acked


def fired_alerts(client: Any) -> list[dict[str, Any]]:
    """Every alert that reached firing: rule, metric, highest severity, segment, first fired_at (oldest first)."""
    result = client.query(
        "SELECT alert_id, rule, metric, service, name, model, prompt_version, "
        "min(fired_at) AS first_fired, groupArray(severity) AS severities "
        "FROM alerts WHERE transition IN ('firing', 'escalated') AND fired_at IS NOT NULL "
        "GROUP BY alert_id, rule, metric, service, name, model, prompt_version ORDER BY first_fired, rule"
    )
    out = []
    for alert, rule, metric, service, name, model, version, first, severities in result.result_rows:
        out.append({
            "alert_id": alert, "rule": rule, "metric": metric,
            "severity": "critical" if "critical" in severities else "warning",
            "segment": {"service": service, "name": name, "model": model, "prompt_version": version},
            "fired_at": iso_ms(utc(first)),
        })
    return out


# -- the engine --------------------------------------------------------------------------------------

class AlertEngine:
    """Evaluates every rule on one window's metric rows, records the changes and notifies."""

    def __init__(self, client: Any, rules: list[Rule], notifier: Any = None) -> None:
        self.client = client
        self.rules = rules
        self.notifier = notifier
        self.transitions = 0

    def evaluate(self, window_start: datetime, metrics: list[dict[str, Any]], granularity: str = "1m",
                 now: datetime | None = None) -> list[tuple[AlertState, str]]:
        """Apply the rules of ``granularity`` to this window's metric rows; returns the changes made."""
        now = now or datetime.now(timezone.utc)
        states = load_states(self.client)
        silences = silencing.load_silences(self.client, now)
        by_metric: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {}
        segments: dict[tuple[str, ...], dict[str, str]] = {}
        for row in metrics:
            key = tuple(row[k] for k in SEGMENT_KEYS)
            segments[key] = {k: row[k] for k in SEGMENT_KEYS}
            by_metric.setdefault(row["metric"], {})[key] = row
        changes: list[tuple[AlertState, str]] = []
        for rule in self.rules:
            if rule.granularity != granularity:
                continue
            candidates = dict(segments)
            for st in states.values():  # segments that went silent still get their no-data step
                if st.rule == rule.name and st.state in (PENDING, FIRING):
                    candidates.setdefault(tuple(st.segment.get(k, "") for k in SEGMENT_KEYS), st.segment)
            for key, segment in sorted(candidates.items()):
                if not rule.matches(segment):
                    continue
                ident = alert_id(rule.name, segment)
                old = states.get(ident) or AlertState(ident, rule.name, rule.metric, dict(segment),
                                                      granularity=granularity)
                if old.window_start is not None and old.window_start >= window_start:
                    continue  # this window was already evaluated (a rerun must not count it twice)
                row = by_metric.get(rule.metric, {}).get(key)
                obs = None if row is None else Observation(
                    value=float(row["value"]), n=int(row["n"]), baseline=row.get("baseline"),
                    p_value=row.get("p_value"), threshold=row.get("threshold"),
                    details=_details(row.get("details")))
                new, transition = step(rule, old, obs, window_start, now)
                sends = transition in NOTIFYING and (transition != "resolved" or rule.send_recovery)
                silence = silencing.matching(silences, rule.name, segment, now)
                new, transition, kind = silencing.gate(silence, old, new, transition, sends, now)
                if transition is None:
                    continue
                changes.append((new, transition))
                if kind is not None:
                    log.info("alerts: %s %s (%s) on %s: value %s", rule.name, kind, new.severity,
                             "/".join(segment.values()), new.value)
                    if self.notifier is not None:
                        self.notifier.send(notification(rule, new, kind))
                elif sends and silence is not None:
                    log.debug("alerts: %s %s on %s held back by silence %s until %s", rule.name, transition,
                              "/".join(segment.values()), silence.silence_id, silence.until.isoformat())
        write_states(self.client, changes, now)
        self.transitions += len(changes)
        return changes


def _details(raw: Any) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
