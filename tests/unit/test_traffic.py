"""The demo's traffic generator and stand-in model: determinism, version mixes, response shape, feedback rates."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from llmsight.demo.model import ModelError, Response, answer, classify, user_feedback
from llmsight.demo.traffic import (
    TrafficGenerator,
    add_noise,
    fill,
    generate,
    intent_mix,
    load_catalog,
    new_topics,
)


def test_same_seed_same_prompts_and_other_seed_differs():
    a = [(p.text, p.intent, p.user_id, p.session_id) for p in generate(300, "v1", seed=11)]
    b = [(p.text, p.intent, p.user_id, p.session_id) for p in generate(300, "v1", seed=11)]
    c = [(p.text, p.intent, p.user_id, p.session_id) for p in generate(300, "v1", seed=12)]
    assert a == b
    assert sum(x != y for x, y in zip(a, c, strict=True)) > 250


def test_v1_has_many_intents_each_with_many_phrasings():
    mix = intent_mix("v1")
    assert len(mix) >= 25
    assert sum(mix.values()) == pytest.approx(1.0)
    catalog = load_catalog()
    for name in mix:
        assert len(catalog.intents[name].templates) >= 5, name
        assert catalog.intents[name].answers, name


def test_v2_brings_topics_v1_never_had():
    v1, v2 = intent_mix("v1"), intent_mix("v2")
    fresh = new_topics()
    assert {"crypto_buy", "mortgage", "fraud_complaint"} <= set(fresh)
    assert not set(fresh) & set(v1)
    assert 0.25 <= sum(v2[name] for name in fresh) <= 0.40
    prompts = generate(2000, "v2", seed=3)
    share = sum(p.new_topic for p in prompts) / len(prompts)
    assert 0.25 <= share <= 0.36
    assert all(not p.new_topic for p in generate(2000, "v1", seed=3))


def test_v2_shifts_the_old_intents_too():
    v1, v2 = intent_mix("v1"), intent_mix("v2")
    # Total variation distance between the mixes, the share of traffic that moved.
    tvd = 0.5 * sum(abs(v1.get(k, 0.0) - v2.get(k, 0.0)) for k in set(v1) | set(v2))
    assert tvd > 0.3


def test_generated_mix_follows_the_version_mix():
    prompts = generate(6000, "v1", seed=5)
    counts = Counter(p.intent for p in prompts)
    for name, share in intent_mix("v1").items():
        assert abs(counts[name] / len(prompts) - share) < 0.015, name


def test_prompts_are_varied_and_noisy():
    prompts = generate(2000, "v1", seed=9)
    texts = [p.text for p in prompts]
    assert len(set(texts)) / len(texts) > 0.7
    assert sum(t == t.lower() for t in texts) / len(texts) > 0.08         # all lower case
    assert sum(t[-1] not in ".?!" for t in texts) / len(texts) > 0.1      # no final punctuation
    assert all("{" not in t and "}" not in t for t in texts)               # every slot filled
    assert all("  " not in t for t in texts)


def test_fill_replaces_every_slot_with_catalogue_values():
    rng = random.Random(1)
    text = fill("Card in {country} for {amount} at {merchant}", rng)
    assert "{" not in text
    assert any(c in text for c in load_catalog().slots["country"])
    assert fill("unknown {nope}", rng) == "unknown {nope}"


def test_noise_keeps_the_words_mostly_intact():
    rng = random.Random(2)
    base = "Why was my card declined at the supermarket yesterday?"
    noisy = [add_noise(base, rng) for _ in range(500)]
    assert sum(n == base for n in noisy) > 250
    changed = [n for n in noisy if n != base]
    assert all(abs(len(n.split()) - len(base.split())) <= 0 for n in changed)


def test_users_are_long_tailed_with_sessions():
    prompts = TrafficGenerator(seed=4, users=200).batch(3000)
    per_user = Counter(p.user_id for p in prompts).most_common()
    assert per_user[0][1] > 5 * per_user[-1][1]
    assert all(p.session_id.startswith(p.user_id + "-s") for p in prompts)
    assert len({p.session_id for p in prompts}) > len(per_user)


def test_response_has_the_openai_chat_completion_shape():
    prompt = generate(1, "v1", seed=1)[0]
    for seed in range(50):
        try:
            response = answer(prompt, "v1", rng=random.Random(seed))
            break
        except ModelError:
            continue
    assert isinstance(response, Response)
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content == response.text != ""
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert response.usage.prompt_tokens > 180
    dumped = response.model_dump()
    assert dumped["choices"][0]["message"]["content"] == response.text
    assert dumped["usage"]["completion_tokens"] == response.usage.completion_tokens
    assert "toxic" not in dumped and dumped["object"] == "chat.completion"


def test_answer_without_rng_is_a_function_of_prompt_and_version():
    prompt = "Why was my card declined at Tesco?"
    assert answer(prompt, "v1").text == answer(prompt, "v1").text
    assert classify(prompt).name == "declined_card_payment"
    assert classify("How do I buy bitcoin?").name == "crypto_buy"
    assert classify("zzz") is None


def _run(version: str, n: int, seed: int):
    rng = random.Random(seed)
    rows = []
    for prompt in generate(n, version, seed=seed):
        try:
            response = answer(prompt, version, rng=rng)
        except ModelError:
            response = None
        rows.append((prompt, response, user_feedback(prompt, response, version, rng)))
    return rows


def test_v1_is_clean_and_mostly_accepted():
    rows = _run("v1", 3000, seed=21)
    responses = [r for _, r, _ in rows if r is not None]
    errors = sum(r is None for _, r, _ in rows) / len(rows)
    acceptance = sum(f["accepted"] for *_, f in rows) / len(rows)
    assert not any(r.toxic for r in responses)
    assert 0.005 <= errors <= 0.03
    assert 0.75 <= acceptance <= 0.85


def test_v2_turns_toxic_slower_and_less_accepted():
    v1, v2 = _run("v1", 3000, seed=22), _run("v2", 3000, seed=22)
    v2_responses = [r for _, r, _ in v2 if r is not None]
    toxic = sum(r.toxic for r in v2_responses) / len(v2_responses)
    assert 0.10 <= toxic <= 0.15
    acceptance = sum(f["accepted"] for *_, f in v2) / len(v2)
    assert 0.38 <= acceptance <= 0.52
    toxic_feedback = [f for _, r, f in v2 if r is not None and r.toxic]
    assert sum(f["accepted"] for f in toxic_feedback) / len(toxic_feedback) < 0.1
    assert all(f["score"] == 1.0 and f["comment"] for f in toxic_feedback)

    def median_latency(rows):
        values = sorted(r.simulated_latency_ms for _, r, _ in rows if r is not None)
        return values[len(values) // 2]

    assert median_latency(v2) > 1.2 * median_latency(v1)


def test_feedback_after_a_failed_call_rejects():
    feedback = user_feedback("anything", None, "v1", random.Random(0))
    assert feedback["accepted"] is False and feedback["score"] == 1.0


def test_unknown_version_is_refused():
    with pytest.raises(ValueError):
        intent_mix("v3")
    with pytest.raises(ValueError):
        answer("hello", "v3")
