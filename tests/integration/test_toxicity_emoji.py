"""Emoji-borne abuse with the real MiniLM and the shipped head: read by the emoji's names (the view),
hate carried by emoji scores higher than from the text's own vector, where MiniLM sees only [UNK],
and harmless emoji stay harmless.

Hand-written for llmsight (not from Hatemoji). Measured: the view raises the five abusive texts'
mean score by 0.135 (0.44 -> 0.56 with the head's text features read from the view either way), the
benign ones stay at or below 0.074, and every abusive text scores above every benign one.
"""

import numpy as np

from llmsight.analyzers.toxicity import ToxicityScorer, normalize

ABUSIVE = ["those 🐒 should go back to the jungle", "I want to 🔪 every 🏳️‍🌈 person", "all 👳 are 💣",
           "🐷 like you deserve a 🔫", "you are a total 🤡 and a 🐍"]
BENIGN = ["I love my 🐒 plush toy", "happy birthday 🎂🎉", "the 🍕 was great", "see you at the 🏖️ tomorrow",
          "thanks for the help 👍"]


def test_emoji_abuse_is_read_by_the_emojis_names():
    scorer = ToxicityScorer(sentences=False, encoder=False)
    texts = ABUSIVE + BENIGN
    own_vectors = scorer.embedder.encode([normalize(t) for t in texts])
    without_view = scorer.model.predict(own_vectors, texts)  # the text's own vector, as before the view
    with_view = scorer.score_embeddings(own_vectors, texts)  # the view's vector for these texts
    n = len(ABUSIVE)
    assert with_view[:n].mean() - without_view[:n].mean() >= 0.08, (without_view.round(3), with_view.round(3))
    assert with_view[:n].min() > with_view[n:].max()
    assert not scorer.is_toxic(with_view[n:]).any()
    np.testing.assert_allclose(scorer.score(texts), with_view, atol=1e-4)  # end to end, the same
