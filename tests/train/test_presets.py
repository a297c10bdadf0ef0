"""--preset, --lr-schedule, --head-lr-mult: the published values land in the config, explicit options win, the
checkpoint records them, and the optimizer really has the schedule and the head's learning rate."""

import pytest
import torch
from click.testing import CliRunner

from spml.errors import SpmlError
from spml.train import trainer
from spml.train.cli import main as train_cli
from spml.train.model import create_model
from spml.train.trainer import TrainConfig, last_path, make_optimizer, make_scheduler, resolve_config, train


def resolved(**kw):
    base = dict(ann="sp.json", arch="resnet18", pretrained=False, device="cpu")
    return resolve_config(TrainConfig(**{**base, **kw}))


# the reference code's values, typed from SPML-AckTheUnknown main.py, Cole et al. and LargeLossMatters config.py
PUBLISHED = {  # alpha, beta, theta, warm-up, k, batch
    "coco": (0.1, 0.9, 0.9, 5, 2.9, 16),
    "voc": (0.2, 0.02, 0.9, 5, 1.5, 8),
    "nus": (0.1, 0.2, 0.9, 4, 1.9, 16),
    "cub": (0.01, 0.4, 0.9, 3, 31.4, 8),
}


@pytest.mark.parametrize("preset", list(PUBLISHED))
def test_preset_sets_the_published_values(preset):
    cfg = resolved(preset=preset, loss="em-apl")
    got = (cfg.alpha, cfg.beta, cfg.theta, cfg.warmup_epochs, cfg.expected_positives, cfg.batch_size)
    assert got == PUBLISHED[preset]
    assert (cfg.lr_schedule, cfg.head_lr_mult, cfg.delta_rel, cfg.ls_coef) == ("constant", 1.0, 0.002, 0.1)
    ll = resolved(preset=preset, loss="ll-r")  # LargeLossMatters: batch 16 and the head at 10x on every dataset
    assert (ll.batch_size, ll.head_lr_mult, ll.lr_schedule) == (16, 10.0, "constant")


def test_fine_tuning_lr_follows_the_preset():
    assert resolved(preset="cub", loss="em", pretrained=True).lr == 1e-4  # Zhou et al. on CUB
    assert resolved(preset="cub", loss="ll-ct", pretrained=True).lr == 1e-5  # LargeLossMatters
    assert resolved(preset="voc", pretrained=True).lr == 1e-5
    assert resolved(preset="cub").lr == 1e-3  # from scratch: spml's default, no reference trains from scratch


def test_without_a_preset_spml_keeps_its_defaults():
    cfg = resolved()
    assert cfg.preset is None
    assert (cfg.lr_schedule, cfg.head_lr_mult, cfg.alpha, cfg.expected_positives, cfg.ls_coef) == ("cosine", 1.0, 0.1, 2.9, 0.1)
    assert (cfg.beta, cfg.theta, cfg.warmup_epochs, cfg.delta_rel, cfg.batch_size) == (0.9, 0.9, 5, 0.002, 8)


def test_explicit_options_win_over_the_preset():
    cfg = resolved(preset="voc", loss="ll-r", alpha=0.5, beta=0.3, batch_size=4, lr_schedule="cosine",
                   head_lr_mult=2.0, expected_positives=3.0, ls_coef=0.2)
    assert (cfg.alpha, cfg.beta, cfg.batch_size, cfg.lr_schedule, cfg.head_lr_mult, cfg.expected_positives,
            cfg.ls_coef) == (0.5, 0.3, 4, "cosine", 2.0, 3.0, 0.2)
    assert cfg.theta == 0.9 and cfg.warmup_epochs == 5  # not given: the preset's


def test_the_command_line_leaves_unset_options_unset(monkeypatch):
    seen = {}

    def fake_train(config, log=print):
        seen["config"] = config
        return "teacher.pt"

    monkeypatch.setattr(trainer, "train", fake_train)
    result = CliRunner().invoke(train_cli, ["--ann", "sp.json", "--preset", "voc", "--alpha", "0.3",
                                            "--lr-schedule", "cosine"])
    assert result.exit_code == 0, result.output
    cfg = seen["config"]
    assert (cfg.preset, cfg.alpha, cfg.lr_schedule) == ("voc", 0.3, "cosine")
    assert cfg.beta is None and cfg.expected_positives is None and cfg.head_lr_mult is None and cfg.ls_coef is None
    cfg = resolve_config(TrainConfig(**{**vars(cfg), "arch": "resnet18", "pretrained": False}))
    assert (cfg.alpha, cfg.beta, cfg.expected_positives, cfg.lr_schedule) == (0.3, 0.02, 1.5, "cosine")


@pytest.mark.parametrize("kw, message", [(dict(head_lr_mult=0.0), "head-lr-mult"), (dict(ls_coef=0.5), "ls-coef"),
                                         (dict(lr_schedule="step"), "lr-schedule"), (dict(preset="imagenet"), "preset")])
def test_bad_values_are_one_line_errors(kw, message):
    with pytest.raises(SpmlError, match=message):
        resolved(**kw)


def test_head_gets_its_multiple_of_the_lr():
    model = create_model("resnet18", 3, False)
    cfg = resolved(head_lr_mult=10.0, lr=1e-3)
    groups = make_optimizer(model, model, cfg, None).param_groups
    assert [g["lr"] for g in groups] == [1e-3, 1e-2]
    assert {id(p) for p in groups[1]["params"]} == {id(model.fc.weight), id(model.fc.bias)}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    one = make_optimizer(model, model, resolved(lr=1e-3), None).param_groups  # default: one group
    assert len(one) == 1 and len(one[0]["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_schedules(schedule):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=0.1)
    scheduler = make_scheduler(optimizer, resolved(lr_schedule=schedule), 10)
    lrs = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    if schedule == "constant":
        assert lrs == [0.1] * 10
    else:
        assert lrs[-1] == pytest.approx(0.0, abs=1e-12) and lrs == sorted(lrs, reverse=True)


def test_checkpoint_records_the_preset_and_the_optimizer_ran_with_it(tiny_data, tmp_path):
    out = tmp_path / "ll.pt"
    train(TrainConfig(ann=str(tiny_data["sp"]), arch="resnet18", image_size=32, epochs=1, pretrained=False, lr=1e-3,
                      loss="ll-r", preset="voc", out=str(out), progress=False, keep_last=True), log=lambda s: None)
    config = torch.load(out, weights_only=True)["config"]
    assert (config["preset"], config["lr_schedule"], config["head_lr_mult"], config["batch_size"]) == ("voc", "constant", 10.0, 16)
    assert (config["alpha"], config["expected_positives"], config["delta_rel"], config["ls_coef"]) == (0.2, 1.5, 0.002, 0.1)
    last = torch.load(last_path(out), weights_only=True)
    # after every step of the epoch the constant schedule left both groups where they started
    assert [g["lr"] for g in last["optimizer"]["param_groups"]] == [1e-3, 1e-2]
