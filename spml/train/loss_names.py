"""The loss, preset and lr-schedule names, for the command lines' choices without importing torch (spml-train --help
answers at once). tests/test_cli_help.py checks them against the real ones."""

LOSS_NAMES = ("an", "an-ls", "wan", "epr", "em", "bce", "bce-ls")  # spml.train.losses.LOSSES
STATEFUL_LOSS_NAMES = ("role", "em-apl", "ll-r", "ll-ct", "ll-cp", "gr")  # spml.train.stateful_losses.STATEFUL_LOSSES
ALL_LOSS_NAMES = LOSS_NAMES + STATEFUL_LOSS_NAMES
PRESET_NAMES = ("coco", "voc", "nus", "cub")  # spml.train.presets.PRESETS
LR_SCHEDULE_NAMES = ("constant", "cosine")  # spml.train.presets.LR_SCHEDULES
