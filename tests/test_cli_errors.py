"""Bad input: one clear line, a non-zero exit, no traceback, nothing written."""

import json

import pytest
from click.testing import CliRunner

from spml.data.cli import main as data_cli
from spml.eval.cli import main as eval_cli
from spml.export.cli import main as export_cli
from spml.label.cli import main as label_cli
from spml.train.cli import main as train_cli


def fails(cli, args, message, code=1):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert message in result.output, result.output
    return result.output


def test_missing_files(tmp_path):
    fails(train_cli, ["--ann", tmp_path / "nope.json"], "no such file")
    fails(export_cli, [tmp_path / "nope.pt"], "no such file")
    fails(label_cli, ["--model", tmp_path / "nope.onnx", "--tau", "0.5", "--out", tmp_path / "l.json"], "no such file")
    fails(data_cli, ["single-positive", tmp_path / "nope.json", "--out", tmp_path / "sp.json"], "no such file")
    assert not (tmp_path / "l.json").exists() and not (tmp_path / "sp.json").exists()


def test_annotations_that_are_not_coco(tmp_path, tiny_onnx):
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "y.json").write_text("not json at all")
    fails(train_cli, ["--ann", tmp_path / "x.json"], "not a COCO annotations file")
    fails(label_cli, ["--model", tiny_onnx, "--ann", tmp_path / "y.json", "--tau", "0.5", "--out", tmp_path / "l.json"],
          "not a JSON file")
    fails(eval_cli, [tiny_onnx, "--ann", tmp_path / "x.json"], "not a COCO annotations file")


@pytest.mark.parametrize("tau", ["1", "1.5", "-0.1", "abc"])
def test_tau_outside_zero_one(tau, tiny_onnx, tmp_path):
    fails(label_cli, ["--model", tiny_onnx, "--tau", tau, "--out", tmp_path / "l.json"], "--tau", code=2)


def test_model_whose_categories_differ(tiny_onnx, tiny_data, tmp_path):
    raw = json.loads(tiny_data["sp"].read_text())
    raw["categories"][0]["name"] = "dodecahedron"
    (tmp_path / "other.json").write_text(json.dumps(raw))
    fails(label_cli, ["--model", tiny_onnx, "--ann", tmp_path / "other.json", "--images", tiny_data["sp"].parent,
                      "--tau", "0.5", "--out", tmp_path / "l.json"], "categories differ")
    assert not (tmp_path / "l.json").exists()


def test_unknown_loss_and_arch(tiny_data):
    out = fails(train_cli, ["--ann", tiny_data["sp"], "--loss", "nope"], "nope", code=2)
    assert "em" in out
    fails(train_cli, ["--ann", tiny_data["sp"], "--arch", "resnet51", "--no-pretrained"], "did you mean")


def test_existing_output_is_left_alone_on_error(tiny_onnx, tmp_path):
    (tmp_path / "labels.json").write_text("previous")
    (tmp_path / "x.json").write_text("[]")
    fails(label_cli, ["--model", tiny_onnx, "--ann", tmp_path / "x.json", "--tau", "0.5", "--out", tmp_path / "labels.json"],
          "not a COCO")
    assert (tmp_path / "labels.json").read_text() == "previous"
