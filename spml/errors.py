"""The one error type users see: a one-line message and exit code 1 from every command."""

import click


class SpmlError(click.ClickException):
    """An expected failure (bad input, missing file, mismatched model). Raised `from None` by callers so the
    command prints one line instead of a traceback; a plain Exception for library users."""


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """Let SIGTERM unwind like Ctrl-C, so temp files are removed and finished work (chunks, epochs) is kept."""
    import signal

    signal.signal(signal.SIGTERM, _raise_interrupt)
