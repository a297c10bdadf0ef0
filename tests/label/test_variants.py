"""Beyond the paper's hard cut-off: ignore band, soft labels, per-class thresholds from priors."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from spml.data.coco import dataset_from_dict, load_coco
from spml.label.cli import main as label_cli
from spml.label.labeler import Scores, observed_priors, prior_thresholds
from spml.label.writers import write_labels
from spml.train.trainer import TrainConfig, train


def test_prior_thresholds_give_the_prior_rate():
    rng = np.random.default_rng(0)
    scores = rng.random((200, 3)).astype(np.float32)
    priors = np.array([0.1, 0.5, 0.0])
    taus = prior_thresholds(scores, priors)
    rates = (scores > taus).mean(axis=0)
    np.testing.assert_allclose(rates, priors)


def test_observed_priors_by_hand():
    raw = {"images": [{"id": i, "file_name": f"{i}"} for i in range(4)], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
           "annotations": [{"id": 1, "image_id": 0, "category_id": 1}, {"id": 2, "image_id": 1, "category_id": 1},
                           {"id": 3, "image_id": 2, "category_id": 1}, {"id": 4, "image_id": 3, "category_id": 2}]}
    np.testing.assert_allclose(observed_priors(dataset_from_dict(raw), 2.0), [1.0, 0.5])  # 3/4*2 clipped, 1/4*2


def test_band_and_soft_labels_are_written_and_read_back(tmp_path):
    raw = {"images": [{"id": 7, "file_name": "a"}, {"id": 8, "file_name": "b"}],
           "categories": [{"id": 3, "name": "x"}, {"id": 5, "name": "y"}, {"id": 9, "name": "z"}],
           "annotations": [{"id": 1, "image_id": 7, "category_id": 5}, {"id": 2, "image_id": 8, "category_id": 3}]}
    ds = dataset_from_dict(raw, tmp_path / "sp.json")
    scores = Scores(np.array([[0.9, 0.2, 0.5], [0.1, 0.7, 0.3]], np.float32))
    (tmp_path / "m.onnx").write_bytes(b"x")
    write_labels(tmp_path / "l.json", ds, scores, 0.6, model_path=tmp_path / "m.onnx", tau_low=0.25, soft=True)
    out = json.loads((tmp_path / "l.json").read_text())
    a, b = out["images"]
    assert a["neg_category_ids"] == [] and a["not_exhaustive_category_ids"] == [9]  # 5 observed, never negative
    assert b["neg_category_ids"] == [] and b["not_exhaustive_category_ids"] == [9]  # 3 observed, 5 positive (0.7)
    labels = load_coco(tmp_path / "l.json")
    np.testing.assert_array_equal(labels.unknown_mask(), [[False, False, True], [False, False, True]])
    np.testing.assert_allclose(labels.soft_targets(), [[0.9, 1.0, 0.5], [1.0, 0.7, 0.3]])  # observed at 1


def test_band_negatives(tmp_path):
    raw = {"images": [{"id": 1, "file_name": "a"}], "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}, {"id": 3, "name": "z"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1}]}
    ds = dataset_from_dict(raw, tmp_path / "sp.json")
    (tmp_path / "m.onnx").write_bytes(b"x")
    write_labels(tmp_path / "l.json", ds, Scores(np.array([[0.1, 0.1, 0.4]], np.float32)), 0.6, model_path=tmp_path / "m.onnx",
                 tau_low=0.2)
    im = json.loads((tmp_path / "l.json").read_text())["images"][0]
    assert im["neg_category_ids"] == [2] and im["not_exhaustive_category_ids"] == [3]


def test_student_from_teacher_with_soft_targets_and_band(tiny_data, tiny_teacher, tiny_onnx, tmp_path):
    result = CliRunner().invoke(label_cli, ["--model", str(tiny_onnx), "--tau", "0.6", "--tau-low", "0.4", "--soft",
                                            "--class-prior", "auto", "--out", str(tmp_path / "l.json")])
    assert result.exit_code == 0, result.output
    out = train(TrainConfig(ann=str(tmp_path / "l.json"), loss="bce", arch="resnet18", image_size=32, epochs=1, batch_size=16,
                            pretrained=False, init=str(tiny_teacher), soft_targets=True, out=str(tmp_path / "s.pt"),
                            progress=False), log=lambda s: None)
    assert out.exists()


def test_ignore_band_by_its_two_ends(tiny_onnx, tmp_path):
    result = CliRunner().invoke(label_cli, ["--model", str(tiny_onnx), "--tau-low", "0.2", "--tau-high", "0.7",
                                            "--out", str(tmp_path / "l.json")])
    assert result.exit_code == 0, result.output
    labels = json.loads((tmp_path / "l.json").read_text())
    assert labels["info"]["tau"] == 0.7 and labels["info"]["tau_low"] == 0.2
    assert all("not_exhaustive_category_ids" in im for im in labels["images"])


def test_bad_variant_options(tiny_onnx, tmp_path):
    r = CliRunner().invoke(label_cli, ["--model", str(tiny_onnx), "--tau", "0.5", "--tau-low", "0.6", "--out", str(tmp_path / "l.json")])
    assert r.exit_code == 1 and "--tau-low" in r.output
    r = CliRunner().invoke(label_cli, ["--model", str(tiny_onnx), "--tau", "0.5", "--class-prior", str(tmp_path / "none.json"),
                                       "--out", str(tmp_path / "l.json")])
    assert r.exit_code == 1 and "--class-prior" in r.output
