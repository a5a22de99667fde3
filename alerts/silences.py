"""Alert silences: "I know about this regression, do not page me for 2 hours", ending by themselves.

A silence names one rule and, optionally, part of a segment (service, name, model, prompt version;
an empty value matches any). While it is active (``now < until``, and not removed), an alert it
matches still moves through its states and every change is recorded in the ``alerts`` table, but
no notification goes out: no webhook, no Slack message, no notification log line.

What was held back is remembered on the alert itself (``held_back``: the kind of notification,
``silenced_by``: the silence). When no silence matches any more and the alert is still firing,
the next evaluation sends that notification once and clears the mark, so the person on call hears
about an alert that outlived the silence, exactly once. A ``firing`` that was held back is sent as
``firing`` (the receivers never saw it open), whatever re-notifications or escalations followed it,
during the silence or in the window that releases it. An acknowledged alert is not re-sent, as with
re-notifications. The recovery of an alert whose ``firing`` went out before the silence is still sent
(it is not a page, and it closes the receivers' incident); an alert whose ``firing`` was held back
sends no recovery, and nothing once the silence ends.

Silences live in the ``alert_silences`` table (migration 0004), one row per change: removing a
silence early writes a newer row of the same ``silence_id`` with ``removed_at`` set, and readers
take the newest row of each id. :func:`gate` is the pure part (unit-tested with injected times);
the rest reads and writes the table.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from llmsight.alerts.rules import Rule, parse_duration
from llmsight.errors import ConfigError, LlmsightError
from llmsight.store.names import SEGMENT_KEYS
from llmsight.store.times import utc

if TYPE_CHECKING:
    from llmsight.alerts.engine import AlertState

log = logging.getLogger("llmsight.alerts.silences")

SILENCE_COLUMNS = [
    "silence_id", "rule", "service", "name", "model", "prompt_version", "until", "created_by", "reason",
    "created_at", "removed_by", "removed_at", "updated_at",
]
# A silence is a pause, not a way to switch a rule off: that belongs in the rules file.
MAX_SILENCE = timedelta(days=30)
# What the dashboard offers, in this order.
DASHBOARD_DURATIONS = ("1h", "4h", "24h")


@dataclass(frozen=True)
class Silence:
    """One silence, as stored in its newest ``alert_silences`` row."""

    silence_id: str
    rule: str
    segment: dict[str, str]  # only the keys with a value; the others match anything
    until: datetime
    created_by: str
    reason: str
    created_at: datetime
    removed_by: str = ""
    removed_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        """True from creation until ``until`` (excluded), unless it was removed before ``now``."""
        return now < self.until and (self.removed_at is None or now < self.removed_at)

    def matches(self, rule: str, segment: dict[str, str]) -> bool:
        """True for this rule and a segment equal to every value the silence gives."""
        return rule == self.rule and all(segment.get(key, "") == value for key, value in self.segment.items())

    def describe(self) -> str:
        where = " ".join(f"{key}={value}" for key, value in self.segment.items()) or "every segment"
        return f"{self.rule} on {where}"


def matching(silences: list[Silence], rule: str, segment: dict[str, str], now: datetime) -> Silence | None:
    """The active silence that lasts longest among those matching (rule, segment), or None."""
    found = [s for s in silences if s.active(now) and s.matches(rule, segment)]
    return max(found, key=lambda s: (s.until, s.silence_id)) if found else None


def parse_silence_for(raw: str) -> timedelta:
    """A silence's length from ``30m``, ``2h`` or ``1d``; :class:`ConfigError` when it cannot be one."""
    return _check_length(timedelta(seconds=parse_duration(raw, "silence duration")), repr(raw))


def _check_length(length: timedelta, shown: str) -> timedelta:
    """The one rule for how long a silence may last: more than zero, at most MAX_SILENCE."""
    if length <= timedelta(0):
        raise ConfigError(f"silence duration: {shown} must be longer than zero (for example 30m, 2h, 1d)")
    if length > MAX_SILENCE:
        raise ConfigError(f"silence duration: {shown} is longer than {MAX_SILENCE.days} days; "
                          "to stop a rule for good, change the rules file (LLMSIGHT_RULES)")
    return length


def check_rule(rule: str, rules: list[Rule]) -> None:
    """:class:`ConfigError` naming the known rules when ``rule`` is not one of them."""
    if rule not in {r.name for r in rules}:
        known = ", ".join(sorted(r.name for r in rules))
        raise ConfigError(f"no alert rule named {rule!r}; the rules are: {known}")


def time_left(silence: Silence, now: datetime) -> str:
    """``1h 59m``, ``3d 2h``, ``45s``: how long the silence still lasts."""
    end = min(silence.until, silence.removed_at) if silence.removed_at else silence.until
    left = max(0, int((end - now).total_seconds()))
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    text = " ".join(p for p in parts if p)
    return text if text else f"{seconds}s"


# -- held-back notifications (pure) -----------------------------------------------------------------

def gate(silence: Silence | None, old: AlertState, new: AlertState, transition: str | None, sends: bool,
         now: datetime) -> tuple[AlertState, str | None, str | None]:
    """Apply a silence to one alert's step: the state to record, the transition, the notification to send.

    ``sends`` says whether ``transition`` would notify without silences. The third value is the
    notification kind to send now (``firing``, ``renotify``...) or None.
    """
    if transition is not None and sends:
        if silence is None:
            unseen = old.held_back == "firing" and not old.acked_by  # the receivers never saw it open
            if unseen and new.state != "firing":
                return _unmarked(new), transition, None  # so no recovery message either
            return _unmarked(new), transition, "firing" if unseen else transition
        if new.state != "firing":
            # Resolved during the silence. A recovery is not a page, and receivers that saw the alert
            # open need it to close their incident; one that never went out is not followed by one.
            return _unmarked(new), transition, None if old.held_back == "firing" else transition
        held = "firing" if old.held_back == "firing" else transition
        return replace(new, held_back=held, silenced_by=silence.silence_id), transition, None
    current = new if transition is not None else old
    if current.state != "firing":
        return (_unmarked(new) if transition is not None else new), transition, None
    if silence is None and current.held_back and not current.acked_by:
        # The silence ended and the alert still fires: send what it held back, once.
        released = replace(_unmarked(current), notified_at=now)
        return released, transition or "unsilenced", current.held_back
    return new, transition, None


def _unmarked(state: AlertState) -> AlertState:
    return replace(state, held_back="", silenced_by="") if state.held_back or state.silenced_by else state


# -- the table --------------------------------------------------------------------------------------

def load_silences(client: Any, now: datetime | None = None, *, include_ended: bool = False) -> list[Silence]:
    """The silences (newest row of each), active ones only unless ``include_ended``; soonest end first."""
    now = utc(now or datetime.now(timezone.utc))
    columns = ", ".join(SILENCE_COLUMNS)
    # Every row of a silence has the same `until`, so filtering before LIMIT BY keeps whole silences.
    where = "" if include_ended else " WHERE until > {now:DateTime64(3, 'UTC')}"
    result = client.query(
        f"SELECT {columns} FROM alert_silences{where} ORDER BY silence_id, updated_at DESC LIMIT 1 BY silence_id",
        parameters={"now": now},
    )
    silences = [_silence(dict(zip(SILENCE_COLUMNS, row, strict=True))) for row in result.result_rows]
    if not include_ended:
        silences = [s for s in silences if s.active(now)]
    return sorted(silences, key=lambda s: (s.until, s.silence_id))


def _silence(rec: dict[str, Any]) -> Silence:
    return Silence(
        silence_id=rec["silence_id"], rule=rec["rule"],
        segment={k: rec[k] for k in SEGMENT_KEYS if rec[k]},
        until=utc(rec["until"]), created_by=rec["created_by"], reason=rec["reason"],
        created_at=utc(rec["created_at"]), removed_by=rec["removed_by"],
        removed_at=None if rec["removed_at"] is None else utc(rec["removed_at"]),
    )


def create_silence(client: Any, rule: str, segment: dict[str, str], duration: timedelta, created_by: str,
                   reason: str = "", *, rules: list[Rule] | None = None, now: datetime | None = None) -> Silence:
    """Silence ``rule`` on ``segment`` for ``duration``; with ``rules``, an unknown rule name is refused."""
    if rules is not None:
        check_rule(rule, rules)
    unknown = sorted(set(segment) - set(SEGMENT_KEYS))
    if unknown:
        raise ConfigError(f"silence segment keys {unknown} are not among {SEGMENT_KEYS}")
    if not created_by.strip():
        raise ConfigError("a silence needs the name of who creates it")
    _check_length(duration, str(duration))
    now = utc(now or datetime.now(timezone.utc))
    silence = Silence(
        silence_id=uuid.uuid4().hex[:12], rule=rule,
        segment={k: segment[k].strip() for k in SEGMENT_KEYS if segment.get(k, "").strip()},
        until=now + duration, created_by=created_by.strip(), reason=reason.strip(), created_at=now,
    )
    _write(client, silence, updated_at=now)
    log.info("silences: %s created by %s for %s until %s", silence.silence_id, silence.created_by,
             silence.describe(), silence.until.isoformat())
    return silence


def remove_silence(client: Any, silence_id: str, removed_by: str, now: datetime | None = None) -> Silence:
    """End an active silence now; :class:`LlmsightError` when there is no such active silence."""
    if not removed_by.strip():
        raise LlmsightError("ending a silence needs the name of who ends it")
    now = utc(now or datetime.now(timezone.utc))
    found = {s.silence_id: s for s in load_silences(client, now, include_ended=True)}.get(silence_id.strip())
    if found is None:
        raise LlmsightError(f"no silence with id {silence_id!r} (see `llmsight alerts silences`)")
    if not found.active(now):
        raise LlmsightError(f"silence {silence_id!r} has already ended")
    removed = replace(found, removed_by=removed_by.strip(), removed_at=now)
    # The newer version wins in ReplacingMergeTree and in LIMIT 1 BY; never older than the creation.
    _write(client, removed, updated_at=max(now, found.created_at + timedelta(milliseconds=1)))
    log.info("silences: %s (%s) removed by %s", silence_id, found.describe(), removed.removed_by)
    return removed


def _write(client: Any, silence: Silence, updated_at: datetime) -> None:
    row = [silence.silence_id, silence.rule, *(silence.segment.get(k, "") for k in SEGMENT_KEYS), silence.until,
           silence.created_by, silence.reason, silence.created_at, silence.removed_by, silence.removed_at,
           updated_at]
    client.insert("alert_silences", [row], column_names=SILENCE_COLUMNS)
