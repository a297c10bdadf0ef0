"""The loss, preset and lr-schedule names, for the command lines' choices without importing torch (spml-train --help
answers at once): all read from spml.train.loss_registry."""

from spml.train.loss_registry import DATASETS, LOSSES

LOSS_NAMES = tuple(name for name, spec in LOSSES.items() if not spec.stateful)  # spml.train.losses.LOSSES
STATEFUL_LOSS_NAMES = tuple(name for name, spec in LOSSES.items() if spec.stateful)  # stateful_losses.STATEFUL_LOSSES
ALL_LOSS_NAMES = tuple(LOSSES)
PRESET_NAMES = DATASETS  # spml.train.presets.PRESETS
LR_SCHEDULE_NAMES = ("constant", "cosine")  # spml.train.presets.LR_SCHEDULES
