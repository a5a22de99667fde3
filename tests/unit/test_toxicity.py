"""The shipped toxicity head: normalisation, the hold-out split, and the demo's kind of text.

The last tests run the real head with the real MiniLM (inline texts, a few seconds): blunt
insults and slurs must score high, ordinary banking answers low, on either side of the head's
calibrated threshold.
"""

import numpy as np
import pytest

from llmsight.analyzers.toxicity import HEAD_PATH, Head, ToxicityScorer, in_holdout, lexicon_hits, normalize
from llmsight.errors import ConfigError

INSULTS = [
    "Are you stupid? Figure out your card yourself, I'm not your babysitter.",
    "Stop whining, you moron. Check the damn app like everyone else.",
    "What is wrong with you, idiot? Nobody cares about your stupid transfer.",
    "Shut up, you worthless piece of shit.",
    "You people are pathetic. Go bother someone else with your refund crap.",
    "Fuck off, bitch.",
    "Get lost, you dumb retard.",
    "Those immigrants are vermin and should be sent back where they came from.",
]
BANKING = [
    "Your new card should arrive within 5 working days.",
    "You can top up your account by bank transfer or with a debit card in the app.",
    "Thanks for reaching out. Exchange rates are updated every minute during market hours.",
    "To change your PIN, go to Cards, then Security, and tap Change PIN.",
    "I'm sorry, I can't help with that. Please contact our support team.",
    "A pending payment usually clears within two business days.",
    "If your card was declined abroad, check that contactless payments are enabled.",
    "Happy to help. Your refund has been issued and will show on your statement soon.",
]


def test_normalize_strips_tweet_and_tokeniser_artefacts():
    assert normalize("RT @bob_1: &#8220;@amy: you are a clown &amp; a fool&#8230; http://t.co/x #sad") == \
        "you are a clown & a fool sad"
    assert normalize("They could n't care less , ok ?!!!!") == "They couldn't care less, ok?!!"
    assert normalize("Plain text stays.") == "Plain text stays."


def test_holdout_split_is_deterministic_and_about_fifteen_percent():
    texts = [f"sentence number {i}" for i in range(4000)]
    flags = [in_holdout(t) for t in texts]
    assert flags == [in_holdout(t) for t in texts]
    assert 0.13 < np.mean(flags) < 0.17
    assert not any(in_holdout(t, percent=0) for t in texts[:50])
    assert all(in_holdout(t, percent=100) for t in texts[:50])


def test_shipped_head_is_small_portable_and_credited():
    assert HEAD_PATH.stat().st_size < 200_000
    head = Head.load(HEAD_PATH)
    assert head.embedding_dim == 384
    assert head.extra_features == ["profanity_logit", "lexicon_hits"]
    assert head.layers[0][0].shape == (386, 1)
    assert set(head.metadata["trained_on"]) == {"davidson", "stormfront", "seeds"}
    assert head.metadata["seeds"] == {"toxic": 286, "benign": 269}
    assert any("Davidson" in c for c in head.metadata["credits"])
    assert any("de Gibert" in c for c in head.metadata["credits"])
    assert 0.0 < head.metadata["threshold"] < 1.0


@pytest.fixture(scope="module")
def scorer():
    return ToxicityScorer()


def test_insults_score_high_and_banking_answers_low(scorer):
    insults, banking = scorer.score(INSULTS), scorer.score(BANKING)
    assert insults.shape == (len(INSULTS),) and banking.shape == (len(BANKING),)
    assert ((insults >= 0) & (insults <= 1)).all() and ((banking >= 0) & (banking <= 1)).all()
    assert scorer.is_toxic(insults).all(), dict(zip(INSULTS, insults.round(3), strict=True))
    assert not scorer.is_toxic(banking).any(), dict(zip(BANKING, banking.round(3), strict=True))
    assert insults.min() > banking.max()


def test_score_embeddings_reuses_cached_embeddings(scorer):
    texts = INSULTS[:3] + BANKING[:3]
    vectors = scorer.embedder.encode([normalize(t) for t in texts])
    np.testing.assert_allclose(scorer.score_embeddings(vectors, texts), scorer.score(texts), atol=1e-6)
    assert scorer.score([]).shape == (0,)


def test_threshold_setting_overrides_the_heads_own(monkeypatch):
    monkeypatch.setenv("LLMSIGHT_TOXICITY_THRESHOLD", "0.9")
    assert ToxicityScorer().threshold == 0.9
    monkeypatch.delenv("LLMSIGHT_TOXICITY_THRESHOLD")
    assert ToxicityScorer().threshold == Head.load(HEAD_PATH).metadata["threshold"]
    assert ToxicityScorer(threshold=0.25).threshold == 0.25


def test_hand_written_seeds_and_check_are_balanced_and_disjoint():
    """The seeds are trained on and the check set only scored: no sentence may be in both."""
    import json

    folder = HEAD_PATH.parent
    seeds = json.loads((folder / "toxicity_seeds.json").read_text())
    check = json.loads((folder / "toxicity_check.json").read_text())
    toxic = [t for kind in seeds["toxic"].values() for t in kind]
    benign = [t for kind in seeds["benign"].values() for t in kind]
    assert (len(toxic), len(benign)) == (254, 249)
    assert len(set(toxic + benign)) == len(toxic) + len(benign)
    assert (len(check["toxic"]), len(check["benign"])) == (48, 48)
    seen = {normalize(t).lower() for t in toxic + benign}
    assert not seen & {normalize(t).lower() for t in check["toxic"] + check["benign"]}


def test_lexicon_counts_whole_words_and_inner_stems_per_kind():
    hits = lexicon_hits([
        "How are you? Take the trash out, then crackers and cheese at the zoo with a monkey.",
        "Classes pass the assessment; cumulative totals; Scunthorpe is a town.",
        "you stupid fucking idiot",
        "what bullshit",
        "a camel jockey and a camel-jockey",
        "",
    ])
    # Everyday words are not in the list, and a stem inside an innocent word does not count...
    assert hits[0] == 0.0 and hits[1] == 0.0 and hits[5] == 0.0
    # ...but inner stems do: one word of profanity (fucking) and two insults (stupid, idiot).
    assert hits[2] == pytest.approx(np.log(2) + np.log(3))
    assert hits[3] == pytest.approx(np.log(2))
    # A hyphenated entry matches with a space or a hyphen, or with neither.
    assert hits[4] == pytest.approx(np.log(3))


def test_a_head_without_profanity_check_reads_the_lexicon_alone():
    head = Head.load(HEAD_PATH.with_name("toxicity_head_stormfront_only_without_profanity.npz"))
    assert head.extra_features == ["lexicon_hits"]
    texts = ["Fuck off, you stupid bitch.", "Your new card should arrive within 5 working days."]
    features = head.features(np.zeros((2, 384), dtype=np.float32), texts)
    assert features.shape == (2, 385)
    np.testing.assert_allclose(features[:, -1], lexicon_hits([normalize(t) for t in texts]))
    assert features[0, -1] > 0 and features[1, -1] == 0


def test_a_head_asking_for_an_unknown_feature_is_refused(tmp_path):
    stored = dict(np.load(HEAD_PATH, allow_pickle=False))
    arrays = {k: v for k, v in stored.items() if k not in ("format", "metadata")}
    metadata = Head.load(HEAD_PATH).metadata | {"features": ["minilm", "sentiment"]}
    Head.save(tmp_path / "head.npz", arrays, metadata)
    with pytest.raises(ConfigError, match="sentiment"):
        Head.load(tmp_path / "head.npz")
