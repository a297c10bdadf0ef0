"""The built-in dataset's regime is filled in by spml.train.builtin before resolve_config, which does no work:
no dataset generated, no backbone trained, and no import between trainer and pretrain either way."""

import ast
import dataclasses
from pathlib import Path

import pytest

import spml.train.trainer
from spml.errors import SpmlError
from spml.train import builtin
from spml.train.trainer import TrainConfig, resolve_config


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """Generating the built-in data or training a backbone raises; their paths are fakes under tmp_path."""
    import spml.data.demo
    import spml.train.pretrain

    def refuse(*args, **kwargs):
        raise AssertionError("resolve_config did work")

    for owner, name in ((spml.data.demo, "builtin_dataset"), (spml.data.demo, "builtin_single_positive"),
                        (spml.train.pretrain, "builtin_backbone"), (spml.data.demo, "make_demo")):
        monkeypatch.setattr(owner, name, refuse)
    return refuse


def test_resolve_config_does_no_work(no_work):
    cfg = resolve_config(TrainConfig(ann="sp.json", arch="cnn4", device="cpu"))
    assert (cfg.arch, cfg.image_size, cfg.epochs, cfg.batch_size, cfg.weights, cfg.lr) == ("cnn4", 448, 10, 8, None, 1e-3)
    with pytest.raises(SpmlError, match="no training labels"):
        resolve_config(TrainConfig())


@pytest.mark.parametrize("given,expected", [
    # (what the user gave, what the built-in regime resolves to: the values the trainer used before the move)
    ({}, dict(arch="cnn4", image_size=32, epochs=8, batch_size=32, weights="bb", lr=3e-4)),
    ({"preset": "coco"}, dict(arch="cnn4", image_size=32, epochs=8, batch_size=16, weights="bb", lr=3e-4)),
    ({"mode": "linear"}, dict(arch="cnn4", image_size=32, epochs=25, batch_size=32, weights="bb", lr=3e-4)),
    ({"lr": 0.01, "epochs": 2}, dict(arch="cnn4", image_size=32, epochs=2, batch_size=32, weights="bb", lr=0.01)),
    ({"arch": "resnet18", "pretrained": False}, dict(arch="resnet18", image_size=32, epochs=8, batch_size=32,
                                                     weights=None, lr=1e-3)),
    ({"init": "t.pt"}, dict(arch="cnn4", weights=None, lr=1e-3)),
])
def test_builtin_config_fills_the_builtin_regime(monkeypatch, tmp_path, given, expected):
    import spml.data.demo
    import spml.train.pretrain

    made = []
    monkeypatch.setattr(spml.data.demo, "builtin_dataset", lambda: {"val": tmp_path / "val.json"})
    monkeypatch.setattr(spml.data.demo, "builtin_single_positive", lambda: tmp_path / "sp.json")
    monkeypatch.setattr(spml.train.pretrain, "builtin_backbone",
                        lambda arch, size, log=print: made.append((arch, size)) or "bb")
    cfg = resolve_config(builtin.builtin_config(TrainConfig(device="cpu", **given), log=lambda s: None))
    assert (cfg.ann, cfg.val_ann) == (str(tmp_path / "sp.json"), str(tmp_path / "val.json"))
    assert {k: getattr(cfg, k) for k in expected} == expected
    assert made == ([("cnn4", 32)] if expected["weights"] else [])


def test_a_config_with_its_data_is_left_alone(no_work):
    config = TrainConfig(ann="sp.json")
    assert builtin.builtin_config(config) is config


def test_no_import_between_trainer_and_pretrain():
    """Function-local imports count: trainer imports neither pretrain nor builtin (which imports pretrain)."""
    tree = ast.parse(Path(spml.train.trainer.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not imported & {"spml.train.pretrain", "spml.train.builtin"}, imported
