"""torchvision classifiers (and timm's, as timm/<name>) by name, with the head replaced by one output per category, and the checkpoint
format that carries everything later stages need."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import torch
from torch import nn

from spml.data.images import Preprocess
from spml.errors import SpmlError
from spml.train.clip_models import is_clip
from spml.train.small_cnn import SMALL_ARCHS, small_cnn
from spml.train.timm_models import is_timm
from spml.train.weights import first_words, load_matching, note_missing

FORMAT_VERSION = 1


def available_archs() -> list[str]:
    import torchvision

    return sorted([*torchvision.models.list_models(module=torchvision.models), *SMALL_ARCHS])


def check_arch(arch: str) -> str:
    if is_clip(arch):
        from spml.train.clip_models import clip_model_config

        clip_model_config(arch)
        return arch
    if is_timm(arch):
        from spml.train.timm_models import timm_name

        timm_name(arch)
        return arch
    archs = available_archs()
    if arch not in archs:
        close = difflib.get_close_matches(arch, archs, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise SpmlError(f"unknown arch {arch!r}: {hint}spml-train --list-archs lists all {len(archs)}") from None
    return arch


def head_name(model: nn.Module) -> str | None:
    """The classification head: the last Linear layer (resnet's fc, mobilenet/efficientnet/convnext's
    classifier[-1], vit's heads.head); a timm model's own `get_classifier()`."""
    if callable(getattr(model, "get_classifier", None)):
        head = model.get_classifier()
        for name, module in model.named_modules():
            if module is head and name:
                return name
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return last


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the head for a fresh one with `num_classes` outputs."""
    last = head_name(model)
    if last is None:
        raise SpmlError(f"{type(model).__name__} has no Linear classification head to replace") from None
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, nn.Linear(old.in_features, num_classes))
    return model


def pretrained_weights_cached(arch: str) -> bool:
    """Whether torchvision's (or timm's) default weights for `arch` are already on disk (so using them costs no
    download)."""
    if is_clip(arch):
        return False  # open_clip's weights are asked for by tag (--pretrained TAG), never picked up unasked
    if is_timm(arch):
        from spml.train.timm_models import cached_weights_file

        return cached_weights_file(arch) is not None
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return False
    filename = os.path.basename(weights.url)
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).exists()


def model_preprocess(arch: str, image_size: int, pretrained=None) -> Preprocess:
    """The input a model expects: ImageNet's normalisation for torchvision models, a timm model's own from its
    pretrained config, an open_clip model's from its config and pretrained tag (`pretrained`). Stored in the
    checkpoint and the ONNX metadata, so label and eval use the same."""
    if is_clip(arch):
        from spml.train.clip_models import clip_preprocess

        return clip_preprocess(arch, image_size, pretrained)
    if is_timm(arch):
        from spml.train.timm_models import timm_preprocess

        return timm_preprocess(arch, image_size)
    return Preprocess(image_size)


def create_model(arch: str, num_classes: int, pretrained: bool | str = False, weights: str | os.PathLike | None = None,
                 *, image_size: int | None = None, drop_path: float = 0.0, class_names: list[str] | None = None,
                 prompts: list[str] | None = None) -> nn.Module:
    """`arch` from torchvision with `num_classes` outputs (logits). `pretrained` loads torchvision's ImageNet
    weights (downloaded once into torch's cache); `weights` loads a local state dict (an ImageNet checkpoint of
    the same arch; its head is dropped). `timm/<name>` archs are built by timm (spml.train.timm_models);
    `image_size` matters only to timm models whose input size is fixed at construction. `drop_path`: stochastic
    depth (timm's drop_path_rate, torchvision's stochastic_depth_prob), for the archs that have it.
    `open_clip/<name>` archs (spml.train.clip_models): `pretrained` is open_clip's tag, `weights` a whole CLIP
    state dict, and the head starts as the zero-shot head of `class_names` under the `prompts` templates."""
    if is_clip(arch):
        from spml.train.clip_models import create_clip_model

        if drop_path:
            raise SpmlError(f"--drop-path: {arch} is built as its open_clip config says; use --dropout") from None
        return create_clip_model(arch, num_classes, pretrained, weights, image_size=image_size, class_names=class_names,
                                 prompts=prompts)
    if isinstance(pretrained, str):
        raise SpmlError(f"--pretrained {pretrained}: tags are for open_clip/ archs; {arch} takes --pretrained "
                        "alone" + (" (timm's tags: timm/<name>.<tag>)" if is_timm(arch) else "")) from None
    if is_timm(arch):
        from spml.train.timm_models import create_timm_model

        return create_timm_model(arch, num_classes, pretrained, weights, image_size=image_size, drop_path=drop_path)
    import torchvision

    check_arch(arch)
    extra = {}
    if drop_path:
        if arch in SMALL_ARCHS or "stochastic_depth_prob" not in _builder_params(arch):
            raise SpmlError(f"--drop-path: {arch} has no stochastic depth (torchvision's convnext, efficientnet, "
                            "swin and maxvit have it, and timm models); use --dropout") from None
        extra["stochastic_depth_prob"] = drop_path
    if weights is not None:
        model = _bare_model(arch, **extra)
        missing = load_matching(model, weights, arch)
        if any(not k.startswith(("fc.", "classifier.", "head", "heads.")) for k in missing):  # more than the head
            note_missing(missing, arch, weights)
        return replace_head(model, num_classes)
    if pretrained and arch in SMALL_ARCHS:
        raise SpmlError(f"{arch} has no published weights; use --weights FILE or --no-pretrained") from None
    if arch in SMALL_ARCHS:
        return small_cnn(arch, num_classes)
    if pretrained:
        try:
            model = torchvision.models.get_model(arch, weights="DEFAULT", **extra)
        except Exception as e:  # no network, no published weights for this arch
            raise SpmlError(
                f"cannot get ImageNet weights for {arch} ({type(e).__name__}: {str(e)[:100]}); "
                "use --weights FILE or --no-pretrained"
            ) from None
        return replace_head(model, num_classes)
    return torchvision.models.get_model(arch, num_classes=num_classes, **extra)


def _builder_params(arch: str) -> set:
    """The keyword arguments the torchvision model class behind `arch` takes."""
    import inspect

    import torchvision

    builder = torchvision.models.get_model_builder(arch)
    model_class = inspect.signature(builder).return_annotation
    params = set(inspect.signature(builder).parameters)
    if isinstance(model_class, type):
        params |= set(inspect.signature(model_class).parameters)
    return params


def _bare_model(arch: str, **extra) -> nn.Module:
    """`arch` with its original head, to load a state dict saved from it."""
    import torchvision

    return small_cnn(arch, 1000) if arch in SMALL_ARCHS else torchvision.models.get_model(arch, **extra)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """An spml checkpoint (state dict plus metadata), loaded safely (weights_only) and checked."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SpmlError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpmlError(f"{path}: is a folder, not a checkpoint") from None
    except Exception as e:
        raise SpmlError(f"{path}: not an spml checkpoint ({type(e).__name__}: {first_words(str(e))})") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "model" not in ckpt:
        raise SpmlError(f"{path}: not an spml checkpoint (no format_version/model)") from None
    if ckpt["format_version"] != FORMAT_VERSION:
        raise SpmlError(
            f"{path}: checkpoint format version {ckpt['format_version']}, this spml reads version {FORMAT_VERSION}"
        ) from None
    return ckpt


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    """The trained network of a checkpoint, in eval mode, outputting logits."""
    config = ckpt["config"]
    if is_clip(config["arch"]):  # rebuilt from the config it carries: no config file or text tower needed
        from spml.train.clip_models import classifier_from_config

        model = classifier_from_config(ckpt["open_clip"]["model_cfg"], len(ckpt["categories"]))
        model.load_state_dict(ckpt["model"])
        return model.eval()
    model = create_model(config["arch"], len(ckpt["categories"]), image_size=ckpt["preprocess"]["image_size"])
    model.load_state_dict(ckpt["model"])
    return model.eval()
