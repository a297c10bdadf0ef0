"""LabelsDataset: a labels file (what spml-label writes, or any COCO file) as a torch Dataset for your own trainer.
Imported lazily by `spml.data`, so that the labeler, which imports spml.data, never imports torch."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from spml.data.coco import load_coco
from spml.data.images import ImageError, image_path, load_image
from spml.errors import SpmlError


class LabelsDataset(Dataset):
    """(image, target) for each image of a COCO labels file, in the file's order.

    image: the upright RGB PIL image, or `transform(image)`. target: (L,) float32 in `categories` order, multi-hot
    (1 for every positive, observed or pseudo), or with `soft=True` the teacher's probabilities of a labels file
    written by `spml-label --soft` (observed positives at 1). `known` is the (N, L) bool mask of labels an ignore
    band left undecided (False there), or None. The images folder is the one the file records, or `images`."""

    def __init__(self, labels: str | os.PathLike, transform=None, soft: bool = False,
                 images: str | os.PathLike | None = None, *, allow_outside: bool = False):
        self.coco = load_coco(labels, images)
        targets = self.coco.soft_targets() if soft else self.coco.positives.astype(np.float32)
        if targets is None:
            raise SpmlError(f"{labels}: soft=True needs a labels file written with spml-label --soft") from None
        self.targets = torch.from_numpy(targets)
        unknown = self.coco.unknown_mask()
        self.known = None if unknown is None else torch.from_numpy(~unknown)
        self.categories = self.coco.categories  # [{"id": COCO id, "name": ...}]: column j of a target is categories[j]
        self.classes = self.coco.category_names  # torchvision's name for the same, as names
        self.images_dir = self.coco.images_dir
        self.transform = transform
        self.allow_outside = allow_outside

    def __len__(self) -> int:
        return len(self.coco)

    def __getitem__(self, index: int):
        file_name = self.coco.images[index]["file_name"]
        try:
            image = load_image(image_path(self.images_dir, file_name, self.allow_outside))
        except ImageError as e:
            raise ImageError(f"{file_name}: {e}") from None
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]
