"""What a model file says about itself, in one schema shared by the exporter (which writes it into ONNX
metadata_props) and the labeler and evaluator (which read it back): categories with their COCO ids, arch,
input size, normalisation, resize filter and where the training data was. Values are JSON-encoded strings."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from spml.data.images import Preprocess

PREFIX = "spml."
ONNX_INPUT = "images"
ONNX_OUTPUT = "probabilities"


@dataclass
class ModelInfo:
    categories: list[dict]  # [{"id": coco id, "name": ...}] in output order
    arch: str
    image_size: int
    mean: list[float]
    std: list[float]
    interpolation: str = "bilinear"  # the resize filter (absent from models exported before it was recorded)
    resize_mode: str = "squash"  # squash | shortest | longest (spml.data.images.RESIZE_MODES); squash before it was recorded
    fill: int = 0  # resize_mode longest: the padding's grey level
    train_ann: str | None = None
    train_images: str | None = None
    format_version: int = 1
    extra: dict = field(default_factory=dict)  # the training config, the source checkpoint's sha256, precision...

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(self.image_size, tuple(self.mean), tuple(self.std), self.interpolation, self.resize_mode,
                          self.fill)

    def to_props(self) -> dict[str, str]:
        return {PREFIX + k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelInfo":
        try:
            values = {k[len(PREFIX):]: json.loads(v) for k, v in props.items() if k.startswith(PREFIX)}
        except (RecursionError, MemoryError) as e:  # its callers report a ValueError as metadata that is not spml's
            raise ValueError(f"metadata not readable as JSON ({type(e).__name__})") from None
        missing = [k for k in ("categories", "arch", "image_size", "mean", "std") if k not in values]
        if missing:
            raise KeyError(f"no spml metadata ({', '.join(missing)})")
        known = {f for f in cls.__dataclass_fields__}
        info = cls(**{k: v for k, v in values.items() if k in known})
        info.preprocess  # noqa: B018 -- an unknown resize filter is a ValueError here, not in the middle of labeling
        return info

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "ModelInfo":
        pre = ckpt["preprocess"]
        data = ckpt.get("data") or {}
        return cls(categories=ckpt["categories"], arch=ckpt["config"]["arch"], image_size=pre["image_size"],
                   mean=pre["mean"], std=pre["std"], interpolation=pre.get("interpolation", "bilinear"),
                   resize_mode=pre.get("resize_mode", "squash"), fill=int(pre.get("fill", 0)),
                   train_ann=data.get("train_ann"), train_images=data.get("train_images"),
                   format_version=ckpt["format_version"],
                   extra={"config": ckpt["config"], "best_metric": ckpt.get("best_metric"), "epoch": ckpt.get("epoch"),
                          # an open_clip model's own description: name, pretrained tag, prompts, calibration
                          **({"open_clip": ckpt["open_clip"]} if ckpt.get("open_clip") else {})})
