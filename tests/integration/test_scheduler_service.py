"""The analyzers service on chdb: failure isolation, catch-up, backfill, the APScheduler jobs and /healthz.

The real MiniLM embeddings (through the chdb embeddings cache) are used; the toxicity scorer is
replaced by one that raises, to show that a failing analyzer does not stop the others.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from llmsight.alerts.engine import load_states
from llmsight.alerts.rules import parse_rules
from llmsight.analyzers.embeddings import Embedder, EmbeddingCache
from llmsight.analyzers.window_metrics import AnalysisSettings, WindowAnalyzer
from llmsight.analyzers.windows import Window, floor_time, read_metrics
from llmsight.scheduler.service import AnalyzerService, ScheduleSettings
from llmsight.store import EVENT_COLUMNS, FEEDBACK_COLUMNS, event_row, feedback_row, names

RULES = "rules: [{name: errors, metric: error_rate, warning: 0.2, for: 1, min_samples: 5}]"


class BrokenToxicity:
    threshold = 0.5

    def score_embeddings(self, vectors, texts):
        raise RuntimeError("scorer exploded")


class NoNotifier:
    def send(self, notification):
        pass

    def close(self, timeout=0):
        pass


def _insert(client, start: datetime, n: int, *, errors: int = 0, version: str = "v1") -> None:
    events, feedback = [], []
    for i in range(n):
        trace = uuid.uuid4().hex
        events.append(event_row({
            "event_id": str(uuid.uuid4()), "trace_id": trace, "ts": start + timedelta(seconds=i * 50 / n),
            "service": "svc", "name": "chat", "model": "m", "prompt_version": version,
            "input": f"question number {i}", "output": f"answer number {i}", "error": "boom" if i < errors else None,
            "latency_ms": 100.0 + i, "tokens_in": 3, "tokens_out": 4, "cost_usd": 0.002}, "test"))
        feedback.append(feedback_row({"event_id": str(uuid.uuid4()), "trace_id": trace, "ts": start,
                                      "accepted": i % 4 != 0, "score": 4.0}, "test"))
    client.insert("events", events, column_names=EVENT_COLUMNS)
    client.insert("feedback", feedback, column_names=FEEDBACK_COLUMNS)


def _service(client, toxicity=None, window_s=60) -> AnalyzerService:
    analyzer = WindowAnalyzer(client, AnalysisSettings(reference="trailing", reference_s=600, drift_min_n=5),
                              embeddings=EmbeddingCache(client, Embedder()), toxicity=toxicity or BrokenToxicity())
    return AnalyzerService(client, schedule=ScheduleSettings(window_s, 5, 10, 0), analyzer=analyzer,
                           rules=parse_rules(RULES, "test"), notifier=NoNotifier())


@pytest.fixture
def now() -> datetime:
    return floor_time(datetime.now(timezone.utc) - timedelta(hours=2), 60)


def test_a_failing_signal_is_logged_and_the_others_are_still_written(store_client, now, caplog):
    _insert(store_client, now, 40, errors=10)
    service = _service(store_client)
    window = Window(now, now + timedelta(minutes=1))
    service.run_window(window)
    rows = {r["metric"]: r for r in read_metrics(store_client, window)}
    assert names.TOXICITY_OUTPUT not in rows and names.TOXICITY_INPUT not in rows
    assert rows[names.VOLUME]["value"] == 40 and rows[names.ERROR_RATE]["value"] == 0.25
    assert rows[names.ACCEPTANCE]["value"] == pytest.approx(30 / 40)
    assert rows[names.LATENCY_P50]["value"] == pytest.approx(float(np.percentile(100.0 + np.arange(40), 50)))
    assert names.DRIFT_INPUT not in rows  # no reference traffic before this window
    assert service.analyzer.failures == 1
    assert "toxicity failed" in caplog.text
    # The error-rate rule (for: 1) fired straight away on this window.
    [state] = load_states(store_client).values()
    assert (state.rule, state.state, state.value) == ("errors", "firing", 0.25)


def test_run_due_catches_up_every_closed_window_then_waits(store_client, now):
    for minute in range(3):
        _insert(store_client, now + timedelta(minutes=minute), 10)
    service = _service(store_client)
    done = service.run_due(now=now + timedelta(minutes=3, seconds=10))
    # At 3:10 with a 5 s lag the windows at 0, 1 and 2 minutes are due (catch-up of 10 covers them).
    assert [w.start for w in done][-3:] == [now + timedelta(minutes=m) for m in range(3)]
    assert service.run_due(now=now + timedelta(minutes=3, seconds=50)) == []
    drift = {r["metric"]: r for r in read_metrics(store_client, Window(now + timedelta(minutes=2),
                                                                         now + timedelta(minutes=3)))}
    # The third window has the two before it as its trailing reference.
    assert json.loads(drift[names.DRIFT_INPUT]["details"])["reference"]["scope"] == "segment"
    # Operations figures get the mean of the reference windows' rows as their baseline.
    assert drift[names.LATENCY_P50]["baseline"] == pytest.approx(104.5)
    assert drift[names.VOLUME]["baseline"] == 10


def test_a_failing_job_is_counted_and_the_next_run_goes_on(store_client, now, monkeypatch):
    service = _service(store_client)
    calls = []

    def flaky(granularity="1m", now=None):
        calls.append(granularity)
        if len(calls) == 1:
            raise RuntimeError("store hiccup")
        return []

    monkeypatch.setattr(service, "run_due", flaky)
    service._job("1m")
    service._job("1m")
    assert calls == ["1m", "1m"] and service.job_failures == 1


def test_backfill_recomputes_windows_without_alerts(store_client, now):
    _insert(store_client, now, 20, errors=10)
    service = _service(store_client)
    count = service.backfill(now, now + timedelta(minutes=2))
    assert count == 2  # two minute windows; no whole hour or day fits in two minutes
    assert read_metrics(store_client, Window(now, now + timedelta(minutes=1)))
    assert load_states(store_client) == {}


def test_backfill_takes_only_whole_windows_inside_the_range(store_client, now, monkeypatch):
    service = _service(store_client)
    done: list[Window] = []
    monkeypatch.setattr(service, "run_window", lambda window, evaluate_alerts=True: done.append(window))
    hour = floor_time(now, 3600)
    # 02:58..03:00 ends on an hour boundary, yet the hour 02:00..03:00 started before it.
    assert service.backfill(hour + timedelta(minutes=58), hour + timedelta(hours=1)) == 2
    assert [(w.granularity, w.start) for w in done] == [("1m", hour + timedelta(minutes=m)) for m in (58, 59)]
    done.clear()
    # 01:59:30..03:00:30 holds the minutes 02:00..02:59 and the hour 02:00, nothing more.
    assert service.backfill(hour - timedelta(seconds=30), hour + timedelta(hours=1, seconds=30)) == 61
    assert [w.start for w in done if w.granularity == "1h"] == [hour]
    assert min(w.start for w in done) == hour and max(w.end for w in done) == hour + timedelta(hours=1)


def test_jobs_never_overlap_and_health_endpoints_answer(store_client, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMSIGHT_EXPORT_DIR", str(tmp_path))
    service = _service(store_client, window_s=10)
    service.start(blocking=False)
    try:
        jobs = {job.id: job for job in service._scheduler.get_jobs()}
        assert set(jobs) == {"windows", "rollup-1h", "rollup-1d", "llmsight-weekly-export"}
        del jobs["llmsight-weekly-export"]  # its own misfire grace (hours), set by the export module
        for job in jobs.values():
            assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 30)
        port = service.serve_http(0, "127.0.0.1")
        base = f"http://127.0.0.1:{port}"
        assert urllib.request.urlopen(base + "/healthz").read() == b"ok\n"
        assert urllib.request.urlopen(base + "/readyz").status == 200
        metrics = urllib.request.urlopen(base + "/metrics").read().decode()
        assert "llmsight_analyzer_job_failures_total" in metrics
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/nope")
        assert missing.value.code == 404
    finally:
        service.shutdown()
    assert not service._scheduler.running
