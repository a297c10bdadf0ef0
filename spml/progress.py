"""Progress for long work: tqdm's bar on a terminal; where stderr is a file or a pipe (a job's log), a plain line
every few seconds instead of the bar's carriage-return redraws, which fill a log with one endless line.

`tqdm` here is a drop-in for the calls spml makes (`total`, `initial`, `desc`, `unit`, `disable`, `leave`,
iterating, `update`, `set_postfix`, `close`)."""

from __future__ import annotations

import os
import sys
import time

INTERVAL_ENV = "SPML_PROGRESS_SECONDS"  # seconds between plain progress lines; default 30


def interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, "30")))
    except ValueError:
        return 30.0


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def tqdm(iterable=None, *, total=None, initial=0, desc="", unit="it", disable=False, file=None, **kwargs):
    """tqdm on a terminal, else PlainProgress."""
    stream = file or sys.stderr
    if disable or _is_terminal(stream):
        from tqdm import tqdm as bar

        return bar(iterable, total=total, initial=initial, desc=desc, unit=unit, disable=disable, file=file, **kwargs)
    return PlainProgress(iterable, total=total, initial=initial, desc=desc, unit=unit, stream=stream)


class PlainProgress:
    """'labeling: 384/1280 img (30%), 25.1 img/s, 36s left' every `interval()` seconds, and once at the end of a job that printed one."""

    def __init__(self, iterable=None, total=None, initial=0, desc="", *, unit="it", stream=None, every=None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.start_n = total, initial, initial
        self.desc, self.unit = desc, unit
        self.stream = stream or sys.stderr
        self.every = interval() if every is None else every
        self.started = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False
        self.printed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self):
        return self.total or 0

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._print(now)

    def set_postfix(self, refresh=True, **values):
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def set_description(self, desc, refresh=True):
        self.desc = desc

    def refresh(self):
        pass

    def _print(self, now):
        done = self.n - self.start_n
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"{(self.total - self.n) / rate:.0f}s left")
        if self.postfix:
            parts.append(self.postfix)
        self.printed = True
        print(f"{self.desc}: " + ", ".join(parts) if self.desc else ", ".join(parts), file=self.stream, flush=True)

    def close(self):
        if not self.closed:
            self.closed = True
            if self.printed:  # a job long enough to have reported gets its last line; a short one stays quiet
                self._print(time.monotonic())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
