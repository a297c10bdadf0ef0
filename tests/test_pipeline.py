"""The real CLI through every stage on a tiny generated dataset: data -> teacher -> ONNX -> labels -> student -> eval."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from pycocotools.coco import COCO
from sklearn.metrics import average_precision_score

from spml.data.cli import main as data_cli
from spml.data.coco import load_coco
from spml.data.images import Preprocess
from spml.eval.cli import main as eval_cli
from spml.export.cli import main as export_cli
from spml.label.cli import main as label_cli
from spml.train.cli import main as train_cli
from spml.train.model import load_checkpoint, model_from_checkpoint

SMALL = ["--arch", "resnet18", "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--no-pretrained"]


def run(cli, args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def sklearn_map(scores, truth):
    aps = [average_precision_score(truth[:, j], scores[:, j]) for j in range(truth.shape[1]) if truth[:, j].any()]
    return 100 * float(np.mean(aps))


def test_every_stage_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(data_cli, ["demo", "--out", "data", "--num-train", "40", "--num-test", "16", "--seed", "5"])
    run(data_cli, ["single-positive", "data/instances_train.json", "--out", "data/sp.json"])
    out = run(train_cli, ["--ann", "data/sp.json", "--val-ann", "data/instances_val.json", *SMALL])
    assert "loss: em" in out  # one positive per image: the seed's teacher loss is chosen and said
    run(export_cli, ["teacher.pt"])
    run(label_cli, ["--tau", "0.5", "--out", "labels.json"])  # model, annotations and images from the ONNX metadata

    coco = COCO("labels.json")
    sp = load_coco("data/sp.json")
    assert len(coco.getImgIds()) == len(sp)
    assert {a["source"] for a in coco.dataset["annotations"]} <= {"observed", "pseudo"}
    observed = sum(a["source"] == "observed" for a in coco.dataset["annotations"])
    assert observed == len(sp)  # every single positive kept

    run(eval_cli, ["labels.json", "--ann", "data/instances_train.json", "--out", "labels_report.json"])
    report = json.loads(open("labels_report.json").read())
    assert {"map", "ap", "num_images", "precision", "recall", "f1", "positives_per_image"} <= set(report)

    out = run(train_cli, ["--ann", "labels.json", "--loss", "bce", "--out", "student.pt", *SMALL])
    run(eval_cli, ["student.pt", "--ann", "data/instances_test.json", "--out", "student_report.json"])
    report = json.loads(open("student_report.json").read())

    # the same mAP from scikit-learn on scores computed here with torch
    test = load_coco("data/instances_test.json")
    ckpt = load_checkpoint("student.pt")
    model = model_from_checkpoint(ckpt)
    pre = Preprocess(32)
    x = np.stack([pre(test.images_dir / name) for name in test.file_names])
    with torch.inference_mode():
        scores = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    assert report["map"] == pytest.approx(sklearn_map(scores, test.positives), abs=1e-6)
    assert report["num_images"] == len(test)
    assert set(report["ap"]) == set(test.category_names)

    # the ONNX route gives the same figure
    run(export_cli, ["student.pt"])
    run(eval_cli, ["student.onnx", "--ann", "data/instances_test.json", "--out", "onnx_report.json"])
    assert json.loads(open("onnx_report.json").read())["map"] == pytest.approx(report["map"], abs=0.05)
