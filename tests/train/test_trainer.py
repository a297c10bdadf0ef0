"""The trainer with every loss, and exact resumption with the per-image state of ROLE / EM+APL / LL-Cp."""

import pytest
import torch

from spml.train import trainer
from spml.train.trainer import ALL_LOSSES, TrainConfig, last_path, train


def config(data, out, **kw):
    base = dict(ann=str(data["sp"]), arch="resnet18", image_size=32, epochs=1, batch_size=16, pretrained=False,
                out=str(out), progress=False, seed=2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("loss", [name for name in ALL_LOSSES if name not in ("bce", "an")])
def test_every_loss_trains(loss, tiny_data, tmp_path):
    out = train(config(tiny_data, tmp_path / "m.pt", loss=loss), log=lambda s: None)
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["config"]["loss"] == loss
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("loss,mode", [("em-apl", "end-to-end"), ("ll-cp", "end-to-end"), ("role", "end-to-end"),
                                       ("role", "linear")])
def test_resume_restores_the_loss_state_exactly(loss, mode, tiny_data, tmp_path, interrupt):
    loss_args = {"em-apl": {"warmup_epochs": 1}, "ll-cp": {"delta_rel": 0.2}}.get(loss, {})
    kw = dict(loss=loss, mode=mode, epochs=2, keep_last=True, loss_args=loss_args)
    whole = train(config(tiny_data, tmp_path / "whole.pt", **kw), log=lambda s: None)

    restore = interrupt(trainer, "train_one_epoch", 2)  # during the second epoch
    with pytest.raises(KeyboardInterrupt):
        train(config(tiny_data, tmp_path / "part.pt", **kw), log=lambda s: None)
    restore()
    part = train(config(tiny_data, tmp_path / "part.pt", resume=True, **kw), log=lambda s: None)

    a, b = torch.load(last_path(whole), weights_only=True), torch.load(last_path(part), weights_only=True)
    assert a["loss_state"] and set(a["loss_state"]) == set(b["loss_state"])
    for key in a["loss_state"]:
        torch.testing.assert_close(a["loss_state"][key], b["loss_state"][key], rtol=0, atol=0)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
