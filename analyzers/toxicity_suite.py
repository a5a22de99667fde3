"""The functional test suite of the toxicity scorer: what it must get right, block by block.

``analyzers/data/toxicity_functional.json`` holds short hand-written sentences in blocks, one per
behaviour a monitor of LLM outputs must get right (explicit slurs, dehumanisation and threats in
polite words, stereotypes, harassment; and the hard negatives: counter-speech, negation, quoting to
denounce, neutral mentions of identity groups, untargeted profanity, reclaimed terms, an assistant
refusing a hateful request while naming it). Every block has one label. Nothing is trained on it
and no model or threshold was chosen by it; ``scripts/train-toxicity`` and ``llmsight bench
toxicity`` only score it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUITE_PATH = Path(__file__).parent / "data" / "toxicity_functional.json"
# The blocks where false alarms cost most (issue 16's target: >= 90% pass on each).
KEY_BLOCKS = ("counter_speech", "negation", "assistant_refusals")


@dataclass(frozen=True)
class Suite:
    texts: list[str]
    labels: np.ndarray
    blocks: list[str]


def load_suite(path: Path = SUITE_PATH) -> Suite:
    stored = json.loads(path.read_text(encoding="utf-8"))["blocks"]
    texts, labels, blocks = [], [], []
    for name, block in stored.items():
        texts += block["texts"]
        labels += [int(block["label"])] * len(block["texts"])
        blocks += [name] * len(block["texts"])
    return Suite(texts, np.array(labels, dtype=np.int64), blocks)


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC of positives against negatives (ties count half), without sklearn."""
    diff = positive[:, None] - negative[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def suite_report(suite: Suite, scores: np.ndarray, threshold: float) -> dict:
    """Overall AUC, and per block its pass rate at ``threshold`` and its AUC against every block of
    the other label (e.g. counter-speech against all toxic blocks)."""
    scores = np.asarray(scores, dtype=np.float64)
    blocks = np.array(suite.blocks)
    y = suite.labels
    report: dict = {"n": len(y), "auc": round(_auc(scores[y == 1], scores[y == 0]), 4), "threshold": threshold,
                    "blocks": {}}
    for name in dict.fromkeys(suite.blocks):
        mine = blocks == name
        label = int(y[mine][0])
        flagged = scores[mine] >= threshold
        passed = flagged if label == 1 else ~flagged
        other = scores[y != label]
        report["blocks"][name] = {
            "label": label, "n": int(mine.sum()), "pass_rate": round(float(passed.mean()), 4),
            "auc": round(_auc(scores[mine], other) if label == 1 else _auc(other, scores[mine]), 4)}
    return report
