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
    alpha, beta, theta, warmup, k, batch = PUBLISHED[preset]
    cfg = resolved(preset=preset, loss="em-apl")
    assert cfg.loss_args == {"alpha": alpha, "beta": beta, "theta": theta, "warmup_epochs": warmup}
    assert (cfg.batch_size, cfg.lr_schedule, cfg.head_lr_mult) == (batch, "constant", 1.0)
    for loss in ("epr", "role"):
        assert resolved(preset=preset, loss=loss).loss_args["expected_positives"] == k
    assert resolved(preset=preset, loss="em").loss_args == {"alpha": alpha}
    assert resolved(preset=preset, loss="an-ls").loss_args == {"ls_coef": 0.1}  # Cole et al.'s, every dataset
    ll = resolved(preset=preset, loss="ll-r")  # LargeLossMatters: batch 16 and the head at 10x on every dataset
    assert (ll.batch_size, ll.head_lr_mult, ll.lr_schedule, ll.loss_args) == (16, 10.0, "constant", {"delta_rel": 0.002})


def test_fine_tuning_lr_follows_the_preset():
    assert resolved(preset="cub", loss="em", pretrained=True).lr == 1e-4  # Zhou et al. on CUB
    assert resolved(preset="cub", loss="ll-ct", pretrained=True).lr == 1e-5  # LargeLossMatters
    assert resolved(preset="voc", pretrained=True).lr == 1e-5
    assert resolved(preset="cub").lr == 1e-3  # from scratch: spml's default, no reference trains from scratch


def test_without_a_preset_spml_keeps_its_defaults():
    cfg = resolved()
    assert cfg.preset is None
    assert (cfg.lr_schedule, cfg.head_lr_mult, cfg.batch_size, cfg.loss_args) == ("cosine", 1.0, 8, {"alpha": 0.1})
    assert resolved(loss="em-apl").loss_args == {"alpha": 0.1, "beta": 0.9, "theta": 0.9, "warmup_epochs": 5}
    assert resolved(loss="epr").loss_args == {"expected_positives": 2.9}
    assert resolved(loss="ll-cp").loss_args == {"delta_rel": 0.002, "schedule": "fixed"}
    assert resolved(loss="bce").loss_args == {}


def test_explicit_options_win_over_the_preset():
    cfg = resolved(preset="voc", loss="em-apl", loss_args={"alpha": 0.5, "beta": 0.3}, batch_size=4,
                   lr_schedule="cosine", head_lr_mult=2.0)
    assert (cfg.batch_size, cfg.lr_schedule, cfg.head_lr_mult) == (4, "cosine", 2.0)
    assert cfg.loss_args == {"alpha": 0.5, "beta": 0.3, "theta": 0.9, "warmup_epochs": 5}  # the rest: the preset's
    assert resolved(preset="voc", loss="epr", loss_args={"expected_positives": 3.0}).loss_args == {"expected_positives": 3.0}


def test_the_command_line_leaves_unset_options_unset(monkeypatch):
    seen = {}

    def fake_train(config, log=print):
        seen["config"] = config
        return "teacher.pt"

    monkeypatch.setattr(trainer, "train", fake_train)
    result = CliRunner().invoke(train_cli, ["--ann", "sp.json", "--preset", "voc", "--loss-arg", "alpha=0.3",
                                            "--lr-schedule", "cosine"])
    assert result.exit_code == 0, result.output
    cfg = seen["config"]
    assert (cfg.preset, cfg.loss_args, cfg.lr_schedule) == ("voc", {"alpha": 0.3}, "cosine")
    assert cfg.head_lr_mult is None and cfg.batch_size is None
    cfg = resolve_config(TrainConfig(**{**vars(cfg), "arch": "resnet18", "pretrained": False, "loss": "em-apl"}))
    assert (cfg.loss_args["alpha"], cfg.loss_args["beta"], cfg.lr_schedule, cfg.batch_size) == (0.3, 0.02, "cosine", 8)


# each retired flag, the loss it belongs to, a value, and the --loss-arg it stands for (typed, not derived)
RETIRED = [("--alpha", "em", "0.3", "alpha=0.3"), ("--beta", "em-apl", "0.5", "beta=0.5"),
           ("--theta", "em-apl", "0.8", "theta=0.8"), ("--warmup-epochs", "em-apl", "3", "warmup_epochs=3"),
           ("--delta-rel", "ll-r", "0.01", "delta_rel=0.01"), ("--gr-beta", "gr", "0,1,-1,-1", "beta=0,1,-1,-1"),
           ("--gr-alpha", "gr", "0.4,1.5,0.7,0.6", "alpha=0.4,1.5,0.7,0.6"), ("--gr-q", "gr", "0.1,1", "q=0.1,1"),
           ("--ls-coef", "an-ls", "0.2", "ls_coef=0.2"), ("--expected-positives", "epr", "3.5", "expected_positives=3.5")]
TYPED = {"--alpha": 0.3, "--beta": 0.5, "--theta": 0.8, "--warmup-epochs": 3, "--delta-rel": 0.01,
         "--gr-beta": (0.0, 1.0, -1.0, -1.0), "--gr-alpha": (0.4, 1.5, 0.7, 0.6), "--gr-q": (0.1, 1.0),
         "--ls-coef": 0.2, "--expected-positives": 3.5}


@pytest.mark.parametrize("flag, loss, value, loss_arg", RETIRED, ids=[r[0] for r in RETIRED])
def test_a_retired_flag_gives_the_config_of_its_loss_arg(monkeypatch, flag, loss, value, loss_arg):
    seen = []
    monkeypatch.setattr(trainer, "train", lambda config, log=print: seen.append(config) or "teacher.pt")
    old = CliRunner().invoke(train_cli, ["--ann", "sp.json", flag, value, "--loss", loss])
    new = CliRunner().invoke(train_cli, ["--ann", "sp.json", "--loss", loss, "--loss-arg", loss_arg])
    assert old.exit_code == 0 and new.exit_code == 0, old.output + new.output
    assert seen[0] == seen[1] and seen[0].loss_args == {loss_arg.split("=")[0]: TYPED[flag]}
    assert old.stderr.splitlines() == [f"deprecated: {flag} will be removed in the next release; use --loss-arg {loss_arg}"]
    assert new.stderr == ""


@pytest.mark.parametrize("args, message", [
    (["--loss", "ll-r", "--loss-arg", "alpha=0.1"], "--loss ll-r has no hyperparameter 'alpha'; valid: delta_rel=0.002"),
    (["--loss-arg", "alpha=0.1", "--loss", "an"], "--loss an has no hyperparameter 'alpha'; an has no hyperparameters"),
    (["--loss", "gr", "--loss-arg", "q=0.1"], "--loss-arg q: expected 2 comma-separated numbers, got '0.1'"),
    (["--loss", "em-apl", "--loss-arg", "warmup_epochs=2.5"], "--loss-arg warmup_epochs: expected an integer"),
    (["--loss", "em", "--loss-arg", "alpha"], "expected KEY=VALUE; valid: alpha=0.1")])
def test_a_bad_loss_arg_is_one_line_naming_the_valid_keys(args, message):
    result = CliRunner().invoke(train_cli, ["--ann", "sp.json", *args])
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 2 and len(errors) == 1 and message in errors[0], result.output


@pytest.mark.parametrize("kw, message", [(dict(head_lr_mult=0.0), "head-lr-mult"),
                                         (dict(loss="an-ls", loss_args={"ls_coef": 0.5}), "ls_coef"),
                                         (dict(loss="epr", loss_args={"alpha": 0.5}), "valid: expected_positives=2.9"),
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
    assert config["loss_args"] == {"delta_rel": 0.002}
    last = torch.load(last_path(out), weights_only=True)
    # after every step of the epoch the constant schedule left both groups where they started
    assert [g["lr"] for g in last["optimizer"]["param_groups"]] == [1e-3, 1e-2]
