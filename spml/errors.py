"""The one error type of the library: an expected failure (bad input, missing file, mismatched model).

A plain Exception, so library users catch it like any other; the commands turn it into one line on stderr and
exit code 1 at the click boundary (spml.cli_util.SpmlCommand). Raised `from None` by callers, so nothing
chains a traceback onto it."""


class SpmlError(Exception):
    """An expected failure, with a message that names the file or option at fault."""


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """Let SIGTERM unwind like Ctrl-C, so temp files are removed and finished work (chunks, epochs) is kept."""
    import signal

    signal.signal(signal.SIGTERM, _raise_interrupt)
