"""The offline evaluators, the language guess, the judge's parser and the YAML loader, on inline data."""

from __future__ import annotations

import pytest

from llmsight.errors import ConfigError
from llmsight.evaluators import language, offline
from llmsight.evaluators.config import load_evaluators, parse_evaluators
from llmsight.evaluators.judge import CircuitBreaker, JudgeSkipped, MalformedJudgement, parse_judgement


@pytest.mark.parametrize(("text", "expected"), [
    ("How do I reset my card PIN and what is the fee for that?", "en"),
    ("¿Cómo puedo cambiar el PIN de mi tarjeta y cuánto cuesta?", "es"),
    ("Comment est-ce que je peux bloquer ma carte pour un voyage?", "fr"),
    ("Wie kann ich meine Karte sperren, wenn sie gestohlen ist?", "de"),
    ("Come posso bloccare la carta se non la trovo più?", "it"),
    ("Como posso bloquear o meu cartão se não o encontro?", "pt"),
    ("Hoe kan ik mijn kaart blokkeren als die gestolen is?", "nl"),
    ("Как заблокировать карту?", "cyrillic"),
    ("カードを停止するにはどうすればいいですか", "ja"),
    ("如何冻结我的银行卡", "zh"),
    ("카드를 정지하려면 어떻게 해야 하나요", "ko"),
    ("OK", None),                       # too short to tell
    ("SELECT id FROM cards", None),     # no function words
])
def test_the_language_of_short_banking_texts(text: str, expected: str | None) -> None:
    assert language.detect(text) == expected


def test_language_mismatch_flags_only_decided_pairs() -> None:
    mismatch = offline.language_mismatch("Wie kann ich meine Karte sperren, wenn sie gestohlen ist?",
                                         "You can freeze the card in the app, it is under Cards.")
    assert (mismatch.score, mismatch.label, mismatch.flagged) == (0.0, "mismatch", True)
    assert mismatch.reason == "prompt de, answer en"
    match = offline.language_mismatch("How do I freeze my card?", "You can freeze it in the app, under Cards.")
    assert (match.score, match.flagged) == (1.0, False)
    undecided = offline.language_mismatch("Wie kann ich meine Karte sperren?", "IBAN DE89 3704")
    assert (undecided.score, undecided.label, undecided.flagged) == (None, "undetermined", False)


@pytest.mark.parametrize(("output", "metadata", "label"), [
    ("", "", "empty"),
    ("   \n ", "", "empty"),
    ("Your transfer arrives in 2 days.", "", "complete"),
    ("Your transfer arrives in 2 days and", "", "truncated"),
    ("The steps are:", "", "truncated"),
    ("Here is the code:\n```python\nprint(1)", "", "truncated"),
    ("Here is the code:\n```python\nprint(1)\n```", "", "complete"),
    ("Your transfer arrives in 2 days", '{"finish_reason": "length"}', "truncated"),
    ("Your transfer arrives in 2 days", {"otel": {"finish_reasons": ["max_tokens"]}}, "truncated"),
    ("Your transfer arrives in 2 days", '{"finish_reason": "stop"}', "complete"),
    ("Your transfer arrives in 2 days", "not json", "complete"),
])
def test_empty_or_truncated(output: str, metadata: object, label: str) -> None:
    verdict = offline.empty_or_truncated(output, metadata)  # type: ignore[arg-type]
    assert verdict.label == label
    assert verdict.flagged == (label != "complete") and verdict.score == (1.0 if label == "complete" else 0.0)


def test_pii_leak_uses_the_sdk_patterns_and_ignores_labels_already_there() -> None:
    leak = offline.pii_leak("Sure, write to jane.doe@example.com or call with card 4111 1111 1111 1111.")
    assert leak.flagged and leak.score == 0.0 and leak.reason == "2 found: CARD,EMAIL"
    secret = offline.pii_leak("use api_key=sk-proj-abcdefghijklmnopqrstu")
    assert secret.flagged and "API_KEY" in secret.reason
    assert not offline.pii_leak("I've sent it to [EMAIL], as you asked.").flagged
    assert not offline.pii_leak("Your balance is 120 EUR.").flagged


def test_relevance_maps_the_cosine_piecewise() -> None:
    assert offline.relevance(-0.2).score == 0.0
    assert offline.relevance(0.15).score == pytest.approx(0.5)
    assert offline.relevance(0.075).score == pytest.approx(0.25) and offline.relevance(0.075).flagged
    assert offline.relevance(0.6).score == 1.0 and offline.relevance(0.9).score == 1.0
    assert not offline.relevance(0.3).flagged and offline.relevance(0.3).label == "relevant"


@pytest.mark.parametrize(("text", "score", "label"), [
    ('{"score": 5, "label": "Helpful", "reason": "ok"}', 1.0, "helpful"),
    ('{"score": 1, "label": "unhelpful"}', 0.0, "unhelpful"),
    ('{"score": 3}', 0.5, "unlabelled"),
    ('{"score": 0.8, "label": "good"}', 0.8, "good"),
    ('{"score": "4/5", "label": "good"}', 0.75, "good"),
    ('{"Score": "2", "Label": "Partial Answer"}', 0.25, "partial_answer"),
    ('Sure! ```json\n{"score": 4, "label": "helpful"}\n``` hope this helps', 0.75, "helpful"),
    ('My verdict {"rating": 5, "label": "x", "explanation": "y"} done', 1.0, "x"),
])
def test_parse_judgement_reads_what_judges_send(text: str, score: float, label: str) -> None:
    verdict = parse_judgement(text)
    assert verdict.score == pytest.approx(score) and verdict.label == label
    assert verdict.flagged == (score < 0.5)


@pytest.mark.parametrize("text", ["", "It is good.", '{"score": 9}', '{"score": "high"}', '{"label": "x"}',
                                  '{"score": true}', "[1, 2]", '{"score": -1}'])
def test_parse_judgement_rejects_what_it_cannot_read(text: str) -> None:
    with pytest.raises(MalformedJudgement):
        parse_judgement(text)


def test_the_circuit_breaker_states_on_a_fake_clock() -> None:
    now = [0.0]
    breaker = CircuitBreaker(2, 10.0, clock=lambda: now[0])
    breaker.failure()
    breaker.allow()
    breaker.failure()
    assert breaker.state == "open"
    with pytest.raises(JudgeSkipped, match="2 times in a row"):
        breaker.allow()
    now[0] = 10.0
    breaker.allow()  # the one trial
    with pytest.raises(JudgeSkipped):
        breaker.allow()  # a second caller waits for the trial
    breaker.success()
    assert breaker.state == "closed"


def test_the_shipped_file_lists_every_kind_and_turns_everything_off() -> None:
    every = load_evaluators("", enabled_only=False)
    assert {e.check for e in every} - {""} == set(offline_checks())
    assert {e.rubric for e in every} - {""} >= {"helpfulness", "instruction_following", "groundedness",
                                                "refusal_appropriateness", "custom"}
    assert load_evaluators("") == []


def offline_checks() -> tuple[str, ...]:
    from llmsight.evaluators.config import OFFLINE_CHECKS

    return OFFLINE_CHECKS


def test_a_user_file_is_read_with_defaults(tmp_path, monkeypatch) -> None:
    path = tmp_path / "evaluators.yaml"
    path.write_text("defaults: {sample_per_segment: 7}\nevaluators:\n"
                    "  - {name: leaks, check: pii_leak}\n"
                    "  - name: tone\n    rubric: custom\n    prompt: 'Rate {output}'\n    segment: {service: 'bank*'}\n"
                    "    judge: {base_url: 'http://127.0.0.1:1/v1', model: m, daily_tokens: 10, concurrency: 2}\n")
    monkeypatch.setenv("LLMSIGHT_EVALUATORS_FILE", str(path))
    leaks, tone = load_evaluators()
    assert (leaks.kind, leaks.metric, leaks.sample_per_segment) == ("offline", "eval_leaks", 7)
    assert tone.kind == "judge" and tone.judge is not None and tone.judge.concurrency == 2
    assert tone.matches({"service": "bank-eu"}) and not tone.matches({"service": "shop"})


@pytest.mark.parametrize(("body", "message"), [
    ("evaluators:\n  - {name: Bad-Name, check: pii_leak}", "'name' must be"),
    ("evaluators:\n  - {name: a, check: pii_leak, rubric: helpfulness}", "exactly one of"),
    ("evaluators:\n  - {name: a, check: spelling}", "is not one of"),
    ("evaluators:\n  - {name: a, rubric: helpfulness}", "needs 'judge'"),
    ("evaluators:\n  - {name: a, rubric: custom, judge: {base_url: 'http://x/v1', model: m}}", "{output}"),
    ("evaluators:\n  - {name: a, rubric: helpfulness, judge: {base_url: 'x', model: m}}", "http://"),
    ("evaluators:\n  - {name: a, rubric: helpfulness, judge: {base_url: 'http://x', model: m, daily_tokens: lots}}",
     "judge.daily_tokens"),
    ("evaluators:\n  - {name: a, rubric: helpfulness, judge: {base_url: 'http://x', model: m, api_key: sk-1}}",
     "unknown judge key"),
    ("evaluators:\n  - {name: a, check: pii_leak, colour: red}", "unknown key"),
    ("evaluators:\n  - {name: a, check: pii_leak}\n  - {name: a, check: relevance}", "unique"),
    ("evaluators:\n  - {name: a, check: pii_leak, segment: {region: eu}}", "'segment' filters only"),
    ("evaluators: [", "not valid YAML"),
])
def test_mistakes_in_the_file_fail_with_a_clear_message(body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")) as caught:
        parse_evaluators(body, "my-evaluators.yaml")
    assert "my-evaluators.yaml" in str(caught.value)


def test_a_missing_file_names_the_setting(tmp_path) -> None:
    with pytest.raises(ConfigError, match="LLMSIGHT_EVALUATORS_FILE"):
        load_evaluators(str(tmp_path / "nope.yaml"))
