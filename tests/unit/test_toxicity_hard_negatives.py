"""The hard-negative templates (training-data augmentation) and the framing cues of the toxicity head."""

import importlib.util
import json
from importlib.machinery import SourceFileLoader
from pathlib import Path

import numpy as np

from llmsight.analyzers.toxicity import frame_hits, normalize
from llmsight.analyzers.toxicity_suite import load_suite

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "analyzers" / "data" / "toxicity_hard_negatives.json"
SCRIPT = ROOT / "scripts" / "train-toxicity"


def test_templates_have_their_slots_and_training_leaves_out_any_sentence_of_the_suite():
    stored = json.loads(TEMPLATES.read_text())
    frames = [f for kind in stored["frames"].values() for f in kind]
    assert len(frames) >= 15 and all(f.count("{claim}") == 1 for f in frames)
    statements = stored["statements"]
    for kind in ("hostile", "denial"):
        assert all("{group}" in t and "{attribute}" in t for t in statements[kind])
    assert len(statements["groups"]) >= 20 and len(statements["attributes"]) >= 15
    # The suite is held out: whatever the templates make that equals one of its sentences is left out.
    loader = SourceFileLoader("train_toxicity", str(SCRIPT))
    spec = importlib.util.spec_from_loader("train_toxicity", loader)
    assert spec is not None
    script = importlib.util.module_from_spec(spec)
    loader.exec_module(script)
    texts, labels = script.statement_pairs()
    assert len(texts) == len(labels) > 1000 and 0.45 < np.mean(labels) < 0.55
    suite = {normalize(t).lower() for t in load_suite().texts}
    assert not {normalize(t).lower() for t in texts} & suite
    claims = ["they are vermin and should be removed", "those people are filthy animals"]
    framed, y = script.framed_claims(claims, np.ones(2))
    assert y == [1, 0, 1, 0] and framed[0] == claims[0] and claims[0] in framed[1]


def test_framing_cues_count_refusing_denying_and_denouncing_but_not_plain_text():
    framed = ["I can't help with that request, it targets people for their religion.",
              "We don't believe that claim about nurses, it is simply false.",
              "The account got banned last week.",
              "Calling them thieves is a stereotype and it's prejudiced."]
    plain = ["Those people are thieves and should leave.", "Your card will arrive within five days.",
             "The meeting is at noon on Friday."]
    hits = frame_hits(framed + plain)
    assert (hits[:4] > 0).all() and (hits[4:] == 0).all()
    assert hits[3] > hits[2] > 0  # two cues count more than one
    assert np.isclose(hits[2], np.log(2))


def _script():
    loader = SourceFileLoader("train_toxicity", str(SCRIPT))
    spec = importlib.util.spec_from_loader("train_toxicity", loader)
    assert spec is not None
    script = importlib.util.module_from_spec(spec)
    loader.exec_module(script)
    return script


def test_the_hard_negatives_weight_scales_their_part_and_1_is_one_source():
    script = _script()
    a = {"y": np.array([1, 0, 0, 0])}
    b = {"y": np.array([1, 1, 0])}
    equal = script.balanced_weights([a, b])
    # Default: each part carries half the total, each class half of its part; mean weight 1.
    assert np.isclose(equal.mean(), 1.0) and np.isclose(equal[:4].sum(), equal[4:].sum())
    assert np.array_equal(script.balanced_weights([a, {**b, "part_weight": np.float64(1.0)}]), equal)
    half = script.balanced_weights([a, {**b, "part_weight": np.float64(0.5)}])
    assert np.isclose(half.mean(), 1.0)
    assert np.isclose(half[4:].sum() / half[:4].sum(), 0.5)  # the weighted part counts half a part
    assert np.isclose(half[4:6].sum(), half[6:].sum())  # and its classes still count the same
    try:
        script.HardNegatives({}, None, weight=0.0)
    except ValueError as error:
        assert "positive" in str(error)
    else:
        raise AssertionError("a zero weight was accepted")
