"""What the toxicity path reads (emoji by name, obfuscated abuse spelled out) and the head's cache of
text features: no model is loaded (embeddings are random, the embedder is a counting fake)."""

import numpy as np
import pytest

from llmsight.analyzers import toxicity
from llmsight.analyzers.toxicity import HEAD_PATH, Head, ToxicityScorer, lexicon_hits, normalize, toxic_view


def test_emoji_are_read_by_their_names_with_skin_tones_and_flags():
    assert toxic_view("I would love to 🔪 some 👳🏾") == \
        "I would love to kitchen knife some man with turban medium-dark skin tone"
    assert toxic_view("they make me 🤢") == "they make me nauseated face"
    # Joiners and presentation selectors vanish; a flag's two letters read as one "flag".
    assert toxic_view("👨‍👩‍👧 at home 🇬🇧 ✔️") == "man woman girl at home flag heavy check mark"


def test_obfuscated_lexicon_words_are_spelled_out_and_nothing_else_changes():
    assert toxic_view("you are a f*cking b1tch!") == "you are a fucking bitch!"
    assert toxic_view("sh!t, what an a**hole, pu$$y") == "shit, what an asshole, pussy"
    assert toxic_view("n1gg3rs") == "niggers"
    # Emphasis stars around a word are not masking; codes, times, prices and words with digits stay.
    for text in ("*bitch who do you love*", "Meet at 10am in room 3b, cost $5, h264 or mp3, B2B, 4th",
                 "Fr33 m0ney", "Wow!! Great!", "C++ and C# are languages", "Plain text stays."):
        assert toxic_view(text) == normalize(text), text
    assert lexicon_hits([toxic_view("sh!t")])[0] > 0 and lexicon_hits(["sh!t"])[0] == 0


def test_plain_text_is_its_own_view():
    for text in ("Your card will arrive in 5 days.", "Café crème, s'il vous plaît — 3 €.", "日本語のテキスト"):
        assert toxic_view(text) == normalize(text)


class CountingEmbedder:
    """Random but fixed vectors per text, and a count of what was embedded."""

    name = "counting"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen.extend(texts)
        return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=384).astype(np.float32)
                         for t in texts])


@pytest.fixture()
def head():
    loaded = Head.load(HEAD_PATH)
    return loaded


def test_text_features_are_cached_by_text_and_equal_to_fresh_ones(head, monkeypatch):
    texts = ["You stupid idiot.", "Your card is on its way.", "You stupid idiot.", "f*ck off 🤬"]
    calls = []
    real = toxicity.TEXT_FEATURES["lexicon_hits"]
    monkeypatch.setitem(toxicity.TEXT_FEATURES, "lexicon_hits", lambda t: calls.append(list(t)) or real(t))
    rows, views = head.text_features(texts)
    assert calls == [["You stupid idiot.", "Your card is on its way.", "fuck off serious face with symbols covering mouth"]]
    assert views == [None, None, None, "fuck off serious face with symbols covering mouth"]
    again, views_again = head.text_features(list(reversed(texts)))
    assert len(calls) == 1 and views_again == list(reversed(views))
    np.testing.assert_array_equal(again, rows[::-1])
    fresh = Head.load(HEAD_PATH)  # a new head, an empty cache: the same figures computed afresh
    fresh._cache.clear()
    np.testing.assert_allclose(fresh.text_features(texts)[0], rows)
    assert len(calls) == 2
    head.clear_cache()
    head.text_features(texts[:1])
    assert len(calls) == 3 and calls[-1] == ["You stupid idiot."]


def test_the_feature_cache_is_bounded(head, monkeypatch):
    monkeypatch.setattr(toxicity, "FEATURE_CACHE_SIZE", 3)
    head.clear_cache()
    head.text_features([f"text number {i}" for i in range(10)])
    assert len(head._cache) == 3
    hits = head.cache_hits
    head.text_features(["text number 9", "text number 0"])
    assert head.cache_hits == hits + 1


def test_only_texts_with_emoji_or_obfuscation_get_a_second_vector():
    embedder = CountingEmbedder()
    scorer = ToxicityScorer(embedder=embedder, sentences=False, encoder=False)
    texts = ["Your card is on its way.", "I would love to 🔪 some 👳🏾", "what a b1tch", "Thanks!"]
    given = embedder.encode([normalize(t) for t in texts])
    embedder.seen.clear()
    scorer.score_embeddings(given, texts)
    assert embedder.seen == ["I would love to kitchen knife some man with turban medium-dark skin tone", "what a bitch"]
    # End to end, each text is embedded once, as the head reads it.
    embedder.seen.clear()
    scorer.score(texts)
    assert embedder.seen == [toxic_view(t) for t in texts]


def test_the_view_changes_the_score_of_emoji_hate():
    embedder = CountingEmbedder()
    scorer = ToxicityScorer(embedder=embedder, sentences=False, encoder=False)
    text = "those 🐒 should go back"
    plain = scorer.model.predict(embedder.encode([normalize(text)]), [text])
    read = scorer.score_embeddings(embedder.encode([normalize(text)]), [text])
    assert read[0] != plain[0]


def test_spaced_out_letters_are_joined_only_when_they_spell_a_lexicon_word():
    assert toxic_view("f u c k you") == "fuck you"
    assert toxic_view("you n i g g e r") == "you nigger"
    assert toxic_view("F U C K!") == "FUCK!"
    assert toxic_view("f.u.c.k off, s h 1 t, b-1-t-c-h, the f_u_c_k thing") == "fuck off, shit, bitch, the fuck thing"
    # A one-letter word in front stays a word of its own: "a bitch", not the inner stem of "abitch".
    assert toxic_view("I am a b i t c h") == "I am a bitch"
    assert toxic_view("I f u c k i n g hate it") == "I fucking hate it"
    assert lexicon_hits([toxic_view("f u c k")])[0] > 0 and lexicon_hits(["f u c k"])[0] == 0
    # Innocent spaced letters, initials and abbreviations stay as they are.
    for text in ("A B C", "I O U", "T V", "U.S.A.", "S O S", "x y z", "B B C news", "D N A test", "P S I love you",
                 "a.m. to p.m.", "Plan A B C", "room 1 2 3", "a b c d e f g", "e.g. this, i.e. that", "A-B-C"):
        assert toxic_view(text) == normalize(text), text


def test_spaced_letters_mixed_with_separators_or_words_are_not_joined():
    # One separator throughout; a letter glued to a word ends the run.
    assert toxic_view("f u.c k") == "f u.c k"
    assert toxic_view("fu c k") == "fu c k"


def test_the_views_to_embed_are_the_distinct_views_that_differ_from_their_text():
    # What the replicas' embedding phase embeds besides the texts: each view once, none for a plain text.
    scorer = ToxicityScorer(embedder=object())  # nothing is embedded here
    texts = ["No sh!t, the fee was refunded.", "Done \U0001F44D", "No sh!t, the fee was refunded.", "Plain text."]
    assert scorer.views_to_embed(texts) == [toxic_view(texts[0]), toxic_view(texts[1])]
    assert toxic_view(texts[1]) == "Done thumbs up sign"
