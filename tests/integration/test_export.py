"""The weekly export on a seeded week in chdb: files, row counts, columns, HTML sections, reproducibility,
the command line, the weekly job, and the report rendered in headless Chromium (screenshot in artifacts/)."""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llmsight import store
from llmsight.demo.model import ModelError, answer, user_feedback
from llmsight.demo.traffic import TrafficGenerator
from llmsight.review.export import REVIEW_COLUMNS, export_week
from llmsight.review.weeks import IsoWeek
from llmsight.store import names

# Inside the store's retention (rows past their TTL vanish from FINAL reads): the week before last.
WEEK = IsoWeek.containing(datetime.now(timezone.utc) - timedelta(days=14))
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SEGMENT = {"service": "bank-bot", "name": "answer", "model": "gpt-4o-mini"}
OTHER = {"service": "bank-bot", "name": "summarize", "model": "gpt-4o-mini"}


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _seed(client, week: IsoWeek) -> dict:
    """The previous week on v1; this week v1 until Wednesday noon, then v2; a second feature on v1 throughout.
    Metric rows for toxicity (with the flagged examples) and drift (with topic explanations), and alerts."""
    rng = random.Random(42)
    gen = TrafficGenerator(seed=42)
    events, feedback, truth = [], [], {"toxic": set(), "rejected": set(), "in_week": 0}
    switch = week.start + timedelta(days=2, hours=12)
    start = week.previous().start
    # One call every ~16 minutes over two weeks, plus a few calls just outside them.
    moments = [start + timedelta(minutes=16 * i + rng.randint(0, 9)) for i in range(14 * 24 * 60 // 16)]
    moments += [start - timedelta(hours=2), week.end + timedelta(hours=3)]
    for i, moment in enumerate(moments):
        segment = OTHER if i % 5 == 0 else SEGMENT
        version = "v2" if segment is SEGMENT and moment >= switch else "v1"
        prompt = gen.next(version)
        trace = uuid.UUID(int=rng.getrandbits(128)).hex
        try:
            response, error = answer(prompt, version, rng=rng), ""
        except ModelError as exc:
            response, error = None, str(exc)
        output = "" if response is None else response.text
        events.append(store.event_row({
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "trace_id": trace, "ts": _ts(moment), **segment,
            "environment": "production", "prompt_version": version, "input": prompt.text + " (call me on +44 7700 900123)"
            if i % 50 == 0 else prompt.text, "output": output, "error": error,
            "latency_ms": response.simulated_latency_ms if response else 30000.0,
            "tokens_in": response.usage.prompt_tokens if response else None,
            "tokens_out": response.usage.completion_tokens if response else None,
            "cost_usd": 1e-6 * response.usage.total_tokens if response else None,
            "user_id": prompt.user_id, "session_id": prompt.session_id,
        }, "seed"))
        in_week = week.start <= moment < week.end
        truth["in_week"] += in_week
        if response is not None and response.toxic and in_week:
            truth["toxic"].add(trace)
        if rng.random() < 0.7:
            verdict = user_feedback(prompt, response, version, rng)
            feedback.append(store.feedback_row({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "trace_id": trace,
                "ts": _ts(moment + timedelta(minutes=2)), "accepted": verdict["accepted"], "score": verdict["score"],
                "comment": verdict["comment"], "edited_output": verdict["edited_output"], "user_id": prompt.user_id,
            }, "seed"))
            if in_week and not verdict["accepted"]:
                truth["rejected"].add(trace)
        truth.setdefault("rows", []).append((trace, moment, version, segment, output, response))
    client.insert("events", events, column_names=store.EVENT_COLUMNS)
    client.insert("feedback", feedback, column_names=store.FEEDBACK_COLUMNS)
    _seed_metrics(client, week, truth, switch)
    _seed_alerts(client, week, switch)
    truth["switch"] = switch
    return truth


def _seed_metrics(client, week: IsoWeek, truth: dict, switch: datetime) -> None:
    rows = []
    hours: dict[tuple, list] = {}
    for trace, moment, version, segment, output, response in truth["rows"]:
        hour = moment.replace(minute=0, second=0, microsecond=0)
        hours.setdefault((hour, version, tuple(segment.values())), []).append((trace, output, response))
    for (hour, version, seg), calls in sorted(hours.items()):
        segment = dict(zip(("service", "name", "model"), seg, strict=True))
        base = [hour, hour + timedelta(minutes=1), "1m", *seg, version]
        toxic = [(t, o) for t, o, r in calls if r is not None and r.toxic]
        examples = [{"trace_id": t, "text": o, "score": 0.93} for t, o in toxic]
        rows.append([*base, names.TOXICITY_OUTPUT, len(toxic) / len(calls), len(calls), None, None, 0.5,
                     json.dumps({"examples": examples, "toxic": len(toxic)})])
        rows.append([*base, names.VOLUME, float(len(calls)), len(calls), None, None, None, ""])
        drifted = version == "v2"
        topics = {"grown": [{"label": "crypto bitcoin buy", "delta": 0.21, "z": 4.2, "share_ref": 0.0,
                             "share_cur": 0.21, "examples": ["How do I buy bitcoin?", "Can I buy ETH?"]}],
                  "shrunk": [{"label": "card arrive delivery", "delta": -0.08, "z": -2.1,
                              "examples": ["Where is my card?"]}]} if drifted else {"grown": [], "shrunk": []}
        details = {"method": "mmd", "drifted": drifted, "topics": topics} if segment == SEGMENT else {}
        rows.append([*base, names.DRIFT_INPUT, 0.3 if drifted else 0.01, len(calls), None, 0.001 if drifted else 0.6,
                     0.05, json.dumps(details) if details else ""])
    client.insert("metrics", rows, column_names=store.METRIC_COLUMNS)


def _seed_alerts(client, week: IsoWeek, switch: datetime) -> None:
    from llmsight.alerts.engine import ALERT_STATE_COLUMNS

    def row(alert, rule, metric, state, transition, at, severity="warning", fired=None, acked_by=""):
        return [alert, rule, metric, severity, state, *SEGMENT.values(), "v2", 0.3, 0.1, 0.01, 0.001, at, "{}",
                acked_by, "", at, transition, "1m", 1, 0, fired, fired, None, "", ""]

    fire = switch + timedelta(minutes=20)
    rows = [
        row("a1", "input-drift", names.DRIFT_INPUT, "pending", "pending", fire - timedelta(minutes=5)),
        row("a1", "input-drift", names.DRIFT_INPUT, "firing", "firing", fire, fired=fire),
        row("a1", "input-drift", names.DRIFT_INPUT, "firing", "escalated", fire + timedelta(minutes=10), "critical", fire),
        row("a1", "input-drift", names.DRIFT_INPUT, "firing", "ack", fire + timedelta(minutes=15), "critical", fire,
            acked_by="oncall@example.com"),
        row("a1", "input-drift", names.DRIFT_INPUT, "resolved", "resolved", fire + timedelta(minutes=95), "critical", fire),
        row("a2", "toxic-outputs", names.TOXICITY_OUTPUT, "firing", "firing", fire + timedelta(hours=1),
            fired=fire + timedelta(hours=1)),
        # Resolved after the week ended: the export must still call it open, or reruns would differ.
        row("a2", "toxic-outputs", names.TOXICITY_OUTPUT, "resolved", "resolved", week.end + timedelta(hours=2),
            fired=fire + timedelta(hours=1)),
    ]
    client.insert("alerts", rows, column_names=ALERT_STATE_COLUMNS)


@pytest.fixture
def seeded(store_client):
    return store_client, _seed(store_client, WEEK)


def _count(client, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_export_writes_every_file_with_the_weeks_rows(seeded, tmp_path):
    client, truth = seeded
    result = export_week(client, WEEK, tmp_path, sample_size=40, topics_by_week=False)
    folder = tmp_path / WEEK.label
    assert result.directory == folder
    expected = {"export.json", "events.parquet", "feedback.parquet", "metrics.parquet", "alerts.parquet",
                "review_sample.csv",
                "segments.csv", "acceptance_by_version.csv", "daily.csv", "drift_topics.csv", "toxic_outputs.csv",
                "alerts.csv", "report.html"}
    assert {p.name for p in folder.iterdir()} == expected

    week_sql = f"'{WEEK.start:%Y-%m-%d} 00:00:00' AND {{col}} < '{WEEK.end:%Y-%m-%d} 00:00:00'"
    events = pq.read_table(folder / "events.parquet")
    assert events.num_rows == truth["in_week"] == _count(
        client, "SELECT count() FROM events WHERE ts >= " + week_sql.format(col="ts"))
    assert events.column_names == ["event_id", *store.EVENT_COLUMNS[1:], "inserted_at", "producer_id"]
    assert events.column("ts").to_pylist() == sorted(events.column("ts").to_pylist())
    feedback = pq.read_table(folder / "feedback.parquet")
    assert feedback.num_rows == _count(client, "SELECT count() FROM feedback WHERE ts >= " + week_sql.format(col="ts"))
    metrics = pq.read_table(folder / "metrics.parquet")
    assert metrics.num_rows == _count(
        client, "SELECT count() FROM metrics WHERE window_start >= " + week_sql.format(col="window_start"))
    assert pq.read_table(folder / "alerts.parquet").num_rows == 6  # a2's resolution is next week's row

    sample = _read_csv(folder / "review_sample.csv")
    assert list(sample[0]) == REVIEW_COLUMNS
    flagged = [r for r in sample if r["flag"] != "random"]
    assert {r["trace_id"] for r in flagged} == truth["toxic"] | truth["rejected"]
    assert {r["trace_id"] for r in flagged if "toxic" in r["flag"]} == truth["toxic"]
    random_rows = [r for r in sample if r["flag"] == "random"]
    assert len(random_rows) == 40
    assert len({r["event_id"] for r in sample}) == len(sample)
    # Stratified: every segment of the week has calls in the random part, in proportion to its size.
    versions = {(r["name"], r["prompt_version"]) for r in random_rows}
    assert versions == {("answer", "v1"), ("answer", "v2"), ("summarize", "v1")}
    # Calls nobody gave feedback on are reviewable too (30% of the seeded calls).
    assert {r["accepted"] for r in random_rows} == {"", "1"}
    assert all(r["reviewer_verdict"] == "" and r["reviewer_notes"] == "" for r in sample)
    assert not any("+44 7700 900123" in r["input"] for r in sample)  # redacted
    assert result.rows["review_sample"] == len(sample)


@pytest.fixture
def small_topic_sample(monkeypatch):
    """Fewer inputs per week for the week-against-week topics: MiniLM on a shared CPU is slow."""
    from llmsight.review import summary as export_summary

    monkeypatch.setattr(export_summary, "WEEKLY_TOPIC_SAMPLE", 200)


def test_summary_tables_compare_the_week_with_the_one_before(seeded, tmp_path, small_topic_sample):
    client, truth = seeded
    export_week(client, WEEK, tmp_path, formats="csv", sample_size=10)
    folder = tmp_path / WEEK.label
    assert not (folder / "events.parquet").exists() and not (folder / "report.html").exists()
    segments = {(r["name"], r["prompt_version"]): r for r in _read_csv(folder / "segments.csv")}
    assert set(segments) == {("answer", "v1"), ("answer", "v2"), ("summarize", "v1")}
    v2 = segments[("answer", "v2")]
    assert v2["prev_volume"] == ""  # v2 did not exist last week
    v1 = segments[("answer", "v1")]
    assert int(v1["volume"]) == sum(1 for t, m, ver, seg, *_ in truth["rows"]
                                    if seg is SEGMENT and ver == "v1" and WEEK.start <= m < WEEK.end)
    assert float(v2["acceptance_rate"]) < float(v1["prev_acceptance_rate"]) - 0.2
    assert float(v2["toxicity_rate_output"]) > 0.05 and float(v1["toxicity_rate_output"]) == 0.0
    assert float(v2["drift_input_windows_drifted"]) == 1.0 and float(v1["drift_input_windows_drifted"]) == 0.0

    acceptance = _read_csv(folder / "acceptance_by_version.csv")
    for row in acceptance:
        assert float(row["ci_low"]) <= float(row["acceptance_rate"]) <= float(row["ci_high"])
    assert {r["week"] for r in acceptance} == {WEEK.label, WEEK.previous().label}

    alerts = _read_csv(folder / "alerts.csv")
    assert [(a["alert_id"], a["severity"], a["minutes_to_resolve"], a["acked_by"]) for a in alerts] == [
        ("a1", "critical", "95.0", "oncall@example.com"), ("a2", "warning", "", "")]

    topics = _read_csv(folder / "drift_topics.csv")
    grown = [t for t in topics if t["direction"] == "grown" and t["scope"] == "windows"]
    assert grown[0]["label"] == "bitcoin buy crypto" and "How do I buy bitcoin?" in grown[0]["examples"]
    # Week against week, from the real MiniLM: v2's new topics (crypto, mortgages, fraud, loans,
    # investing, savings) are what grew most, and nothing new shrank.
    weekly = [t for t in topics if t["scope"] == "week"]
    new_words = ("crypto", "bitcoin", "btc", "eth", "solana", "coin", "mortgage", "remortgage", "scam", "fraud",
                 "phishing", "loan", "borrow", "overdraft", "invest", "stock", "etf", "portfolio", "saving", "isa")

    def is_new(topic: dict) -> bool:
        return any(word.startswith(new_words) for word in topic["label"].split())

    top_grown = next(t for t in weekly if t["direction"] == "grown")
    assert is_new(top_grown), top_grown
    assert float(top_grown["share_week"]) > float(top_grown["share_prev"]) + 0.03
    assert not any(is_new(t) for t in weekly if t["direction"] == "shrunk")
    toxic = _read_csv(folder / "toxic_outputs.csv")
    assert {t["trace_id"] for t in toxic} == truth["toxic"]


def test_rerunning_a_week_gives_the_same_bytes(seeded, tmp_path, small_topic_sample):
    client, _ = seeded
    first = export_week(client, WEEK, tmp_path / "a", sample_size=25)
    second = export_week(client, WEEK, tmp_path / "b", sample_size=25)
    assert sorted(first.files) == sorted(second.files)
    for name in first.files:
        assert first.files[name].read_bytes() == second.files[name].read_bytes(), name
    other_size = export_week(client, WEEK, tmp_path / "c", formats="csv", sample_size=26, topics_by_week=False)
    assert other_size.files["review_sample.csv"].read_bytes() != first.files["review_sample.csv"].read_bytes()


def test_report_html_is_self_contained_with_every_section(seeded, tmp_path):
    client, truth = seeded
    export_week(client, WEEK, tmp_path, formats="html", sample_size=20, topics_by_week=False)
    html = (tmp_path / WEEK.label / "report.html").read_text(encoding="utf-8")
    for section in ("overview", "segments", "volume", "acceptance", "drift", "toxicity", "alerts", "review"):
        assert f'<section id="{section}">' in html, section
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<link" not in html
    assert html.count("<svg") >= 4
    assert f"Quality review {WEEK.label}" in html and "bitcoin buy crypto" in html
    assert "+44 7700 900123" not in html
    _screenshot(tmp_path / WEEK.label / "report.html")


def _screenshot(page: Path) -> None:
    """Render the report in headless Chromium (Debian package chromium) and keep the picture."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "headless Chromium is needed: apt-get install -y chromium"
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / "export_report.png"
    target.unlink(missing_ok=True)
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
         "--window-size=1200,2600", f"--screenshot={target}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    from PIL import Image

    with Image.open(target) as image:
        assert image.size == (1200, 2600)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text and charts, not a blank page


def test_cli_exports_a_week_and_reports_json(seeded, tmp_path, store_url, store_database):
    from typer.testing import CliRunner

    from llmsight.cli.app import _build

    result = CliRunner().invoke(_build(), [
        "export", "--week", WEEK.label, "--format", "parquet", "--out", str(tmp_path), "--sample-size", "5",
        "--url", store_url, "--database", store_database, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["week"] == WEEK.label
    assert report["files"] == ["alerts.parquet", "events.parquet", "export.json", "feedback.parquet",
                               "metrics.parquet"]
    assert sorted(p.name for p in (tmp_path / WEEK.label).iterdir()) == report["files"]
    assert report["rows"]["events"] == seeded[1]["in_week"]
    # Two weeks ago: the feedback grace is over, so the export is final and says until when it counted.
    assert report["provisional"] is False
    assert datetime.fromisoformat(report["feedback_until"]) == WEEK.end + timedelta(days=1)
    text = CliRunner().invoke(_build(), [
        "export", "--week", WEEK.label, "--format", "parquet", "--out", str(tmp_path), "--sample-size", "5",
        "--url", store_url, "--database", store_database])
    assert text.exit_code == 0, text.output
    assert f"  Final: feedback counted until {WEEK.end + timedelta(days=1):%Y-%m-%d} 00:00:00 UTC" in text.output
    bad = CliRunner().invoke(_build(), ["export", "--week", "2026-W99", "--out", str(tmp_path)])
    assert bad.exit_code != 0


def test_weekly_job_is_scheduled_for_tuesday_morning_and_exports_the_last_week(store_client, tmp_path, monkeypatch):
    from apscheduler.schedulers.background import BackgroundScheduler

    from llmsight.review import export as export_module
    from llmsight.review import weeks as weeks_module
    from llmsight.review.export import run_scheduled_export, schedule_weekly_export
    from llmsight.review.weeks import last_complete_week

    scheduler = BackgroundScheduler(timezone=timezone.utc)
    scheduler.start(paused=True)  # paused: the job must not run on its own during the test
    try:
        job = schedule_weekly_export(scheduler, tmp_path, client=store_client)
        after = datetime(2026, 3, 4, 12, 0, tzinfo=timezone.utc)  # a Wednesday
        # Tuesday 06:00 UTC: after the week's feedback grace (Tuesday 00:00), so the export is final.
        assert job.trigger.get_next_fire_time(None, after) == datetime(2026, 3, 10, 6, 0, tzinfo=timezone.utc)
        monkeypatch.setenv("LLMSIGHT_EXPORT_CRON", "0 7 * * 3")  # crontab: Wednesday
        job = schedule_weekly_export(scheduler, tmp_path, client=store_client)
        assert job.trigger.get_next_fire_time(None, after) == datetime(2026, 3, 11, 7, 0, tzinfo=timezone.utc)
        assert len(scheduler.get_jobs()) == 1  # replaced, not added twice
    finally:
        scheduler.shutdown(wait=False)

    # The job reads the clock for its week and the assert read it again: a run across Monday 00:00 UTC
    # saw two different "last weeks". The export's and the weeks' clocks are frozen at the last instant of a Sunday.
    sunday = IsoWeek.containing(datetime.now(timezone.utc)).start - timedelta(microseconds=1)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return sunday.astimezone(tz) if tz else sunday.replace(tzinfo=None)

    monkeypatch.setattr(export_module, "datetime", Frozen)
    monkeypatch.setattr(weeks_module, "datetime", Frozen)
    result = run_scheduled_export(tmp_path, store_client)
    assert result.week == last_complete_week() == IsoWeek.containing(sunday - timedelta(days=7))
    assert (tmp_path / result.week.label / "report.html").exists()


def test_evidently_text_drift_report_is_embedded_when_asked(seeded, tmp_path):
    client, _ = seeded
    export_week(client, WEEK, tmp_path, formats="html", sample_size=5, evidently=True, topics_by_week=False)
    html = (tmp_path / WEEK.label / "report.html").read_text(encoding="utf-8")
    assert '<section id="evidently">' in html
    start = html.index('<iframe title="Evidently drift report" srcdoc="')
    embedded = html[start:html.index("</iframe>", start)]
    assert len(embedded) > 100_000  # Evidently's whole report, scripts inlined
    assert "&lt;script src=" not in embedded  # nothing fetched from outside
    assert "input" in embedded
