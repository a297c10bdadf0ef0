"""The library's own messages (notes such as "12 tensors ... keep their initial values") go through `logging`,
one logger per module (`logging.getLogger(__name__)`), never `print`: a library must not decide where its
messages go, and under torchrun N processes would each print them.

The commands configure it once (`configure`, called at spml.cli_util's boundary): messages of the "spml" loggers
go to stdout as plain lines, as print put them; on ranks other than 0 only warnings and errors are shown, as the
trainer's own `log` is silent there. A program that imports spml configures logging its own way."""

from __future__ import annotations

import logging
import os
import sys


class _CurrentStdout(logging.StreamHandler):
    """Writes to whatever sys.stdout is when a message comes (click's test runner swaps it per call)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns one; the current stdout is always used
        pass


def process_rank() -> int:
    """This process's rank under torchrun (RANK), else 0."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def configure() -> None:
    """Show spml's messages on stdout, INFO and up on rank 0, WARNING and up elsewhere. Idempotent."""
    logger = logging.getLogger("spml")
    if not any(isinstance(h, _CurrentStdout) for h in logger.handlers):
        handler = _CurrentStdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if process_rank() == 0 else logging.WARNING)
