"""--precision and --compile: bf16 autocast (which runs on the CPU too) trains close to fp32 and leaves fp32
weights; a torch.compile that fails falls back to eager with one warning; fp16 and CUDA paths where a GPU is."""

from __future__ import annotations

import pytest
import torch

from spml.errors import SpmlError
from spml.train import precision
from spml.train.trainer import TrainConfig, last_path, train


def config(data, out, **kw):
    # an: a loss of order 1 whose decrease shows (em's sits near 0.007, a difference of two terms);
    # shufflenet: where the CPU has no bf16 instructions (no AVX-512 BF16/AMX) bf16 is emulated, 5x slower
    # than fp32 here against resnet18's 40x
    base = dict(ann=str(data["sp"]), val_ann=str(data["val"]), arch="shufflenet_v2_x0_5", loss="an", image_size=32, epochs=2,
                pretrained=False, out=str(out), progress=False, seed=1, batch_size=16, keep_last=True)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def fp32_run(tiny_data, tmp_path_factory):
    out = train(config(tiny_data, tmp_path_factory.mktemp("fp32") / "m.pt", precision="fp32"), log=lambda s: None)
    return torch.load(last_path(out), weights_only=True) | {"path": last_path(out)}


def test_precision_choices(monkeypatch):
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(SpmlError, match="fp16 needs a CUDA device"):
        precision.resolve_precision("fp16", "cpu")
    for supported, expected in ((True, "bf16"), (False, "fp16")):  # Ampere and later / older GPUs
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
        assert precision.resolve_precision("auto", "cuda") == expected
    assert precision.grad_scaler("bf16", "cuda") is None  # bf16 has fp32's range: no loss scaling


@pytest.mark.slow
def test_bf16_trains_close_to_fp32_with_fp32_weights(fp32_run, tiny_data, tmp_path):
    out = train(config(tiny_data, tmp_path / "m.pt", precision="bf16"), log=lambda s: None)
    bf16 = torch.load(last_path(out), weights_only=True)
    assert bf16["config"]["precision"] == "bf16" and fp32_run["config"]["precision"] == "fp32"
    assert all(v.dtype in (torch.float32, torch.int64) for v in bf16["model"].values())
    a, b = fp32_run["history"], bf16["history"]
    assert a[-1]["train_loss"] != b[-1]["train_loss"]  # autocast did run in bf16...
    for x, y in zip(a, b):  # ...and trains what fp32 does
        assert abs(x["train_loss"] - y["train_loss"]) < 0.02, (x, y)
    # predictions and mAP on all 48 fully labelled images. After 2 epochs from scratch the scores still bunch
    # together, so a shift of 0.002 reorders images and mAP moves by points (the 8 of validation alone, by 5 or
    # more): the predictions are the sharp check, mAP the coarse one.
    from spml.data.coco import load_coco
    from spml.eval.evaluate import model_scores
    from spml.eval.metrics import mean_average_precision

    for split in ("train", "test"):
        data = load_coco(tiny_data[split])
        pa, pb = (model_scores(path, data, 16, False)[0] for path in (fp32_run["path"], last_path(out)))
        assert abs(pa - pb).max() < 0.01
        assert abs(mean_average_precision(pa, data.positives) - mean_average_precision(pb, data.positives)) < 10


@pytest.mark.slow
def test_compile_that_fails_falls_back_to_eager_with_one_warning(fp32_run, tiny_data, tmp_path, monkeypatch):
    def broken_compile(module, **kw):
        def forward(*a, **k):
            raise RuntimeError("inductor: no working C++ compiler\nlong details")
        return forward

    monkeypatch.setattr(torch, "compile", broken_compile)
    lines = []
    out = train(config(tiny_data, tmp_path / "m.pt", precision="fp32", compile=True), log=lines.append)
    warnings = [line for line in lines if "warning" in line]
    assert len(warnings) == 1 and "--compile" in warnings[0] and "no working C++ compiler" in warnings[0]
    eager = torch.load(last_path(out), weights_only=True)
    for key, value in fp32_run["model"].items():  # the failed compile changed nothing
        assert torch.equal(value, eager["model"][key]), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("prec", ["fp16", "bf16"])
def test_cuda_mixed_precision_trains_and_resumes(prec, tiny_data, tmp_path, interrupt):
    from spml.train import trainer

    if prec == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    kw = dict(device="cuda", precision=prec, workers=2)
    whole = train(config(tiny_data, tmp_path / "whole.pt", **kw), log=lambda s: None)
    ckpt = torch.load(last_path(whole), weights_only=True)
    assert ckpt["config"]["precision"] == prec and (ckpt["scaler"] is not None) == (prec == "fp16")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert all(v.is_contiguous() for v in ckpt["model"].values())  # NCHW on disk though trained channels_last
    restore = interrupt(trainer, "train_one_epoch", 2)  # during the second epoch
    with pytest.raises(KeyboardInterrupt):
        train(config(tiny_data, tmp_path / "part.pt", **kw), log=lambda s: None)
    restore()
    part = train(config(tiny_data, tmp_path / "part.pt", resume=True, **kw), log=lambda s: None)
    resumed = torch.load(last_path(part), weights_only=True)
    for key, value in ckpt["model"].items():  # cudnn.benchmark may pick other kernels: float tolerance
        torch.testing.assert_close(value, resumed["model"][key], rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_compile_trains(tiny_data, tmp_path):
    lines = []
    out = train(config(tiny_data, tmp_path / "m.pt", device="cuda", compile=True, epochs=1), log=lines.append)
    assert not [line for line in lines if "warning" in line], lines
    ckpt = torch.load(last_path(out), weights_only=True)
    assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])
