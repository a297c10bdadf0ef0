"""The training loader is built once, with persistent workers on CUDA: the epoch still reaches the workers
(flips depend on it), so training with DataLoader workers gives what training without them does."""

import numpy as np
import pytest
import torch

from spml.train.trainer import TrainConfig, last_path, train


@pytest.mark.slow
def test_persistent_workers_see_each_epoch(tiny_data, tmp_path):
    def run(workers):
        cfg = TrainConfig(ann=str(tiny_data["sp"]), arch="resnet18", image_size=32, epochs=2, batch_size=16,
                          pretrained=False, out=str(tmp_path / f"w{workers}.pt"), progress=False, seed=4, workers=workers, keep_last=True)
        return torch.load(last_path(train(cfg, log=lambda s: None)), weights_only=True)["model"]

    a, b = run(0), run(2)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_fill_one_shared_pixel_cache(tiny_data, context):
    """The workers' decoded pixels land in the main process's cache (one copy, not one per worker), and are the
    pixels a fresh decode gives."""
    from torch.utils.data import DataLoader

    from spml.data.coco import load_coco
    from spml.data.images import Preprocess
    from spml.train.data import ImageLabels

    dataset = load_coco(tiny_data["sp"])
    data = ImageLabels(dataset, dataset.positives, None, Preprocess(32), augment="none")
    data.share_pixels()
    loader = DataLoader(data, batch_size=8, num_workers=2, multiprocessing_context=context)
    seen = torch.cat([x for x, *_ in loader])
    assert bool(data._cached.all())  # filled by the workers, visible here
    fresh = ImageLabels(dataset, dataset.positives, None, Preprocess(32), augment="none")
    for row in range(len(dataset)):
        assert np.array_equal(data._pixels_np[row], fresh._resized(row)), row
        assert torch.equal(seen[row], data[row][0])


def test_no_shared_cache_where_dev_shm_cannot_hold_it(tiny_data, monkeypatch):
    """A container's small /dev/shm would crash the workers (SIGBUS) as the cache fills: they decode instead."""
    import shutil

    from spml.data.coco import load_coco
    from spml.data.images import Preprocess
    from spml.train.data import ImageLabels

    dataset = load_coco(tiny_data["sp"])
    data = ImageLabels(dataset, dataset.positives, None, Preprocess(32), augment="none")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(64 << 20, 64 << 20, 1 << 10))
    data.share_pixels()
    assert data._pixels is None and data._resized(0).shape == (32, 32, 3)
