"""Window arithmetic and the scheduler's job settings (no store)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from llmsight.analyzers.windows import MetricRow, Window, due_windows, floor_time

T = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)


def test_floor_time_aligns_to_the_epoch():
    assert floor_time(T + timedelta(seconds=59.9), 60) == T
    assert floor_time(T + timedelta(seconds=61), 60) == T + timedelta(minutes=1)
    assert floor_time(T + timedelta(seconds=17), 10) == T + timedelta(seconds=10)
    assert floor_time(datetime(2026, 11, 21, 12, 34, 56), 3600) == T  # naive means UTC


def test_a_window_is_due_only_after_its_lag():
    # At 12:01:19 with a 20 s lag, the 12:00 window (closed at 12:01) is not due yet.
    assert due_windows(T - timedelta(minutes=1), T + timedelta(seconds=79), 60, 20, 10) == []
    due = due_windows(T - timedelta(minutes=1), T + timedelta(seconds=80), 60, 20, 10)
    assert due == [Window(T, T + timedelta(minutes=1))]


def test_missed_windows_are_caught_up_oldest_first_and_capped():
    now = T + timedelta(minutes=10, seconds=30)
    due = due_windows(T, now, 60, 20, 100)
    assert [w.start for w in due] == [T + timedelta(minutes=m) for m in range(1, 10)]
    capped = due_windows(None, now, 60, 20, 3)
    assert [w.start for w in capped] == [T + timedelta(minutes=m) for m in (7, 8, 9)]
    assert due_windows(T + timedelta(minutes=9), now, 60, 20, 100) == []
    # A store last analyzed with 10 s windows resumes on the 60 s grid.
    resumed = due_windows(T + timedelta(minutes=7, seconds=40), now, 60, 20, 100)
    assert [w.start for w in resumed] == [T + timedelta(minutes=m) for m in (8, 9)]


def test_rollup_windows_carry_their_granularity():
    due = due_windows(None, T + timedelta(hours=2, minutes=5), 3600, 20, 2, "1h")
    assert [(w.start, w.granularity) for w in due] == [(T, "1h"), (T + timedelta(hours=1), "1h")]


def test_metric_row_is_deterministic_and_drops_non_finite_numbers():
    window = Window(T, T + timedelta(minutes=1))
    segment = {"service": "s", "name": "n", "model": "m", "prompt_version": "v1"}
    row = MetricRow(window, segment, "drift_input", 0.5, 40, baseline=float("nan"), p_value=0.01,
                    details={"b": 1, "a": [1.5, 2]})
    assert row.as_list() == [T, T + timedelta(minutes=1), "1m", "s", "n", "m", "v1", "drift_input", 0.5, 40,
                             None, 0.01, None, '{"a": [1.5, 2], "b": 1}']


def test_settings_fail_fast_on_bad_values(monkeypatch):
    from llmsight.analyzers.window_metrics import AnalysisSettings
    from llmsight.errors import ConfigError
    from llmsight.scheduler.service import ScheduleSettings

    monkeypatch.setenv("LLMSIGHT_WINDOW_SECONDS", "0")
    with pytest.raises(ConfigError, match="LLMSIGHT_WINDOW_SECONDS"):
        ScheduleSettings.from_env()
    monkeypatch.setenv("LLMSIGHT_WINDOW_SECONDS", "10")
    monkeypatch.setenv("LLMSIGHT_ANALYZERS_HTTP_PORT", "70000")
    with pytest.raises(ConfigError, match="LLMSIGHT_ANALYZERS_HTTP_PORT"):
        ScheduleSettings.from_env()
    monkeypatch.delenv("LLMSIGHT_ANALYZERS_HTTP_PORT")
    assert ScheduleSettings.from_env().window_s == 10
    monkeypatch.setenv("LLMSIGHT_BASELINE", "2026-11-02T00:00:00Z/2026-11-01T00:00:00Z")
    with pytest.raises(ConfigError, match="END must come after"):
        AnalysisSettings.from_env()
    monkeypatch.setenv("LLMSIGHT_BASELINE", "2026-11-01T00:00:00Z/2026-11-02T00:00:00Z")
    monkeypatch.setenv("LLMSIGHT_REFERENCE", "baseline")
    settings = AnalysisSettings.from_env()
    assert settings.reference == "baseline"
    assert settings.baseline == (datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 2, tzinfo=timezone.utc))
