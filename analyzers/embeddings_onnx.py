"""The ``onnx-int8`` embedding backend: the same sentence-transformers weights, exported to ONNX
on this machine and quantised to int8, run by onnxruntime.

sentence-transformers' own ONNX backend goes through Optimum, and Optimum pins an older
transformers than the one the server extra installs; so this module does the same three steps
itself with what is installed: ``torch.onnx.export`` of the transformer, onnxruntime's
``quantize_dynamic`` (int8 weights, activations quantised on the fly, per-channel, as Optimum's
avx512_vnni preset does), and the model's own pooling and normalisation in numpy.

The export is made once from the local safetensors and kept under
``$XDG_CACHE_HOME/llmsight/onnx/<fingerprint>/`` (the fingerprint covers the weights' path, size
and mtime), so a process only pays for it the first time. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmsight.errors import ConfigError

log = logging.getLogger("llmsight.analyzers")

_export_lock = threading.Lock()


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llmsight" / "onnx"


def _fingerprint(model_path: Path) -> str:
    weights = sorted(model_path.glob("*.safetensors")) or sorted(model_path.glob("pytorch_model*.bin"))
    if not weights:
        raise ConfigError(f"no safetensors or pytorch_model.bin in {model_path}: cannot export to ONNX")
    digest = hashlib.sha256(str(model_path.resolve()).encode())
    for file in weights:
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _pooling_mode(model_path: Path) -> str:
    config_file = model_path / "1_Pooling" / "config.json"
    if not config_file.exists():
        return "mean"
    pooling = json.loads(config_file.read_text())
    if pooling.get("pooling_mode_mean_tokens"):
        return "mean"
    if pooling.get("pooling_mode_cls_token"):
        return "cls"
    raise ConfigError(f"{config_file}: only mean or CLS pooling is supported by the onnx-int8 backend; "
                      "use LLMSIGHT_EMBEDDING_BACKEND=torch for this model")


def _max_length(model_path: Path) -> int:
    config_file = model_path / "sentence_bert_config.json"
    if config_file.exists():
        return int(json.loads(config_file.read_text()).get("max_seq_length", 256))
    return 256


def export_int8(model_path: Path, target: Path) -> Path:
    """Export the transformer in ``model_path`` to ONNX and quantise it to int8 in ``target``."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    target.mkdir(parents=True, exist_ok=True)
    fp32 = target / "model_fp32.onnx"
    int8 = target / "model_int8.onnx"
    started = time.perf_counter()
    model = AutoModel.from_pretrained(str(model_path), local_files_only=True)
    model.eval()
    sample = {
        "input_ids": torch.ones((2, 8), dtype=torch.long),
        "attention_mask": torch.ones((2, 8), dtype=torch.long),
        "token_type_ids": torch.zeros((2, 8), dtype=torch.long),
    }
    names = list(sample)
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    axes["last_hidden_state"] = {0: "batch", 1: "tokens"}

    class _Hidden(torch.nn.Module):
        """Only the last hidden state leaves the graph: pooling is done outside."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    log.info("embeddings: exporting %s to int8 ONNX once (about 10 s) into %s", model_path, target)
    # The tracer's and the quantiser's advice (tracer warnings, "consider pre-processing" on the root
    # logger) is about models in general, not this one: it is kept off the user's terminal.
    quiet = _DropRootAdvice()
    logging.getLogger().addFilter(quiet)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Hidden(model), tuple(sample.values()), str(fp32), input_names=names,
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                              dynamo=False)
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().removeFilter(quiet)
    fp32.unlink(missing_ok=True)
    log.info("embeddings: exported %s to int8 ONNX in %s in %.1f s", model_path, target, time.perf_counter() - started)
    return int8


class _DropRootAdvice(logging.Filter):
    """Drops onnxruntime's quantisation advice, which it logs on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class OnnxInt8Encoder:
    """Duck-types the two methods of ``SentenceTransformer`` that :class:`Embedder` uses.

    Each text runs through the model on its own, ``threads`` texts at a time (one onnxruntime
    thread each, no spinning):

    * a text's vector depends on the text only. Dynamic int8 quantisation scales the activations by
      the range of the whole input tensor, so in a padded batch a text's vector moved with its
      neighbours (cosine down to 0.98 against the same text alone, measured on banking77); one text
      per run makes a window's rows independent of which other segments were embedded with it;
    * there is no padding to compute, and no intra-op synchronisation (spinning threads cost the
      most on a busy or CPU-limited host). Measured beside 64-text batches on the 2-core host:
      1.2-2.5x the texts per second.
    """

    def __init__(self, session: Any, tokenizer: Any, pooling: str, max_length: int, dimension: int,
                 threads: int = 1) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        self.dimension = dimension
        self.threads = max(1, threads)
        self.input_names = {i.name for i in session.get_inputs()}
        self._pool: Any = None

    @classmethod
    def load(cls, model_path: Path, threads: int | None = None) -> OnnxInt8Encoder:
        import onnxruntime
        from transformers import AutoConfig, AutoTokenizer

        target = cache_root() / _fingerprint(model_path)
        int8 = target / "model_int8.onnx"
        with _export_lock:
            if not int8.exists():
                export_int8(model_path, target)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1  # parallel across texts instead (see the class docstring)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
        tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        hidden = int(AutoConfig.from_pretrained(str(model_path), local_files_only=True).hidden_size)
        return cls(session, tokenizer, _pooling_mode(model_path), _max_length(model_path), hidden,
                   threads or usable_cores())

    def get_sentence_embedding_dimension(self) -> int:
        return self.dimension

    def encode(self, texts: Sequence[str], batch_size: int = 64, **_: Any) -> np.ndarray:
        """Unit vectors of ``texts``; ``batch_size`` is accepted for compatibility (each text runs alone)."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not len(texts):
            return out
        # One tokenizer call for all texts, in this thread (a fast tokenizer is not safe across threads).
        tokens = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        ids = tokens["input_ids"]
        has_types = "token_type_ids" in self.input_names

        def run(index: int) -> None:
            row = np.asarray(ids[index], dtype=np.int64)[None, :]
            feed = {"input_ids": row, "attention_mask": np.ones_like(row)}
            if has_types:
                feed["token_type_ids"] = np.zeros_like(row)
            hidden = self.session.run(None, feed)[0][0]
            out[index] = hidden[0] if self.pooling == "cls" else hidden.mean(axis=0)

        # Longest first, so the last texts to finish are short ones and the threads end together.
        order = np.argsort([-len(row) for row in ids], kind="stable").tolist()
        if self.threads == 1 or len(texts) == 1:
            for index in order:
                run(index)
        else:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="llmsight-onnx")
            for _ in self._pool.map(run, order, chunksize=16):
                pass
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
