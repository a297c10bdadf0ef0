"""Training noise (spml.train.augment, --soft-temperature, --dropout, --drop-path): each checked against what it
must do, written out independently, and a run with all of it resumes exactly."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from spml.errors import SpmlError
from spml.train import trainer
from spml.train.augment import ImageAugment, mix_batch
from spml.train.trainer import TrainConfig, last_path, sharpen, train


def pixels(seed=0, size=16):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_flip_is_the_old_rule_and_none_is_identity():
    img = pixels()
    flip = ImageAugment("flip", 16)
    for seed, epoch, row in [(0, 0, 0), (0, 1, 5), (3, 2, 7), (1, 0, 11)]:
        s = zlib.crc32(f"{seed}/{epoch}/{row}".encode())  # the rule before --augment existed
        expect = img[:, ::-1] if s & 1 else img
        np.testing.assert_array_equal(flip(img, s), expect)
    np.testing.assert_array_equal(ImageAugment("none", 16)(img, 12345), img)


def test_strong_is_seeded_by_its_draw_alone():
    img, strong = pixels(), ImageAugment("strong", 16)
    torch.manual_seed(0)
    a = strong(img, 7)
    torch.rand(100)  # the global generator moved: the draw must not depend on it
    b = strong(img, 7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert any(not np.array_equal(strong(img, s), img) for s in range(5))
    assert len({strong(img, s).tobytes() for s in range(8)}) > 4
    with pytest.raises(ValueError):
        ImageAugment("heavy", 16)


@pytest.mark.parametrize("seed", range(12))
def test_mixed_targets_are_the_share_of_each_image(seed):
    """Image k is the constant k + 1 and has the one-hot target e_k: the mixed target then names the images
    mixed and their shares, and the pixels must agree with it, everywhere (mixup) or by area (cutmix)."""
    n, h, w = 6, 12, 10
    x = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, h, w).contiguous()
    targets = torch.eye(n)
    known = torch.ones(n, n, dtype=torch.bool)
    known[2, 4] = False
    mx, mt, mk = mix_batch(x, targets, known, seed)
    assert mx.shape == x.shape
    torch.testing.assert_close(mt.sum(1), torch.ones(n))
    for i in range(n):
        sources = torch.nonzero(mt[i] > 1e-9).flatten().tolist()
        values = mx[i, 0]
        if torch.allclose(values, values.flatten()[0].expand_as(values)) and len(sources) <= 2:
            # mixup (or a cut that took no pixels): every pixel is the targets' weighted mean of the constants
            expect = sum(mt[i, j] * (j + 1) for j in range(n))
            torch.testing.assert_close(values, torch.full_like(values, float(expect)))
        else:  # cutmix: each pixel comes from one image, in the target's shares
            for j in sources:
                share = (values == j + 1).float().mean()
                torch.testing.assert_close(share, mt[i, j])
        # unknown in either image -> unknown in the mix
        partner = [j for j in sources if j != i] or [i]
        assert torch.equal(mk[i], known[i] & known[partner[0]])


def test_sharpen_against_the_formula():
    p = np.array([[0.1, 0.5, 0.9, 1.0], [0.7, 0.3, 0.02, 0.99]], dtype=np.float32)
    for t in (0.5, 1.0, 2.0):
        with np.errstate(divide="ignore"):
            logit = np.log(p.astype(np.float64) / (1 - p))  # inf at p = 1: sigmoid(inf) = 1
        expect = 1 / (1 + np.exp(-logit / t))
        expect[p >= 1] = 1
        np.testing.assert_allclose(sharpen(p, t), expect, rtol=1e-6, atol=1e-6)
    assert sharpen(p, 0.5)[0, 2] > 0.9 > sharpen(p, 2.0)[0, 2]
    assert sharpen(p, 0.5)[0, 3] == 1.0


def test_head_dropout_trains_only_and_keeps_the_names():
    from spml.train.model import create_model

    a = create_model("cnn4", 5)
    b = create_model("cnn4", 5)
    b.load_state_dict(a.state_dict())
    trainer.add_head_dropout(b, 0.5)
    assert list(a.state_dict()) == list(b.state_dict())
    x = torch.randn(4, 3, 32, 32)
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x))
    a.train(), b.train()
    torch.manual_seed(0)
    assert not torch.allclose(a(x), b(x))


def config(tiny_data, out, **kw):
    base = dict(ann=str(tiny_data["sp"]), val_ann=str(tiny_data["val"]), arch="cnn4", image_size=32, epochs=2,
                batch_size=16, pretrained=False, out=str(out), progress=False)
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_strong_noise_resumes_exactly(tiny_data, tmp_path, interrupt):
    kw = dict(ann=str(tiny_data["train"]), loss="bce", augment="strong", dropout=0.3, keep_last=True)
    whole = train(config(tiny_data, tmp_path / "whole.pt", **kw), log=lambda s: None)
    restore = interrupt(trainer, "train_one_epoch", 2)
    with pytest.raises(KeyboardInterrupt):
        train(config(tiny_data, tmp_path / "part.pt", **kw), log=lambda s: None)
    restore()
    part = train(config(tiny_data, tmp_path / "part.pt", resume=True, **kw), log=lambda s: None)
    a, b = torch.load(last_path(whole), weights_only=True), torch.load(last_path(part), weights_only=True)
    assert a["config"]["augment"] == "strong" and a["config"]["mix_prob"] == 1.0
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    flip = train(config(tiny_data, tmp_path / "flip.pt", ann=str(tiny_data["train"]), loss="bce", epochs=1),
                 log=lambda s: None)
    assert torch.load(flip, weights_only=True)["config"]["augment"] == "flip"


def test_no_stochastic_depth_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(SpmlError, match="no stochastic depth"):
        train(config(tiny_data, tmp_path / "m.pt", drop_path=0.1), log=lambda s: None)
    with pytest.raises(SpmlError, match="soft-temperature"):
        train(config(tiny_data, tmp_path / "m.pt", soft_temperature=0), log=lambda s: None)


def test_drop_path_reaches_the_archs_that_have_it():
    from torchvision.ops import StochasticDepth

    from spml.train.model import create_model

    def probs(**kw):
        return [m.p for m in create_model("efficientnet_b0", 3, **kw).modules() if isinstance(m, StochasticDepth)]

    high, default = probs(drop_path=0.5), probs()  # torchvision's own default for efficientnet_b0 is 0.2
    assert high and 0.4 < max(high) <= 0.5 and max(default) <= 0.2
    pytest.importorskip("timm")
    from timm.layers import DropPath

    model = create_model("timm/resnet18", 3, drop_path=0.1)
    assert any(isinstance(m, DropPath) and m.drop_prob > 0 for m in model.modules())
