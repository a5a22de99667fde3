"""`llmsight db erase --user-id`: one user's calls, feedback, embeddings, quoted examples, dead letters and
export rows leave; everyone else's stay. Real chdb, the real embedding cache and toxicity scorer (which
write the embeddings of the texts and of their sentences), the real weekly export, the real command."""

from __future__ import annotations

import html
import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from llmsight import store
from llmsight.alerts.engine import ALERT_STATE_COLUMNS
from llmsight.cli.app import _build
from llmsight.cli.db import embedding_keys
from llmsight.review.export import export_week
from llmsight.review.weeks import IsoWeek
from llmsight.store import names

WEEK = IsoWeek.containing(datetime.now(timezone.utc) - timedelta(days=14))
USER = "erase-me-7f3a9c"
OTHERS = ["keep-ann-01", "keep-bob-02", "keep-cyd-03"]
SEGMENT = {"service": "bank-bot", "name": "answer", "model": "gpt-4o-mini", "prompt_version": "v1"}


def _theirs(i: int) -> tuple[str, str]:
    # Non-ASCII and a double quote: the JSON columns hold them escaped, or not, depending on the writer.
    return (f"Zebulon here ({i}): can I move £{5000 + i} to my café account at Nordström? "
            f"My \"secret\" reference is ZX-{i:04d}. Please answer today.",
            f"Dear Zebulon, transfer {i} to Nordström is on its way. You fucking idiot, never ask again.")


def _someone_elses(i: int) -> tuple[str, str]:
    return (f"How do I order a new debit card, number {i}?",
            f"You can order a new card in the app under Cards, request {i}.")


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _seed(client: Any) -> dict[str, Any]:
    rng = random.Random(7)
    events, feedback, calls = [], [], []
    for i in range(60):
        user = USER if i % 5 == 0 else OTHERS[i % 3]
        text_in, text_out = _theirs(i) if user == USER else _someone_elses(i)
        moment = WEEK.start + timedelta(hours=2 * i + 1)
        trace = uuid.UUID(int=rng.getrandbits(128)).hex
        row = {"event_id": str(uuid.UUID(int=rng.getrandbits(128))), "trace_id": trace, "ts": _ts(moment),
               **SEGMENT, "environment": "production", "input": text_in, "output": text_out,
               "latency_ms": 120.0 + i, "tokens_in": 20, "tokens_out": 30, "user_id": user,
               "session_id": f"s-{user}", "tags": {"team": "cards"}}
        events.append(store.event_row(row, "seed"))
        calls.append((user, trace, moment, text_in, text_out, row))
        if user == USER:  # a nested call of their trace, recorded without the user id
            events.append(store.event_row({**row, "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                                           "parent_id": row["event_id"], "name": "lookup", "user_id": "",
                                           "input": f"lookup account of Zebulon for transfer {i}",
                                           "output": f"Nordström account ZX-{i:04d} found"}, "seed"))
        accepted = i % 3 != 0
        feedback.append(store.feedback_row({
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "trace_id": trace,
            "ts": _ts(moment + timedelta(minutes=3)), "accepted": accepted, "score": 1.0 if accepted else 0.0,
            "comment": f"Zebulon: the transfer {i} answer was rude" if user == USER else "",
            "edited_output": "", "user_id": "" if user == USER and i % 2 else user}, "seed"))
    client.insert("events", events, column_names=store.EVENT_COLUMNS)
    client.insert("feedback", feedback, column_names=store.FEEDBACK_COLUMNS)
    return {"calls": calls}


def _analyse(client: Any, seeded: dict[str, Any]) -> None:
    """What the analyzers write about these calls: embeddings (texts and sentences, through the real cache
    and toxicity scorer) and metric rows whose details quote texts and trace ids as the analyzers do
    (toxicity examples: text[:500]; drift: examples text[:300], topic examples text[:200];
    acceptance: rejected trace ids); an alert whose evidence carries them."""
    import numpy as np

    from llmsight.analyzers.embeddings import Embedder, EmbeddingCache
    from llmsight.analyzers.toxicity import ToxicityScorer

    calls = seeded["calls"]
    cache = EmbeddingCache(client, Embedder())
    toxicity = ToxicityScorer(embedder=cache)
    inputs, outputs, traces = [c[3] for c in calls], [c[4] for c in calls], [c[1] for c in calls]
    cache.encode(inputs)
    scores = np.asarray(toxicity.score_embeddings(cache.encode(outputs), outputs))
    order = np.argsort(-scores, kind="stable")[:12]
    window = WEEK.start + timedelta(days=1)
    base = [window, window + timedelta(minutes=1), "1m", *SEGMENT.values()]

    def details(value: dict[str, Any]) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    tox = {"examples": [{"trace_id": traces[i], "text": outputs[i][:500], "score": round(float(scores[i]), 4)}
                        for i in order], "toxic": 12}
    drift = {"method": "mmd", "drifted": True,
             "topics": {"grown": [{"label": "transfer nordstrom cafe", "delta": 0.2, "z": 4.1,
                                   "examples": [inputs[0][:200], inputs[1][:200], inputs[5][:200]]}],
                        "shrunk": [{"label": "card order", "delta": -0.1, "z": -2.0, "examples": [inputs[2][:200]]}]},
             "examples": [{"trace_id": t, "text": x[:300]} for t, x in list(zip(traces, inputs, strict=True))[:8]]}
    rejected = [c[1] for i, c in enumerate(calls) if i % 3 == 0][:10]
    acceptance = {"method": "wilson", "regressed": True, "examples": [{"trace_id": t, "text": "rejected"} for t in rejected]}
    rows = [[*base, names.TOXICITY_OUTPUT, 0.2, 60, None, None, 0.5, details(tox)],
            [*base, names.DRIFT_INPUT, 0.31, 60, None, 0.001, 0.05, details(drift)],
            [*base, names.ACCEPTANCE, 0.6, 60, 0.9, 0.001, None, details(acceptance)],
            [*base, names.VOLUME, 60.0, 60, None, None, None, ""]]
    client.insert("metrics", rows, column_names=store.METRIC_COLUMNS)
    evidence = json.dumps({"history": [{"value": 0.2, "window_start": str(window)}], "value": 0.2, **tox,
                           "topics": drift["topics"]}, default=str, ensure_ascii=False)
    fired = window + timedelta(minutes=2)
    client.insert("alerts", [["a-tox", "toxic-outputs", names.TOXICITY_OUTPUT, "warning", "firing",
                              *SEGMENT.values(), 0.2, 0.1, 0.01, 0.001, window, evidence, "", "", fired,
                              "firing", "1m", 1, 0, fired, fired, None, "", ""]], column_names=ALERT_STATE_COLUMNS)
    theirs = next(c for c in calls if c[0] == USER)
    other = next(c for c in calls if c[0] != USER)
    # A judge's verdict and a reviewer's label on one of their calls and on someone else's.
    for call, reason in ((theirs, f"The answer repeats {theirs[4][:60]}"), (other, "Helpful and on topic.")):
        client.insert("evaluations", [[call[2], call[1], uuid.UUID(call[5]["event_id"]), "helpfulness", "judge", 0.5,
                                       "mixed", 0, reason, *SEGMENT.values(), 120, 0.0001]],
                      column_names=["ts", "trace_id", "event_id", "evaluator", "kind", "score", "label", "flagged",
                                    "reason", "service", "name", "model", "prompt_version", "tokens", "cost_usd"])
        client.insert("review_labels", [[call[1], "reviewer@example.com", call[2], "reject", ["wrong"],
                                         f"Better: {call[4][:60]}", f"see {call[1]}", "dashboard"]],
                      column_names=["trace_id", "reviewer", "labelled_at", "verdict", "tags", "edited_output",
                                    "comment", "source"])
    raw = json.dumps(theirs[5], ensure_ascii=False, separators=(",", ":"))
    client.insert("dead_letters", [["kafka:llmsight.events/0@17", "unknown schema_version 9", raw],
                                   ["kafka:llmsight.events/0@18", "too large (first bytes kept)", raw[:90]],
                                   ["kafka:llmsight.events/0@19", "bad json", json.dumps(other[5])[:-1]]],
                  column_names=store.DEAD_LETTER_COLUMNS)


def _needles(seeded: dict[str, Any], subject_texts: set[str]) -> set[str]:
    theirs = [c for c in seeded["calls"] if c[0] == USER]
    found = {USER, *(c[1] for c in theirs)}
    for text in subject_texts:
        found.update((text[:60], json.dumps(text[:60], ensure_ascii=False)[1:-1], json.dumps(text[:60])[1:-1]))
    return found


def _table_text(client: Any, table: str) -> str:
    result = client.query(f"SELECT * FROM `{table}`")
    return "\n".join(" ".join(str(v) for v in row) for row in result.result_rows)


def _file_text(path: Path) -> str:
    if path.suffix == ".parquet":
        return "\n".join(str(row) for row in pq.read_table(path).to_pylist())
    text = path.read_text(encoding="utf-8", errors="replace")
    return text + "\n" + html.unescape(text)


def _erase(store_url: str, database: str, export_dir: Path, *extra: str) -> str:
    result = CliRunner().invoke(_build(), ["db", "erase", "--user-id", USER, "--url", store_url, "--database",
                                           database, "--export-dir", str(export_dir), *extra])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.mark.timeout(600)
def test_erase_removes_every_trace_of_one_user_from_the_store_and_the_exports(
        store_client: Any, store_url: str, store_database: str, tmp_path: Path) -> None:
    client = store_client
    seeded = _seed(client)
    _analyse(client, seeded)
    exports = tmp_path / "exports"
    export_week(client, WEEK, exports, sample_size=20, topics_by_week=False)
    folder = exports / WEEK.label
    (folder / "notes.txt").write_text("reviewed by the team\n")  # an unrelated file stays
    their_texts = {t for c in seeded["calls"] if c[0] == USER for t in (c[3], c[4])}
    their_texts |= {r[0] for r in client.query(
        "SELECT input FROM events WHERE name = 'lookup' UNION ALL SELECT comment FROM feedback WHERE comment != ''"
    ).result_rows}
    needles = _needles(seeded, their_texts)
    models = [r[0] for r in client.query("SELECT DISTINCT model FROM embeddings").result_rows]
    their_keys = {k for m in models for t in their_texts for k in embedding_keys(m, t)}
    tables = sorted(r[0] for r in client.query("SHOW TABLES").result_rows)

    def holding() -> dict[str, set[str]]:
        out = {t: {n for n in needles if n in _table_text(client, t)} for t in tables}
        out.update({str(p): {n for n in needles if n in _file_text(p)} for p in folder.iterdir()})
        return {k: v for k, v in out.items() if v}

    def counts() -> dict[str, int]:
        return {t: int(client.query(f"SELECT count() FROM `{t}`").result_rows[0][0]) for t in tables}

    before, files_before = counts(), {p.name: p.read_bytes() for p in folder.iterdir()}
    # Before: their data is everywhere it should be found.
    held = holding()
    for where in ("events", "feedback", "metrics", "alerts", "dead_letters", "events.parquet", "feedback.parquet",
                  "metrics.parquet", "alerts.parquet", "review_sample.csv", "drift_topics.csv", "report.html"):
        assert any(k == where or k.endswith("/" + where) for k in held), (where, sorted(held))
    assert int(client.query("SELECT count() FROM embeddings WHERE has({k:Array(String)}, text_hash)",
                            parameters={"k": sorted(their_keys)}).result_rows[0][0]) > 20

    dry = _erase(store_url, store_database, exports, "--dry-run")
    assert dry.startswith(f"would erase user '{USER}': 12 traces")
    assert "events: would delete 24 rows" in dry and "feedback: would delete 12 rows" in dry
    assert counts() == before and {p.name: p.read_bytes() for p in folder.iterdir()} == files_before

    report = _erase(store_url, store_database, exports)
    print(report)  # the erase report of the test user (pytest -s shows it)
    assert report.startswith(f"erased user '{USER}': 12 traces")
    assert "events: deleted 24 rows" in report and "feedback: deleted 12 rows" in report
    assert "dead_letters: deleted 2 rows" in report
    assert "evaluations: deleted 1 row\n" in report and "review_labels: deleted 1 row\n" in report
    assert f"  export files in {exports}:\n" in report and f"    {WEEK.label}/report.html: removed\n" in report
    assert f"    {WEEK.label}/events.parquet: rewrote 24 rows\n" in report

    # Nothing of theirs is left in any table or export file...
    assert holding() == {}
    assert int(client.query("SELECT count() FROM embeddings WHERE has({k:Array(String)}, text_hash)",
                            parameters={"k": sorted(their_keys)}).result_rows[0][0]) == 0
    # ...nor in the text of the mutations ClickHouse keeps.
    commands = " ".join(r[0] for r in client.query(
        "SELECT command FROM system.mutations WHERE database = currentDatabase()").result_rows)
    assert commands and not {n for n in needles if n in commands}

    # Everyone else's rows, figures and examples stay.
    after = counts()
    assert after["events"] == before["events"] - 24 and after["feedback"] == before["feedback"] - 12
    assert after["metrics"] == before["metrics"] and after["alerts"] == before["alerts"]
    assert after["dead_letters"] == 1 and after["embeddings"] > 0
    assert after["evaluations"] == after["review_labels"] == 1
    others = {c[1] for c in seeded["calls"] if c[0] != USER}
    details = _table_text(client, "metrics") + _table_text(client, "alerts")
    assert sum(t in details for t in others) >= 8
    assert "How do I order a new debit card" in details
    events = pq.read_table(folder / "events.parquet").to_pylist()
    assert {e["user_id"] for e in events} == set(OTHERS)
    assert (folder / "notes.txt").read_text() == "reviewed by the team\n"
    assert not (folder / "report.html").exists()
    # A second run finds nothing.
    again = _erase(store_url, store_database, exports)
    assert f"erased user '{USER}': 0 traces" in again and "none hold their rows or texts" in again
