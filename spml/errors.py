"""The one error type users see: a one-line message and exit code 1 from every command."""

import click


class SpmlError(click.ClickException):
    """An expected failure (bad input, missing file, mismatched model). Raised `from None` by callers so the
    command prints one line instead of a traceback; a plain Exception for library users."""
