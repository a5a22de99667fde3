"""Evaluators through chdb: a window's sample evaluated by offline checks (relevance on the real MiniLM
through the embedding cache) and a judge on the local stand-in server, the ``evaluations`` rows, the
``eval_*`` metric rows, a rerun that writes the same rows without judging again, and the hour rollup."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from llmsight.analyzers.windows import Window, floor_time
from llmsight.evaluators.config import Evaluator, JudgeOptions
from llmsight.evaluators.runner import EvaluatorRunner
from llmsight.evaluators.stub_judge import StubJudgeServer
from llmsight.store import EVENT_COLUMNS, event_row

# Recent (the tables' TTL drops old rows) and on the hour, so windows and the hour rollup line up.
START = floor_time(datetime.now(timezone.utc) - timedelta(hours=3), 3600)
CALLS = [  # (prompt, output, metadata) for segment v1; v2 gets the bad ones
    ("How do I freeze my debit card?", "To freeze your debit card, open Cards and tap freeze.", None),
    ("What is the fee for a transfer abroad?", "A transfer abroad costs 1% with a minimum fee of 2 EUR.", None),
    ("Can I change my card PIN online?", "Yes, you can change your card PIN online under Security.", None),
]
BAD = [
    ("How do I freeze my debit card?", "I'm sorry, I can't help with that.", None),
    ("Wie kann ich meine Karte sperren, wenn sie gestohlen ist?", "You can block the card in the app, under Cards.", None),
    ("What is the fee for a transfer abroad?", "Send details to ops.team@example.com and the fee is", None),
    ("Can I change my card PIN online?", "", None),
]


def _events() -> list[list]:
    rows = []
    for version, calls in (("v1", CALLS), ("v2", BAD)):
        for i, (prompt, output, metadata) in enumerate(calls):
            rows.append(event_row({
                "event_id": str(uuid.uuid4()), "trace_id": f"{version}-{i}", "ts": START + timedelta(seconds=5 + i),
                "service": "bank", "name": "assistant", "model": "m", "prompt_version": version, "input": prompt,
                "output": output, "latency_ms": 100.0, "metadata": metadata}, "test"))
    # An errored call is never evaluated.
    rows.append(event_row({"event_id": str(uuid.uuid4()), "trace_id": "err", "ts": START + timedelta(seconds=30),
                           "service": "bank", "name": "assistant", "model": "m", "prompt_version": "v1",
                           "input": "hi there", "output": "", "error": "boom", "latency_ms": 5.0}, "test"))
    return rows


@pytest.fixture
def judge_server():
    with StubJudgeServer() as server:
        yield server


def _evaluators(base_url: str) -> list[Evaluator]:
    judge = JudgeOptions(base_url=base_url, model="m", concurrency=2, deadline_s=20, backoff_s=0.01)
    return [Evaluator(name="relevance", check="relevance"),
            Evaluator(name="empty_or_truncated", check="empty_or_truncated"),
            Evaluator(name="language_mismatch", check="language_mismatch"),
            Evaluator(name="pii_leak", check="pii_leak"),
            Evaluator(name="helpfulness", rubric="helpfulness", judge=judge, sample_per_segment=4),
            Evaluator(name="off", check="pii_leak", enabled=False)]


def _evaluations(client) -> dict[tuple[str, str], tuple]:
    rows = client.query("SELECT evaluator, trace_id, kind, score, label, flagged FROM evaluations FINAL").result_rows
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def test_a_window_is_evaluated_into_rows_and_metrics_and_a_rerun_changes_nothing(store_client, judge_server) -> None:
    store_client.insert("events", _events(), column_names=EVENT_COLUMNS)
    runner = EvaluatorRunner(store_client, _evaluators(judge_server.base_url))
    window = Window(START, START + timedelta(minutes=1))
    report = runner.run_window(window)

    rows = _evaluations(store_client)
    assert "off" not in {evaluator for evaluator, _ in rows}
    assert not any(trace == "err" for _, trace in rows)
    # Every check sees the 7 calls without an error (4 per segment at most).
    assert report.evaluated == {"relevance": 7, "empty_or_truncated": 7, "language_mismatch": 7, "pii_leak": 7,
                                "helpfulness": 7}
    assert rows[("pii_leak", "v2-2")][2:] == ("leak", 1)
    assert rows[("empty_or_truncated", "v2-2")][2:] == ("truncated", 1)
    assert rows[("empty_or_truncated", "v2-3")][2:] == ("empty", 1)
    assert rows[("language_mismatch", "v2-1")][2:] == ("mismatch", 1)
    assert rows[("helpfulness", "v2-0")] == ("judge", 0.0, "refusal", 1)
    assert rows[("helpfulness", "v1-0")][0:2] == ("judge", 1.0)
    assert all(rows[("relevance", f"v1-{i}")][3] == 0 for i in range(3))  # on-topic answers pass
    assert rows[("relevance", "v2-3")][3] == 1                             # an empty answer is off topic

    metrics = {(r[0], r[1]): (r[2], r[3], r[4]) for r in store_client.query(
        "SELECT metric, prompt_version, value, n, details FROM metrics FINAL WHERE granularity = '1m'").result_rows}
    assert metrics[("eval_pii_leak", "v1")][:2] == (1.0, 3)
    assert metrics[("eval_pii_leak", "v2")][:2] == (0.75, 4)
    assert '"flagged": 1' in metrics[("eval_pii_leak", "v2")][2]
    assert metrics[("eval_helpfulness", "v1")][0] > metrics[("eval_helpfulness", "v2")][0]
    assert report.metric_rows == len(metrics)

    # A rerun: the same rows (replaced, not added) and no judge call spent twice.
    requests = judge_server.requests
    again = EvaluatorRunner(store_client, _evaluators(judge_server.base_url)).run_window(window)
    assert judge_server.requests == requests and again.evaluated["helpfulness"] == 0
    assert _evaluations(store_client) == rows
    count = store_client.query("SELECT count() FROM evaluations FINAL").result_rows[0][0]
    assert count == len(rows) == 7 * 5

    # The hour rolls up from the table, with no new judge call.
    hour = runner.run_window(Window(START, START + timedelta(hours=1), "1h"))
    assert hour.evaluated == {} and judge_server.requests == requests
    rolled = store_client.query("SELECT value, n FROM metrics FINAL WHERE granularity = '1h' "
                                "AND metric = 'eval_pii_leak' AND prompt_version = 'v2'").result_rows
    assert rolled == [(0.75, 4)]


def test_judge_failures_are_counted_and_the_offline_checks_still_run(store_client, judge_server) -> None:
    store_client.insert("events", _events(), column_names=EVENT_COLUMNS)
    judge_server.script = ["malformed"] + ["500"] * 20
    judge = JudgeOptions(base_url=judge_server.base_url, model="m", concurrency=1, max_retries=0,
                         breaker_failures=2, breaker_cooldown_s=60)
    runner = EvaluatorRunner(store_client, [Evaluator(name="pii_leak", check="pii_leak"),
                                            Evaluator(name="helpfulness", rubric="helpfulness", judge=judge)])
    report = runner.run_window(Window(START, START + timedelta(minutes=1)))
    assert report.evaluated["pii_leak"] == 7 and report.evaluated["helpfulness"] == 0
    problems = report.problems["helpfulness"]
    assert problems["malformed"] == 1 and problems["failed"] == 2 and problems["circuit_open"] == 4
    assert judge_server.requests == 3  # the open circuit sent nothing more
    details = store_client.query("SELECT details FROM metrics FINAL WHERE metric = 'eval_pii_leak' "
                                 "AND prompt_version = 'v1'").result_rows[0][0]
    assert '"evaluated": 3' in details


def test_run_due_resumes_after_the_last_evaluated_window(store_client, judge_server) -> None:
    store_client.insert("events", _events(), column_names=EVENT_COLUMNS)
    runner = EvaluatorRunner(store_client, [Evaluator(name="pii_leak", check="pii_leak")])
    now = START + timedelta(minutes=3)
    reports = runner.run_due(now, window_s=60, lag_s=20, catchup=5)
    base = [r.window.start for r in reports if r.window.granularity == "1m"]
    # START+3 min with a 20 s lag: the newest closed window is START+1; five of catch-up go back to START-3.
    assert base == [START + timedelta(minutes=i) for i in range(-3, 2)]
    fresh = EvaluatorRunner(store_client, [Evaluator(name="pii_leak", check="pii_leak")])
    later = fresh.run_due(now + timedelta(minutes=1), window_s=60, lag_s=20, catchup=5)
    # Resumes after the newest window with evaluator metrics (START; START+1 had no calls, so no rows),
    # not from the catch-up horizon (START-2).
    assert [r.window.start for r in later if r.window.granularity == "1m"] == [START + timedelta(minutes=i) for i in (1, 2)]


class _Notifications:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, notification) -> None:
        self.sent.append(notification)

    def close(self, timeout=0) -> None:
        pass


def test_the_scheduler_runs_the_evaluators_job_and_alerts_on_its_metrics(store_client) -> None:
    from llmsight.alerts.rules import parse_rules
    from llmsight.scheduler.service import AnalyzerService, ScheduleSettings

    store_client.insert("events", _events(), column_names=EVENT_COLUMNS)
    rules = parse_rules("rules:\n  - {name: answers-leak, metric: eval_pii_leak, direction: below, warning: 0.9, "
                        "min_samples: 1, for: 1}\n  - {name: slow, metric: latency_p95_ms, warning: 100000}\n", "t")
    notifier = _Notifications()
    service = AnalyzerService(store_client, schedule=ScheduleSettings(60, 20, 5, 0), rules=rules, notifier=notifier,
                              evaluators=[Evaluator(name="pii_leak", check="pii_leak")])
    assert service.evaluators is not None
    assert [r.name for r in service.alerts.rules] == ["slow"]          # the window job leaves eval rules out
    assert [r.name for r in service.evaluators.alerts.rules] == ["answers-leak"]
    reports = service.evaluators.run_due(START + timedelta(minutes=2))
    assert any(r.evaluated["pii_leak"] == 7 for r in reports)
    states = store_client.query("SELECT rule, prompt_version, state FROM alerts ORDER BY changed_at").result_rows
    assert ("answers-leak", "v2", "firing") in states                  # 0.75 clean < 0.9
    assert not any(rule == "answers-leak" and version == "v1" and state == "firing" for rule, version, state in states)
    service.shutdown()


def test_no_evaluator_enabled_means_no_job(store_client) -> None:
    from llmsight.scheduler.service import AnalyzerService, ScheduleSettings

    service = AnalyzerService(store_client, schedule=ScheduleSettings(60, 20, 5, 0), rules=[],
                              notifier=_Notifications(), evaluators=[Evaluator(name="x", check="pii_leak", enabled=False)])
    assert service.evaluators is None
    service.shutdown()


def test_with_replicas_only_the_coordinator_runs_the_evaluators(store_client) -> None:
    from llmsight.scheduler.roles import Coordinator, QueueSettings

    queue = QueueSettings(("127.0.0.1:1",), "llmsight.analysis", "g")  # no broker needed: no member is started
    coordinator = Coordinator(store_client, queue, window_s=60, lag_s=20, catchup=3, rules=[], notifier=_Notifications(),
                              name="t", weekly_export=False, evaluators=[Evaluator(name="pii_leak", check="pii_leak")])
    assert coordinator.evaluators is not None and coordinator._export is None
    coordinator._hand_over(True)
    try:
        assert coordinator._export.get_job("evaluators") is not None
        assert coordinator._export.get_job("llmsight-weekly-export") is None
    finally:
        coordinator._hand_over(False)
    assert coordinator._export is None and coordinator.evaluators.runner._stopping.is_set()  # paused
    coordinator._hand_over(True)
    try:
        assert not coordinator.evaluators.runner._stopping.is_set()  # resumed on leading again
    finally:
        coordinator._hand_over(False)
