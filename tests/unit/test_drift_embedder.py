"""Embedder loading rules with a fake sentence-transformers (the real one takes seconds to import):
one load per process however many threads ask at once, unit rows, clear errors."""

from __future__ import annotations

import sys
import threading
import time
import types

import numpy as np
import pytest

from llmsight.analyzers import embeddings
from llmsight.errors import ConfigError


class _FakeModel:
    loads = 0

    def __init__(self, path: str, device: str, local_files_only: bool) -> None:
        assert local_files_only is True  # never reach for a hub
        type(self).loads += 1
        time.sleep(0.2)  # a slow load widens the window for a race

    def get_sentence_embedding_dimension(self) -> int:
        return 3

    def encode(self, texts, normalize_embeddings: bool = False, **_: object) -> np.ndarray:
        rows = np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float64)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True) if normalize_embeddings else rows


@pytest.fixture
def fake_model(tmp_path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "modules.json").write_text("[]")
    monkeypatch.setitem(sys.modules, "sentence_transformers",
                        types.SimpleNamespace(SentenceTransformer=_FakeModel))
    monkeypatch.setattr(embeddings, "_models", {})
    monkeypatch.setenv("LLMSIGHT_EMBEDDING_BACKEND", "torch")  # the fake stands in for sentence-transformers
    _FakeModel.loads = 0
    return tmp_path


def test_concurrent_first_calls_load_the_model_once(fake_model) -> None:
    results: list[np.ndarray] = []
    barrier = threading.Barrier(6)

    def work() -> None:
        embedder = embeddings.Embedder(model=str(fake_model))
        barrier.wait()
        results.append(embedder.encode(["abc", "de"]))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _FakeModel.loads == 1
    assert len(results) == 6


def test_encode_returns_unit_float32_rows_and_counts_calls(fake_model) -> None:
    embedder = embeddings.Embedder(model=str(fake_model))
    vectors = embedder.encode(["abc"])
    assert vectors.dtype == np.float32 and vectors.shape == (1, 3)
    np.testing.assert_allclose(vectors, [[3 / 10**0.5, 1 / 10**0.5, 0.0]], rtol=1e-6)
    assert embedder.encode([]).shape == (0, 3)
    assert (embedder.calls, embedder.texts_encoded) == (1, 1)
    assert embedder.name == str(fake_model.resolve())


def test_bad_backend_and_missing_folder_are_config_errors(fake_model, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="backend"):
        embeddings.Embedder(model=str(fake_model), backend="tensorrt")
    monkeypatch.setenv("LLMSIGHT_EMBEDDING_MODEL", str(fake_model / "gone"))
    with pytest.raises(ConfigError, match="missing or empty"):
        embeddings.Embedder()
