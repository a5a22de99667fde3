"""The int8 ONNX backend gives a text the same vector whatever it is embedded with.

Dynamic int8 quantisation scales activations by the range of the whole input tensor, so a padded
batch made a text's vector depend on its neighbours (cosine down to 0.98). Each text now runs alone,
so a window's rows cannot depend on which other segments' texts shared its batches.
"""

from __future__ import annotations

import numpy as np

from llmsight.analyzers.embeddings import Embedder

TEXTS = ["Why was my card declined at the shop?", "top up failed",
         "I was charged twice for the same transfer last Friday and the support chat did not answer me at all",
         "How do I change my PIN?", "Can I get a refund for a subscription I cancelled months ago?"]


def test_a_text_gets_the_same_int8_vector_alone_and_in_any_batch() -> None:
    int8 = Embedder(backend="onnx-int8")
    together = int8.encode(TEXTS)
    alone = np.vstack([int8.encode([text]) for text in TEXTS])
    np.testing.assert_array_equal(together, alone)
    long_neighbours = [" ".join([text] * 12) for text in TEXTS]
    mixed = int8.encode(long_neighbours + TEXTS[::-1])[len(TEXTS):][::-1]
    np.testing.assert_array_equal(mixed, alone)
