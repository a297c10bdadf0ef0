"""A student inherits its teacher's recipe: spml-label records the teacher's training settings in the labels
file (`info.teacher`), and `spml-train --ann labels.json` takes every one the user left unset from there, so the
card's `spml-train --ann labels.json --loss bce --out student.pt` trains the student the way the teacher was
trained (arch, image size, epochs, batch, learning-rate regime, validation set), not with the paper's defaults.
Torch-free: it only reads JSON."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from spml.data.provenance import RECIPE_KEYS, read_info

TYPES = {"arch": str, "image_size": int, "epochs": int, "batch_size": int, "lr": (int, float), "lr_schedule": str,
         "head_lr_mult": (int, float), "pretrained": (bool, str),
         "weights": str, "mode": str, "linear_epochs": int, "flip": bool, "augment": str, "val_ann": str,
         "val_images": str}
# fields with a real default rather than None: inherited only when the caller says they were not given
NOT_NONE = ("mode", "linear_epochs", "flip")
# the modes a student can train in (spml.train.trainer.MODES, spelt here: this module is torch-free); a zero-shot
# teacher records mode "zero-shot", which describes how it was made, not a way to train its student
TRAINING_MODES = ("end-to-end", "linear", "linear-init")
def _of_type(value, types) -> bool:
    """isinstance, with bools apart from ints: True is no image size, and pretrained's tag is no flag."""
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, tuple(t for t in types if t is not bool))


def inherit_recipe(config, explicit=(), log=print):
    """`config` with the unset settings of the teacher recorded in `config.ann` (a labels file of spml-label)
    filled in; the settings the user gave (`explicit`, and any non-None field) win. Logs one line saying what
    was inherited and from where. Returns the config unchanged when the file records no teacher."""
    if config.ann is None:
        return config
    info = read_info(config.ann)
    recipe = info.get("teacher")
    if not isinstance(recipe, dict):
        return config
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    # the lr belongs to its regime: another start (weights) or mode than the teacher's gets that regime's default
    own_start = config.pretrained is not None or config.weights is not None
    own_mode = "mode" in explicit and config.mode != recipe.get("mode", config.mode)
    skip = {"lr"} if own_start or own_mode else set()
    if own_mode:
        skip |= {"epochs", "linear_epochs"}  # --mode linear's 25 cheap epochs are not end-to-end's
    if own_start:
        skip |= {"pretrained", "weights"}
    taken = {}
    for key in RECIPE_KEYS:
        if key in skip:
            continue
        value = recipe.get(key)
        if key in explicit or value is None or not _of_type(value, TYPES[key]):
            continue
        if key == "mode" and value not in TRAINING_MODES:
            continue
        current = getattr(config, key)
        unset = current is None or (key in NOT_NONE and current == defaults[key])
        if not unset or current == value:
            continue
        if key in ("val_ann", "val_images", "weights") and not Path(value).exists():
            continue  # moved or on another machine: train without it rather than fail on a default
        if key == "val_images" and "val_ann" not in taken and config.val_ann is not None:
            continue  # the user's own validation set: its images are not the teacher's
        taken[key] = value
    if not taken:
        return config
    log(f"inherited from the teacher {recipe.get('model', '?')} (recorded in {config.ann}): {describe(taken)}; "
        "flags you give win")
    return dataclasses.replace(config, **taken)


def describe(taken: dict) -> str:
    parts = []
    for key, value in taken.items():
        if key == "val_images":
            continue
        label = {"image_size": "image size", "batch_size": "batch", "val_ann": "validation set",
                 "linear_epochs": "linear epochs", "lr_schedule": "lr schedule",
                 "head_lr_mult": "head lr x"}.get(key, key)
        if key == "pretrained":
            parts.append(f"open_clip's {value} weights" if isinstance(value, str) else
                         "ImageNet weights" if value else "no pretrained weights")
        elif key == "val_ann":
            parts.append(f"validation set {os.path.relpath(value) if not os.path.isabs(value) else value}")
        else:
            parts.append(f"{label} {value:g}" if isinstance(value, float) else f"{label} {value}")
    return ", ".join(parts)
