"""`spml-train --preset coco|voc|nus|cub`: the reference codebases' own settings for a dataset, one flag away.

A preset fills only what the user left unset (None in TrainConfig): an explicit option always wins. After it,
spml's own defaults fill the rest. Both happen in `apply_preset` / `fill_defaults`, called by resolve_config, so
the checkpoint's config records every value the run used, and which preset (if any) it came from.

Sources (read, not copied):
- EM, EM+APL, and the AN/BCE baselines: Zhou et al. 2022, Correr-Zhou/SPML-AckTheUnknown main.py, per dataset:
  batch 8 / lr 1e-5 (VOC), 16 / 1e-5 (COCO, NUS), 8 / 1e-4 (CUB); alpha, beta, theta (neg_proportion) and the
  warm-up as in PRESETS. One Adam group, constant learning rate.
- EPR, ROLE, AN-LS, WAN: Cole et al. 2021, elijahcole/single-positive-multi-label. k (expected positives) per
  dataset as in their paper and Zhou et al.'s table: 2.9 COCO, 1.5 VOC, 1.9 NUS, 31.4 CUB (the code's lookup has
  2.5 for COCO). ls_coef 0.1. Batch and lr were grid-searched there ({8, 16} x {1e-2 .. 1e-5}); the preset uses
  Zhou et al.'s per-dataset values, who ran these baselines in the same loop. Constant learning rate; ROLE's
  label estimates get 10x (its own lr_mult, not --head-lr-mult).
- LL-R / LL-Ct / LL-Cp: Kim et al. 2022, snucml/LargeLossMatters config.py and train.py: batch 16, lr 1e-5, the
  head (the last Linear layer) at lr_mult = 10 x the lr, constant learning rate, on every dataset. delta_rel has
  no per-dataset value in its README (only the range 0.1 .. 0.5 %): 0.2 % = 0.002 everywhere.
- GR: Chen et al. 2024, yan4xi1/GRLoss config.py and train.py: batch 8, lr 1e-5, the head at lr_mult = 10 x the
  lr, constant lr, on every dataset (its 8 epochs are not set: see below); the loss's own values
  (gr_beta, gr_alpha, gr_q) are the same for every dataset there, spml.train.stateful_losses.DEFAULTS["gr"].
Every reference trains 10 epochs end to end from ImageNet weights at 448 px: those are spml's paper defaults
already (resolve_config), so a preset does not set them.
"""

from __future__ import annotations

from spml.errors import SpmlError

PRESETS = {
    "coco": {"alpha": 0.1, "beta": 0.9, "theta": 0.9, "warmup_epochs": 5, "expected_positives": 2.9,
             "batch_size": 16, "fine_tune_lr": 1e-5},
    "voc": {"alpha": 0.2, "beta": 0.02, "theta": 0.9, "warmup_epochs": 5, "expected_positives": 1.5,
            "batch_size": 8, "fine_tune_lr": 1e-5},
    "nus": {"alpha": 0.1, "beta": 0.2, "theta": 0.9, "warmup_epochs": 4, "expected_positives": 1.9,
            "batch_size": 16, "fine_tune_lr": 1e-5},
    "cub": {"alpha": 0.01, "beta": 0.4, "theta": 0.9, "warmup_epochs": 3, "expected_positives": 31.4,
            "batch_size": 8, "fine_tune_lr": 1e-4},
}
COMMON = {"lr_schedule": "constant", "head_lr_mult": 1.0, "delta_rel": 0.002, "ls_coef": 0.1}
LARGE_LOSS = {"batch_size": 16, "fine_tune_lr": 1e-5, "head_lr_mult": 10.0}  # LargeLossMatters, every dataset
LARGE_LOSS_NAMES = ("ll-r", "ll-ct", "ll-cp")
GR_LOSS = {"batch_size": 8, "fine_tune_lr": 1e-5, "head_lr_mult": 10.0}  # yan4xi1/GRLoss config.py, every dataset

# spml's own defaults where neither the user nor a preset set a value. cosine and a head at 1x the lr are ours,
# not the references' (docs/losses.md has the measurement); the rest are the COCO values of the papers.
DEFAULTS = {"alpha": 0.1, "expected_positives": 2.9, "beta": 0.9, "theta": 0.9, "warmup_epochs": 5,
            "delta_rel": 0.002, "ls_coef": 0.1, "lr_schedule": "cosine", "head_lr_mult": 1.0,
            "gr_beta": (0.0, 2.0, -2.0, -2.0), "gr_alpha": (0.5, 2.0, 0.8, 0.5), "gr_q": (0.01, 1.0)}
LR_SCHEDULES = ("constant", "cosine")


def preset_values(name: str, loss: str | None) -> dict:
    """What --preset `name` sets for `loss` (None: the loss spml picks, em or bce, never an LL loss)."""
    if name not in PRESETS:
        raise SpmlError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}") from None
    values = {**COMMON, **PRESETS[name]}
    if loss in LARGE_LOSS_NAMES:
        values.update(LARGE_LOSS)
    if loss == "gr":
        values.update(GR_LOSS)
    return values


def apply_preset(cfg) -> None:
    """Fill cfg's unset (None) fields from cfg.preset, in place. fine_tune_lr is kept for fine_tune_lr()."""
    if cfg.preset is None:
        return
    for key, value in preset_values(cfg.preset, cfg.loss).items():
        if key != "fine_tune_lr" and getattr(cfg, key) is None:
            setattr(cfg, key, value)


def fine_tune_lr(cfg, default: float) -> float:
    """The lr when fine-tuning pretrained weights: the preset's (CUB 1e-4 in Zhou et al.), else `default`."""
    return preset_values(cfg.preset, cfg.loss)["fine_tune_lr"] if cfg.preset else default


def fill_defaults(cfg) -> None:
    """Fill what neither the user nor the preset set with spml's defaults, in place, and check the values."""
    for key, value in DEFAULTS.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, value)
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise SpmlError(f"unknown --lr-schedule {cfg.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}") from None
    if not cfg.head_lr_mult > 0:
        raise SpmlError(f"--head-lr-mult must be positive, got {cfg.head_lr_mult}") from None
    if not 0 <= cfg.ls_coef < 0.5:
        raise SpmlError(f"--ls-coef must be in [0, 0.5), got {cfg.ls_coef}") from None
