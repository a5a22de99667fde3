"""The export's pure helpers: ISO weeks, the review sample's allocation, formats and the cron schedule."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from llmsight.errors import ConfigError
from llmsight.review.export import allocate, cron_trigger, parse_formats
from llmsight.review.weeks import IsoWeek, last_complete_week, parse_week, week_seed


def test_iso_week_bounds_and_previous():
    week = parse_week("2026-W47")
    assert week.start == datetime(2026, 11, 16, tzinfo=timezone.utc)
    assert week.end == datetime(2026, 11, 23, tzinfo=timezone.utc)
    assert week.previous() == IsoWeek(2026, 46)
    assert parse_week("2021-W01").previous() == IsoWeek(2020, 53)  # 2020 has 53 ISO weeks
    assert parse_week("2026w5").label == "2026-W05"


@pytest.mark.parametrize("text", ["2026-47", "2026-W54", "2025-W53", "last week", "2026-W0"])
def test_bad_weeks_are_refused(text):
    with pytest.raises(ConfigError):
        parse_week(text)


def test_default_week_is_the_last_complete_one():
    sunday_night = datetime(2026, 11, 22, 23, 59, tzinfo=timezone.utc)
    monday = datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc)
    assert last_complete_week(sunday_night) == IsoWeek(2026, 46)
    assert last_complete_week(monday) == IsoWeek(2026, 47)
    assert parse_week(None, monday) == IsoWeek(2026, 47)


def test_week_seed_depends_on_the_week_only():
    assert week_seed(IsoWeek(2026, 47)) == week_seed(parse_week("2026-W47"))
    assert week_seed(IsoWeek(2026, 47)) != week_seed(IsoWeek(2026, 48))


def test_allocation_is_proportional_with_one_per_stratum():
    counts = {("a",): 900, ("b",): 90, ("c",): 10}
    assert allocate(counts, 100) == {("a",): 90, ("b",): 9, ("c",): 1}
    # A small stratum still gets one call; the largest gives it up.
    assert allocate({("a",): 995, ("b",): 4, ("c",): 1}, 10) == {("a",): 8, ("b",): 1, ("c",): 1}
    result = allocate(counts, 100)
    assert sum(result.values()) == 100 and all(v >= 1 for v in result.values())
    assert allocate({("a",): 3, ("b",): 2}, 10) == {("a",): 3, ("b",): 2}  # never more than a stratum holds
    assert allocate({("a",): 5, ("b",): 5, ("c",): 5}, 2) == {("a",): 1, ("b",): 1, ("c",): 0}
    assert allocate({("a",): 5}, 0) == {("a",): 0}


def test_formats():
    assert parse_formats("html, parquet") == ("parquet", "html")
    with pytest.raises(ConfigError):
        parse_formats("pdf")
    with pytest.raises(ConfigError):
        parse_formats("")


@pytest.mark.parametrize("cron, expected", [
    ("mon 06:00", datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)),
    ("0 6 * * 1", datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)),   # crontab: 1 is Monday
    ("30 5 * * 0", datetime(2026, 11, 22, 5, 30, tzinfo=timezone.utc)),  # and 0 is Sunday
    ("0 7 * * 1-5", datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)),
    ("0 7 * * 0-6", datetime(2026, 11, 21, 7, 0, tzinfo=timezone.utc)),
])
def test_cron_schedules_follow_crontab_days(cron, expected):
    saturday = datetime(2026, 11, 21, 0, 0, tzinfo=timezone.utc)
    assert cron_trigger(cron).get_next_fire_time(None, saturday) == expected


def test_bad_cron_is_refused():
    with pytest.raises(ConfigError):
        cron_trigger("every monday")


def test_weekly_acceptance_sums_the_daily_rows_and_skips_unjudged_segments():
    from llmsight.review.summary import _acceptance

    seg = {"service": "bot", "name": "answer", "model": "m", "prompt_version": "v1"}
    quiet = {**seg, "prompt_version": "v2"}
    daily = [{"day": "2026-11-16", **seg, "volume": 9, "judged": 4, "accepted": 3},
             {"day": "2026-11-16", **quiet, "volume": 5, "judged": 0, "accepted": 0},
             {"day": "2026-11-17", **seg, "volume": 7, "judged": 6, "accepted": 2}]
    assert _acceptance(daily) == {("bot", "answer", "m", "v1"): (10, 5)}
