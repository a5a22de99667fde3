"""The LLM judge through the real ``openai`` client against a local OpenAI-compatible server: fixed,
fenced and malformed answers, 429s, 5xx, timeouts, the circuit breaker and the daily caps."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest

from llmsight.evaluators.config import Evaluator, JudgeOptions
from llmsight.evaluators.judge import Judge, JudgeError, JudgeSkipped
from llmsight.evaluators.stub_judge import StubJudgeServer

QUESTION = "How do I freeze my debit card after losing it?"
ANSWER = "To freeze your debit card, open the app, choose the card and tap freeze; losing it is covered."


@pytest.fixture
def server():
    with StubJudgeServer() as stub:
        yield stub


def _judge(server: StubJudgeServer, **options) -> Judge:
    judge_options = JudgeOptions(base_url=server.base_url, model="judge-model", backoff_s=0.01,
                                 backoff_max_s=0.1, **options)
    return Judge(Evaluator(name="helpfulness", rubric="helpfulness", judge=judge_options))


def test_a_fixed_verdict_is_scored_and_its_tokens_counted(server) -> None:
    judge = _judge(server)
    verdict = judge.judge(QUESTION, ANSWER)
    # The stub's rule: 2 + shared words (freeze, debit, card, losing -> 3 at most) = 5 -> 1.0.
    assert verdict.score == 1.0 and verdict.label == "helpful" and not verdict.flagged
    assert verdict.tokens > 0 and verdict.cost_usd == 0.0
    [body] = server.bodies
    assert body["model"] == "judge-model" and body["temperature"] == 0.0
    assert body["messages"][0]["role"] == "system" and QUESTION in body["messages"][1]["content"]
    assert judge.budget.tokens == verdict.tokens


def test_a_refusal_is_flagged(server) -> None:
    verdict = _judge(server).judge(QUESTION, "I'm sorry, I can't help with that.")
    assert verdict.score == 0.0 and verdict.flagged and verdict.label == "refusal"


def test_fenced_json_is_read_and_malformed_answers_are_counted_errors_not_crashes(server) -> None:
    judge = _judge(server)
    server.script = ["fenced", "malformed", "bad_score"]
    assert judge.judge(QUESTION, ANSWER).score == 1.0
    for _ in range(2):
        with pytest.raises(JudgeError) as caught:
            judge.judge(QUESTION, ANSWER)
        assert caught.value.kind == "malformed"
    assert judge.breaker.state == "closed"  # the endpoint answered: not an endpoint failure
    assert judge.budget.tokens > 0          # malformed answers still cost their tokens


def test_429s_and_5xx_are_retried_with_back_off(server) -> None:
    judge = _judge(server, max_retries=3)
    server.script = ["429", "500", "429"]
    assert judge.judge(QUESTION, ANSWER).score == 1.0
    assert server.requests == 4 and judge.retries == 3


def test_retries_stop_at_max_retries(server) -> None:
    judge = _judge(server, max_retries=2)
    server.script = ["500"] * 5
    with pytest.raises(JudgeError) as caught:
        judge.judge(QUESTION, ANSWER)
    assert caught.value.kind == "failed" and server.requests == 3


def test_a_timeout_fails_within_its_bound(server) -> None:
    server.slow_s = 3.0
    server.script = ["slow"]
    judge = _judge(server, timeout_s=0.3, max_retries=0)
    started = time.monotonic()
    with pytest.raises(JudgeError, match="Timeout"):
        judge.judge(QUESTION, ANSWER)
    assert time.monotonic() - started < 2.0


def test_the_circuit_opens_after_repeated_failures_and_a_trial_closes_it(server) -> None:
    judge = _judge(server, max_retries=0, breaker_failures=3, breaker_cooldown_s=0.4)
    server.script = ["500"] * 3
    for _ in range(3):
        with pytest.raises(JudgeError):
            judge.judge(QUESTION, ANSWER)
    assert judge.breaker.state == "open"
    with pytest.raises(JudgeSkipped) as caught:
        judge.judge(QUESTION, ANSWER)
    assert caught.value.kind == "circuit_open" and server.requests == 3  # nothing was sent
    time.sleep(0.45)
    assert judge.judge(QUESTION, ANSWER).score == 1.0  # the half-open trial succeeds
    assert judge.breaker.state == "closed" and judge.breaker.opened == 1


def test_a_failed_trial_opens_the_circuit_again(server) -> None:
    judge = _judge(server, max_retries=0, breaker_failures=2, breaker_cooldown_s=0.3)
    server.script = ["500"] * 3
    for _ in range(2):
        with pytest.raises(JudgeError):
            judge.judge(QUESTION, ANSWER)
    time.sleep(0.35)
    with pytest.raises(JudgeError):
        judge.judge(QUESTION, ANSWER)  # the trial fails
    with pytest.raises(JudgeSkipped):
        judge.judge(QUESTION, ANSWER)
    assert judge.breaker.opened == 2 and server.requests == 3


def test_the_daily_token_cap_holds_under_concurrent_calls(server) -> None:
    cap = 4000
    judge = _judge(server, daily_tokens=cap, max_tokens=100)
    outcomes: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            judge.judge(QUESTION, ANSWER)
            kind = "ok"
        except JudgeSkipped as exc:
            kind = exc.kind
        with lock:
            outcomes.append(kind)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcomes.count("ok") >= 5 and outcomes.count("budget") >= 5
    assert outcomes.count("ok") + outcomes.count("budget") == 40
    assert judge.budget.tokens <= cap and server.requests == outcomes.count("ok")


def test_the_daily_cost_cap_counts_dollars_and_a_new_day_starts_from_the_store(server) -> None:
    spent = {date(2026, 1, 1): (0, 0.0)}
    options = JudgeOptions(base_url=server.base_url, model="m", daily_tokens=0, daily_cost_usd=0.01,
                           price_in_per_1m=10.0, price_out_per_1m=30.0, max_tokens=50)
    judge = Judge(Evaluator(name="h", rubric="helpfulness", judge=options),
                  spent_today=lambda day: spent.get(day, (0, 0.0095)))
    # The store says 0.0095 of today's 0.01 is spent: the worst case of one call does not fit.
    with pytest.raises(JudgeSkipped) as caught:
        judge.judge(QUESTION, ANSWER)
    assert caught.value.kind == "budget" and server.requests == 0
    judge.budget._clock = lambda: __import__("datetime").datetime(2026, 1, 1, 12)
    verdict = judge.judge(QUESTION, ANSWER)  # another day, nothing spent
    assert verdict.cost_usd > 0 and judge.budget.cost == pytest.approx(verdict.cost_usd)


def test_the_key_comes_from_the_named_variable(server, monkeypatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test-123")
    options = JudgeOptions(base_url=server.base_url, model="m", api_key_env="MY_JUDGE_KEY")
    assert options.api_key() == "sk-test-123"
    Judge(Evaluator(name="h", rubric="helpfulness", judge=options)).judge(QUESTION, ANSWER)
    assert server.authorizations == ["Bearer sk-test-123"]


def test_an_unset_key_variable_fails_at_start_with_its_name(server, monkeypatch) -> None:
    from llmsight.errors import ConfigError

    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    options = JudgeOptions(base_url=server.base_url, model="m", api_key_env="MY_JUDGE_KEY")
    with pytest.raises(ConfigError, match="MY_JUDGE_KEY"):
        Judge(Evaluator(name="h", rubric="helpfulness", judge=options))
