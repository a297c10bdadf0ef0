"""The built-in dataset's regime, for `spml-train` with no --ann (the card's first command) and the demo: its
files, its small sizes and its source-task backbone, made on first use. Kept out of `resolve_config`, which
only fills in settings: generating data and training a backbone are work, done here, before it."""

from __future__ import annotations

import dataclasses

from spml.train.presets import apply_preset
from spml.train.small_cnn import SMALL_ARCHS
from spml.train.trainer import TrainConfig

# Settings for the built-in dataset (small images, no pretrained weights): a run takes minutes on 2 CPU cores.
BUILTIN_PRESET = {"arch": "cnn4", "image_size": 32, "epochs": 8, "batch_size": 32}
BUILTIN_LR = 3e-4  # fine-tuning the source-task backbone (spml.train.pretrain), as in docs/demo-seeds


def builtin_config(config: TrainConfig, log=print) -> TrainConfig:
    """`config` with the built-in dataset filled in where it names no training labels (ann None): its files
    (created on first use), the sizes of BUILTIN_PRESET where neither the user nor --preset set them, and, for a
    small arch with no other start, the source-task backbone (trained on first use) at BUILTIN_LR. A config
    that names its data is returned as it is."""
    if config.ann is not None:
        return config
    from spml.data.demo import builtin_dataset, builtin_single_positive
    from spml.train.pretrain import builtin_backbone

    val = builtin_dataset()["val"]
    cfg = dataclasses.replace(config, ann=str(builtin_single_positive()),
                              val_ann=config.val_ann if config.val_ann is not None else str(val))
    preset = dataclasses.replace(cfg)
    apply_preset(preset)  # a preset's batch size wins over the built-in one, as an explicit option does
    for key, value in BUILTIN_PRESET.items():
        linear_epochs = key == "epochs" and cfg.mode == "linear"  # resolve_config's LINEAR_EPOCHS instead
        if getattr(preset, key) is None and not linear_epochs:
            setattr(cfg, key, value)
    if cfg.arch in SMALL_ARCHS and cfg.weights is None and cfg.pretrained is None and cfg.init is None:
        # the paper's regime on the built-in data: the source-task backbone stands in for ImageNet weights
        cfg.weights = str(builtin_backbone(cfg.arch, cfg.image_size, log=log))
        cfg.lr = BUILTIN_LR if cfg.lr is None else cfg.lr
    return cfg
