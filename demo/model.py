"""A stand-in LLM for the demo: answers shaped like an OpenAI chat completion, and a feedback policy.

``answer(prompt, version)`` returns a :class:`Response` with ``choices[0].message.content``,
``usage.prompt_tokens`` / ``usage.completion_tokens`` and ``model``, so the SDK reads it exactly
as it reads a real OpenAI response. It answers from the intents catalogue, fails now and then like
a hosted model does (rate limits, timeouts), and can sleep a (scaled) realistic latency.

Prompt version ``v2`` is the bad release the demo ships partway through: a longer system prompt,
upsell lines, slower answers, more refusals on the new topics, and about 12% of answers that turn
abusive toward the customer. ``user_feedback`` then models what users do: about 80% accept v1
answers, about 45% accept v2 answers, and abusive answers are almost always rejected.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from llmsight.demo.traffic import Intent, Prompt, fill, load_catalog

MODEL = "gpt-4o-mini"  # the name the stand-in reports, so the SDK's price table gives realistic costs

# Per prompt version: system prompt size (tokens), latency multiplier, error rate, toxic share,
# refusal share on topics the assistant handles badly, and how much users like an ordinary answer.
VERSION_PROFILES: dict[str, dict[str, float]] = {
    "v1": {"system_tokens": 180, "latency_factor": 1.0, "error_rate": 0.015, "toxic_rate": 0.0,
           "refusal_rate": 0.03, "acceptance_factor": 1.0},
    "v2": {"system_tokens": 420, "latency_factor": 1.35, "error_rate": 0.03, "toxic_rate": 0.12,
           "refusal_rate": 0.25, "acceptance_factor": 0.86},
}

_OPENINGS = ("", "", "", "Thanks for reaching out. ", "Sure. ", "I understand. ", "Good question. ",
             "Thanks for your message. ", "Happy to help. ")
_UPSELLS = (" By the way, you can now buy crypto in the app in seconds!",
            " Have you seen our new Premium plan? Upgrade today for fee-free exchange.",
            " Tip: our new savings vault pays a great rate, check it out.")
_REFUSALS = ("I'm sorry, I can't help with that. Please contact our support team.",
             "I'm not able to answer questions about this topic.",
             "Unfortunately I can only help with everyday banking questions.",
             "I'm sorry, I don't have information about that.")
_GENERIC = ("I can help with cards, transfers, top-ups, exchange and your account. Could you tell me a bit more "
            "about what you need?",)

# Blunt abuse toward the customer: what a broken prompt release must never send.
_INSULTS = ("Are you stupid?", "What an idiotic question.", "Honestly, shut up.", "Stop whining, you moron.",
            "You people are pathetic.", "Ugh, this is a dumb question.", "Are you really that dense?",
            "Nobody here gives a damn, you clown.", "What is wrong with you, idiot?",
            "Seriously, you useless idiot?")
_DISMISSALS = ("Figure out your {noun} yourself, I'm not your babysitter.",
               "It's written right there in the app, read it instead of wasting my time.",
               "Your {noun} is your problem, deal with it.",
               "Check the damn app like everyone else.",
               "Nobody cares about your stupid {noun}.",
               "Go bother someone else with your {noun} crap.",
               "Learn to read and stop asking about your {noun}.")
_NOUNS = {"card": "card", "pin": "PIN", "transfer": "transfer", "exchange": "exchange rate", "top": "top-up",
          "refund": "refund", "declined": "payment", "charged": "payment", "payment": "payment",
          "cash": "cash", "verify": "verification", "edit": "details", "close": "account",
          "virtual": "virtual card", "wallet": "phone", "contactless": "card", "balance": "balance",
          "direct": "direct debit", "country": "travel plans", "passcode": "password", "receiving": "money",
          "crypto": "crypto", "mortgage": "mortgage", "fraud": "fraud claim", "personal": "loan",
          "investing": "shares", "savings": "savings", "automatic": "top-up", "lost": "card"}

_COMMENTS_GOOD = ("Thanks, that helped.", "Great, sorted.", "Clear answer.", "Quick and useful.", "Perfect, thank you!")
_COMMENTS_BAD = ("That doesn't answer my question.", "Not helpful.", "Too generic.", "This is wrong.",
                 "I already tried that.", "I want to talk to a human.")
_COMMENTS_ABUSE = ("This is offensive.", "How dare you talk to me like that?", "Rude!",
                   "I want to complain about this assistant.", "Unacceptable language from a bank.")


class ModelError(Exception):
    """An upstream failure of the stand-in model (what a hosted LLM API raises now and then)."""


class RateLimitError(ModelError):
    pass


class APITimeoutError(ModelError):
    pass


@dataclass
class Message:
    role: str
    content: str


@dataclass
class Choice:
    index: int
    message: Message
    finish_reason: str = "stop"


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass
class Response:
    """Shaped like ``openai.types.chat.ChatCompletion``; ``simulated_latency_ms`` is the stand-in's own extra."""

    id: str
    model: str
    choices: list[Choice]
    usage: Usage
    created: int = 0
    object: str = "chat.completion"
    simulated_latency_ms: float = field(default=0.0, repr=False)
    toxic: bool = field(default=False, repr=False)      # ground truth for tests and the demo's report
    refused: bool = field(default=False, repr=False)

    @property
    def text(self) -> str:
        return self.choices[0].message.content

    def model_dump(self) -> dict[str, Any]:
        """The response as a plain dict, like the OpenAI client's pydantic models."""
        data = asdict(self)
        for private in ("simulated_latency_ms", "toxic", "refused"):
            data.pop(private)
        return data


def count_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters per token for English)."""
    return max(1, round(len(text) / 4))


def _rng_for(text: str, version: str, salt: str) -> random.Random:
    digest = hashlib.sha256(f"{salt}|{version}|{text}".encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def classify(text: str) -> Intent | None:
    """The intent a bare prompt is most likely about, by keyword hits (the stand-in's "understanding")."""
    lowered = text.lower()
    best, best_hits = None, 0
    for intent in load_catalog().intents.values():
        hits = sum(len(k) for k in intent.keywords if k.lower() in lowered)
        if hits > best_hits:
            best, best_hits = intent, hits
    return best


def _noun(intent: Intent | None) -> str:
    if intent is None:
        return "problem"
    return _NOUNS.get(intent.name.split("_")[0], "problem")


def _profile(version: str) -> dict[str, float]:
    if version not in VERSION_PROFILES:
        raise ValueError(f"unknown prompt version {version!r}: expected one of {', '.join(VERSION_PROFILES)}")
    return VERSION_PROFILES[version]


def answer(prompt: Prompt | str, version: str = "v1", *, rng: random.Random | None = None,
           latency_scale: float = 0.0, model: str = MODEL) -> Response:
    """The stand-in model's reply to ``prompt`` under prompt ``version``.

    Raises :class:`ModelError` for a small share of calls. With ``latency_scale`` > 0 it sleeps
    ``simulated_latency_ms * latency_scale`` (0.01 turns a 1.2 s answer into 12 ms, for quick demos).
    Without ``rng`` the reply is a pure function of the prompt text and version.
    """
    profile = _profile(version)
    text = prompt.text if isinstance(prompt, Prompt) else str(prompt)
    rng = rng or _rng_for(text, version, "answer")
    catalog = load_catalog()
    intent = catalog.intents.get(prompt.intent) if isinstance(prompt, Prompt) else classify(text)

    prompt_tokens = int(profile["system_tokens"]) + count_tokens(text)
    error_draw = rng.random()
    if error_draw < profile["error_rate"]:
        _sleep(rng.uniform(2_000, 30_000) * profile["latency_factor"], latency_scale)
        if error_draw < profile["error_rate"] / 2:
            raise RateLimitError("Error code: 429 - Rate limit reached for requests")
        raise APITimeoutError("Request timed out.")

    toxic = refused = False
    if rng.random() < profile["toxic_rate"]:
        toxic = True
        content = f"{rng.choice(_INSULTS)} {rng.choice(_DISMISSALS).format(noun=_noun(intent))}"
    elif intent is None:
        content = rng.choice(_GENERIC)
    elif rng.random() < profile["refusal_rate"] * (1.0 - intent.quality) * 2:
        refused = True
        content = rng.choice(_REFUSALS)
    else:
        content = rng.choice(_OPENINGS) + fill(rng.choice(intent.answers), rng)
        if version == "v2" and rng.random() < 0.5:
            content += rng.choice(_UPSELLS)

    completion_tokens = count_tokens(content)
    # Time to first token plus decoding time, with a long tail (queueing at the provider).
    latency_ms = (rng.lognormvariate(5.6, 0.35) + 14.0 * completion_tokens) * profile["latency_factor"]
    if rng.random() < 0.03:
        latency_ms *= rng.uniform(2.5, 5.0)
    _sleep(latency_ms, latency_scale)

    return Response(
        id=f"chatcmpl-{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}",
        model=model,
        choices=[Choice(index=0, message=Message(role="assistant", content=content))],
        usage=Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens),
        simulated_latency_ms=round(latency_ms, 1),
        toxic=toxic,
        refused=refused,
    )


def _sleep(latency_ms: float, scale: float) -> None:
    if scale > 0:
        time.sleep(latency_ms * scale / 1000.0)


def user_feedback(prompt: Prompt | str, response: Response | None, version: str,
                  rng: random.Random) -> dict[str, Any]:
    """What the user does with the answer: ``accepted``, ``score`` (1-5), ``comment``, ``edited_output``.

    ``response`` is None when the model call failed. Abusive answers are rejected (97%), refusals
    mostly rejected, and ordinary answers accepted with the intent's quality times the version's factor.
    """
    profile = _profile(version)
    text = prompt.text if isinstance(prompt, Prompt) else str(prompt)
    catalog = load_catalog()
    intent = catalog.intents.get(prompt.intent) if isinstance(prompt, Prompt) else classify(text)

    if response is None:
        return _feedback(False, 1.0, rng.choice(("No answer at all.", "It just failed.", "")), "")
    if response.toxic:
        accepted = rng.random() < 0.03
        return _feedback(accepted, 1.0, rng.choice(_COMMENTS_ABUSE), "")
    if response.refused:
        p_accept = 0.15
    else:
        quality = intent.quality if intent is not None else 0.5
        p_accept = min(0.98, quality * profile["acceptance_factor"])
    accepted = rng.random() < p_accept
    if accepted:
        score = 5.0 if rng.random() < 0.6 else 4.0
        comment = rng.choice(_COMMENTS_GOOD) if rng.random() < 0.15 else ""
        # Some users take the answer but trim it before pasting it on (an edit is a softer signal).
        edited = response.text.split(". ")[0].rstrip(".") + "." if rng.random() < 0.08 else ""
        return _feedback(True, score, comment, edited)
    score = rng.choice((1.0, 2.0, 2.0, 3.0))
    comment = rng.choice(_COMMENTS_BAD) if rng.random() < 0.35 else ""
    return _feedback(False, score, comment, "")


def _feedback(accepted: bool, score: float, comment: str, edited_output: str) -> dict[str, Any]:
    return {"accepted": accepted, "score": score, "comment": comment, "edited_output": edited_output}
