"""`--arch open_clip/<name>`: a vision-language model of open_clip as a classifier. Its image tower is the backbone;
its head starts as the zero-shot head, one row per category: the category's text embedding (normalised, averaged
over the prompt templates, renormalised) times the model's logit scale, plus its logit bias (SigLIP's; 0 for CLIP),
so that before any training the logits are open_clip's own image-text cosine logits. The text tower is used once,
to compute that head, and is dropped: it never enters a checkpoint or an ONNX file.

<name> is an open_clip model name (ViT-B-32, MobileCLIP-S1, ...) or the path of an open_clip model config JSON
(embed_dim, vision_cfg, text_cfg, as open_clip's model_configs). Weights: open_clip's pretrained tags
(`--pretrained TAG`, downloaded by open_clip) or a whole CLIP state dict (`--weights FILE`, both towers).
open_clip is an optional extra (`spml[clip]`): only this module imports it, and only when an open_clip/ arch is
asked for."""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from spml.data.images import INTERPOLATIONS, RESIZE_MODES, Preprocess
from spml.data.json_stream import load_json
from spml.errors import SpmlError
from spml.train.weights import first_words, load_state_dict_file

PREFIX = "open_clip/"
# CLIP's own prompt plus a few of OpenAI's prompt-engineering templates (Radford et al. 2021, the notebook's
# selected ensemble, without its ImageNet-specific ones such as "a origami {}.")
DEFAULT_PROMPTS = ("a photo of a {}.", "a bad photo of the {}.", "a photo of the large {}.",
                   "a photo of the small {}.", "itap of a {}.", "a photo of many {}.")
TEXT_BATCH = 256  # prompts encoded per pass of the text tower


def is_clip(arch: str | None) -> bool:
    return isinstance(arch, str) and arch.startswith(PREFIX)


CONFIG_FORM = PREFIX + "CONFIG.json"  # --arch's other open_clip form: the path of a model config file


def listed_clip_archs() -> list[str]:
    """spml-train --list-archs's open_clip lines: every model open_clip names (when it is installed) and the
    config-file form, each with what it needs where it is not an arch name."""
    form = f"{CONFIG_FORM}  (any open_clip model config file: embed_dim, vision_cfg, text_cfg; weights: --weights FILE)"
    try:
        import open_clip
    except ImportError:
        return [f"{PREFIX}NAME  (open_clip's models: pip install 'spml[clip]')", form]
    return [PREFIX + name for name in open_clip.list_models()] + [form]


def open_clip_module():
    try:
        import open_clip
    except ImportError:
        raise SpmlError("open_clip/ archs need open_clip, which is not installed: pip install 'spml[clip]'") from None
    return open_clip


def clip_name(arch: str) -> str:
    """`open_clip/ViT-B-32` -> ViT-B-32; `open_clip/configs/tiny.json` -> configs/tiny.json."""
    return arch[len(PREFIX):]


def _is_config_file(name: str) -> bool:
    return name.lower().endswith(".json")


def clip_model_config(arch: str) -> dict:
    """The open_clip model config of `arch` ({"embed_dim", "vision_cfg", "text_cfg", ...}; a JSON file's optional
    "preprocess_cfg" kept beside them), checked."""
    name = clip_name(arch)
    if _is_config_file(name):
        return _config_file(Path(name))
    open_clip = open_clip_module()
    config = open_clip.get_model_config(name)
    if config is None:
        names = open_clip.list_models()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(PREFIX + c for c in close)}? " if close else ""
        raise SpmlError(f"unknown open_clip model {name!r}: {hint}(open_clip.list_models() names all {len(names)}; "
                        "or give the path of a model config .json)") from None
    return config


def _config_file(path: Path) -> dict:
    raw = load_json(path, "open_clip model config")
    if not isinstance(raw, dict):
        raise SpmlError(f"{path}: not an open_clip model config (a JSON object with embed_dim, vision_cfg, "
                        "text_cfg)") from None
    config = dict(raw.get("model_cfg", raw))  # a hub folder's open_clip_config.json nests it, with preprocess_cfg
    if "preprocess_cfg" in raw and "model_cfg" in raw:
        config["preprocess_cfg"] = raw["preprocess_cfg"]
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in config]
    if missing:
        raise SpmlError(f"{path}: not an open_clip model config (no {', '.join(missing)})") from None
    return config


def clip_input_size(arch: str, model_config: dict | None = None) -> int:
    """The square side the image tower is built for (its position embeddings are sized to it)."""
    size = (model_config or clip_model_config(arch))["vision_cfg"].get("image_size", 224)
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise SpmlError(f"{arch}: a {size[0]}x{size[1]} input; spml feeds square images") from None
        size = size[0]
    return int(size)


def _pretrained_tag(arch: str, pretrained) -> str | None:
    """The open_clip pretrained tag of --pretrained (None: no pretrained weights), checked against open_clip's
    list for the model (offline: the list ships with open_clip)."""
    if pretrained in (None, False):
        return None
    name = clip_name(arch)
    if _is_config_file(name):
        raise SpmlError(f"--pretrained: {name} is a model config; pretrained tags are for open_clip's named models. "
                        "Give its weights with --weights FILE") from None
    tags = open_clip_module().list_pretrained_tags_by_model(name)
    if pretrained is True or pretrained not in tags:
        what = "needs a tag: --pretrained TAG" if pretrained is True else f"has no pretrained tag {pretrained!r}"
        raise SpmlError(f"{arch} {what}; open_clip's tags for it: {', '.join(tags) or 'none'}") from None
    return pretrained


def clip_preprocess(arch: str, image_size: int | None = None, pretrained=None,
                    model_config: dict | None = None) -> Preprocess:
    """open_clip's preprocessing of the model: its mean, std, resize filter and resize mode (the pretrained
    tag's where it has them, else the config's, else open_clip's defaults, OpenAI's), at its input size."""
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg

    config = model_config or clip_model_config(arch)
    settings = asdict(PreprocessCfg())
    settings.update(config.get("preprocess_cfg") or {})
    tag = _pretrained_tag(arch, pretrained)
    if tag:
        tag_cfg = open_clip_module().get_pretrained_cfg(clip_name(arch), tag)
        settings.update({k: v for k, v in tag_cfg.items() if k in settings})
    size = clip_input_size(arch, config)
    if image_size not in (None, size):
        raise SpmlError(f"--image-size {image_size}: {arch} is built for {size}px inputs (leave --image-size unset)") from None
    interpolation = settings["interpolation"] if settings["interpolation"] in INTERPOLATIONS else "bicubic"
    mode = settings["resize_mode"] if settings["resize_mode"] in RESIZE_MODES else "shortest"
    return Preprocess(size, tuple(float(v) for v in settings["mean"]), tuple(float(v) for v in settings["std"]),
                      interpolation, mode, int(settings.get("fill_color", 0) or 0))


def read_prompts(path: str | os.PathLike | None) -> list[str]:
    """The prompt templates of a file (one a line, each with one {} for the category's name); None: spml's
    default ensemble."""
    if path is None:
        return list(DEFAULT_PROMPTS)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SpmlError(f"--prompts {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpmlError(f"--prompts {path}: cannot read it ({type(e).__name__})") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise SpmlError(f"--prompts {path}: no templates (one a line, each with {{}} for the category)") from None
    for number, prompt in enumerate(prompts, 1):
        if prompt.count("{}") != 1 or "{" in prompt.replace("{}", "") or "}" in prompt.replace("{}", ""):
            raise SpmlError(f"--prompts {path}: template {number} {prompt!r} needs exactly one {{}} (the category's "
                            "place) and no other braces") from None
    return prompts


class ClipClassifier(nn.Module):
    """open_clip's image tower, its embedding L2-normalised (as open_clip's cosine logits are), then a linear
    head: logits = head(normalise(visual(images)))."""

    def __init__(self, visual: nn.Module, embed_dim: int, num_classes: int):
        super().__init__()
        self.visual = visual
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(F.normalize(self.visual(images), dim=-1))

    def get_classifier(self) -> nn.Module:
        return self.head


def _model_class(config: dict):
    """The open_clip class a config builds (as open_clip.create_model chooses it) and the keyword arguments."""
    open_clip = open_clip_module()
    kwargs = copy.deepcopy({k: v for k, v in config.items() if k != "preprocess_cfg"})
    custom_text = kwargs.pop("custom_text", False) or "hf_model_name" in kwargs["text_cfg"]
    if "hf_model_name" in kwargs["text_cfg"]:
        kwargs["text_cfg"]["hf_model_pretrained"] = False  # the weights come from the CLIP checkpoint, not the hub
    if "multimodal_cfg" in kwargs:
        return open_clip.CoCa, kwargs
    return (open_clip.CustomTextCLIP if custom_text else open_clip.CLIP), kwargs


def build_visual(config: dict) -> nn.Module:
    """The image tower alone (no text tower built), as open_clip builds it inside CLIP; random weights."""
    from open_clip.model import _build_vision_tower

    return _build_vision_tower(config["embed_dim"], config["vision_cfg"], config.get("quick_gelu", False), None)


def classifier_from_config(config: dict, num_classes: int) -> ClipClassifier:
    """A ClipClassifier with random weights, to load a checkpoint's state dict into."""
    return ClipClassifier(build_visual(config), config["embed_dim"], num_classes)


def load_clip(arch: str, config: dict, pretrained=None, weights: str | os.PathLike | None = None) -> nn.Module:
    """The whole CLIP (both towers), in eval mode: open_clip's pretrained weights for a tag, a local state dict of
    both towers, or (neither) open_clip's random initialisation under torch's current seed."""
    open_clip = open_clip_module()
    tag = _pretrained_tag(arch, pretrained)
    if tag and weights is None:
        try:
            model = open_clip.create_model(clip_name(arch), pretrained=tag)
        except Exception as e:  # no network, damaged download
            raise SpmlError(f"cannot get open_clip's {tag!r} weights for {arch} ({type(e).__name__}: "
                            f"{first_words(str(e))}); use --weights FILE") from None
        return model.eval()
    model_class, kwargs = _model_class(config)
    model = model_class(**kwargs)
    if weights is not None:
        _load_whole_clip(model, weights, arch)
    return model.eval()


def _load_whole_clip(model: nn.Module, weights: str | os.PathLike, arch: str) -> None:
    """A CLIP state dict of both towers (open_clip's own training checkpoints too: 'module.' prefixes dropped)."""
    state = {k.removeprefix("module."): v for k, v in load_state_dict_file(weights).items()}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if missing:
        raise SpmlError(f"{weights}: not a whole CLIP state dict of {arch} ({len(own) - len(missing)} of {len(own)} "
                        f"tensors match; first missing: {missing[0]})") from None
    model.load_state_dict(usable)


def tokenizer_for(arch: str, config: dict):
    """open_clip's tokenizer of the model: its own for a named model, else the one its text_cfg names (the CLIP
    BPE tokenizer at the config's context length unless it names a Hugging Face one)."""
    open_clip = open_clip_module()
    name = clip_name(arch)
    if not _is_config_file(name):
        return open_clip.get_tokenizer(name)
    text_cfg = config["text_cfg"]
    context_length = text_cfg.get("context_length", 77)
    if text_cfg.get("hf_tokenizer_name"):
        return open_clip.tokenizer.HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=context_length)
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length, **text_cfg.get("tokenizer_kwargs", {}))


@torch.no_grad()
def class_text_embeddings(clip: nn.Module, tokenizer, names: list[str], prompts: list[str]) -> torch.Tensor:
    """(C, D): for each name, the normalised text embeddings of its prompts, averaged, renormalised."""
    texts = [prompt.format(name) for name in names for prompt in prompts]
    parts = [F.normalize(clip.encode_text(tokenizer(texts[i:i + TEXT_BATCH])).float(), dim=-1)
             for i in range(0, len(texts), TEXT_BATCH)]
    per_prompt = torch.cat(parts).reshape(len(names), len(prompts), -1)
    return F.normalize(per_prompt.mean(1), dim=-1)


def zero_shot_head(clip: nn.Module, tokenizer, names: list[str], prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (C, D), bias (C,)) of the zero-shot head: logit_scale x the class embeddings, and the model's
    logit bias (SigLIP's) or 0."""
    embeddings = class_text_embeddings(clip, tokenizer, names, prompts)
    scale = clip.logit_scale.detach().float().exp().reshape(())
    bias = getattr(clip, "logit_bias", None)
    bias = bias.detach().float().reshape(()) if bias is not None else torch.zeros(())
    return scale * embeddings, bias.expand(len(names)).clone()


def clip_record(arch: str, pretrained=None, prompts: list[str] | None = None, config: dict | None = None) -> dict:
    """What a checkpoint keeps of an open_clip model: its config (to rebuild the image tower without the config
    file or open_clip's registry), name, pretrained tag and prompt templates."""
    return {"model_cfg": copy.deepcopy(config or clip_model_config(arch)), "name": clip_name(arch),
            "pretrained": pretrained if isinstance(pretrained, str) else None,
            "prompts": list(prompts or DEFAULT_PROMPTS)}


def create_clip_model(arch: str, num_classes: int, pretrained=None, weights: str | os.PathLike | None = None,
                      *, image_size: int | None = None, class_names: list[str] | None = None,
                      prompts: list[str] | None = None) -> ClipClassifier:
    """The image tower of `arch` with a head of `num_classes` outputs: the zero-shot head of `class_names` under
    `prompts` (computed with the text tower, which is then dropped), or a random one without names (a checkpoint's
    weights are loaded next)."""
    config = clip_model_config(arch)
    clip_input_size(arch, config)
    if image_size not in (None, clip_input_size(arch, config)):
        raise SpmlError(f"--image-size {image_size}: {arch} is built for {clip_input_size(arch, config)}px inputs "
                        "(leave --image-size unset)") from None
    if class_names is None:
        return classifier_from_config(config, num_classes)
    if len(class_names) != num_classes:
        raise SpmlError(f"{len(class_names)} category names for {num_classes} outputs") from None
    clip = load_clip(arch, config, pretrained, weights)
    weight, bias = zero_shot_head(clip, tokenizer_for(arch, config), class_names, prompts or list(DEFAULT_PROMPTS))
    model = ClipClassifier(clip.visual, weight.shape[1], num_classes)
    with torch.no_grad():
        model.head.weight.copy_(weight)
        model.head.bias.copy_(bias)
    return model
