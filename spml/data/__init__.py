"""COCO I/O, the single-positive protocol, image decoding and the built-in dataset."""

_WHERE = {
    "CocoDataset": "spml.data.coco", "load_coco": "spml.data.coco", "resolve_images_dir": "spml.data.coco",
    "Preprocess": "spml.data.images", "decode_rgb": "spml.data.images", "load_image": "spml.data.images",
    "single_positive": "spml.data.protocol",
    "LabelsDataset": "spml.data.labels_dataset",  # needs torch; the labeler imports spml.data and must not
}
__all__ = list(_WHERE)


def __getattr__(name):  # imported on first use, so `spml-data --help` needs no numpy or Pillow
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spml.data' has no attribute {name!r}")
