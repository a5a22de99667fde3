"""Alert rules fed one synthetic window at a time through the pure state machine (``llmsight.alerts.engine.step``),
shared by the unit tests of the alert states and of episodes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from llmsight.alerts.engine import NOTIFYING, AlertState, alert_id, notification, step
from llmsight.alerts.rules import Observation, Rule

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
SEGMENT = {"service": "bank", "name": "answer", "model": "m", "prompt_version": "v2"}


def toxicity_rule(**overrides: Any) -> Rule:
    """An absolute toxicity-rate rule: warning 0.05, critical 0.15, two windows to fire, re-notify every 10 min."""
    base: dict[str, Any] = dict(name="tox", metric="toxicity_rate_output", comparison="absolute", direction="above",
                                warning=0.05, critical=0.15, min_samples=10, for_windows=2, recover_windows=1,
                                no_data="keep", renotify_s=600, send_recovery=True)
    base.update(overrides)
    return Rule(**base)


def feed(rule: Rule, values: list[float | None], *, n: int = 100, seconds: float = 60, after_s: float = 5,
         state: AlertState | None = None, p_values: bool = False, start: int = 0,
         ) -> tuple[AlertState, list[str | None], list[dict[str, Any]]]:
    """One value per window (None: no row; with ``p_values`` the values are a score's p-values), windows
    ``seconds`` apart from ``T0`` (the ``start``-th first), each evaluated ``after_s`` after it starts.

    Returns the final state, every transition and the notifications the engine would send."""
    st = state or AlertState(alert_id(rule.name, SEGMENT), rule.name, rule.metric, dict(SEGMENT))
    seen: list[str | None] = []
    sent: list[dict[str, Any]] = []
    for i, value in enumerate(values, start=start):
        window = T0 + timedelta(seconds=i * seconds)
        obs = None if value is None else (
            Observation(value=5.0, n=n, p_value=value, threshold=4.07) if p_values else Observation(value, n))
        st, transition = step(rule, st, obs, window, window + timedelta(seconds=after_s))
        seen.append(transition)
        if transition in NOTIFYING and (transition != "resolved" or rule.send_recovery):
            sent.append(notification(rule, st, transition))
    return st, seen, sent
