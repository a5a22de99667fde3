"""The weekly export's feedback cutoff: min(end of the week's grace, now), what the export says about it,
and a default schedule that runs after the grace."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from llmsight.review import settings as review_settings
from llmsight.review.export import ExportResult, cron_trigger
from llmsight.review.weeks import (
    FEEDBACK_GRACE,
    IsoWeek,
    feedback_cutoff,
    feedback_statement,
    last_complete_week,
    manifest,
)

W47 = IsoWeek(2026, 47)  # Monday 2026-11-16 to Monday 2026-11-23; its grace ends Tuesday 2026-11-24 00:00 UTC
UTC = timezone.utc


def test_grace_ends_on_tuesday_midnight():
    assert FEEDBACK_GRACE == timedelta(days=1)
    assert W47.end + FEEDBACK_GRACE == datetime(2026, 11, 24, tzinfo=UTC)


def test_before_the_grace_ends_feedback_counts_until_now_to_the_second():
    monday_six = datetime(2026, 11, 23, 6, 0, 12, 345678, tzinfo=UTC)
    assert feedback_cutoff(W47, monday_six) == datetime(2026, 11, 23, 6, 0, 12, tzinfo=UTC)
    last_instant = datetime(2026, 11, 23, 23, 59, 59, 999999, tzinfo=UTC)
    assert feedback_cutoff(W47, last_instant) == datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC)
    # Another zone is the same instant.
    in_berlin = datetime(2026, 11, 23, 7, 30, tzinfo=timezone(timedelta(hours=1)))
    assert feedback_cutoff(W47, in_berlin) == datetime(2026, 11, 23, 6, 30, tzinfo=UTC)
    # An export of the week still running counts feedback until now too.
    assert feedback_cutoff(W47, datetime(2026, 11, 20, 9, 15, tzinfo=UTC)) == datetime(2026, 11, 20, 9, 15, tzinfo=UTC)


def test_after_the_grace_ends_feedback_counts_until_its_end_whenever_the_export_runs():
    grace_end = datetime(2026, 11, 24, tzinfo=UTC)
    for now in (grace_end, grace_end + timedelta(microseconds=1), datetime(2026, 11, 24, 6, 0, tzinfo=UTC),
                datetime(2027, 2, 1, 12, 0, tzinfo=UTC)):
        assert feedback_cutoff(W47, now) == grace_end, now


def test_the_export_states_whether_its_feedback_is_final():
    early = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert feedback_statement(W47, early) == (
        "Provisional: feedback counted until 2026-11-23 06:00:00 UTC; the grace period for late feedback ends "
        "2026-11-24 00:00:00 UTC; rerun the export after it for final figures.")
    assert feedback_statement(W47, datetime(2026, 11, 24, tzinfo=UTC)) == (
        "Final: feedback counted until 2026-11-24 00:00:00 UTC, the end of the grace period for late feedback; "
        "a rerun writes the same figures.")
    assert manifest(W47, early) == {
        "week": "2026-W47", "start": "2026-11-16T00:00:00.000Z", "end": "2026-11-23T00:00:00.000Z",
        "feedback_grace_end": "2026-11-24T00:00:00.000Z", "feedback_until": "2026-11-23T06:00:00.000Z",
        "provisional": True, "feedback": feedback_statement(W47, early)}
    final = manifest(W47, feedback_cutoff(W47, datetime(2026, 11, 24, 6, 0, tzinfo=UTC)))
    assert final["provisional"] is False and final["feedback_until"] == "2026-11-24T00:00:00.000Z"
    # Two final exports carry the same manifest whenever they ran: nothing of the clock gets in.
    assert final == manifest(W47, feedback_cutoff(W47, datetime(2027, 1, 5, tzinfo=UTC)))
    assert ExportResult(W47, None, feedback_until=early).provisional is True  # type: ignore[arg-type]
    assert ExportResult(W47, None, feedback_until=datetime(2026, 11, 24, tzinfo=UTC)).provisional is False  # type: ignore[arg-type]


def test_monday_still_names_last_week_and_the_default_schedule_runs_after_its_grace():
    monday_six = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert last_complete_week(monday_six) == W47  # provisional then, and saying so
    assert review_settings.EXPORT_CRON.default == "tue 06:00"
    first_run = cron_trigger(review_settings.EXPORT_CRON.default).get_next_fire_time(None, W47.end)
    assert first_run == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    assert last_complete_week(first_run) == W47
    assert feedback_cutoff(W47, first_run) == W47.end + FEEDBACK_GRACE  # final
