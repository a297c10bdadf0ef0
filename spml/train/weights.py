"""Weights files: a state dict read safely from disk, and loaded into a model where it fits. Shared by the
torchvision models (spml.train.model) and the timm ones (spml.train.timm_models), which otherwise know nothing of
each other's code, so neither imports the other."""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

from spml.errors import SpmlError

log = logging.getLogger(__name__)


def first_words(text: str, limit: int = 120) -> str:
    """The first line of an error, cut at a word boundary, never mid-word."""
    line = (text.strip().splitlines() or [""])[0]
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0] + " ..."


def load_state_dict_file(path: str | os.PathLike) -> dict:
    """A state dict from a file: a bare one, or the `model`/`state_dict` entry of a checkpoint."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SpmlError(f"{path}: no such file") from None
    except Exception as e:  # pickle that tries to run code, truncated or foreign file
        raise SpmlError(f"{path}: not a loadable weights file ({type(e).__name__}: {first_words(str(e))})") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpmlError(f"{path}: not a state dict") from None
    return obj


def load_matching(model: nn.Module, weights: str | os.PathLike, arch: str) -> list[str]:
    """Load the tensors of `weights` whose names and shapes fit `model` (a head of another size does not);
    returns the model's tensors the file did not have. Fewer than half fitting is another arch: an error."""
    state = load_state_dict_file(weights)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < len(own) // 2:
        raise SpmlError(f"{weights}: not a state dict of {arch} ({len(usable)} of {len(own)} tensors match)") from None
    model.load_state_dict(usable, strict=False)
    return [k for k in own if k not in usable]


def note_missing(missing: list[str], arch: str, weights: str | os.PathLike) -> None:
    if missing:
        log.info(f"note: {len(missing)} tensors of {arch} were not in {weights} and keep their initial values")
