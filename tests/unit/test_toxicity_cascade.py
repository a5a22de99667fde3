"""The cascade of the toxicity scorer: which texts reach the fine-tuned encoder, and the kinds.

The encoder is replaced by a recording fake (the real one is scored in
tests/integration/test_toxicity_encoder.py), and the head's scores are fixed per text, so the
routing is checked exactly.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmsight.analyzers.toxicity import ToxicityScorer
from llmsight.analyzers.toxicity_encoder import CATEGORIES
from llmsight.dashboard.safety import kinds
from llmsight.errors import ConfigError

HEAD = {"have a nice day": 0.02, "women are not too emotional": 0.8, "you idiot": 0.9, "damn printer": 0.6,
        "thanks for asking. women are not too emotional": 0.05, "thanks for asking.": 0.01}
ENCODER = {"women are not too emotional": (0.1, "sexism"), "you idiot": (0.95, "abuse"),
           "damn printer": (0.2, "hate")}


class FakeEncoder:
    metadata = {"cascade_clear": 0.1}
    categories = CATEGORIES

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, texts):
        self.seen += list(texts)
        kinds = np.zeros((len(texts), len(CATEGORIES)))
        for row, text in enumerate(texts):
            kinds[row, CATEGORIES.index(ENCODER[text.lower()][1])] = 1.0
        return np.array([ENCODER[t.lower()][0] for t in texts]), kinds


@pytest.fixture
def cascade(monkeypatch):
    scorer = ToxicityScorer(sentences=True, encoder=False)
    monkeypatch.setattr(scorer.model, "predict", lambda emb, texts: np.array([HEAD[t.lower()] for t in texts]))
    scorer.encoder_path = Path("fake.npz")
    scorer._encoder = FakeEncoder()
    return scorer


def test_only_texts_the_head_does_not_clear_reach_the_encoder(cascade):
    texts = ["have a nice day", "women are not too emotional", "you idiot"]
    scores = cascade.score_embeddings(np.zeros((3, 384)), texts)
    assert scores.tolist() == [0.02, 0.1, 0.95]
    assert cascade.encoder.seen == ["women are not too emotional", "you idiot"]


def test_sentences_go_through_the_cascade_too(cascade):
    """A polite text whose one sentence the head flags is re-scored by the encoder, sentence by sentence."""
    text = "Thanks for asking. Women are not too emotional"
    vectors = {"Thanks for asking.": np.zeros(384), "Women are not too emotional": np.zeros(384)}
    score = cascade.score_embeddings(np.zeros((1, 384)), [text], sentence_vectors=vectors)
    assert score.tolist() == [0.1]  # the head's 0.8 for the sentence would have flagged it
    assert cascade.encoder.seen == ["Women are not too emotional"]


def test_kinds_come_from_the_encoder_and_swearing_alone_is_profanity(cascade):
    assert cascade.categorise(["you idiot", "damn printer"]) == ["abuse", "profanity"]
    assert cascade.categorise([]) == []


def test_without_an_encoder_the_kind_comes_from_the_lexicon_and_plugins_refuse_one(tmp_path):
    scorer = ToxicityScorer(encoder=False)
    assert scorer.encoder is None
    assert scorer.categorise(["you idiot", "shut up, faggot", "damn it", "go away"]) == [
        "abuse", "hate", "profanity", "toxic"]
    head = tmp_path / "head.npz"
    head.write_bytes(Path(scorer.path).read_bytes())
    with pytest.raises(ConfigError, match="no toxicity encoder"):
        ToxicityScorer(model=str(head), encoder=True)


def test_safety_page_sums_the_kinds_of_flagged_texts_per_signal():
    rows = pd.DataFrame([
        {"metric": "toxicity_rate_output", "details": '{"categories": {"hate": 2, "abuse": 1}}'},
        {"metric": "toxicity_rate_output", "details": '{"categories": {"hate": 1}}'},
        {"metric": "toxicity_rate_input", "details": '{"categories": {"threat": 1}, "examples": []}'},
        {"metric": "toxicity_rate_input", "details": "not json"},
    ])
    assert kinds(rows).values.tolist() == [["outputs", "hate", 3], ["outputs", "abuse", 1], ["inputs", "threat", 1]]


def test_a_blending_encoder_averages_the_two_logits(cascade):
    cascade.encoder.metadata = {"cascade_clear": 0.1, "cascade_combine": "blend"}
    scores = cascade.score_embeddings(np.zeros((2, 384)), ["have a nice day", "you idiot"])
    z = 0.5 * (np.log(0.9 / 0.1) + np.log(0.95 / 0.05))
    assert scores == pytest.approx([0.02, 1 / (1 + np.exp(-z))])
