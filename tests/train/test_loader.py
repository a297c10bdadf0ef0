"""The training loader is built once, with persistent workers on CUDA: the epoch still reaches the workers
(flips depend on it), so training with DataLoader workers gives what training without them does."""

import torch

from spml.train.trainer import TrainConfig, last_path, train


def test_persistent_workers_see_each_epoch(tiny_data, tmp_path):
    def run(workers):
        cfg = TrainConfig(ann=str(tiny_data["sp"]), arch="resnet18", image_size=32, epochs=2, batch_size=16,
                          pretrained=False, out=str(tmp_path / f"w{workers}.pt"), progress=False, seed=4, workers=workers, keep_last=True)
        return torch.load(last_path(train(cfg, log=lambda s: None)), weights_only=True)["model"]

    a, b = run(0), run(2)
    for key in a:
        assert torch.equal(a[key], b[key]), key
