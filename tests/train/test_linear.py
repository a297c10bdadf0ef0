"""--mode linear and linear-init: only the head trains, on backbone features cached on disk."""

import os

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from spml.data.coco import load_coco
from spml.data.images import Preprocess
from spml.files import cache_dir
from spml.train.data import ImageLabels
from spml.train.trainer import TrainConfig, linear_phase_path, train


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPML_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def imagenet_like(tmp_path):
    """A local state dict standing in for ImageNet weights (what --weights FILE loads)."""
    torch.manual_seed(7)
    path = tmp_path / "resnet18_weights.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def config(data, out, **kw):
    base = dict(ann=str(data["sp"]), val_ann=str(data["val"]), arch="resnet18", image_size=32, epochs=2,
                batch_size=16, out=str(out), progress=False, seed=2, mode="linear")
    base.update(kw)
    return TrainConfig(**base)


def cache_files():
    return sorted(p.name for p in (cache_dir() / "features").glob("*.npy"))


def test_linear_mode_changes_the_head_only(tiny_data, tmp_path, imagenet_like):
    out = train(config(tiny_data, tmp_path / "m.pt", weights=str(imagenet_like)), log=lambda s: None)
    trained = torch.load(out, weights_only=True)["model"]
    start = torch.load(imagenet_like, weights_only=True)
    backbone = [k for k in trained if not k.startswith("fc.")]
    assert len(backbone) > 100
    for key in backbone:  # weights and BatchNorm statistics alike
        torch.testing.assert_close(trained[key], start[key], rtol=0, atol=0)
    assert trained["fc.weight"].shape == (len(load_coco(tiny_data["sp"]).categories), 512)


def test_cached_features_are_the_backbone_outputs(tiny_data, tmp_path, imagenet_like):
    train(config(tiny_data, tmp_path / "m.pt", weights=str(imagenet_like), epochs=1), log=lambda s: None)
    # the reference: torchvision's resnet18 with an identity head, on the same preprocessed images
    ref = torchvision.models.resnet18()
    ref.load_state_dict(torch.load(imagenet_like, weights_only=True))
    ref.fc = nn.Identity()
    dataset = load_coco(tiny_data["sp"])
    data = ImageLabels(dataset, dataset.positives, None, Preprocess(32))
    with torch.no_grad():
        expected = ref.eval()(torch.stack([data[i][0] for i in range(len(data))])).numpy()
    cached = [np.load(p) for p in (cache_dir() / "features").glob("*.npy")]
    train_features = [c for c in cached if c.shape[0] == len(dataset)]
    assert len(train_features) == 1
    np.testing.assert_allclose(train_features[0], expected, rtol=1e-4, atol=1e-4)


def test_the_cache_is_reused_and_keyed_by_weights_size_and_images(tiny_data, tmp_path, imagenet_like):
    def run(log, **kw):
        train(config(tiny_data, tmp_path / "m.pt", weights=str(imagenet_like), epochs=1, **kw), log=log.append)
        return " ".join(log)

    assert "extracted" in run([]) and len(cache_files()) == 2  # train and val
    again = run([], loss="an", seed=5)
    assert "from the cache" in again and "extracted" not in again and len(cache_files()) == 2
    assert "extracted" in run([], image_size=40) and len(cache_files()) == 4
    first = load_coco(tiny_data["sp"]).images[0]["file_name"]
    image = tiny_data["sp"].parent / first
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # an image changed on disk
    assert "extracted" in run([]) and len(cache_files()) == 5


def test_linear_init_trains_the_head_then_everything(tiny_data, tmp_path, imagenet_like):
    out = train(config(tiny_data, tmp_path / "m.pt", weights=str(imagenet_like), mode="linear-init", linear_epochs=2,
                       epochs=1), log=lambda s: None)
    phase1 = torch.load(linear_phase_path(out), weights_only=True)
    final = torch.load(out, weights_only=True)
    start = torch.load(imagenet_like, weights_only=True)
    assert phase1["config"]["mode"] == "linear" and phase1["config"]["epochs"] == 2
    assert final["config"]["mode"] == "linear-init" and final["config"]["init"] == str(linear_phase_path(out))
    torch.testing.assert_close(phase1["model"]["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"], rtol=0, atol=0)
    assert not torch.equal(final["model"]["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"])  # fine-tuned
    assert not torch.equal(phase1["model"]["fc.weight"], final["model"]["fc.weight"])
