"""The evaluators' job: online evaluators run beside analysis, never in its way.

The job (``evaluators``) runs on its own APScheduler thread, ``max_instances=1``: the window job goes on
while judges wait on their endpoint, and a slow endpoint only delays the evaluators' own next run
(each judge has a concurrency limit and a deadline per window, :mod:`llmsight.evaluators.runner`).
After each window it evaluates the alert rules on ``eval_*`` metrics (the other rules' engine leaves
them out, as it leaves the lag out), since those rows arrive after the window's analysis.

In embedded mode the analyzer service runs the job; with analyzer replicas
(``LLMSIGHT_ANALYSIS_QUEUE``) only the coordinator does, so each call is judged once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from llmsight.analyzers.windows import read_metrics
from llmsight.store.names import EVAL_PREFIX

log = logging.getLogger("llmsight.scheduler.evaluation")


def is_eval_rule(rule: Any) -> bool:
    """A rule on an evaluator's metric: evaluated by the evaluators' job, not the window job."""
    return str(rule.metric).startswith(EVAL_PREFIX)


class EvaluatorJob:
    """The configured evaluators (``LLMSIGHT_EVALUATORS_FILE``) and the alert rules on their metrics."""

    def __init__(self, client: Any, runner: Any, rules: list[Any], notifier: Any, *, window_s: int, lag_s: float,
                 catchup: int) -> None:
        from llmsight.alerts.engine import AlertEngine

        self.client = client
        self.runner = runner
        self.alerts = AlertEngine(client, [r for r in rules if is_eval_rule(r)], notifier)
        self.window_s, self.lag_s, self.catchup = window_s, lag_s, catchup
        self.runs = 0
        self.failures = 0

    @classmethod
    def from_settings(cls, client: Any, rules: list[Any], notifier: Any, *, window_s: int, lag_s: float,
                      catchup: int, evaluators: list[Any] | None = None) -> EvaluatorJob | None:
        """The job for the evaluators in the file (read and checked now: a bad file fails fast), or
        None when none is enabled."""
        from llmsight.evaluators.config import load_evaluators
        from llmsight.evaluators.runner import EvaluatorRunner

        chosen = evaluators if evaluators is not None else load_evaluators()
        if not [e for e in chosen if e.enabled]:
            return None
        log.info("scheduler: evaluators %s", ", ".join(f"{e.name} ({e.kind})" for e in chosen if e.enabled))
        return cls(client, EvaluatorRunner(client, chosen), rules, notifier, window_s=window_s, lag_s=lag_s,
                   catchup=catchup)

    def run_due(self, now: datetime | None = None) -> list[Any]:
        """Evaluate every window due, then the rules on its ``eval_*`` rows; returns the run reports."""
        now = now or datetime.now(timezone.utc)
        reports: list[Any] = self.runner.run_due(now, window_s=self.window_s, lag_s=self.lag_s, catchup=self.catchup)
        for report in reports:
            if self.alerts.rules:
                rows = [r for r in read_metrics(self.client, report.window) if str(r["metric"]).startswith(EVAL_PREFIX)]
                self.alerts.evaluate(report.window.start, rows, report.window.granularity, now=now)
        self.runs += 1
        return reports

    def tick(self) -> None:
        """The scheduled job: a failure is logged and the next tick tries again."""
        try:
            self.run_due()
        except Exception:
            self.failures += 1
            log.exception("scheduler: evaluators job failed; it runs again at its next tick")

    def schedule(self, scheduler: Any, seconds: int) -> None:
        from datetime import timedelta

        scheduler.add_job(self.tick, "interval", seconds=seconds, id="evaluators", max_instances=1, coalesce=True,
                          next_run_time=datetime.now(timezone.utc) + timedelta(seconds=2))

    def stop(self) -> None:
        self.runner.stop()
