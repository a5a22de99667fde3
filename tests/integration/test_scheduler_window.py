"""One scheduler window on real chdb with the real analyzers (MiniLM, the toxicity scorer, the drift test).

A feature runs prompt version v1 for a 10-minute baseline; in the window under test half of the
traffic is v1 and half is the bad v2 release. The window's metric rows must show exactly the
operations figures of the inserted calls, acceptance from the inserted feedback, v2's drift and
toxicity against the feature's baseline, and none for v1; a rerun must write identical rows; and
the alert rules evaluated on the window must fire on v2 only.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from llmsight.alerts.engine import fired_alerts, load_states
from llmsight.alerts.rules import parse_rules
from llmsight.analyzers.window_metrics import AnalysisSettings
from llmsight.analyzers.windows import Window, floor_time, read_metrics
from llmsight.demo import model
from llmsight.demo.traffic import TrafficGenerator
from llmsight.scheduler.service import AnalyzerService, ScheduleSettings
from llmsight.store import EVENT_COLUMNS, FEEDBACK_COLUMNS, event_row, feedback_row, names

RULES = """
defaults: {for: 1, min_samples: 20, renotify: 0}
rules:
  - {name: drift-in, metric: drift_input, comparison: significant, direction: any, warning: 0.01}
  - {name: tox-out, metric: toxicity_rate_output, comparison: absolute, warning: 0.05}
  - {name: acceptance, metric: acceptance_rate, comparison: significant, direction: below, warning: 0.01,
     min_effect: 0.05}
"""


def _calls(start: datetime, seconds: int, version: str, n: int, seed: int) -> tuple[list, list, dict]:
    """n calls of `version` spread over [start, start+seconds), their feedback, and the truth about them."""
    gen, rng = TrafficGenerator(seed=seed), random.Random(seed)
    events, feedback = [], []
    truth = {"errors": 0, "toxic": 0, "accepted": 0, "judged": 0, "latency": []}
    for i in range(n):
        ts = start + timedelta(seconds=seconds * i / n)
        prompt = gen.next(version)
        trace = uuid.UUID(int=rng.getrandbits(128)).hex
        try:
            response = model.answer(prompt, version, rng=rng)
            output, error = response.text, None
            truth["toxic"] += response.toxic
        except model.ModelError as exc:
            response, output, error = None, "", str(exc)
            truth["errors"] += 1
        latency = round(rng.uniform(100, 900), 1)
        truth["latency"].append(latency)
        events.append(event_row({
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "trace_id": trace, "ts": ts,
            "service": "bank", "name": "assistant", "model": "m", "prompt_version": version,
            "input": prompt.text, "output": output, "error": error, "latency_ms": latency,
            "tokens_in": 10, "tokens_out": 20, "cost_usd": 0.001}, "test"))
        verdict = model.user_feedback(prompt, response, version, rng)
        feedback.append(feedback_row({"event_id": str(uuid.UUID(int=rng.getrandbits(128))), "trace_id": trace,
                                      "ts": ts + timedelta(seconds=1), "accepted": verdict["accepted"],
                                      "score": verdict["score"]}, "test"))
        truth["judged"] += 1
        truth["accepted"] += verdict["accepted"]
    return events, feedback, truth


@pytest.fixture(scope="module")
def analyzer_parts():
    """The real embedder cache parts and scorer, loaded once for the module."""
    from llmsight.analyzers.embeddings import Embedder
    from llmsight.analyzers.toxicity import ToxicityScorer

    return Embedder(), ToxicityScorer()


def test_one_window_on_chdb_with_the_real_analyzers(store_client, analyzer_parts):
    from llmsight.analyzers.embeddings import EmbeddingCache
    from llmsight.analyzers.window_metrics import WindowAnalyzer

    embedder, scorer = analyzer_parts
    window_start = floor_time(datetime.now(timezone.utc) - timedelta(hours=1), 60)
    window = Window(window_start, window_start + timedelta(seconds=60))
    baseline_start = window_start - timedelta(minutes=10)
    base_ev, base_fb, _ = _calls(baseline_start, 600, "v1", 240, seed=1)
    v1_ev, v1_fb, v1 = _calls(window_start, 60, "v1", 100, seed=2)
    v2_ev, v2_fb, v2 = _calls(window_start, 60, "v2", 100, seed=3)
    store_client.insert("events", base_ev + v1_ev + v2_ev, column_names=EVENT_COLUMNS)
    store_client.insert("feedback", base_fb + v1_fb + v2_fb, column_names=FEEDBACK_COLUMNS)

    settings = AnalysisSettings(reference="baseline", baseline=(baseline_start, window_start), sample=200,
                                drift_min_n=20)
    analyzer = WindowAnalyzer(store_client, settings, embeddings=EmbeddingCache(store_client, embedder),
                              toxicity=scorer)
    service = AnalyzerService(store_client, schedule=ScheduleSettings(60, 5, 10, 0), analyzer=analyzer,
                              rules=parse_rules(RULES, "test"), notifier=_NoNotifier())
    service.run_window(window)
    rows = {(r["prompt_version"], r["metric"]): r for r in read_metrics(store_client, window)}

    for version, truth in (("v1", v1), ("v2", v2)):
        assert rows[(version, names.VOLUME)]["value"] == 100
        assert rows[(version, names.ERROR_RATE)]["value"] == pytest.approx(truth["errors"] / 100)
        acc = rows[(version, names.ACCEPTANCE)]
        assert (acc["value"], acc["n"]) == (pytest.approx(truth["accepted"] / truth["judged"]), truth["judged"])
        # The baseline of both versions is the v1 baseline stretch (v2 has none of its own).
        assert json.loads(acc["details"])["reference"]["scope"] == ("segment" if version == "v1" else "feature")
    assert rows[("v2", names.ACCEPTANCE)]["p_value"] < 0.001
    assert rows[("v1", names.ACCEPTANCE)]["p_value"] > 0.01

    drift_v2, drift_v1 = rows[("v2", names.DRIFT_INPUT)], rows[("v1", names.DRIFT_INPUT)]
    assert drift_v2["p_value"] < 0.01 < drift_v1["p_value"]
    explanation = json.loads(drift_v2["details"])
    assert explanation["topics"]["grown"], "the explanation names the topics that grew"
    assert explanation["topics"]["grown"][0]["examples"]

    tox_v2 = rows[("v2", names.TOXICITY_OUTPUT)]
    assert v2["toxic"] > 0 and tox_v2["value"] >= 0.05
    assert rows[("v1", names.TOXICITY_OUTPUT)]["value"] < 0.05
    examples = json.loads(tox_v2["details"])["examples"]
    assert examples and all(e["score"] >= tox_v2["threshold"] for e in examples)

    # Alerts fired on v2 for the three signals, and on nothing for v1.
    fired = {(a["rule"], a["segment"]["prompt_version"]) for a in fired_alerts(store_client)}
    assert fired == {("drift-in", "v2"), ("tox-out", "v2"), ("acceptance", "v2")}

    # Rerunning the window writes identical rows (and no alert is evaluated twice).
    before = sorted(_comparable(read_metrics(store_client, window)))
    states_before = load_states(store_client)
    service.run_window(window)
    assert sorted(_comparable(read_metrics(store_client, window))) == before
    assert load_states(store_client) == states_before
    total = store_client.query("SELECT count() FROM metrics FINAL WHERE window_start = {w:DateTime('UTC')}",
                               parameters={"w": window.start}).result_rows[0][0]
    assert total == len(before)


def _comparable(rows: list[dict]) -> list[tuple]:
    return [tuple(str(v) for k, v in sorted(r.items())) for r in rows]


class _NoNotifier:
    def send(self, notification):
        pass

    def close(self, timeout=0):
        pass
