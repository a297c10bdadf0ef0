"""The card's student command as typed: `spml-train --ann labels.json --loss bce --out student.pt` inherits the
teacher's recipe recorded in labels.json, and `spml-eval student.pt` needs no --ann on the built-in data."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from spml.data.cli import main as data_cli
from spml.eval.cli import main as eval_cli
from spml.label.cli import main as label_cli
from spml.train import trainer
from spml.train.cli import main as train_cli


def invoke(cli, args, **env):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env or None)


def labels_with_teacher(tiny_data, tmp_path, **teacher):
    raw = json.loads(tiny_data["sp"].read_text())
    recipe = {"arch": "mobilenet_v3_small", "image_size": 40, "epochs": 3, "batch_size": 12, "lr": 0.002,
              "pretrained": False, "mode": "end-to-end", "val_ann": str(tiny_data["val"]),
              "val_images": str(tiny_data["val"].parent), "model": "/somewhere/teacher.onnx", **teacher}
    raw["info"] = {**raw["info"], "description": "spml pseudo labels", "model_sha256": "0" * 64, "teacher": recipe}
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(raw))
    return path


def captured_config(monkeypatch, args):
    seen = {}

    def fake_train(config, log=print):
        seen["config"] = config
        return Path(config.out)

    monkeypatch.setattr(trainer, "train", fake_train)
    result = invoke(train_cli, args)
    assert result.exit_code == 0, result.output
    return seen["config"], result.output


def test_unset_options_come_from_the_teacher_and_flags_win(tiny_data, tmp_path, monkeypatch):
    labels = labels_with_teacher(tiny_data, tmp_path)
    cfg, out = captured_config(monkeypatch, ["--ann", labels, "--loss", "bce", "--out", tmp_path / "student.pt"])
    assert (cfg.arch, cfg.image_size, cfg.epochs, cfg.batch_size, cfg.lr, cfg.pretrained) == (
        "mobilenet_v3_small", 40, 3, 12, 0.002, False)
    assert cfg.val_ann == str(tiny_data["val"]) and cfg.val_images == str(tiny_data["val"].parent)
    line = next(line for line in out.splitlines() if line.startswith("inherited"))
    assert "/somewhere/teacher.onnx" in line and str(labels) in line and "arch mobilenet_v3_small" in line
    assert f"next: spml-eval {tmp_path / 'student.pt'}" in out  # a student is evaluated next, not exported

    cfg, out = captured_config(monkeypatch, ["--ann", labels, "--loss", "bce", "--epochs", "5", "--arch", "resnet18",
                                             "--val-ann", tiny_data["test"], "--out", tmp_path / "student.pt"])
    assert (cfg.arch, cfg.epochs, cfg.image_size, cfg.batch_size) == ("resnet18", 5, 40, 12)
    assert cfg.val_ann == str(tiny_data["test"]) and cfg.val_images is None  # the user's set, not the teacher's images


def test_linear_teacher_mode_is_inherited_unless_given(tiny_data, tmp_path, monkeypatch):
    labels = labels_with_teacher(tiny_data, tmp_path, mode="linear", epochs=25)
    cfg, _ = captured_config(monkeypatch, ["--ann", labels, "--loss", "bce"])
    assert cfg.mode == "linear" and cfg.epochs == 25
    cfg, _ = captured_config(monkeypatch, ["--ann", labels, "--loss", "bce", "--mode", "end-to-end"])
    assert cfg.mode == "end-to-end" and cfg.epochs is None and cfg.lr is None  # end-to-end's own defaults
    cfg, _ = captured_config(monkeypatch, ["--ann", labels, "--loss", "bce", "--pretrained"])
    assert cfg.pretrained is True and cfg.lr is None  # the lr of the teacher's from-scratch regime is not carried over


def test_a_zero_shot_teachers_mode_is_not_a_students(tiny_data, tmp_path, monkeypatch):
    """spml-export --zero-shot records mode zero-shot (how the teacher was made); its labels' student trains in
    the default mode, inheriting the rest (arch, image size)."""
    from spml.train.recipe import TRAINING_MODES

    assert TRAINING_MODES == trainer.MODES
    labels = labels_with_teacher(tiny_data, tmp_path, mode="zero-shot", epochs=None, lr=None)
    cfg, out = captured_config(monkeypatch, ["--ann", labels, "--loss", "bce"])
    assert cfg.mode == "end-to-end" and cfg.arch == "mobilenet_v3_small" and cfg.image_size == 40
    assert "inherited from the teacher" in out and "zero-shot" not in out


def test_a_plain_coco_file_inherits_nothing(tiny_data, monkeypatch):
    cfg, out = captured_config(monkeypatch, ["--ann", tiny_data["sp"]])
    assert cfg.arch is None and cfg.epochs is None and "inherited" not in out
    assert "next: spml-export" in out


def test_the_card_chain_student_then_eval(tiny_onnx, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke(label_cli, [tiny_onnx, "--tau", "0.5", "--out", "labels.json"]).exit_code == 0
    result = invoke(train_cli, ["--ann", "labels.json", "--loss", "bce", "--out", "student.pt"])
    assert result.exit_code == 0, result.output
    assert "inherited from the teacher" in result.output
    assert "training resnet18 (from scratch) at 32px" in result.output and "1 epochs, batch 16" in result.output
    cfg = torch.load("student.pt", weights_only=True)["config"]
    assert cfg["val_ann"] == str(tiny_data["val"])
    assert not Path("student.last.pt").exists()  # a completed run leaves only its checkpoint
    assert result.output.strip().splitlines()[-1] == "next: spml-eval student.pt"

    result = invoke(eval_cli, ["student.pt"], SPML_PROGRESS_SECONDS="0")
    assert result.exit_code == 0, result.output
    assert str(tiny_data["test"]) in result.output and "over 16 images" in result.output

    result = invoke(train_cli, ["--ann", "labels.json", "--loss", "bce", "--out", "kept.pt", "--keep-last"])
    assert result.exit_code == 0 and Path("kept.last.pt").exists()


def test_eval_defaults_to_the_builtin_test_set(tiny_teacher, tiny_onnx, tiny_data):
    # tiny_data is the built-in generator's output: a model trained on it is evaluated on its test split
    for model in (tiny_teacher, tiny_onnx):
        result = invoke(eval_cli, [model], SPML_PROGRESS_SECONDS="0")
        assert result.exit_code == 0, result.output
        assert f"--ann: {tiny_data['test']}" in result.output and "over 16 images" in result.output
    assert "evaluating: 16/16" in result.output and "labeling" not in result.output  # the .onnx's bar


def test_eval_without_ann(tiny_onnx, tmp_path):
    result = invoke(eval_cli, [tmp_path / "labels.json"])
    assert result.exit_code == 2 and "--ann" in result.output


def test_where_the_builtin_dataset_is(tmp_path):
    result = invoke(data_cli, ["demo", "--where"], SPML_CACHE=str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    assert f"test: {tmp_path / 'c' / 'demo' / 'instances_test.json'} (created on first use" in result.output
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_gr_ensemble_soft_labels_and_a_larger_student_as_typed(tiny_data, tmp_path):
    """GR teachers of two seeds, one ensemble model, soft labels (the ensemble's train set, recorded in it), and a
    student at a larger size from the first teacher: the commands of docs/recipe's 64-px GR candidate."""
    from click.testing import CliRunner

    from spml.export.cli import main as export_cli
    from spml.label.cli import main as label_cli
    from spml.train.cli import main as train_cli

    def run(cli, *args):
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.output

    common = ["--arch", "cnn4", "--image-size", "32", "--batch-size", "16", "--no-pretrained", "--val-ann", tiny_data["val"]]
    for seed in (0, 1):
        run(train_cli, "--ann", tiny_data["sp"], "--loss", "gr", "--epochs", "2", "--seed", seed, *common,
            "--out", tmp_path / f"gr_{seed}.pt")
    run(export_cli, tmp_path / "gr_0.pt", tmp_path / "gr_1.pt", "--out", tmp_path / "teacher.onnx")
    run(label_cli, tmp_path / "teacher.onnx", "--tau", "0.75", "--soft", "--out", tmp_path / "labels.json")
    labels = json.loads((tmp_path / "labels.json").read_text())
    assert labels["info"]["soft"] and labels["info"]["teacher"]["epochs"] == 2
    out = run(train_cli, "--ann", tmp_path / "labels.json", "--soft-targets", "--init", tmp_path / "gr_0.pt",
              "--image-size", "48", "--epochs", "1", "--out", tmp_path / "student.pt")
    assert "inherited from the teacher" in out
    config = torch.load(tmp_path / "student.pt", weights_only=True)["config"]
    assert config["image_size"] == 48 and config["init"] == str(tmp_path / "gr_0.pt") and config["soft_targets"]
    assert config["loss"] == "bce" and config["arch"] == "cnn4" and config["epochs"] == 1
