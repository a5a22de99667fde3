"""Work units with replicas: the embedding units of a window, and the order windows are published in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from llmsight.analyzers.windows import Window
from llmsight.scheduler import embedding
from llmsight.scheduler.progress import WorkUnit, cut, embed_units
from llmsight.scheduler.roles import Coordinator, QueueSettings

START = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
WINDOW = Window(START, START + timedelta(minutes=1))
SEGMENTS = [{"service": "s", "name": n, "model": "m", "prompt_version": "v1"} for n in ("b", "a", "c")]


def test_embedding_units_carry_every_segment_and_round_trip_apart_from_the_analysis_units():
    units = embed_units(WINDOW, SEGMENTS, 2, plan=7)
    assert [(u.index, u.shards, u.units) for u in units] == [(0, 2, 2), (1, 2, 2)]
    assert all(u.segments == (("s", "a", "m", "v1"), ("s", "b", "m", "v1"), ("s", "c", "m", "v1")) for u in units)
    assert WorkUnit.decode(units[1].encode()) == units[1]
    analysis = cut(WINDOW, SEGMENTS, 1, plan=7)
    assert not analysis[0].embeds and WorkUnit.decode(analysis[0].encode()) == analysis[0]
    # Recorded apart: an embedding unit is not one of the window's analysis units.
    assert units[0].unit_id != analysis[0].unit_id and units[0].unit_id.endswith("/e0")
    assert (units[0].granularity, analysis[0].granularity) == ("1m+embed", "1m")


def test_an_embedding_unit_with_its_shard_out_of_range_is_refused():
    raw = embed_units(WINDOW, SEGMENTS, 2, plan=7)[1].encode().replace(b'"index":1', b'"index":2')
    with pytest.raises(ValueError, match="shard"):
        WorkUnit.decode(raw)


class _Cache:
    class embedder:  # noqa: N801  (the attribute the shard reads the model name from)
        name = "all-MiniLM-L6-v2#onnx-int8"

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, texts):
        self.encoded.extend(texts)


def test_the_shards_of_a_window_embed_each_of_its_texts_exactly_once(monkeypatch):
    texts = [f"text {i}" for i in range(200)]
    monkeypatch.setattr(embedding, "window_texts", lambda analyzer, window, segments: texts)

    class Analyzer:
        embeddings = _Cache()
        toxicity = None  # no sentence pass

    counts = [embedding.embed_shard(Analyzer, WINDOW, SEGMENTS, k, 3) for k in range(3)]
    assert sorted(Analyzer.embeddings.encoded) == sorted(texts)
    assert sum(counts) == len(texts) and min(counts) > 40  # spread, not all in one shard


def _coordinator() -> Coordinator:
    queue = QueueSettings(("127.0.0.1:1",), "llmsight.analysis", "g")  # no broker: nothing is started
    return Coordinator(None, queue, window_s=60, lag_s=1, catchup=3, rules=[], notifier=None, name="t",
                       weekly_export=False)


def test_a_window_waits_for_the_one_before_it_and_an_hour_for_its_minutes():
    coordinator = _coordinator()
    minute = Window(START + timedelta(minutes=1), START + timedelta(minutes=2))
    assert coordinator._waiting_for(minute, [WINDOW]) == WINDOW
    assert coordinator._waiting_for(minute, []) is None
    assert coordinator._waiting_for(WINDOW, [minute]) is None  # a later window never holds an earlier one
    hour = Window(START, START + timedelta(hours=1), "1h")
    coordinator._last["1m"] = START + timedelta(minutes=59)
    assert coordinator._waiting_for(hour, [minute]) == minute  # a minute window in the hour is not done
    assert coordinator._waiting_for(hour, [Window(START + timedelta(hours=1), START + timedelta(minutes=61))]) is None
    coordinator._last["1m"] = START + timedelta(minutes=58)  # its last minute is not planned yet
    assert coordinator._waiting_for(hour, []) is not None
