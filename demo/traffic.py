"""Synthetic traffic for the demo's banking assistant: realistic customer prompts, deterministic by seed.

The catalogue of intents, phrasings and slot values lives in ``data/intents.yaml`` (shipped with the
package, so the generator works without a checkout). A prompt is built the way real chat traffic is:
an intent is drawn from the prompt version's mix, one of its phrasings is filled with slot values,
and sometimes a greeting, a bit of context, a second question or a sign-off is added. Then people's
noise goes on top: all lower case, missing final punctuation, dropped apostrophes, a typo, "pls".

Prompt versions:

* ``v1`` — the stable mix of everyday banking questions (cards, transfers, top-ups, exchange, ...).
* ``v2`` — shipped partway through the demo. The mix shifts and topics v1 never had appear
  (crypto, mortgages, fraud complaints, loans, investing, savings): about 30% of v2 traffic.

Usage::

    gen = TrafficGenerator(seed=7)
    for prompt in gen.batch(100, version="v1"):
        print(prompt.intent, prompt.text)
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

VERSIONS = ("v1", "v2")

# How often each piece is added to the bare question. Tuned so that the word-count distribution
# matches real banking chat traffic (median about 10 words, a tail of long messages past 25 words).
P_OPENER = 0.10
P_CONTEXT = 0.22
P_SECOND_QUESTION = 0.06
P_CLOSER = 0.10
P_STORY = 0.14
P_SECOND_CONTEXT = 0.25  # of the prompts that have a context

# People's noise.
P_LOWERCASE = 0.12
P_NO_FINAL_PUNCT = 0.18
P_NO_APOSTROPHES = 0.08
P_TYPO = 0.06
P_SHORTHAND = 0.04

_AMOUNT_VALUES = (5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 80, 100, 120, 150, 200, 250, 300, 400, 450,
                  500, 600, 750, 1000, 1200, 1500, 2000, 2500, 3000, 5000)
_AMOUNT_FORMATS = ("£{n}", "${n}", "€{n}", "{n} euros", "{n} dollars", "{n} pounds", "{n} GBP", "{n} EUR",
                   "{n}", "£{n}.00", "{n} quid")
_SHORTHAND = (("please", "pls"), ("you", "u"), ("are", "r"), ("thanks", "thx"), ("because", "cos"))


@dataclass(frozen=True)
class Intent:
    """One thing customers ask about, with its phrasings and the model's canned answers."""

    name: str
    weights: dict[str, float]
    keywords: tuple[str, ...]
    quality: float
    templates: tuple[str, ...]
    contexts: tuple[str, ...]
    answers: tuple[str, ...]

    def weight(self, version: str) -> float:
        return float(self.weights.get(version, 0.0))

    @property
    def is_new_in_v2(self) -> bool:
        """A topic v1 never had."""
        return self.weight("v1") == 0 and self.weight("v2") > 0


@dataclass(frozen=True)
class Catalog:
    slots: dict[str, tuple[str, ...]]
    openers: tuple[str, ...]
    closers: tuple[str, ...]
    stories: tuple[str, ...]
    intents: dict[str, Intent]


@dataclass(frozen=True)
class Prompt:
    """One generated customer message."""

    text: str
    intent: str
    version: str
    user_id: str
    session_id: str
    new_topic: bool  # an intent that only v2 traffic has

    def __str__(self) -> str:
        return self.text


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The intents catalogue shipped in ``llmsight/demo/data/intents.yaml``."""
    import yaml

    raw: dict[str, Any] = yaml.safe_load(
        resources.files("llmsight.demo").joinpath("data/intents.yaml").read_text(encoding="utf-8")
    )
    intents = {
        name: Intent(
            name=name,
            weights={str(k): float(v) for k, v in spec["weights"].items()},
            keywords=tuple(spec.get("keywords", ())),
            quality=float(spec.get("quality", 0.8)),
            templates=tuple(spec["templates"]),
            contexts=tuple(spec.get("contexts", ())),
            answers=tuple(spec.get("answers", ())),
        )
        for name, spec in raw["intents"].items()
    }
    return Catalog(
        slots={k: tuple(v) for k, v in raw["slots"].items()},
        openers=tuple(raw["openers"]),
        closers=tuple(raw["closers"]),
        stories=tuple(raw["stories"]),
        intents=intents,
    )


def intent_mix(version: str) -> dict[str, float]:
    """The share of traffic of each intent under ``version`` (sums to 1; intents absent from it omitted)."""
    if version not in VERSIONS:
        raise ValueError(f"unknown prompt version {version!r}: expected one of {', '.join(VERSIONS)}")
    weights = {name: it.weight(version) for name, it in load_catalog().intents.items() if it.weight(version) > 0}
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


def new_topics() -> list[str]:
    """Intents that v2 traffic has and v1 never had."""
    return sorted(name for name, it in load_catalog().intents.items() if it.is_new_in_v2)


_SLOT = re.compile(r"\{(\w+)\}")


def fill(template: str, rng: random.Random, slots: dict[str, tuple[str, ...]] | None = None) -> str:
    """``template`` with each ``{slot}`` replaced by a value drawn from the catalogue (or a generated amount)."""
    values = load_catalog().slots if slots is None else slots

    def pick(match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot == "amount":
            return rng.choice(_AMOUNT_FORMATS).format(n=f"{rng.choice(_AMOUNT_VALUES):,}")
        if slot in values:
            return rng.choice(values[slot])
        return match.group(0)

    return _SLOT.sub(pick, template)


def _sentence(text: str) -> str:
    """Capitalised, ending in punctuation: how a template is joined to the pieces around it."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + ("?" if _looks_like_question(text) else ".")


_QUESTION_START = re.compile(r"^(how|what|why|where|when|can|could|is|are|do|does|did|will|has|have|which|whats)\b", re.I)


def _looks_like_question(text: str) -> bool:
    return bool(_QUESTION_START.match(text))


def _typo(word: str, rng: random.Random) -> str:
    """One keyboard slip: two letters swapped, a letter dropped or a letter doubled."""
    i = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind < 0.75:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def add_noise(text: str, rng: random.Random) -> str:
    """The way people actually type: case, punctuation, apostrophes, typos and shorthand."""
    if rng.random() < P_SHORTHAND:
        long, short = rng.choice(_SHORTHAND)
        text = re.sub(rf"\b{long}\b", short, text, count=1, flags=re.I)
    if rng.random() < P_TYPO:
        words = text.split(" ")
        candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 4]
        if candidates:
            i = rng.choice(candidates)
            words[i] = _typo(words[i], rng)
            text = " ".join(words)
    if rng.random() < P_NO_APOSTROPHES:
        text = text.replace("'", "")
    if rng.random() < P_LOWERCASE:
        text = text.lower()
    if rng.random() < P_NO_FINAL_PUNCT:
        text = text.rstrip(".?!")
    return text


class TrafficGenerator:
    """Draws customer prompts for a prompt version. The same seed gives the same sequence of prompts.

    Users come from a fixed pool with a long-tailed activity (a few users write a lot), and each
    user's messages are grouped in sessions, so the demo's events carry realistic user and session ids.
    """

    def __init__(self, seed: int = 0, users: int = 400) -> None:
        self.seed = seed
        self._rng = random.Random(f"llmsight-traffic-{seed}")
        self._catalog = load_catalog()
        self._users = [f"user-{i:05d}" for i in range(users)]
        # Zipf-like activity: user k writes about 1/(k+1)**0.8 as often as the most active user.
        self._user_weights = [1.0 / (k + 1) ** 0.8 for k in range(users)]
        self._sessions: dict[str, int] = {}
        self._mixes: dict[str, tuple[list[str], list[float]]] = {}

    def _mix(self, version: str) -> tuple[list[str], list[float]]:
        if version not in self._mixes:
            mix = intent_mix(version)
            names = sorted(mix)
            self._mixes[version] = (names, [mix[n] for n in names])
        return self._mixes[version]

    def _user_and_session(self) -> tuple[str, str]:
        rng = self._rng
        user = rng.choices(self._users, weights=self._user_weights)[0]
        count = self._sessions.get(user)
        if count is None or rng.random() < 0.3:
            count = 0 if count is None else count + 1
            self._sessions[user] = count
        return user, f"{user}-s{count}"

    def text_for(self, intent: Intent) -> str:
        """One phrasing of ``intent``: the bare question, sometimes with greeting, context and sign-off."""
        rng, catalog = self._rng, self._catalog
        first, second = rng.sample(intent.templates, 2)
        parts = [_sentence(fill(first, rng))]
        if intent.contexts and rng.random() < P_CONTEXT:
            contexts = rng.sample(intent.contexts, 2 if len(intent.contexts) > 1 and rng.random() < P_SECOND_CONTEXT else 1)
            for context in contexts:
                parts.insert(0 if rng.random() < 0.5 else len(parts), _sentence(fill(context, rng)))
        if rng.random() < P_STORY:
            parts.insert(0 if rng.random() < 0.7 else len(parts), _sentence(fill(rng.choice(catalog.stories), rng)))
        if rng.random() < P_SECOND_QUESTION:
            again = _sentence(fill(second, rng))
            parts.append(rng.choice(("Also, ", "And ")) + again[0].lower() + again[1:] if rng.random() < 0.5 else again)
        if rng.random() < P_OPENER:
            opener = rng.choice(catalog.openers)
            if opener.endswith(",") and not re.match(r"I\b", parts[0]):
                parts[0] = parts[0][0].lower() + parts[0][1:]  # "Hi, can I ..." not "Hi, Can I ..."
            parts.insert(0, opener)
        if rng.random() < P_CLOSER:
            parts.append(rng.choice(catalog.closers))
        return add_noise(" ".join(parts), rng)

    def next(self, version: str = "v1") -> Prompt:
        """The next customer prompt under ``version``."""
        names, weights = self._mix(version)
        intent = self._catalog.intents[self._rng.choices(names, weights=weights)[0]]
        text = self.text_for(intent)
        user, session = self._user_and_session()
        return Prompt(text=text, intent=intent.name, version=version, user_id=user, session_id=session,
                      new_topic=intent.is_new_in_v2)

    def batch(self, n: int, version: str = "v1") -> list[Prompt]:
        """``n`` prompts under ``version``."""
        return [self.next(version) for _ in range(n)]


def generate(n: int, version: str = "v1", seed: int = 0) -> list[Prompt]:
    """``n`` prompts under ``version`` from a fresh generator seeded with ``seed``."""
    return TrafficGenerator(seed).batch(n, version)
