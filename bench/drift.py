"""Embedding drift on banking77: false-positive rate, power and time per test, llmsight vs Evidently.

The protocol, on ../shared/data/banking77 (13,083 customer-banking questions in 77 intents):

* every text is embedded once (the vectors are kept in a cache file, so a rerun skips that);
* each trial draws one intent to hold out of the reference (among intents with at least 100
  texts, so a 20% share needs no repeats). The reference is ``n`` texts from the other intents;
* the *calibration* window is ``n`` other texts from the same intents: a test that flags it is a
  false positive;
* the *shifted* windows replace 10% or 20% of such a window with texts of the held-out intent:
  a test that misses them lacks power;
* every method sees the very same windows. Evidently runs as its ``EmbeddingsDriftMetric`` does
  by default (``model(bootstrap=n_ref < 1000)``: ROC AUC of an SGD classifier against the 95th
  percentile of random AUCs) and also with the fixed ``ROC AUC > 0.55`` rule.

Time per test is the median wall time at ``n`` and at ``--large-n`` (windows drawn from all
intents), plus the process CPU time, which is steadier when other work shares the machine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import typer

log = logging.getLogger("llmsight.bench")

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"


def load_banking77(data: Path) -> tuple[list[str], np.ndarray]:
    """All banking77 texts (train then test) and their intents."""
    import pandas as pd

    if not (data / "train.csv").exists():
        raise typer.BadParameter(f"{data} has no train.csv: pass --data PATH to the banking77 folder")
    frames = [pd.read_csv(data / name) for name in ("train.csv", "test.csv") if (data / name).exists()]
    frame = pd.concat(frames, ignore_index=True)
    return frame["text"].astype(str).tolist(), frame["category"].astype(str).to_numpy()


def embed_cached(texts: list[str], backend: str, cache_dir: Path | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Embed ``texts`` with the default model and ``backend``, reusing a cache file when present."""
    from llmsight.analyzers.embeddings import Embedder

    embedder = Embedder(backend=backend)
    digest = hashlib.sha256(embedder.name.encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\n")
    path = (cache_dir or _cache_dir()) / f"banking77-{digest.hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path), {"embedding_cache": str(path), "embedding_s": 0.0}
    started = time.perf_counter()
    vectors = embedder.encode(texts)
    elapsed = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors, {"embedding_cache": str(path), "embedding_s": round(elapsed, 1),
                     "texts_per_s": round(len(texts) / elapsed, 1)}


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llmsight" / "bench"


def make_windows(intents: np.ndarray, n: int, shares: tuple[float, ...], trials: int,
                 seed: int, novel_intents: int = 1) -> list[dict[str, Any]]:
    """Per trial: a reference and one current window per share of held-out-intent texts.

    ``novel_intents`` intents are held out per trial; the new share is split evenly between them
    (more intents: smaller, more scattered new clusters, a harder test).
    """
    rng = np.random.default_rng(seed)
    names, counts = np.unique(intents, return_counts=True)
    candidates = names[counts >= max(shares) * n / novel_intents]
    windows = []
    for _ in range(trials):
        held_out = rng.choice(candidates, novel_intents, replace=False)
        others = np.flatnonzero(~np.isin(intents, held_out))
        pools = [np.flatnonzero(intents == intent) for intent in held_out]
        # One draw without replacement: the reference and every current window are disjoint, as
        # two real windows of distinct requests would be.
        drawn = rng.choice(others, n * (1 + len(shares)), replace=False)
        trial: dict[str, Any] = {"held_out": [str(i) for i in held_out], "reference": drawn[:n], "current": {}}
        for slot, share in enumerate(shares, start=1):
            novel = int(round(share * n))
            parts = [drawn[slot * n: slot * n + n - novel]]
            for index, pool in enumerate(pools):
                take = novel // novel_intents + (index < novel % novel_intents)
                parts.append(rng.choice(pool, take, replace=False))
            trial["current"][share] = np.concatenate(parts)
        windows.append(trial)
    return windows


def drift_methods(alpha: float, permutations: int) -> dict[str, Callable[[np.ndarray, np.ndarray], bool]]:
    import pandas as pd
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model

    from llmsight.analyzers.drift import embedding_drift

    def ours(reference: np.ndarray, current: np.ndarray) -> bool:
        return embedding_drift(reference, current, alpha=alpha, permutations=permutations).drifted

    def mmd(reference: np.ndarray, current: np.ndarray) -> bool:
        return embedding_drift(reference, current, "mmd", alpha=alpha, permutations=permutations).drifted

    def evidently(bootstrap: bool | None) -> Callable[[np.ndarray, np.ndarray], bool]:
        def run(reference: np.ndarray, current: np.ndarray) -> bool:
            # The very call EmbeddingsDriftMetric makes: method(current_frame, reference_frame).
            method = model(bootstrap=bootstrap if bootstrap is not None else len(reference) < 1000)
            _, drifted, _ = method(pd.DataFrame(current), pd.DataFrame(reference))
            return bool(drifted)

        return run

    return {
        "llmsight_knn": ours,
        "evidently_default": evidently(None),
        "evidently_auc_0.55": evidently(False),
        "mmd_permutation": mmd,
    }


def _timed(method: Callable[[np.ndarray, np.ndarray], bool], reference: np.ndarray,
           current: np.ndarray) -> tuple[bool, float, float]:
    """(drifted, wall ms, process CPU ms) of one test."""
    wall, cpu = time.perf_counter(), time.process_time()
    drifted = method(reference, current)
    return drifted, (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def run_trials(vectors: np.ndarray, windows: list[dict[str, Any]], methods: dict[str, Callable[..., bool]],
               shares: tuple[float, ...]) -> dict[str, dict[str, Any]]:
    """Detection rate of every method per share (0.0 = the calibration window) and its timing."""
    results: dict[str, dict[str, Any]] = {}
    for name, method in methods.items():
        flagged = {share: 0 for share in shares}
        walls, cpus = [], []
        for trial in windows:
            reference = vectors[trial["reference"]]
            for share in shares:
                drifted, wall, cpu = _timed(method, reference, vectors[trial["current"][share]])
                walls.append(wall)
                cpus.append(cpu)
                flagged[share] += drifted
        results[name] = {"rates": {share: flagged[share] / len(windows) for share in shares},
                         "ms_median": float(np.median(walls)), "cpu_ms_median": float(np.median(cpus))}
        log.info("bench drift: %s %s", name, results[name])
    return results


def time_large(vectors: np.ndarray, methods: dict[str, Callable[..., bool]], n: int, reps: int,
               seed: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed + 1)
    out = {}
    for name, method in methods.items():
        walls, cpus = [], []
        for _ in range(reps):
            drawn = rng.choice(len(vectors), 2 * n, replace=len(vectors) < 2 * n)
            _, wall, cpu = _timed(method, vectors[drawn[:n]], vectors[drawn[n:]])
            walls.append(wall)
            cpus.append(cpu)
        out[name] = {"ms_median": float(np.median(walls)), "cpu_ms_median": float(np.median(cpus))}
    return out


def main(
    json_out: bool = typer.Option(False, "--json", help="Print the figures as one JSON line last."),
    trials: int = typer.Option(100, help="Trials (reference + one window per share) per method."),
    n: int = typer.Option(500, help="Texts per window."),
    large_n: int = typer.Option(5000, "--large-n", help="Window size of the large-window timing."),
    large_reps: int = typer.Option(3, "--large-reps", help="Timed tests at --large-n per method."),
    alpha: float = typer.Option(0.01, help="Significance level of llmsight's tests."),
    permutations: int = typer.Option(500, help="Permutations per llmsight test."),
    backend: str = typer.Option("torch", help="Embedding backend: torch (fp32) or onnx-int8."),
    methods: str = typer.Option("llmsight_knn,evidently_default,evidently_auc_0.55,mmd_permutation",
                                help="Comma-separated methods to run."),
    seed: int = typer.Option(7, help="Seed of the windows."),
    shares_text: str = typer.Option("0.1,0.2", "--shares", help="Shares of held-out-intent texts to test."),
    novel_intents: int = typer.Option(1, "--novel-intents", help="Intents held out per trial (share split)."),
    data: Path = typer.Option(DEFAULT_DATA, help="The banking77 folder (train.csv, test.csv)."),
) -> None:
    """Drift detection on banking77: false-positive rate, power at 10%/20% new topic, ms per test."""
    from llmsight.bench.report import emit

    shares = (0.0, *(float(share) for share in shares_text.split(",")))
    texts, intents = load_banking77(data)
    vectors, embedding = embed_cached(texts, backend, None)
    chosen = {name: fn for name, fn in drift_methods(alpha, permutations).items() if name in methods.split(",")}
    windows = make_windows(intents, n, shares, trials, seed, novel_intents)
    results = run_trials(vectors, windows, chosen, shares)
    large = time_large(vectors, {k: v for k, v in chosen.items() if k != "mmd_permutation"}, large_n,
                       large_reps, seed) if large_reps else {}
    figures: dict[str, Any] = {"n": n, "trials": trials, "alpha_llmsight": alpha, "backend": backend,
                               "permutations": permutations, "novel_intents": novel_intents, **embedding}
    for name, result in results.items():
        figures[name] = {
            "false_positive_rate": result["rates"][0.0],
            **{f"power_{round(share * 100):d}pct": result["rates"][share] for share in shares[1:]},
            f"ms_per_test_n{n}": round(result["ms_median"], 1),
            f"cpu_ms_per_test_n{n}": round(result["cpu_ms_median"], 1),
        }
        if name in large:
            figures[name][f"ms_per_test_n{large_n}"] = round(large[name]["ms_median"], 1)
            figures[name][f"cpu_ms_per_test_n{large_n}"] = round(large[name]["cpu_ms_median"], 1)
    emit(f"llmsight bench drift (banking77, n={n}, {trials} trials)", figures, json_out)
