"""Frozen-backbone features for `--mode linear`: extracted once per (backbone weights, preprocessing, images)
and cached on disk, so that training the head — and training it again with another loss or seed — costs
seconds instead of a pass of the network per epoch."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spml.data.coco import CocoDataset
from spml.data.images import ImageError
from spml.errors import SpmlError
from spml.files import atomic_write, cache_dir
from spml.train.augment import ImageAugment
from spml.train.clip_models import clip_name, is_clip
from spml.train.data import ImageLabels, negatives_of
from spml.train.model import head_name


def head_of(model: nn.Module) -> tuple[nn.Module, str]:
    """The classification head (the last Linear layer, the one `replace_head` swapped) and its name."""
    name = head_name(model)
    return model.get_submodule(name), name


def backbone_digest(model: nn.Module) -> str:
    """A hash of every tensor but the head's: the same weights give the same features, whatever their source
    (ImageNet, --weights, --init, or a seeded random start)."""
    _, head = head_of(model)
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        if key.startswith(head + "."):
            continue
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def images_digest(dataset: CocoDataset) -> str:
    """The image list as the model sees it: the folder, each file name, and each file's size and mtime (an
    image replaced on disk invalidates the cache)."""
    h = hashlib.sha256(str(dataset.images_dir.resolve()).encode())
    for im in dataset.images:
        path = dataset.images_dir / im["file_name"]
        try:
            st = path.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"\0{im['file_name']}\0{stamp}".encode())
    return h.hexdigest()


def feature_cache_path(model: nn.Module, arch: str, data: ImageLabels) -> Path:
    key = json.dumps({"arch": arch, "backbone": backbone_digest(model), "preprocess": data.preprocess.to_dict(),
                      "images": images_digest(data.dataset)}, sort_keys=True)
    return cache_dir() / "features" / f"{_file_label(arch)}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"


def _file_label(arch: str) -> str:
    """The arch as a file name's beginning: open_clip/ archs may name a config file by its path (folders and all)."""
    if not is_clip(arch):
        return arch  # timm/<name> keeps its folder, as before
    return "open_clip/" + re.sub(r"[^\w.+-]+", "_", clip_name(arch)).strip("_")[-80:]


@torch.inference_mode()
def extract_features(model: nn.Module, data: ImageLabels, batch_size: int, device: str, *, workers: int = 0,
                     progress: bool = False) -> np.ndarray:
    """(N, D) float32 inputs of the head for every image, without augmentation, in dataset order."""
    from torch.utils.data import DataLoader
    from spml.progress import tqdm

    head, name = head_of(model)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    was_training = model.training
    setattr(parent, child, nn.Identity())
    try:
        model.eval()
        augment, data.augment = data.augment, ImageAugment("none", 0)
        out = []
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers)
        for x, *_ in tqdm(loader, desc="features", unit="batch", disable=not progress, mininterval=1.0, leave=False):
            out.append(model(x.to(device)).float().flatten(1).cpu().numpy())
    finally:
        setattr(parent, child, head)
        data.augment = augment
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, head.in_features), np.float32)


def cached_features(model: nn.Module, arch: str, data: ImageLabels, batch_size: int, *, device: str, workers: int = 0,
                    progress: bool = False, log=print) -> np.ndarray:
    """extract_features, read from spml's cache when these weights have already seen these images."""
    path = feature_cache_path(model, arch, data)
    if path.exists():
        try:
            features = np.load(path)
            if features.shape[0] == len(data):
                log(f"features of {len(data)} images from the cache ({path})")
                return features
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed
    features = extract_features(model, data, batch_size, device, workers=workers, progress=progress)
    with atomic_write(path, "wb") as f:
        np.save(f, features)
    log(f"features of {len(data)} images extracted and cached ({path}, {os.path.getsize(path) / 2**20:.1f} MiB)")
    return features


class FeatureLabels(torch.utils.data.Dataset):
    """Cached features in place of images: (features, targets, known mask, row, negatives), as ImageLabels yields."""

    def __init__(self, features: np.ndarray, data: ImageLabels):
        self.features = torch.from_numpy(features)
        self.targets = data.targets
        self.known = data.known
        self.negatives = data.negatives

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, row: int):
        known = self.known[row] if self.known is not None else torch.ones_like(self.targets[row], dtype=torch.bool)
        return self.features[row], self.targets[row], known, row, negatives_of(self, row)


def linear_features(model: nn.Module, cfg, train: ImageLabels, val: ImageLabels | None,
                    *, log=print) -> tuple[nn.Module, FeatureLabels, FeatureLabels | None]:
    """--mode linear: the backbone frozen, its features of the training and validation images extracted once
    (or read from the cache); returns (the head, which alone trains; the training features; the validation ones).
    `cfg` is the run's TrainConfig."""

    def features(data: ImageLabels) -> FeatureLabels:
        return FeatureLabels(cached_features(model, cfg.arch, data, cfg.batch_size, device=cfg.device, workers=cfg.workers,
                                             progress=cfg.progress, log=log), data)

    try:
        fit, evaluated = features(train), features(val) if val is not None else None
    except ImageError as e:
        raise SpmlError(f"cannot read image {e}") from None
    head = head_of(model)[0]
    model.requires_grad_(False)
    head.requires_grad_(True)
    log("linear: the backbone is frozen; the head trains on its cached features (no flips)")
    return head, fit, evaluated
