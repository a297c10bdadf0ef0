"""Training-time noise: the per-image augmentation of `--augment` and the batch mixing (mixup / cutmix) of
`--augment strong`, as in Noisy Student (Xie et al. 2020), where the student learns under noise the teacher
labelled without.

Every random draw is seeded by (seed, epoch, image row) or (seed, epoch, step), not by a global generator, so
an epoch is the same whether or not the run was resumed, and whatever the number of DataLoader workers."""

from __future__ import annotations

import zlib

import numpy as np
import torch

AUGMENTS = ("none", "flip", "strong")
MIX_ALPHA = {"mixup": 0.8, "cutmix": 1.0}  # timm's defaults: lambda ~ Beta(alpha, alpha)
CROP_SCALE = (0.35, 1.0)  # RandomResizedCrop's area range: small images cannot lose as much as ImageNet's 0.08


def draw_seed(*parts) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


class ImageAugment:
    """Per-image augmentation of an HWC uint8 image at the model's size: `flip` mirrors half the images; `strong`
    adds RandomResizedCrop and TrivialAugmentWide (torchvision.transforms.v2), the label-preserving noise that
    needs no tuning per dataset."""

    def __init__(self, kind: str, size: int):
        if kind not in AUGMENTS:
            raise ValueError(f"unknown augmentation {kind!r}; valid: {', '.join(AUGMENTS)}")
        self.kind = kind
        self.transform = None
        if kind == "strong":
            from torchvision.transforms import v2

            self.transform = v2.Compose([v2.RandomResizedCrop(size, scale=CROP_SCALE, antialias=True),
                                         v2.RandomHorizontalFlip(), v2.TrivialAugmentWide()])

    def __call__(self, pixels: np.ndarray, seed: int) -> np.ndarray:
        if self.kind == "none":
            return pixels
        if self.kind == "flip":
            return pixels[:, ::-1] if seed & 1 else pixels
        with torch.random.fork_rng(devices=[]):  # v2 draws from torch's global generator: fork it, seed per image
            torch.manual_seed(seed)
            chw = self.transform(torch.from_numpy(pixels.copy()).permute(2, 0, 1))  # the cache stays read-only
        return chw.permute(1, 2, 0).numpy()


def mix_batch(x: torch.Tensor, targets: torch.Tensor, known: torch.Tensor, seed: int):
    """Mixup or cutmix (one of the two per batch, at even odds) with multi-label targets: the mixed image's
    target is each label's probability in the mix, lambda y_i + (1 - lambda) y_j, lambda being the share of the
    pixels (cutmix) or of the intensity (mixup) that image i contributes. A label unknown in either image is
    unknown in the mix."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    if n < 2:
        return x, targets, known
    perm = torch.from_numpy(rng.permutation(n)).to(x.device)
    kind = "mixup" if rng.random() < 0.5 else "cutmix"
    lam = float(rng.beta(MIX_ALPHA[kind], MIX_ALPHA[kind]))
    if kind == "mixup":
        x = lam * x + (1 - lam) * x[perm]
    else:
        h, w = x.shape[-2:]
        cut_h, cut_w = int(round(h * np.sqrt(1 - lam))), int(round(w * np.sqrt(1 - lam)))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, w)
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the box clipped at the border: the share actually kept
        if lam >= 1:
            return x, targets, known  # an empty box: nothing was mixed
        x = x.clone()  # the batch from the loader stays as it was
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    targets = lam * targets + (1 - lam) * targets[perm]
    return x, targets, known & known[perm]
