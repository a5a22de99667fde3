"""Embedding speed: fp32 sentence-transformers vs the local int8 ONNX export, and whether drift holds.

* texts per second of ``Embedder(backend="torch")`` (fp32 sentence-transformers) and of
  ``Embedder(backend="onnx-int8")`` (the same weights exported to ONNX here and quantised to
  int8, run by onnxruntime) on the same banking77 texts, after a warm-up batch;
* how close the int8 vectors are to fp32 (cosine per text: mean and minimum);
* drift accuracy with either set of vectors: false-positive rate and power at 10%/20% of a
  held-out intent, on the very same windows (the protocol of ``llmsight bench drift``).

The first run exports the int8 model (about a minute) and embeds all of banking77 with both
backends for the drift check; both are cached, so later runs take seconds plus the timing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

from llmsight.bench.drift import DEFAULT_DATA

log = logging.getLogger("llmsight.bench")


def _speed(backend: str, texts: list[str], repeats: int) -> tuple[np.ndarray, dict[str, Any]]:
    from llmsight.analyzers.embeddings import Embedder

    embedder = Embedder(backend=backend)
    started = time.perf_counter()
    embedder.encode(texts[:64])  # loads (and for int8, exports once) the model
    load_s = time.perf_counter() - started
    rates, vectors = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        vectors = embedder.encode(texts)
        rates.append(len(texts) / (time.perf_counter() - started))
    assert vectors is not None
    return vectors, {"texts_per_s": round(float(np.median(rates)), 1), "load_s": round(load_s, 1)}


def main(
    json_out: bool = typer.Option(False, "--json", help="Print the figures as one JSON line last."),
    texts_n: int = typer.Option(2000, "--texts", help="How many banking77 texts to time."),
    repeats: int = typer.Option(3, help="Timed passes per backend (the median is reported)."),
    drift_trials: int = typer.Option(100, "--drift-trials", help="Drift trials per backend (0 skips the check)."),
    seed: int = typer.Option(7, help="Seed of the text sample and the drift windows."),
    data: Path = typer.Option(DEFAULT_DATA, help="The banking77 folder (train.csv, test.csv)."),
) -> None:
    """Texts/s of fp32 sentence-transformers vs int8 ONNX, their agreement, and drift power with each."""
    import torch

    from llmsight.bench.drift import drift_methods, embed_cached, load_banking77, make_windows, run_trials
    from llmsight.bench.report import emit

    all_texts, intents = load_banking77(data)
    rng = np.random.default_rng(seed)
    sample = [all_texts[i] for i in rng.choice(len(all_texts), min(texts_n, len(all_texts)), replace=False)]
    figures: dict[str, Any] = {"texts": len(sample), "mean_chars": round(float(np.mean([len(t) for t in sample])), 1),
                               "torch_threads": torch.get_num_threads()}
    fp32, figures["fp32_torch"] = _speed("torch", sample, repeats)
    int8, figures["int8_onnx"] = _speed("onnx-int8", sample, repeats)
    figures["speedup_int8_vs_fp32"] = round(figures["int8_onnx"]["texts_per_s"] / figures["fp32_torch"]["texts_per_s"], 2)
    cosine = (fp32 * int8).sum(axis=1)
    figures["cosine_int8_vs_fp32"] = {"mean": round(float(cosine.mean()), 4), "min": round(float(cosine.min()), 4)}
    if drift_trials:
        shares = (0.0, 0.1, 0.2)
        windows = make_windows(intents, 500, shares, drift_trials, seed)
        knn = {"llmsight_knn": drift_methods(0.01, 500)["llmsight_knn"]}
        for label, backend in (("drift_fp32", "torch"), ("drift_int8", "onnx-int8")):
            vectors, _ = embed_cached(all_texts, backend, None)
            rates = run_trials(vectors, windows, knn, shares)["llmsight_knn"]["rates"]
            figures[label] = {"trials": drift_trials, "false_positive_rate": rates[0.0],
                              "power_10pct": rates[0.1], "power_20pct": rates[0.2]}
    emit("llmsight bench embed (banking77)", figures, json_out)
