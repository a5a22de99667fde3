"""Toxicity: the probability that a text is hateful, abusive or offensive.

``ToxicityScorer().score(texts)`` returns one probability in [0, 1] per text. The default runs on
the CPU with nothing to download: a small head shipped in ``analyzers/data/toxicity_head.npz``
on top of two things the server install already has,

* the all-MiniLM-L6-v2 sentence embedding of the text (384 numbers; the scheduler passes the
  embeddings it has cached already, through :meth:`ToxicityScorer.score_embeddings`), and
* the probability given by alt-profanity-check, a linear model over word n-grams that knows slurs
  and profanity well, and
* the hits of a hand-written lexicon of profanity, slurs, dehumanising words and insults
  (``toxicity_lexicon.json``, :func:`lexicon_hits`).

The head adds four standardised signals: a logistic regression on the embeddings of
hand-written seed sentences (``toxicity_seeds.json`` and ``toxicity_anchors.json``; what carries it
to hate its training sources do not show), the profanity logit, the lexicon hits, and a logistic
regression on the embeddings of the two sources below. A text of several sentences also scores at least as high as
its worst sentence (``LLMSIGHT_TOXICITY_SENTENCES``).

Every text is read through its view (:func:`toxic_view`): emoji by their Unicode names (MiniLM knows
them only as [UNK]) and obfuscated lexicon words spelled out ("sh!t", "f*ck", "f u c k"). A text with neither is
its own view and keeps the vector the caller cached; the others get a second vector, of their view.
The text features (alt-profanity-check, the lexicon), the view and the sentences of each text are
computed once and kept in the head's bounded LRU by text hash (:meth:`Head.read`).
:func:`frame_hits` (refusing, denying, denouncing cues) is a feature a head may ask for; the shipped
one does not (measured in TOXICITY.md).

The head is trained by ``scripts/train-toxicity`` (deterministic) on two public data sets held in
``shared/data/toxicity`` and credited here as their licences ask:

* **Davidson et al. 2017**, "Automated Hate Speech Detection and the Problem of Offensive
  Language" (ICWSM), 24,783 tweets, MIT licence, t-davidson/hate-speech-and-offensive-language;
* **de Gibert et al. 2018**, "Hate Speech Dataset from a White Supremacy Forum" (ALW2),
  10,703 Stormfront sentences, CC BY-SA 3.0 ES, Vicomtech/hate-speech-dataset.

How well it generalises to hate it did not see (held out by source, over five sources), how it does
on the hand-written functional suite (:mod:`llmsight.analyzers.toxicity_suite`), and how its
threshold was chosen, is written in ``analyzers/data/TOXICITY.md`` and in the head's own metadata.

A cascade can follow the head: ``ToxicityScorer(encoder=PATH)`` (or a ``toxicity_encoder.npz`` put in
``analyzers/data/``) re-scores the texts the head does not clear with MiniLM whose top layer was
fine-tuned (:mod:`llmsight.analyzers.toxicity_encoder`; none ships: it did worse than the head, see
TOXICITY.md). :meth:`ToxicityScorer.categorise` names the kind of a flagged text (hate, abuse,
sexism, threat from an encoder; hate, abuse, profanity from the lexicon without one).

Any other model can be plugged in with ``ToxicityScorer(model=PATH)`` or ``LLMSIGHT_TOXICITY_MODEL``:

* a local Hugging Face text-classification folder (``config.json``, weights, tokenizer). The
  probability is that of the label named toxic/toxicity/hate/offensive/abusive, or one minus that
  of the label named non-toxic/neutral/normal/clean/none when the model only names the benign
  class; a multi-label model (``problem_type`` multi_label_classification) is read with a sigmoid;
* a Detoxify checkpoint (a ``.ckpt`` file holding ``config`` and ``state_dict``); its folder must
  also hold the base model's ``config.json`` and tokenizer files, since nothing is downloaded. The
  probability is Detoxify's ``toxicity`` output;
* another head file (``.npz``) written by ``scripts/train-toxicity``.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
import os
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmsight import config
from llmsight.analyzers import settings
from llmsight.errors import ConfigError

log = logging.getLogger("llmsight.analyzers.toxicity")

HEAD_PATH = Path(__file__).parent / "data" / "toxicity_head.npz"
HEAD_FORMAT = "llmsight-toxicity-head/1"

# -- text normalisation -------------------------------------------------------------------------
# The training texts are tweets (mentions, "RT", HTML entities, URLs) and tokenised forum
# sentences ("could n't", "word ,"). Scoring LLM outputs, neither artefact exists; stripping them
# from both sides keeps the head from learning "looks like a tweet" instead of "is abusive".
_ENTITY_NUM = re.compile(r"&#\d+;?")
_RETWEET = re.compile(r"^\s*(?:RT\s+)?(?:@\w+:?\s*)+", re.IGNORECASE)
_MENTION = re.compile(r"@\w+:?")
_URL = re.compile(r"https?://\S+|www\.\S+")
_RT = re.compile(r"\bRT\b")
_HASHTAG = re.compile(r"#(\w+)")
_SPACED_CLITIC = re.compile(r"\s+(n't|'s|'re|'ve|'ll|'m|'d)\b", re.IGNORECASE)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:])")
_REPEATED_PUNCT = re.compile(r"([!?.,])\1{2,}")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """The text as the head sees it: no mentions, URLs, retweet marks or tokeniser spacing."""
    value = _ENTITY_NUM.sub(" ", str(text))
    value = html.unescape(value)
    value = _URL.sub(" ", value)
    value = _RETWEET.sub(" ", value)
    value = _MENTION.sub(" ", value)
    value = _RT.sub(" ", value)
    value = _HASHTAG.sub(r"\1", value)
    value = _SPACED_CLITIC.sub(r"\1", value)
    value = _SPACE_BEFORE_PUNCT.sub(r"\1", value)
    value = _REPEATED_PUNCT.sub(r"\1\1", value)
    return _SPACES.sub(" ", value).strip(" :\"'")


# -- what the toxicity path reads: emoji by their names, obfuscated abuse spelled out ---------------
# MiniLM's vocabulary maps emoji to [UNK], so "I would love to <knife> some <man with turban>" reads as
# a harmless sentence; and "sh!t" or "f*ck" slip past the lexicon and alt-profanity-check. The view
# splices in each emoji's Unicode name (lower-cased; skin tones by their CLDR names) and spells out an
# obfuscated word when, and only when, the spelled-out word is one of the lexicon's. A text without
# such characters is its own view, so its cached embedding serves the head as before; only the others
# get a second vector (of the view).
_SKIN_TONES = {0x1F3FB: "light skin tone", 0x1F3FC: "medium-light skin tone", 0x1F3FD: "medium skin tone",
               0x1F3FE: "medium-dark skin tone", 0x1F3FF: "dark skin tone"}
# Joiners and presentation selectors carry no meaning of their own.
_EMOJI_GLUE = frozenset((0x200D, 0xFE0E, 0xFE0F, 0x20E3))
# Character substitutions of leetspeak and masking, as they stand inside a word.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
                       "!": "i", "|": "i", "+": "t", "€": "e"})
_MAYBE_OBFUSCATED = re.compile(r"[A-Za-z][0-9@$!|*+€]+\w|[0-9@$!|*+€]+[A-Za-z]{2}|[A-Za-z]{2}[*]")
_TOKEN = re.compile(r"\S+")
_TOKEN_EDGE = ".,;:?!*_\"'()[]{}<>"  # a masking star stands inside a word, emphasis around it
# Unicode names that say less than the emoji's common (CLDR) name.
_EMOJI_ALIASES = {"hocho": "kitchen knife", "pile of poo": "pile of poop", "face with tears of joy": "laughing face"}


def _is_emoji(code: int) -> bool:
    """A pictographic symbol (So) in the blocks emoji live in, not box drawing or letter-like signs."""
    return ((0x2190 <= code < 0x2500 or 0x25A0 <= code < 0x2C00 or 0x1F000 <= code < 0x1FB00)
            and unicodedata.category(chr(code)) == "So")


def _name_emoji(text: str) -> str:
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if code in _EMOJI_GLUE:
            continue
        if code < 0x2190:
            out.append(ch)
        elif code in _SKIN_TONES:
            out.append(f" {_SKIN_TONES[code]} ")
        elif 0x1F1E6 <= code <= 0x1F1FF:  # a flag is two regional indicator letters
            if not out or out[-1] != " flag ":
                out.append(" flag ")
        elif _is_emoji(code):
            name = unicodedata.name(ch, "").lower()
            out.append(f" {_EMOJI_ALIASES.get(name, name)} ")
        else:
            out.append(ch)
    return _SPACES.sub(" ", "".join(out)).strip()


def _as_lexicon_word(core: str) -> str | None:
    """``core`` spelled out ("sh!t" -> "shit", "a**hole" -> "asshole") when that is a lexicon word, else None."""
    if len(core) < 3 or not any(c.isalpha() for c in core):
        return None
    word = _lexicon_word()
    base = core.translate(_LEET)
    for candidate in ([base.replace("*", v) for v in "aeious"] if "*" in base else [base]):
        if word.fullmatch(candidate):
            return candidate
    return None


def _spell_out(token: str) -> str:
    """``token`` with an obfuscated lexicon word spelled out ("sh!t," -> "shit,"), else unchanged."""
    core = token.strip(_TOKEN_EDGE)
    candidate = _as_lexicon_word(core)
    if candidate is None:
        return token
    start = token.index(core)
    return token[:start] + candidate + token[start + len(core):]


# Spaced-out letters ("f u c k", "n.i.g.g.e.r", "b-1-t-c-h"): three or more single characters, one
# separator throughout, standing alone. Joined only when the joined word is one of the lexicon's (the
# rule of the leetspeak), so "A B C", "I O U" or "U.S.A." stay as they are.
_SPACED = re.compile(r"(?<![\w@$])[A-Za-z0-9@$](?:([ .\-_])[A-Za-z0-9@$])(?:\1[A-Za-z0-9@$])+(?![\w@$])")
# Single-letter English words that may stand right before spaced-out letters ("a b i t c h").
_ONE_LETTER_WORDS = frozenset("aAiIuU")


def _join_spaced(match: re.Match[str]) -> str:
    """The spaced-out letters of ``match`` joined when they spell a lexicon word, else unchanged."""
    units = match.group(0).split(match.group(1))
    if units[0] in _ONE_LETTER_WORDS and len(units) > 3:  # "a b i t c h" is "a bitch", not "abitch"
        word = _as_lexicon_word("".join(units[1:]))
        if word is not None:
            return f"{units[0]} {word}"
    word = _as_lexicon_word("".join(units))
    return word if word is not None else match.group(0)


def toxic_view(text: str) -> str:
    """The text as the toxicity path reads it: :func:`normalize`, emoji named, obfuscated words (leetspeak,
    masking, spaced-out letters) spelled out when they spell a lexicon word."""
    return _read(normalize(text))


def _read(value: str) -> str:
    """:func:`toxic_view` of a text already normalised."""
    if not value.isascii():
        value = _name_emoji(value)
    if _SPACED.search(value):
        value = _SPACED.sub(_join_spaced, value)
    if _MAYBE_OBFUSCATED.search(value):
        value = _TOKEN.sub(lambda m: _spell_out(m.group(0)), value)
    return value


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
MAX_SENTENCES = 12


def split_sentences(text: str) -> list[str]:
    """The sentences of a text worth scoring alone (two words or more; at most MAX_SENTENCES)."""
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if len(p.split()) >= 2][:MAX_SENTENCES]


def in_holdout(text: str, percent: int = 15) -> bool:
    """Whether a (normalised) training text belongs to the held-out split, decided by its hash.

    ``scripts/train-toxicity`` never trains on these; the integration test scores them. A hash
    rather than a random split keeps duplicates on one side and needs no stored index.
    """
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100 < percent


def profanity_logits(texts: Sequence[str]) -> np.ndarray:
    """alt-profanity-check's probability of each (normalised) text, as a clipped logit."""
    from profanity_check import predict_prob  # loads its two joblib files once, on first import

    if len(texts) == 0:
        return np.zeros(0, dtype=np.float64)
    p = np.clip(np.asarray(predict_prob(list(texts)), dtype=np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


LEXICON_PATH = Path(__file__).parent / "data" / "toxicity_lexicon.json"
_ENDINGS = r"(?:s|es|ed|ing|in|er|ers|y|a|az|z)?"


@functools.cache
def _lexicon_patterns() -> list[re.Pattern[str]]:
    """One pattern per kind of ``toxicity_lexicon.json``: whole words with common endings, and inner stems."""
    stored = json.loads(LEXICON_PATH.read_text())
    patterns = []
    for kind, words in stored["words"].items():
        ordered = sorted(set(words), key=len, reverse=True)
        pattern = r"\b(?:" + "|".join(re.escape(w).replace(r"\-", "[- ]?") for w in ordered) + r")" + _ENDINGS + r"\b"
        inner = sorted(set(stored["inner"].get(kind, [])), key=len, reverse=True)
        if inner:
            pattern += r"|\w*(?:" + "|".join(re.escape(stem) for stem in inner) + r")\w*"
        patterns.append(re.compile(pattern, re.IGNORECASE))
    return patterns


@functools.cache
def _lexicon_word() -> re.Pattern[str]:
    """One word of the lexicon, any kind (with its endings, or holding an inner stem), matched whole."""
    stored = json.loads(LEXICON_PATH.read_text())
    words = sorted({w for kind in stored["words"].values() for w in kind}, key=len, reverse=True)
    inner = sorted({w for kind in stored["inner"].values() for w in kind}, key=len, reverse=True)
    pattern = r"(?:" + "|".join(re.escape(w).replace(r"\-", "[- ]?") for w in words) + r")" + _ENDINGS
    if inner:
        pattern += r"|\w*(?:" + "|".join(re.escape(stem) for stem in inner) + r")\w*"
    return re.compile(pattern, re.IGNORECASE)


def lexicon_hits(texts: Sequence[str]) -> np.ndarray:
    """For each (normalised) text, the sum over the lexicon's kinds of log(1 + words of that kind).

    The lexicon (``toxicity_lexicon.json``) is hand-written: profanity, slurs, dehumanising words
    and insults. It lets a head know crude abuse without alt-profanity-check, which has seen
    Davidson's tweets, so that the cross-source figure on Davidson can be measured honestly.
    """
    patterns = _lexicon_patterns()
    return np.array([sum(np.log1p(len(p.findall(t))) for p in patterns) for t in texts], dtype=np.float64)


# The lexicon's kinds as kinds of toxicity, most telling first (a slur says more than a swear word).
_LEXICON_KIND = {"slur": "hate", "dehumanising": "hate", "insult": "abuse", "profanity": "profanity"}


def lexicon_kinds(texts: Sequence[str]) -> list[str]:
    """For each (normalised) text, the kind of toxicity its lexicon words show; "toxic" for none."""
    kinds = list(json.loads(LEXICON_PATH.read_text())["words"])
    patterns = dict(zip(kinds, _lexicon_patterns(), strict=True))
    order = [k for k in _LEXICON_KIND if k in patterns]
    return [next((_LEXICON_KIND[k] for k in order if patterns[k].search(t)), "toxic") for t in texts]


def _profanity_hits(texts: Sequence[str]) -> list[bool]:
    """Whether each (normalised) text holds a word of the lexicon's profanity kind."""
    stored = json.loads(LEXICON_PATH.read_text())
    pattern = _lexicon_patterns()[list(stored["words"]).index("profanity")]
    return [bool(pattern.search(t)) for t in texts]


def blend_scores(head: np.ndarray, encoder: np.ndarray) -> np.ndarray:
    """The cascade's blend: the sigmoid of the mean of the head's and the encoder's logits."""
    h = np.clip(np.asarray(head, dtype=np.float64), 1e-6, 1 - 1e-6)
    e = np.clip(np.asarray(encoder, dtype=np.float64), 1e-6, 1 - 1e-6)
    return _sigmoid(0.5 * (np.log(h / (1 - h)) + np.log(e / (1 - e))))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


# -- the shipped head ---------------------------------------------------------------------------
# The text features a head may read after the embedding (each of normalised texts), in the order its
# metadata lists them; scripts/train-toxicity computes its training features from the same table.
# -- framing: a text that refuses, denies or denounces what it names ----------------------------
# Written from issue 16's definitions of the hard negatives (an assistant refusing a hateful request
# while naming it, counter-speech, negation, quoting to denounce), not from the functional suite's
# sentences. Each cue counts once; the feature is log(1 + cues).
_FRAME_CUES = [re.compile(p, re.IGNORECASE) for p in (
    # refusing
    r"\b(?:I|we)\s*(?:can'?t|cannot|can not|won'?t|will not|am not able to|'m not able to|must decline|"
    r"have to decline|refuse to|don'?t (?:write|produce|create|generate|help))\b",
    r"\b(?:I'?m|I am) (?:sorry|afraid)\b",
    r"\b(?:instead|glad to help|happy to help|respectful)\b",
    # denying
    r"\b(?:I|we)\s+(?:don'?t|do not|never|didn'?t)\s+(?:think|believe|agree|say|said|claim)\b",
    r"\b(?:not true|isn'?t true|no evidence|not all|a myth|false claim|simply false|untrue)\b",
    # denouncing
    r"\b(?:is|are|was|that'?s|it'?s|sounds)\s+(?:wrong|hateful|racist|sexist|bigoted|offensive|unacceptable|"
    r"harmful|hurtful|cruel|disgusting|vile|prejudiced)\b",
    r"\b(?:stereotyp|prejudic|bigotry|hate speech|dehumani[sz]|discriminat|condemn|denounc)\w*",
    r"\b(?:banned|suspended|reported|removed|fired|flagged)\b",
)]


def frame_hits(texts: Sequence[str]) -> np.ndarray:
    """For each (normalised) text, log(1 + the framing cues it holds): refusing, denying, denouncing."""
    return np.array([np.log1p(sum(1 for cue in _FRAME_CUES if cue.search(t))) for t in texts], dtype=np.float64)


TEXT_FEATURES = {"profanity_logit": profanity_logits, "lexicon_hits": lexicon_hits, "frame_hits": frame_hits}


# Texts whose text features (and view) a head keeps, most recently used first: a window's sample of
# a few thousand texts many times over, at about 100 bytes a text.
FEATURE_CACHE_SIZE = 50_000


def _text_key(text: str) -> bytes:
    return hashlib.blake2b(str(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Head:
    """A small numpy network over [embedding, text features]: standardise, dense layers, calibrate.

    The text features are those of ``metadata["features"]`` after ``minilm``: ``profanity_logit``
    (alt-profanity-check) and ``lexicon_hits`` (:func:`lexicon_hits`).

    Stored as ``.npz`` (no pickle): ``mean``, ``scale``, ``W0``/``b0`` ... ``W{k}``/``b{k}``
    (ReLU between layers), ``calibration`` = (a, b) of the Platt step ``sigmoid(a * z + b)`` and
    ``metadata``, a JSON string with the features, the threshold, the data and the figures.
    """

    def __init__(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        self.mean = arrays["mean"].astype(np.float32)
        self.scale = arrays["scale"].astype(np.float32)
        self.layers = [(arrays[f"W{i}"].astype(np.float32), arrays[f"b{i}"].astype(np.float32))
                       for i in range(int(metadata["layers"]))]
        self.calibration = tuple(float(v) for v in arrays["calibration"])
        self.metadata = metadata
        self.embedding_dim = int(metadata["embedding_dim"])
        self.extra_features = [f for f in metadata["features"] if f != "minilm"]
        self._cache: OrderedDict[bytes, tuple[np.ndarray, str | None, tuple[str, ...]]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_hits = 0
        unknown = set(self.extra_features) - set(TEXT_FEATURES)
        if unknown:
            raise ConfigError(f"toxicity head needs features this llmsight does not have: {sorted(unknown)}")

    @classmethod
    def load(cls, path: str | Path) -> Head:
        with np.load(Path(path), allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        if str(arrays.get("format")) != HEAD_FORMAT:
            raise ConfigError(f"{path} is not a toxicity head (format {HEAD_FORMAT} expected)")
        return cls(arrays, json.loads(str(arrays["metadata"])))

    @staticmethod
    def save(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        payload = {key: np.asarray(value) for key, value in arrays.items()}
        payload["format"] = np.array(HEAD_FORMAT)
        payload["metadata"] = np.array(json.dumps(metadata, sort_keys=True))
        np.savez_compressed(Path(path), **payload)

    def features(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.embedding_dim:
            raise ValueError(f"expected embeddings of shape (n, {self.embedding_dim}), got {emb.shape}")
        if not self.extra_features:
            return emb
        return np.hstack([emb, self.text_features(texts)[0]])

    def text_features(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
        """The text features of each text (rows in the order of ``extra_features``) and its view
        (:func:`toxic_view`) when that differs from :func:`normalize` (emoji, obfuscation), else None."""
        rows, views, _ = self.read(texts)
        return rows, views

    def read(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str | None], list[tuple[str, ...]]]:
        """:meth:`text_features`, and the sentences of each text's view when it has more than one
        (:func:`split_sentences`; an empty tuple otherwise).

        All three are kept in a bounded LRU by text hash (FEATURE_CACHE_SIZE texts), like the embedding
        cache keeps vectors: alt-profanity-check and the lexicon's expressions are most of the head's
        own cost, and a window scores many texts the windows before it scored.
        """
        keys = [_text_key(t) for t in texts]
        rows = np.zeros((len(keys), len(self.extra_features)), dtype=np.float32)
        views: list[str | None] = [None] * len(keys)
        parts: list[tuple[str, ...]] = [()] * len(keys)
        missing: dict[bytes, list[int]] = {}
        with self._cache_lock:
            for i, key in enumerate(keys):
                hit = self._cache.get(key)
                if hit is None:
                    missing.setdefault(key, []).append(i)
                else:
                    self._cache.move_to_end(key)
                    rows[i], views[i], parts[i] = hit
        self.cache_hits += len(keys) - sum(len(v) for v in missing.values())
        if not missing:
            return rows, views, parts
        first = [str(texts[owners[0]]) for owners in missing.values()]
        cleaned = [normalize(t) for t in first]
        read = [_read(c) for c in cleaned]
        computed = (np.stack([TEXT_FEATURES[name](read).astype(np.float32) for name in self.extra_features], axis=1)
                    if self.extra_features else np.zeros((len(read), 0), dtype=np.float32))
        special = [r if r != c else None for r, c in zip(read, cleaned, strict=True)]
        sentences = [tuple(split) if len(split := split_sentences(r)) > 1 else () for r in read]
        with self._cache_lock:
            for (key, owners), row, view, split in zip(missing.items(), computed, special, sentences, strict=True):
                self._cache[key] = (row, view, split)
                for i in owners:
                    rows[i], views[i], parts[i] = row, view, split
            while len(self._cache) > FEATURE_CACHE_SIZE:
                self._cache.popitem(last=False)
        return rows, views, parts

    def clear_cache(self) -> None:
        """Forget the cached text features (the bench measures the head with and without them)."""
        with self._cache_lock:
            self._cache.clear()

    def logits(self, features: np.ndarray) -> np.ndarray:
        x = (features - self.mean) / self.scale
        for i, (weights, bias) in enumerate(self.layers):
            x = x @ weights + bias
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return x[:, 0].astype(np.float64)

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        a, b = self.calibration
        return _sigmoid(a * self.logits(self.features(embeddings, texts)) + b)


# -- plugged-in models --------------------------------------------------------------------------
_TOXIC_LABEL = re.compile(r"^(toxic|toxicity|hate|hateful|hate[_ ]speech|offensive|abusive|abuse|insult|"
                          r"label_1)$", re.IGNORECASE)
_BENIGN_LABEL = re.compile(r"^(non[-_ ]?toxic|not[-_ ]?toxic|neutral|normal|clean|none|neither|"
                           r"non[-_ ]?hate|not[-_ ]?hate|nothate|non[-_ ]?offensive|not[-_ ]?offensive|"
                           r"ok|safe|label_0)$", re.IGNORECASE)


def _offline() -> None:
    # Weights are local; a hub lookup would hang or fail without a network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class _TransformerClassifier:
    """A local text-classification model (Hugging Face folder or Detoxify checkpoint) run by torch."""

    def __init__(self, model: Any, tokenizer: Any, read: Any, batch_size: int = 32, max_length: int = 256) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.read = read  # logits tensor -> probabilities of "toxic", numpy
        self.batch_size = batch_size
        self.max_length = max_length

    def score(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(list(texts[i:i + self.batch_size]), return_tensors="pt", truncation=True,
                                       padding=True, max_length=self.max_length)
                out.append(self.read(self.model(**batch).logits))
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def _toxic_reader(id2label: dict[int, str], multi_label: bool) -> Any:
    """How to turn a model's logits into P(toxic), from its label names."""
    import torch

    labels = {int(k): str(v) for k, v in id2label.items()}
    toxic = [i for i, name in labels.items() if _TOXIC_LABEL.match(name.strip())]
    benign = [i for i, name in labels.items() if _BENIGN_LABEL.match(name.strip())]
    named_toxic = [i for i in toxic if labels[i].lower() != "label_1"]
    if named_toxic:
        toxic = named_toxic[:1]
    if multi_label:
        if toxic:
            return lambda logits: torch.sigmoid(logits[:, toxic[0]]).numpy()
        return lambda logits: torch.sigmoid(logits).max(dim=1).values.numpy()
    if toxic and (len(labels) == 2 or not benign):
        return lambda logits: torch.softmax(logits, dim=1)[:, toxic].sum(dim=1).numpy()
    if benign:
        return lambda logits: 1.0 - torch.softmax(logits, dim=1)[:, benign[0]].numpy()
    raise ConfigError(f"cannot tell which label means toxic among {sorted(labels.values())}: name one "
                      "toxic/hate/offensive or non-toxic/neutral in the model's config.json id2label")


def _load_hf_folder(path: Path) -> _TransformerClassifier:
    _offline()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    multi = getattr(model.config, "problem_type", None) == "multi_label_classification"
    return _TransformerClassifier(model, tokenizer, _toxic_reader(model.config.id2label, multi))


def _load_detoxify(path: Path) -> _TransformerClassifier:
    """A Detoxify checkpoint, loaded with transformers alone (the detoxify package would download)."""
    _offline()
    import torch
    import transformers

    loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    if "config" not in loaded or "state_dict" not in loaded:
        raise ConfigError(f"{path} is not a Detoxify checkpoint: it needs 'config' and 'state_dict'")
    args = loaded["config"]["arch"]["args"]
    # Detoxify's own renaming, so that "toxic" of the original model reads as "toxicity".
    classes = [{"toxic": "toxicity"}.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]]
    if "toxicity" not in classes:
        raise ConfigError(f"{path} has no toxicity output (classes: {classes})")
    folder = path.parent
    if not (folder / "config.json").is_file():
        raise ConfigError(f"put the base model's config.json and tokenizer files next to {path}: "
                          "nothing is downloaded")
    hf_config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    hf_config.num_labels = int(args["num_classes"])
    model = getattr(transformers, args["model_name"])(hf_config)
    model.load_state_dict(loaded["state_dict"], strict=False)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    column = classes.index("toxicity")
    return _TransformerClassifier(model, tokenizer, lambda logits: torch.sigmoid(logits[:, column]).numpy())


# -- the scorer ---------------------------------------------------------------------------------
_loaded: dict[str, Any] = {}
_loaded_lock = threading.Lock()


def _load(path: Path) -> Any:
    key = str(path)
    with _loaded_lock:
        if key not in _loaded:
            started = time.perf_counter()
            if path.suffix == ".npz":
                _loaded[key] = Head.load(path)
            elif path.is_dir():
                _loaded[key] = _load_hf_folder(path)
            elif path.suffix in (".ckpt", ".pt", ".pth", ".bin"):
                _loaded[key] = _load_detoxify(path)
            else:
                raise ConfigError(f"toxicity model {path}: expected a Hugging Face folder, a Detoxify .ckpt "
                                  "or a .npz head")
            log.info("toxicity: loaded %s in %.0f ms", path.name, (time.perf_counter() - started) * 1000)
        return _loaded[key]


def _sentence_pieces(texts: list[str], head: Head) -> list[tuple[int, str]]:
    """(owner, sentence of its view) for every sentence of each multi-sentence text (cached by the head)."""
    return [(i, part) for i, parts in enumerate(head.read(texts)[2]) for part in parts]


class ToxicityScorer:
    """Texts in, probabilities of toxicity out.

    ``model``: None for the setting ``LLMSIGHT_TOXICITY_MODEL``, which by default is the shipped
    head; or a path (see the module docstring). ``threshold``: None for
    ``LLMSIGHT_TOXICITY_THRESHOLD``. ``embedder``: what embeds texts for the shipped head in
    :meth:`score` and for sentences (by default :class:`llmsight.analyzers.embeddings.Embedder`).
    ``sentences``: None for ``LLMSIGHT_TOXICITY_SENTENCES``; when on, a text scores at least as
    high as its most toxic sentence, so one insult is not diluted by a polite paragraph around it.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, threshold: float | None = None,
                 embedder: Any = None, sentences: bool | None = None,
                 encoder: bool | str | os.PathLike[str] | None = None) -> None:
        chosen = model if model is not None else config.resolve(settings.TOXICITY_MODEL, strict=True)
        path = Path(chosen).expanduser().resolve() if chosen else HEAD_PATH
        if not path.exists():
            raise ConfigError(f"toxicity model {path} does not exist: set LLMSIGHT_TOXICITY_MODEL to a local "
                              "Hugging Face folder, a Detoxify .ckpt or a .npz head, or leave it empty")
        self.path = path
        self.model = _load(path)
        # The cascade's second stage (toxicity_encoder): by default with the shipped head only, when shipped.
        from llmsight.analyzers.toxicity_encoder import ENCODER_PATH

        if encoder is None or encoder is True:
            encoder_path = ENCODER_PATH if (path == HEAD_PATH.resolve() and ENCODER_PATH.is_file()) else None
            if encoder is True and encoder_path is None:
                raise ConfigError(f"no toxicity encoder at {ENCODER_PATH} for the head {path.name}")
        else:
            encoder_path = Path(encoder).expanduser().resolve() if encoder is not False else None
        if encoder_path is not None and not isinstance(self.model, Head):
            raise ConfigError("the toxicity encoder is the second stage of the shipped head's cascade; "
                              f"{path.name} is not a head")
        self.encoder_path = encoder_path
        self._encoder: Any = None
        if threshold is None:
            threshold = config.resolve(settings.TOXICITY_THRESHOLD, strict=True)
        if threshold is None:
            # The shipped head carries the threshold chosen when it was trained (see its metadata).
            threshold = self.model.metadata.get("threshold", 0.5) if isinstance(self.model, Head) else 0.5
        self.threshold = float(threshold)
        self._embedder = embedder
        self.sentences = bool(sentences if sentences is not None
                              else config.resolve(settings.TOXICITY_SENTENCES, strict=True))

    @property
    def uses_embeddings(self) -> bool:
        """True when the model reads MiniLM embeddings (so cached ones can be passed in)."""
        return isinstance(self.model, Head)

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from llmsight.analyzers.embeddings import Embedder

            self._embedder = Embedder()
        return self._embedder

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """P(toxic) of each text, float64 in [0, 1]."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros(0)
        if not isinstance(self.model, Head):
            return self.model.score(texts)
        # Each text embedded once, as the head reads it (its view: emoji named, obfuscation spelled out).
        views = self.model.text_features(texts)[1]
        read = [view if view is not None else normalize(t) for t, view in zip(texts, views, strict=True)]
        return self._score_rows(self.embedder.encode(read), texts, None, views_embedded=True)

    def score_embeddings(self, embeddings: np.ndarray, texts: Sequence[str], *,
                         sentence_vectors: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Like :meth:`score`, reusing the texts' MiniLM embeddings (rows in the order of ``texts``).

        With ``sentences`` on, a text of several sentences also gets the score of its most toxic
        sentence, which needs those sentences embedded: taken from ``sentence_vectors`` (keyed by
        the sentences :meth:`sentences_to_embed` lists, so a caller can embed them in one batch with
        everything else), else through ``embedder`` (pass an
        :class:`~llmsight.analyzers.embeddings.EmbeddingCache` so that repeated sentences are
        embedded once). A plugged-in model that does not read embeddings scores the texts themselves.
        """
        texts = [str(t) for t in texts]
        if not isinstance(self.model, Head):
            return self.score(texts)
        if len(texts) != len(embeddings):
            raise ValueError(f"{len(embeddings)} embeddings for {len(texts)} texts")
        return self._score_rows(np.asarray(embeddings), texts, sentence_vectors, views_embedded=False)

    def _score_rows(self, embeddings: np.ndarray, texts: list[str], sentence_vectors: Mapping[str, np.ndarray] | None,
                    *, views_embedded: bool) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        assert isinstance(self.model, Head)
        if not views_embedded:
            # A text with emoji or obfuscated words is read through its view, which needs a vector of
            # its own (through the embedder, so an EmbeddingCache embeds it once); the others keep theirs.
            views = self.model.text_features(texts)[1]
            special = [i for i, view in enumerate(views) if view is not None]
            if special:
                embeddings = np.array(embeddings, dtype=np.float32, copy=True)
                embeddings[special] = self.embedder.encode([str(views[i]) for i in special])
        whole = self._cascade(self.model.predict(embeddings, texts), texts)
        if not self.sentences:
            return whole
        return np.maximum(whole, self._worst_sentence(texts, sentence_vectors))

    @property
    def encoder(self) -> Any:
        """The fine-tuned encoder of the cascade (loaded on first use), or None without one."""
        if self._encoder is None and self.encoder_path is not None:
            from llmsight.analyzers import toxicity_encoder

            self._encoder = toxicity_encoder.load(self.encoder_path)
        return self._encoder

    @property
    def cascade_clear(self) -> float:
        """Head scores below this are final; the encoder re-scores the rest (its metadata's rule)."""
        return float(self.encoder.metadata["cascade_clear"]) if self.encoder is not None else 0.0

    def _cascade(self, head: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """The head's scores, with those it does not clear replaced by the encoder's."""
        if self.encoder_path is None:
            return head
        rescore = np.flatnonzero(head >= self.cascade_clear)
        if len(rescore) == 0:
            return head
        out = head.copy()
        encoder = self.encoder.score([normalize(texts[int(i)]) for i in rescore])[0]
        # How the two stages combine is the encoder's own (its metadata, chosen by scripts/train-toxicity).
        blend = self.encoder.metadata.get("cascade_combine", "encoder") == "blend"
        out[rescore] = blend_scores(head[rescore], encoder) if blend else encoder
        return out

    def categorise(self, texts: Sequence[str]) -> list[str]:
        """The kind of toxicity of each (flagged) text: hate, abuse, sexism, threat or profanity.

        From the encoder's category output (trained where the sources name the kind); "profanity"
        when the encoder calls the text benign but the lexicon finds profanity, which is how
        swearing that attacks no one is told apart. Without an encoder, from the lexicon's kinds
        (:func:`lexicon_kinds`), and "toxic" when no word of it is in the text.
        """
        texts = [str(t) for t in texts]
        if not texts:
            return []
        cleaned = [toxic_view(t) for t in texts]
        if self.encoder is None:
            return lexicon_kinds(cleaned)
        probability, kinds = self.encoder.score(cleaned)
        profane = _profanity_hits(cleaned)
        return [("profanity" if p < self.threshold and swore else self.encoder.categories[int(np.argmax(k))])
                for p, k, swore in zip(probability, kinds, profane, strict=True)]

    def views_to_embed(self, texts: Sequence[str]) -> list[str]:
        """The distinct views (:func:`toxic_view`) of ``texts`` that differ from the text itself (emoji,
        obfuscated words): the second vectors :meth:`score_embeddings` asks its embedder for."""
        if not isinstance(self.model, Head):
            return []
        return list(dict.fromkeys(view for view in self.model.text_features([str(t) for t in texts])[1]
                                  if view is not None))

    def sentences_to_embed(self, texts: Sequence[str]) -> list[str]:
        """The distinct sentences :meth:`score_embeddings` needs embedded for ``texts`` (none when
        the sentence pass is off or the model does not read embeddings)."""
        if not self.sentences or not isinstance(self.model, Head):
            return []
        return list(dict.fromkeys(piece for _, piece in _sentence_pieces([str(t) for t in texts], self.model)))

    def _worst_sentence(self, texts: list[str], vectors: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The highest sentence score of each text (0 for a text of one sentence)."""
        assert isinstance(self.model, Head)
        pieces = _sentence_pieces(texts, self.model)
        worst = np.zeros(len(texts))
        if pieces:
            distinct = list(dict.fromkeys(piece for _, piece in pieces))
            embedded = (np.stack([vectors[p] for p in distinct]) if vectors is not None
                        else self.embedder.encode(distinct))
            scores = dict(zip(distinct, self._cascade(self.model.predict(embedded, distinct), distinct), strict=True))
            np.maximum.at(worst, np.array([owner for owner, _ in pieces]),
                          np.array([scores[p] for _, p in pieces]))
        return worst

    def is_toxic(self, probabilities: np.ndarray) -> np.ndarray:
        """Which probabilities count as toxic (at or above the threshold)."""
        return np.asarray(probabilities) >= self.threshold
