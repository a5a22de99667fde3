"""The review loop's pure parts: verdict and tag words, restoring neutralised cells, people's verdict per
call, precision/recall and the suggested threshold."""

from __future__ import annotations

import pytest

from llmsight.review.export import csv_cell
from llmsight.review.imports import restore_cell
from llmsight.review.labels import Label, parse_tags, parse_verdict
from llmsight.review.precision import human_verdicts, score, suggest_threshold


def test_verdict_words_and_unknown_ones():
    assert [parse_verdict(w) for w in ("Accept", " ok ", "1", "yes")] == ["accept"] * 4
    assert [parse_verdict(w) for w in ("REJECT", "bad", "0", "no")] == ["reject"] * 4
    with pytest.raises(ValueError, match="'maybe' is neither accept nor reject"):
        parse_verdict("maybe")


def test_tags_in_canonical_order_and_unknown_named():
    assert parse_tags("toxic; Wrong,offtopic") == ("wrong", "off-topic", "toxic")
    assert parse_tags("") == ()
    with pytest.raises(ValueError, match="unknown tag\\(s\\) funny, rude"):
        parse_tags("wrong, rude, funny")


@pytest.mark.parametrize("text", ["=SUM(A1:A9)", "+1 555", "-5 degrees", "@team", "\tindented", "\rreturn",
                                  "plain", "'quoted by the user", "5"])
def test_restore_cell_undoes_the_exports_neutralisation(text):
    assert restore_cell(csv_cell(text)) == text


def test_a_label_refuses_what_the_table_cannot_mean():
    with pytest.raises(ValueError, match="neither accept nor reject"):
        Label("t1", "ana", "maybe")
    with pytest.raises(ValueError, match="unknown tag"):
        Label("t1", "ana", "accept", ("rude",))
    with pytest.raises(ValueError, match="reviewer"):
        Label("t1", " ", "accept")


def test_human_verdict_is_the_majority_and_a_tie_counts_as_bad():
    labels = [Label("t1", "ana", "reject", ("toxic",)), Label("t1", "bo", "accept"),
              Label("t2", "ana", "accept"), Label("t2", "bo", "accept"), Label("t2", "cy", "reject", ("toxic",)),
              Label("t3", "ana", "reject", ("toxic", "unsafe"))]
    assert human_verdicts(labels) == {"t1": (True, True), "t2": (False, False), "t3": (True, True)}


def test_precision_and_recall_count_only_traces_both_sides_know():
    flagged = {"a": True, "b": True, "c": False, "d": False, "x": True}
    people = {"a": True, "b": False, "c": True, "d": False, "y": True}
    result = score("2026-W47", "toxicity", flagged, people)
    assert (result.reviewed, result.flagged, result.human_positive, result.true_positive) == (4, 2, 2, 1)
    assert (result.precision, result.recall) == (0.5, 0.5)
    none = score("2026-W47", "toxicity", {"a": False}, {"a": False})
    assert (none.precision, none.recall) == (None, None)


def test_suggested_threshold_is_the_best_f1_on_the_labelled_scores():
    scores = [0.95, 0.7, 0.55, 0.4, 0.2, 0.1]
    toxic = [True, True, True, False, False, False]
    assert suggest_threshold(scores, toxic, current=0.9) == (0.55, 1.0, 1.0)
    # one class only: no threshold can be chosen from it
    assert suggest_threshold([0.9, 0.1], [False, False], current=0.5) is None


def _week_scores(label: str, scores: dict[str, float], toxic: dict[str, bool], threshold: float):
    from llmsight.review.precision import TOXICITY, WeekScores
    from llmsight.review.weeks import parse_week

    monitor = score(label, TOXICITY, {t: p >= threshold for t, p in scores.items()}, toxic)
    return WeekScores(parse_week(label), [monitor], scores, threshold)


def test_a_threshold_is_suggested_only_when_precision_or_recall_drift():
    from llmsight.review.precision import threshold_advice

    toxic = {"a": True, "b": True, "c": False, "d": False}
    # At 0.5 the flag is right on every call: nothing to suggest.
    good = _week_scores("2026-W47", {"a": 0.9, "b": 0.8, "c": 0.2, "d": 0.1}, toxic, 0.5)
    assert threshold_advice(good, None, toxic) is None
    # At 0.85 it misses b: recall 50%, below the target and down from 100% the week before.
    missed = _week_scores("2026-W48", {"a": 0.9, "b": 0.8, "c": 0.2, "d": 0.1}, toxic, 0.85)
    advice = threshold_advice(missed, good, toxic)
    assert advice is not None
    assert (advice.current, advice.suggested, advice.precision, advice.recall) == (0.85, 0.8, 1.0, 1.0)
    assert "recall 50% is below 80%" in advice.reason and "recall moved from 100% to 50% since 2026-W47" in advice.reason
    assert (advice.reviewed, advice.toxic) == (4, 2)
    assert "0.800 (now 0.850)" in advice.text()


def test_the_review_pages_scorer_scores_each_text_once():
    from llmsight.dashboard.review_queue import MemoScorer

    class Lengths:  # a stand-in for the toxicity model: the score is the text's length / 10
        threshold = 0.5
        calls: list[list[str]] = []

        def score(self, texts):
            self.calls.append(list(texts))
            return [len(t) / 10 for t in texts]

    model = Lengths()
    memo = MemoScorer(model, limit=3)
    assert memo.score(["ab", "abcd", "ab"]) == [0.2, 0.4, 0.2]
    assert memo.score(["abcd", "abcdef"]) == [0.4, 0.6]
    assert model.calls == [["ab", "abcd"], ["abcdef"]] and memo.scored == 3
    memo.score(["x"])  # past the limit: forgets, scores afresh
    assert model.calls[-1] == ["x"] and len(memo.known) == 1
