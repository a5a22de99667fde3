"""The on-call screens' pure parts: the default range that fits the data, a card's change against the
baseline (always something to say), and sparklines over every bucket of the range."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from llmsight.dashboard import figures
from llmsight.store.queries import fitting_range

MIN = dt.timedelta(minutes=1)


@pytest.mark.parametrize(("newest", "oldest_recent", "expected"), [
    (None, None, "24h"),  # an empty store
    (MIN, 9 * MIN, "15m"),  # the demo: a few minutes of calls
    (MIN, 50 * MIN, "1h"),
    (MIN, 5 * 60 * MIN, "6h"),
    (0 * MIN, 23 * 60 * MIN, "24h"),  # production: a full day
    (30 * 60 * MIN, None, "7d"),  # the newest call is over a day old: the range that reaches it
    (40 * 24 * 60 * MIN, None, "30d"),
])
def test_the_default_range_fits_the_data(newest, oldest_recent, expected):
    assert fitting_range(newest, oldest_recent) == expected


@pytest.mark.parametrize(("kpi", "expected"), [
    (figures.Kpi("volume", "Volume", 400, 200), ("+100.0% vs baseline", True)),
    (figures.Kpi("error_rate", "Error rate", 0.04, None), ("no baseline: no data in the range before", False)),
    (figures.Kpi("error_rate", "Error rate", None, 0.02), ("no data in this range", False)),
    (figures.Kpi("error_rate", "Error rate", 0.02, 0.0), ("+2.0 pts vs baseline 0%", True)),
    (figures.Kpi("cost_usd", "Cost", 1.5, 0.0), ("$1.50 vs baseline 0", True)),
    (figures.Kpi("error_rate", "Error rate", 0.0, 0.0), ("no change vs baseline (0)", False)),
])
def test_every_card_says_how_it_changed(kpi, expected):
    assert figures.change_text(kpi) == expected


def test_a_sparkline_spans_every_bucket_of_the_range():
    start = pd.Timestamp("2026-11-20 00:00")
    buckets = figures.bucket_index(start, start + pd.Timedelta(hours=24), 3600)
    assert len(buckets) == 24 and buckets[0] == start and buckets[-1] == start + pd.Timedelta(hours=23)
    series = pd.DataFrame({"metric": ["volume", "volume", "error_rate"],
                           "bucket": [start + pd.Timedelta(hours=22), start + pd.Timedelta(hours=23),
                                      start + pd.Timedelta(hours=23)],
                           "n": [10, 20, 20], "weighted": [0, 0, 2.0], "total": [10, 20, 0.1]})
    by_metric = {k.metric: k for k in figures.kpis_from_metrics(series, start, buckets)}
    volume, errors = by_metric["volume"], by_metric["error_rate"]
    assert volume.series == [0.0] * 22 + [10.0, 20.0] and volume.points == 2
    assert all(math.isnan(v) for v in errors.series[:23]) and errors.series[23] == pytest.approx(0.1)
    assert errors.points == 1 < figures.MIN_HISTORY  # one bucket: "not enough history", no empty box
    assert by_metric["cost_usd"].points == 0
