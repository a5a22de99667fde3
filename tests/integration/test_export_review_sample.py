"""review_sample() draws every stratum's random calls in one query; it must return exactly the rows, in
exactly the order, that the former one-query-per-stratum draw gave (copied below as the reference)."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from llmsight import store
from llmsight.review import export
from llmsight.review.export import review_sample
from llmsight.review.weeks import FEEDBACK_GRACE, IsoWeek
from llmsight.store.names import SEGMENT_KEYS
from llmsight.store.times import sql_time

# Two weeks inside the store's retention (rows past their TTL vanish from FINAL reads), so two seeds.
NOW = datetime.now(timezone.utc)
WEEKS = [IsoWeek.containing(NOW - timedelta(days=14)), IsoWeek.containing(NOW - timedelta(days=21))]
# (segment, calls a week). Names with quotes, commas, backslashes and non-ASCII text; two strata that a
# comma-joined key would merge ("a,b"+"c" and "a"+"b,c"); one stratum smaller than its share of a big sample.
STRATA = [
    (("bank-bot", "answer", "gpt-4o-mini", "v1"), 70),
    (("bank-bot", "answer", "gpt-4o-mini", "v2"), 45),
    (("it's", "a, \"quoted\" name", "módèl—ü\\x", "v'1"), 30),
    (("a,b", "c", "日本語", "v1"), 20),
    (("a", "b,c", "日本語", "v1"), 20),
    (("tiny", "x", "m", ""), 2),
]
SIZES = [3, 25, 1000]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _seed(client: Any, rng: random.Random) -> tuple[dict[str, float], dict[tuple, int]]:
    """Both weeks' calls (plus a few just outside each), feedback on about half, some of it changed later.
    Returns the toxic scores of a few traces, as the toxicity summary would, and the calls per (week, stratum)."""
    events, feedback, toxic, calls_in = [], [], {}, {}
    for week in WEEKS:
        for segment, calls in STRATA:
            moments = [week.start + timedelta(seconds=rng.randrange(7 * 86400)) for _ in range(calls)]
            moments += [week.start - timedelta(minutes=5), week.end + timedelta(minutes=5)]
            for moment in moments:
                trace = uuid.UUID(int=rng.getrandbits(128)).hex
                at = (IsoWeek.containing(moment), segment)
                calls_in[at] = calls_in.get(at, 0) + 1
                events.append(store.event_row({
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "trace_id": trace, "ts": _iso(moment),
                    **dict(zip(SEGMENT_KEYS, segment, strict=True)), "input": f"question {trace[:6]}",
                    "output": f"answer {trace[:6]}", "latency_ms": rng.uniform(50, 900),
                }, "test"))
                if rng.random() < 0.08:
                    toxic[trace] = round(rng.uniform(0.5, 1.0), 4)
                # Feedback on about half; a second verdict an hour later overrides the first for some.
                verdicts = [rng.random() < 0.7] if rng.random() < 0.5 else []
                if verdicts and rng.random() < 0.3:
                    verdicts.append(not verdicts[0])
                for hours, accepted in enumerate(verdicts):
                    feedback.append(store.feedback_row({
                        "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "trace_id": trace,
                        "ts": _iso(moment + timedelta(minutes=2, hours=hours)), "accepted": accepted,
                        "score": rng.choice([None, 0.0, 0.5, 1.0]), "comment": rng.choice(["", "meh", "good, thanks"]),
                    }, "test"))
    client.insert("events", events, column_names=store.EVENT_COLUMNS)
    client.insert("feedback", feedback, column_names=store.FEEDBACK_COLUMNS)
    return toxic, calls_in


def _reference_random(client: Any, week: IsoWeek, toxic_scores: dict[str, float], size: int) -> list[tuple]:
    """The random part as review_sample() drew it before: one query per stratum, each stratum's first k
    calls by the seeded hash, sorted by (ts, event_id) within the stratum, strata in key order."""
    sql, not_flagged, segment, settings = export._review_sql, f"NOT {export._FLAGGED}", export._SEGMENT, export._JOIN_SETTINGS
    params: dict[str, Any] = {"start": sql_time(week.start), "end": sql_time(week.end),
                              "feedback_until": sql_time(week.end + FEEDBACK_GRACE),
                              "toxic": sorted(toxic_scores), "seed": export.week_seed(week)}
    strata = client.query(sql(f"{segment}, count() AS n", not_flagged, f"GROUP BY {segment} ORDER BY {segment}"),
                          parameters=params, settings=settings).result_rows
    allocation = export.allocate({tuple(row[:4]): int(row[4]) for row in strata}, size)
    sampled: list[tuple] = []
    in_stratum = " AND ".join(f"e.{col} = {{s_{col}:String}}" for col in SEGMENT_KEYS)
    for key, k in sorted(allocation.items()):
        if k == 0:
            continue
        rows = client.query(
            sql(export._REVIEW_FIELDS, f"{not_flagged} AND {in_stratum}",
                f"ORDER BY cityHash64(toString(e.event_id), {{seed:UInt64}}), e.event_id LIMIT {int(k)}"),
            parameters={**params, **{f"s_{col}": value for col, value in zip(SEGMENT_KEYS, key, strict=True)}},
            settings=settings,
        ).result_rows
        sampled.extend(sorted(rows, key=lambda r: (r[2], r[1])))
    return sampled


def _view(row: dict[str, Any]) -> tuple:
    return (row["trace_id"], row["event_id"], row["service"], row["name"], row["model"], row["prompt_version"],
            row["accepted"], row["comment"])


def _reference_view(row: tuple) -> tuple:
    trace, event, _ts_, service, name, model, version, *_, accepted, _score, comment = row
    return (trace, event, service, name, model, version, "" if accepted is None else int(accepted), comment or "")


@pytest.fixture
def seeded(store_client: Any) -> tuple[Any, dict[str, float], dict[tuple, int]]:
    return store_client, *_seed(store_client, random.Random(7))


@pytest.mark.parametrize("week", WEEKS, ids=lambda w: "this" if w == WEEKS[0] else "previous")
def test_one_query_draws_the_rows_the_per_stratum_queries_drew(seeded, week: IsoWeek) -> None:
    client, toxic, calls_in = seeded
    in_week = {segment: n for (at, segment), n in calls_in.items() if at == week}
    for size in SIZES:
        got = review_sample(client, week, toxic, size)
        random_rows = [_view(row) for row in got if row["flag"] == "random"]
        expected = [_reference_view(row) for row in _reference_random(client, week, toxic, size)]
        assert random_rows == expected, f"size {size}"

        # The comparison means something: the sample is as big as asked (or as the week allows), spans
        # the strata, and holds no flagged call.
        flagged = {row["trace_id"] for row in got if row["flag"] != "random"}
        unflagged = sum(in_week.values()) - len(flagged)
        assert len(random_rows) == min(size, unflagged)
        assert not flagged & {row[0] for row in random_rows}
        strata = {row[2:6] for row in random_rows}
        assert len(strata) == min(size, len(STRATA))
        if size >= unflagged:
            assert strata == set(in_week)  # every stratum whole, the tiny and the oddly named ones included
