"""The headless demo end to end: `llmsight demo --headless --duration N --json` in a subprocess.

The whole stack runs for real (SDK into a spool, the collector, chdb, MiniLM, the toxicity scorer,
the drift test, the scheduler and the alert rules). After the switch to prompt version v2 the drift,
toxicity and acceptance alerts must fire, and before it no alert at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime

DURATION_S = 90


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_headless_demo_fires_drift_toxicity_and_acceptance_after_the_switch_and_nothing_before(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HOME": str(tmp_path)}
    for name in ("LLMSIGHT_CLICKHOUSE_URL", "LLMSIGHT_SINK", "LLMSIGHT_WEBHOOK_URL", "LLMSIGHT_SLACK_WEBHOOK_URL",
                 "LLMSIGHT_RULES"):
        env.pop(name, None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "llmsight.cli.app", "demo", "--headless", "--duration", str(DURATION_S), "--json"],
        capture_output=True, text=True, timeout=DURATION_S + 240, env=env, cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    report = json.loads(lines[-1])
    assert set(report) == {"switch_at", "alerts"}
    switch_at = _ts(report["switch_at"])
    alerts = report["alerts"]
    for alert in alerts:
        assert set(alert) == {"rule", "metric", "severity", "segment", "fired_at"}
        assert alert["severity"] in ("warning", "critical")
    before = [a for a in alerts if _ts(a["fired_at"]) <= switch_at]
    assert before == [], f"alerts before the switch: {before}"
    fired_metrics = " ".join(a["metric"] for a in alerts)
    for signal in ("drift", "toxicity", "acceptance"):
        assert signal in fired_metrics, f"no {signal} alert: {alerts}\n{done.stderr[-3000:]}"
    # The signals fire on the new prompt version, not on the old one.
    assert {a["segment"]["prompt_version"] for a in alerts} == {"v2"}
    delays = {a["metric"]: (_ts(a["fired_at"]) - switch_at).total_seconds() for a in alerts}
    print(f"demo: {elapsed:.0f} s in all; seconds from switch to firing: {delays}")
    # The demo leaves nothing behind in the user's home (it ran on a temp store and spool).
    assert not (tmp_path / ".llmsight").exists()
