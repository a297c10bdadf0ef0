"""Where an artifact came from, read from the files themselves: the teacher's training recipe that spml-label
records in a labels file (so a student can inherit it without opening the ONNX model), and the built-in test set
of a model trained on the built-in data. Plain JSON, no torch and no onnx."""

from __future__ import annotations

import json
import os
from pathlib import Path

from spml.data.json_stream import DECODE_ERRORS

# The teacher's settings a student inherits when the user leaves them unset (spml-train --ann labels.json)
RECIPE_KEYS = ("arch", "image_size", "epochs", "batch_size", "lr", "lr_schedule", "head_lr_mult", "pretrained", "weights",
               "mode", "linear_epochs", "flip", "augment", "val_ann", "val_images")
BUILTIN_DESCRIPTION = "spml built-in dataset"


def teacher_recipe(model_info, model_path: str | os.PathLike) -> dict | None:
    """The training recipe recorded in an exported model's metadata (spml.data.artifacts.ModelInfo), as
    spml-label writes it into labels.json's `info.teacher`; None for a model exported without its config."""
    config = (model_info.extra or {}).get("config")
    if not isinstance(config, dict):
        return None
    recipe = {k: config.get(k) for k in RECIPE_KEYS if k in config}
    for key in ("val_ann", "val_images", "weights"):  # the config keeps them as typed; a student may run elsewhere
        if isinstance(recipe.get(key), str):
            recipe[key] = os.path.abspath(recipe[key])
    recipe.update(arch=model_info.arch, image_size=model_info.image_size, mean=list(model_info.mean),
                  std=list(model_info.std), model=str(Path(model_path).resolve()),
                  checkpoint=(model_info.extra or {}).get("checkpoint"), train_ann=model_info.train_ann)
    return recipe


def relative_to_file(folder: str | os.PathLike, file: str | os.PathLike) -> str | None:
    """`folder` relative to the folder of `file` (None where there is no relative path, e.g. another drive)."""
    try:
        return os.path.relpath(Path(folder).resolve(), Path(file).resolve().parent)
    except ValueError:
        return None


def read_info(path: str | os.PathLike) -> dict:
    """The `info` object of a COCO file, {} when there is none or the file cannot be read (its loader says why)."""
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
    except (OSError, *DECODE_ERRORS):
        return {}
    info = raw.get("info") if isinstance(raw, dict) else None
    return info if isinstance(info, dict) else {}


def is_labels_file(info: dict) -> bool:
    """Written by spml-label (pseudo labels of a teacher)."""
    return info.get("description") == "spml pseudo labels" or "model_sha256" in info


def builtin_test_set(ann: str | os.PathLike | None, hops: int = 4) -> Path | None:
    """The test split of the built-in dataset that `ann` (a model's training set) comes from, following labels
    files back to their source annotations; None when it does not come from the built-in data."""
    from spml.files import cache_dir

    path = Path(ann) if ann else None
    for _ in range(hops):
        if path is None or not path.is_file():
            return None
        folder = path.resolve().parent
        test = folder / "instances_test.json"
        if folder == (cache_dir() / "demo").resolve():
            from spml.data.demo import builtin_dataset

            return builtin_dataset()["test"]
        if test.is_file() and str(read_info(test).get("description", "")).startswith(BUILTIN_DESCRIPTION):
            return test  # written with `spml-data demo --out DIR`
        source = read_info(path).get("source_annotations")
        path = Path(source) if isinstance(source, str) and source else None
    return None
