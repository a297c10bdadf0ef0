"""A backbone pretrained on the built-in source task, the stand-in for ImageNet weights in the paper's regime
(fine-tuning a pretrained network), made here because no weights can be downloaded.

The source task (spml.data.demo.SOURCE_CATEGORIES) draws other shapes on the same kind of backgrounds: none is a
built-in category, so the backbone has learnt edges, colours and shapes but never the labels it will be asked
for. The result is a plain state dict in spml's cache folder, used through the ordinary `--weights FILE` path,
exactly as a user's ImageNet file would be."""

from __future__ import annotations

import os
from pathlib import Path

from spml.files import atomic_write, cache_dir
from spml.train.trainer import TrainConfig, last_path, train

SOURCE_IMAGES = 4000  # images of the source task's train split (80% train, 20% val)
SOURCE_EPOCHS = 8


def backbone_path(arch: str, image_size: int, seed: int) -> Path:
    return cache_dir() / "backbones" / f"{arch}-{image_size}px-source-seed{seed}.pt"


def builtin_backbone(arch: str = "cnn4", image_size: int = 32, seed: int = 0, num_images: int = SOURCE_IMAGES,
                     *, epochs: int = SOURCE_EPOCHS, log=print) -> Path:
    """The source-task backbone's state dict (head included; --weights drops it), trained on first use."""
    import torch

    from spml.data.demo import DemoConfig, make_demo
    from spml.train.model import load_checkpoint

    out = backbone_path(arch, image_size, seed)
    if out.exists():
        return out
    data = cache_dir() / "source" / f"seed{seed}-{num_images}"
    paths = {s: data / f"instances_{s}.json" for s in ("train", "val")}
    if not all(p.exists() for p in paths.values()):
        log(f"drawing the source task ({num_images} images of other shapes) in {data}")
        make_demo(data, DemoConfig(num_train=num_images, num_test=1, seed=10_000 + seed, source=True))
    work = out.with_name(out.stem + ".checkpoint.pt")
    train(TrainConfig(ann=str(paths["train"]), val_ann=str(paths["val"]), loss="bce", arch=arch, pretrained=False,
                      image_size=image_size, epochs=epochs, batch_size=64, lr=1e-3, seed=seed, out=str(work),
                      progress=False), log=log)
    state = load_checkpoint(work)["model"]
    with atomic_write(out, "wb") as f:
        torch.save(state, f)
    for path in (work, last_path(work)):
        if os.path.exists(path):
            os.unlink(path)
    return out
