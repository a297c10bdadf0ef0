"""The training set as a torch Dataset over spml's shared preprocessing."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from spml.data.coco import CocoDataset
from spml.data.images import ImageError, Preprocess, image_path, load_image
from spml.train.augment import ImageAugment, draw_seed


PIXEL_CACHE_BYTES = 1 << 30  # keep decoded, resized images in memory when the whole set fits in this


class ImageLabels(Dataset):
    """(image tensor, targets, known mask, row, observed-negatives mask) for each image. Augmentation (`augment`: none, flip or strong,
    spml.train.augment) is drawn from (seed, epoch, row), so an epoch sees the same augmentation whether or not
    training was resumed.

    When every resized image fits in PIXEL_CACHE_BYTES (small inputs: 1,000 images at 64 px are 12 MB), the
    decoded uint8 pixels are kept after the first epoch, so later epochs cost only the model: decoding a JPEG
    costs more than a small network's step. Flips and normalisation come after the cache, so results are the
    same with or without it. Augmentation comes after the cache too: a cached image is augmented afresh each epoch."""

    def __init__(self, dataset: CocoDataset, targets: np.ndarray, known: np.ndarray | None, preprocess: Preprocess,
                 flip: bool = False, seed: int = 0, allow_outside: bool = False, augment: str | None = None,
                 negatives: np.ndarray | None = None):
        self.dataset = dataset
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.known = None if known is None else torch.as_tensor(known, dtype=torch.bool)
        self.negatives = None if negatives is None else torch.as_tensor(negatives, dtype=torch.bool)
        self.preprocess = preprocess
        self.augment = ImageAugment(augment or ("flip" if flip else "none"), preprocess.size)
        self.seed = seed
        # in shared memory, so persistent DataLoader workers see the epoch the trainer sets
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.allow_outside = allow_outside
        fits = len(dataset) * 3 * preprocess.size ** 2 <= PIXEL_CACHE_BYTES
        self._pixels: dict[int, np.ndarray] | None = {} if fits else None

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.fill_(int(value))

    def __len__(self) -> int:
        return len(self.dataset)

    def _resized(self, row: int) -> np.ndarray:
        if self._pixels is not None and row in self._pixels:
            return self._pixels[row]
        im = self.dataset.images[row]
        try:
            path = image_path(self.dataset.images_dir, im["file_name"], self.allow_outside)
            pixels = self.preprocess.resize(load_image(path, self.preprocess.size))
        except ImageError as e:
            raise ImageError(f"{im['file_name']}: {e}") from None
        if self._pixels is not None:
            self._pixels[row] = pixels
        return pixels

    def __getitem__(self, row: int):
        pixels = self._resized(row)
        pixels = self.augment(pixels, draw_seed(self.seed, int(self._epoch), row))
        x = torch.from_numpy(np.ascontiguousarray(self.preprocess.normalize(pixels)))
        known = self.known[row] if self.known is not None else torch.ones_like(self.targets[row], dtype=torch.bool)
        return x, self.targets[row], known, row, negatives_of(self, row)


def negatives_of(data, row: int) -> torch.Tensor:
    """Row `row`'s observed negatives (all False where the data has none), as the losses take them."""
    return data.negatives[row] if data.negatives is not None else torch.zeros_like(data.targets[row], dtype=torch.bool)
