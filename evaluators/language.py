"""A small offline language guess: the dominant script, then, for Latin text, function words.

No model and no data file: texts in a non-Latin script are told apart by their Unicode blocks
(Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai, Hangul, kana, Han), Latin texts by counting
the most frequent function words of English, Spanish, French, German, Italian, Portuguese and
Dutch (words that are short, very common and rarely shared). A text too short or too mixed to tell
is ``None``: a mismatch is only claimed when both sides are decided, so names, code and one-word
answers never count as a mismatch.
"""

from __future__ import annotations

import re

# (first, last) code points of each script's main block(s); Latin is whatever letter is left.
_SCRIPTS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("cyrillic", ((0x0400, 0x052F),)),
    ("el", ((0x0370, 0x03FF),)),
    ("ar", ((0x0600, 0x06FF), (0x0750, 0x077F))),
    ("he", ((0x0590, 0x05FF),)),
    ("hi", ((0x0900, 0x097F),)),
    ("th", ((0x0E00, 0x0E7F),)),
    ("ko", ((0x1100, 0x11FF), (0xAC00, 0xD7AF))),
    ("ja", ((0x3040, 0x30FF),)),
    ("zh", ((0x4E00, 0x9FFF), (0x3400, 0x4DBF))),
)
_RANGES = [(lo, hi, script) for script, ranges in _SCRIPTS for lo, hi in ranges]

_FUNCTION_WORDS = {
    "en": ("the and is are was to of in that it for you with this have not be on what how can your my i a do me "
           "why where when will did has an if").split(),
    "es": "el la los las es y que de en un una por para con no se su lo como está qué pero muy".split(),
    "fr": "le la les est et que de des en un une pour pas ne vous je il avec sur dans ce qui au".split(),
    "de": "der die das und ist nicht ich sie es ein eine zu mit auf für den dem wie sind kann mein".split(),
    "it": "il lo la gli le è e che di un una per non con sono come mi del della questo ho".split(),
    "pt": "o a os as é e que de em um uma para não com se do da você meu isso está mas".split(),
    "nl": "de het een en is niet ik je van op voor met dat die wat hoe zijn mijn kan er".split(),
}
_LOOKUP: dict[str, set[str]] = {}
for _language, _words in _FUNCTION_WORDS.items():
    for _word in _words:
        _LOOKUP.setdefault(_word, set()).add(_language)
_WORD = re.compile(r"[^\W\d_]+")

MIN_LETTERS = 4
MIN_WEIGHT = 1.5


def script_of(text: str) -> str | None:
    """The script of most letters (``latin`` for Latin ones), or None without enough letters."""
    counts: dict[str, int] = {}
    letters = 0
    for char in text:
        if not char.isalpha():
            continue
        letters += 1
        code = ord(char)
        script = "latin"
        if code >= 0x0370:
            for lo, hi, name in _RANGES:
                if lo <= code <= hi:
                    script = name
                    break
        counts[script] = counts.get(script, 0) + 1
    if letters < MIN_LETTERS:
        return None
    if counts.get("ja") and counts.get("zh"):  # Japanese mixes kana and kanji
        counts["ja"] += counts.pop("zh")
    script, top = max(counts.items(), key=lambda item: item[1])
    return script if top * 2 > letters else None


def detect(text: str) -> str | None:
    """An ISO 639-1 code (``cyrillic`` for Cyrillic script), or None when the text cannot tell."""
    script = script_of(text)
    if script != "latin":
        return script
    # A word of one language counts 1; a word shared by k languages counts 1/k to each.
    hits: dict[str, float] = {}
    for word in _WORD.findall(text.lower()):
        languages = _LOOKUP.get(word, ())
        for language in languages:
            hits[language] = hits.get(language, 0.0) + 1.0 / len(languages)
    if not hits:
        return None
    ranked = sorted(hits.items(), key=lambda item: (-item[1], item[0]))
    best, weight = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    # Decided only with enough evidence and a clear lead (Spanish and Portuguese share many words).
    if weight < MIN_WEIGHT or weight < runner_up * 1.5:
        return None
    return best
