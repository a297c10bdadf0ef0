"""`spml-train --preset coco|voc|nus|cub`: the reference codebases' own settings for a dataset, one flag away.

The values, and their sources, are each loss's `presets` in spml.train.loss_registry: the loss's hyperparameters
for that dataset and the reference loop's batch size, fine-tuning lr, head lr multiple and lr schedule.

A preset fills only what the user left unset (None in TrainConfig, a key missing from loss_args): an explicit
option always wins. After it, spml's own defaults fill the rest. Both happen in `apply_preset` / `fill_defaults`,
called by resolve_config, so the checkpoint's config records every value the run used, and which preset (if
any) it came from.
"""

from __future__ import annotations

from spml.errors import SpmlError
from spml.train.loss_names import LR_SCHEDULE_NAMES as LR_SCHEDULES
from spml.train.loss_registry import DATASETS, loss_spec

PRESETS = DATASETS
# spml's own training defaults where neither the user nor a preset set a value: cosine and a head at 1x the lr
# are ours, not the references' (docs/losses.md has the measurement). The losses' defaults are the registry's.
TRAINING_DEFAULTS = {"lr_schedule": "cosine", "head_lr_mult": 1.0}


def preset_values(name: str, loss: str | None) -> dict:
    """What --preset `name` sets for `loss` (None: the loss spml picks, em or bce, never an LL loss)."""
    if name not in PRESETS:
        raise SpmlError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}") from None
    return dict(loss_spec(loss).presets[name])


def apply_preset(cfg) -> None:
    """Fill cfg's unset (None) fields and loss_args from cfg.preset, in place. fine_tune_lr is kept for
    fine_tune_lr()."""
    if cfg.preset is None:
        return
    hparams = {h.name for h in loss_spec(cfg.loss).hparams}
    values = preset_values(cfg.preset, cfg.loss)
    cfg.loss_args = {**{k: v for k, v in values.items() if k in hparams}, **cfg.loss_args}
    for key, value in values.items():
        if key not in hparams and key != "fine_tune_lr" and getattr(cfg, key) is None:
            setattr(cfg, key, value)


def fine_tune_lr(cfg, default: float) -> float:
    """The lr when fine-tuning pretrained weights: the preset's (CUB 1e-4 in Zhou et al.), else `default`."""
    return preset_values(cfg.preset, cfg.loss)["fine_tune_lr"] if cfg.preset else default


def fill_defaults(cfg) -> None:
    """Fill what neither the user nor the preset set with spml's defaults, in place, and check the values."""
    for key, value in TRAINING_DEFAULTS.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, value)
    cfg.loss_args = loss_spec(cfg.loss).arguments(cfg.loss_args)  # unknown keys: one line naming the valid ones
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise SpmlError(f"unknown --lr-schedule {cfg.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}") from None
    if not cfg.head_lr_mult > 0:
        raise SpmlError(f"--head-lr-mult must be positive, got {cfg.head_lr_mult}") from None
    ls_coef = cfg.loss_args.get("ls_coef")
    if ls_coef is not None and not 0 <= ls_coef < 0.5:
        raise SpmlError(f"--loss-arg ls_coef must be in [0, 0.5), got {ls_coef}") from None
