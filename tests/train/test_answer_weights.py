"""TrainConfig.answer_weights: the answers of a `weighted` selection weighted by 1 / their sampling weight in the
loss, which undoes the selection (inverse probability weighting); checked against the weights and the EM loss
written out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spml.errors import SpmlError
from spml.train.trainer import TrainConfig, build_data, resolve_config

SAMPLED = [0.1, 0.5, 1.0, 0.05, 0.2]  # the weights select sampled five questions with


@pytest.fixture
def selection(tiny_data, tmp_path):
    raw = json.loads(tiny_data["sp"].read_text())
    images, categories = [im["id"] for im in raw["images"]], [c["id"] for c in raw["categories"]]
    pairs = [(images[k], categories[k % len(categories)]) for k in (0, 3, 5, 8, 13)]
    path = tmp_path / "selection.json"
    path.write_text(json.dumps({"strategy": "weighted", "questions_chosen": [
        {"image_id": i, "category_id": c, "score": 0.5, "weight": w} for (i, c), w in zip(pairs, SAMPLED)]}))
    return path, pairs, images, categories


def data_of(tiny_data, tmp_path, **kw):
    cfg = resolve_config(TrainConfig(ann=str(tiny_data["sp"]), arch="resnet18", image_size=32, pretrained=False,
                                     out=str(tmp_path / "t.pt"), progress=False, **kw))
    return build_data(cfg, lambda line: None)


def test_each_answer_weighs_one_over_its_sampling_weight_scaled_to_mean_one(tiny_data, tmp_path, selection):
    path, pairs, images, categories = selection
    data = data_of(tiny_data, tmp_path, loss="em", answer_weights=str(path))
    inverse = [10.0, 2.0, 1.0, 20.0, 5.0]  # 1 / SAMPLED
    expected = np.ones((len(images), len(categories)), np.float32)
    for (i, c), w in zip(pairs, inverse):
        expected[images.index(i), categories.index(c)] = w / (sum(inverse) / 5)  # 38 / 5 = 7.6
    known = torch.stack([data.train[row][2] for row in range(len(images))]).numpy()
    assert known.dtype == np.float32 and np.allclose(known, expected)


def test_the_em_loss_is_the_weighted_mean_of_its_terms(tiny_data, tmp_path, selection):
    from spml.train.losses import compute_loss

    path, *_ = selection
    data = data_of(tiny_data, tmp_path, loss="em", answer_weights=str(path))
    rows = list(range(16))
    batch = [data.train[r] for r in rows]
    targets, known = torch.stack([b[1] for b in batch]), torch.stack([b[2] for b in batch])
    negatives = torch.stack([b[4] for b in batch])
    logits = torch.randn(targets.shape, generator=torch.Generator().manual_seed(0))
    alpha = 0.1
    got = compute_loss("em", logits, targets, known, negatives=negatives, alpha=alpha)
    p = torch.sigmoid(logits).double().numpy()
    y, w = targets.numpy() > 0.5, known.double().numpy()
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    terms = np.where(y, -np.log(p), -alpha * entropy)  # no observed negatives in the single positives
    assert not negatives.any() and w.max() > 1
    assert float(got) == pytest.approx((w * terms).sum() / w.sum(), rel=1e-5)


@pytest.mark.parametrize("change, message", [
    ({"loss": "role"}, "--answer-weights: only with the losses em, an, wan, bce, an-ls, epr and no mixing (loss role)"),
    ({"loss": "em", "mix_prob": 1.0}, "--answer-weights: only with the losses"),
    ({"loss": "em", "selection": {"questions_chosen": [{"image_id": 1, "category_id": 1}]}}, "not a selection.json of"),
])
def test_what_cannot_be_weighted_is_refused_in_one_line(tiny_data, tmp_path, selection, change, message):
    path, *_ = selection
    if "selection" in change:
        path.write_text(json.dumps(change.pop("selection")))
    with pytest.raises(SpmlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data_of(tiny_data, tmp_path, answer_weights=str(path), **change)


def test_spml_train_takes_the_weights_from_the_command_line(tiny_data, tmp_path, selection):
    """--answer-weights reaches the trainer: the log names the weights' span (1/SAMPLED scaled to mean 1), and a
    file that is not a weighted selection is one error line."""
    from click.testing import CliRunner

    from spml.train.cli import main

    path, *_ = selection
    common = ["--ann", str(tiny_data["sp"]), "--arch", "cnn4", "--image-size", "32", "--no-pretrained", "--epochs", "1",
              "--batch-size", "8", "--loss", "em"]
    result = CliRunner().invoke(main, [*common, "--answer-weights", str(path), "--out", str(tmp_path / "t.pt")])
    assert result.exit_code == 0, result.output
    inverse = 1 / np.array(SAMPLED)
    low, high = inverse.min() / inverse.mean(), inverse.max() / inverse.mean()
    assert f"from {low:.3g} to {high:.3g}" in result.output
    bad = tmp_path / "plain.json"
    bad.write_text(json.dumps({"questions_chosen": [{"image_id": 1, "category_id": 1}]}))
    result = CliRunner().invoke(main, [*common, "--answer-weights", str(bad), "--out", str(tmp_path / "u.pt")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error:") and "not a selection.json" in result.output
