"""ISO weeks, the unit of the quality review, and the grace period for late feedback.

A week runs from Monday 00:00 UTC to the next Monday. Feedback often comes a little after the call,
so a week's verdicts are counted until ``FEEDBACK_GRACE`` after its end (Tuesday 00:00 UTC), and never
past the moment an export runs (:func:`feedback_cutoff`); an export before the grace is over is
provisional and says so (:func:`feedback_statement`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from llmsight.errors import ConfigError
from llmsight.store.times import iso_ms, utc_text

FEEDBACK_GRACE = timedelta(days=1)


@dataclass(frozen=True)
class IsoWeek:
    """An ISO 8601 week, Monday 00:00 UTC to the next Monday."""

    year: int
    week: int

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def start(self) -> datetime:
        return datetime.combine(date.fromisocalendar(self.year, self.week, 1), datetime.min.time(), timezone.utc)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)

    @property
    def grace_end(self) -> datetime:
        """Until when feedback on the week's calls is counted (``FEEDBACK_GRACE`` after its end)."""
        return self.end + FEEDBACK_GRACE

    def provisional(self, feedback_until: datetime) -> bool:
        """Whether feedback counted only until ``feedback_until`` misses part of the grace period."""
        return feedback_until < self.grace_end

    def previous(self) -> IsoWeek:
        return IsoWeek.containing(self.start - timedelta(days=1))

    @staticmethod
    def containing(moment: datetime) -> IsoWeek:
        year, week, _ = moment.astimezone(timezone.utc).isocalendar()
        return IsoWeek(year, week)

    def __str__(self) -> str:
        return self.label


_WEEK = re.compile(r"^(\d{4})-?W(\d{1,2})$", re.I)


def parse_week(text: str | None, now: datetime | None = None) -> IsoWeek:
    """``2026-W47`` (or ``2026W47``); None or empty means the last complete ISO week before ``now``."""
    if not text:
        return last_complete_week(now)
    match = _WEEK.match(text.strip())
    if not match:
        raise ConfigError(f"week {text!r} is not an ISO week: expected YYYY-Www, for example 2026-W47")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        raise ConfigError(f"week {text!r} does not exist: {year} has no week {week}") from None
    return IsoWeek(year, week)


def last_complete_week(now: datetime | None = None) -> IsoWeek:
    """The ISO week before the one ``now`` is in (from Monday 00:00 UTC on, although its feedback
    grace runs until Tuesday 00:00 UTC: an export of it before then is provisional and says so)."""
    return IsoWeek.containing(now or datetime.now(timezone.utc)).previous()


def feedback_cutoff(week: IsoWeek, now: datetime | None = None) -> datetime:
    """The instant the week's feedback is counted until (exclusive): the end of its grace period
    (``week.end + FEEDBACK_GRACE``), or ``now`` (down to the whole second) if that is earlier."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    return min(week.grace_end, moment)


def feedback_statement(week: IsoWeek, feedback_until: datetime) -> str:
    """The sentence the export carries about its feedback: final, or provisional and until when."""
    grace_end = week.grace_end
    if not week.provisional(feedback_until):
        return (f"Final: feedback counted until {utc_text(grace_end)}, the end of the grace period for "
                "late feedback; a rerun writes the same figures.")
    return (f"Provisional: feedback counted until {utc_text(feedback_until)}; the grace period for late "
            f"feedback ends {utc_text(grace_end)}; rerun the export after it for final figures.")


def manifest(week: IsoWeek, feedback_until: datetime) -> dict[str, Any]:
    """``export.json``: the week's bounds and the feedback cutoff (no time of the export otherwise)."""
    return {"week": week.label, "start": iso_ms(week.start), "end": iso_ms(week.end),
            "feedback_grace_end": iso_ms(week.grace_end), "feedback_until": iso_ms(feedback_until),
            "provisional": week.provisional(feedback_until), "feedback": feedback_statement(week, feedback_until)}


def week_seed(week: IsoWeek) -> int:
    """The review sample's seed: a function of the week alone, so a rerun samples the same calls."""
    return int(hashlib.sha256(f"llmsight-export-{week.label}".encode()).hexdigest()[:15], 16)
