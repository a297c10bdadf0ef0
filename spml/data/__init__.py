"""COCO I/O, the single-positive protocol, image decoding and the built-in dataset."""

from spml.data.coco import CocoDataset, load_coco, resolve_images_dir
from spml.data.images import Preprocess, decode_rgb, load_image
from spml.data.single_positive import single_positive

__all__ = [
    "CocoDataset", "load_coco", "resolve_images_dir", "Preprocess", "decode_rgb", "load_image", "single_positive",
    "LabelsDataset",
]


def __getattr__(name):
    # LabelsDataset needs torch; the labeler imports spml.data and must not
    if name == "LabelsDataset":
        from spml.data.labels_dataset import LabelsDataset

        return LabelsDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
