"""`--arch timm/<name>`: any timm model, built by timm with `num_classes` outputs, and its own preprocessing
(mean, std, input size, resize filter) from timm's pretrained config. timm is an optional extra (`spml[timm]`):
only this module imports it, and only when a timm/ arch is asked for."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from torch import nn

from spml.data.images import INTERPOLATIONS, Preprocess
from spml.errors import SpmlError

PREFIX = "timm/"


def is_timm(arch: str | None) -> bool:
    return isinstance(arch, str) and arch.startswith(PREFIX)


def _timm():
    try:
        import timm
    except ImportError:
        raise SpmlError("timm/ archs need timm, which is not installed: pip install 'spml[timm]'") from None
    return timm


def timm_name(arch: str) -> str:
    """The timm model name of `timm/<name>` (with an optional pretrained tag, `convnext_tiny.fb_in22k`), checked."""
    timm = _timm()
    name = arch[len(PREFIX):]
    if not timm.is_model(name):
        names = timm.list_models()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(PREFIX + c for c in close)}? " if close else ""
        raise SpmlError(f"unknown timm model {name!r}: {hint}(timm.list_models() names all {len(names)})") from None
    try:
        _pretrained_cfg(name)
    except RuntimeError:  # a known model with a tag timm has no weights for
        tags = [n for n in timm.list_models(name.split(".")[0], pretrained=True)]
        raise SpmlError(f"unknown timm pretrained tag in {name!r}; {name.split('.')[0]} has: "
                        f"{', '.join(tags) or 'no pretrained weights'}") from None
    return name


def _pretrained_cfg(name: str) -> dict:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def timm_data_config(arch: str) -> dict:
    """timm's own resolution of the model's input: {"input_size": (3, H, W), "mean", "std", "interpolation", ...}."""
    from timm.data import resolve_data_config

    return resolve_data_config({}, pretrained_cfg=_pretrained_cfg(timm_name(arch)))


def timm_input_size(arch: str) -> int:
    """The square side the model was trained at (spml resizes to a square)."""
    return int(timm_data_config(arch)["input_size"][-1])


def timm_preprocess(arch: str, image_size: int | None = None) -> Preprocess:
    """The model's normalisation and resize filter from timm's config; `image_size` (the user's) wins over the
    config's input size. timm's crop_pct is not applied: spml resizes the whole image, as the papers do."""
    config = timm_data_config(arch)
    interpolation = config.get("interpolation") or "bilinear"
    if interpolation not in INTERPOLATIONS:  # "random" is a training-time augmentation, not a model's filter
        interpolation = "bicubic"
    size = image_size or int(config["input_size"][-1])
    return Preprocess(size, tuple(float(v) for v in config["mean"]), tuple(float(v) for v in config["std"]), interpolation)


def cached_weights_file(arch: str) -> str | None:
    """timm's pretrained weights for `arch` already on disk (the Hugging Face cache, or torch hub's for a URL), so
    using them needs no network."""
    cfg = _pretrained_cfg(timm_name(arch))
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return cfg["file"]
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            for filename in ("model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(hub_id, filename)
                if isinstance(found, str):
                    return found
        except ImportError:
            pass
    if cfg.get("url"):
        import torch

        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg["url"])
        if path.is_file():
            return str(path)
    return None


def create_timm_model(arch: str, num_classes: int, pretrained: bool = False, weights: str | os.PathLike | None = None,
                      *, image_size: int | None = None, drop_path: float = 0.0) -> nn.Module:
    """A timm model with `num_classes` outputs (timm sizes the head). `pretrained`: timm's weights (from the cache
    when there, else downloaded by timm); `weights`: a local timm state dict, its head dropped when it has
    another number of classes."""
    timm = _timm()
    name = timm_name(arch)
    kwargs = {"num_classes": num_classes}
    if drop_path:
        kwargs["drop_path_rate"] = drop_path  # stochastic depth, in the models built of blocks that have it
    cfg = _pretrained_cfg(name)
    if image_size and cfg.get("fixed_input_size") and tuple(cfg.get("input_size", ()))[-1:] != (image_size,):
        kwargs["img_size"] = image_size  # ViT-style models size their position embeddings at construction
    if weights is not None:
        from spml.train.weights import load_matching, note_missing

        model = timm.create_model(name, **kwargs)
        head = _head_prefix(model)
        note_missing([k for k in load_matching(model, weights, arch) if not k.startswith(head)], arch, weights)
        return model
    if pretrained:
        if not (cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")):
            raise SpmlError(f"timm publishes no pretrained weights for {arch}; use --weights FILE or --no-pretrained") from None
        cached = cached_weights_file(arch)
        if cached:  # no network round trip (and no retries offline) for weights already on disk
            kwargs["pretrained_cfg_overlay"] = {"file": cached, "source": ""}
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as e:  # no network, gated repository, damaged download
            first = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:160]  # hub errors run to paragraphs
            raise SpmlError(f"cannot get timm's pretrained weights for {arch} ({type(e).__name__}: {first}); "
                            "use --weights FILE or --no-pretrained") from None
    return timm.create_model(name, **kwargs)


def _head_prefix(model: nn.Module) -> str:
    head = model.get_classifier()
    for name, module in model.named_modules():
        if module is head:
            return name + "."
    return "\0"
