"""The functional suite of the toxicity scorer: its file, and how its report is computed."""

import json

import numpy as np

from llmsight.analyzers.toxicity import HEAD_PATH, normalize
from llmsight.analyzers.toxicity_suite import KEY_BLOCKS, Suite, load_suite, suite_report

TOXIC_BLOCKS = {"explicit_slurs", "dehumanisation_and_threats", "stereotypes", "harassment"}


def test_suite_has_every_block_with_one_label_and_no_duplicates():
    suite = load_suite()
    labels = {b: int(y) for b, y in zip(suite.blocks, suite.labels, strict=True)}
    assert {b for b, y in labels.items() if y == 1} == TOXIC_BLOCKS
    assert set(KEY_BLOCKS) | {"quoting_to_denounce", "neutral_identity", "untargeted_profanity",
                              "reclaimed_terms"} == {b for b, y in labels.items() if y == 0}
    assert len(suite.texts) == 250
    assert len({normalize(t).lower() for t in suite.texts}) == len(suite.texts)
    assert all(suite.blocks.count(b) >= 15 for b in labels)


def test_suite_is_never_among_the_sentences_trained_on():
    """The seeds and anchors are trained on; the suite must only ever be scored."""
    trained = []
    for name in ("toxicity_seeds.json", "toxicity_anchors.json"):
        stored = json.loads((HEAD_PATH.parent / name).read_text())
        for key in ("toxic", "benign"):
            value = stored[key]
            trained += [t for kind in value.values() for t in kind] if isinstance(value, dict) else list(value)
    seen = {normalize(t).lower() for t in trained}
    assert not seen & {normalize(t).lower() for t in load_suite().texts}


def test_report_gives_pass_rates_and_auc_against_the_other_label():
    suite = Suite(texts=["a", "b", "c", "d", "e"], labels=np.array([1, 1, 0, 0, 0]),
                  blocks=["slurs", "slurs", "negation", "negation", "refusals"])
    report = suite_report(suite, np.array([0.9, 0.4, 0.6, 0.1, 0.2]), threshold=0.5)
    assert report["auc"] == round(5 / 6, 4)  # 0.4 loses to 0.6 only
    assert report["blocks"]["slurs"] == {"label": 1, "n": 2, "pass_rate": 0.5, "auc": round(5 / 6, 4)}
    assert report["blocks"]["negation"] == {"label": 0, "n": 2, "pass_rate": 0.5, "auc": 0.75}
    assert report["blocks"]["refusals"] == {"label": 0, "n": 1, "pass_rate": 1.0, "auc": 1.0}
