"""The loss names, for the command lines' choices without importing torch (spml-train --help answers at once).
tests/train/test_loss_names.py checks them against the losses themselves."""

LOSS_NAMES = ("an", "an-ls", "wan", "epr", "em", "bce", "bce-ls")  # spml.train.losses.LOSSES
STATEFUL_LOSS_NAMES = ("role", "em-apl", "ll-r", "ll-ct", "ll-cp")  # spml.train.stateful_losses.STATEFUL_LOSSES
ALL_LOSS_NAMES = LOSS_NAMES + STATEFUL_LOSS_NAMES
