"""Threads that read files (image headers, image decoding), which a kill must never wait for.

A read can block for good: a FIFO or device named like an image, a dead network mount. concurrent.futures'
ThreadPoolExecutor joins its threads when its `with` block is left (on KeyboardInterrupt too) and again at
interpreter exit, so one blocked read kept SIGTERM and Ctrl-C from ending spml-label. These threads are daemons
and leaving the pool never joins them: an interrupt unwinds the main thread at once (its `finally` blocks and
the finished chunks kept), and the process exits with the blocked thread still in its system call.
"""

from __future__ import annotations

import queue
import threading


class _Pending:
    """The result of one submitted call, to be waited for (the wait is interruptible by signals)."""

    __slots__ = ("_done", "_value", "_error", "cancelled")

    def __init__(self):
        self._done = threading.Event()
        self._value = self._error = None
        self.cancelled = False

    def _run(self, fn, args) -> None:
        try:
            self._value = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the caller of result(), as concurrent.futures does
            self._error = e
        self._done.set()

    def result(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


class ReaderPool:
    """`threads` daemon threads running submitted calls in order of submission; a context manager whose exit
    cancels what has not started and never waits for what has."""

    def __init__(self, threads: int):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"spml-reader-{k}", daemon=True)
                         for k in range(max(1, threads))]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            pending, fn, args = task
            if not pending.cancelled:
                pending._run(fn, args)
            del task, pending  # not kept alive while this thread waits for the next task

    def submit(self, fn, *args) -> _Pending:
        pending = _Pending()
        self._tasks.put((pending, fn, args))
        return pending

    def map(self, fn, items):
        """fn(item) for each item, in order, computed ahead by the threads; the calls not yet started are
        cancelled if the caller stops early (an exception, an interrupt)."""
        submitted = [self.submit(fn, item) for item in items]
        try:
            for pending in submitted:
                yield pending.result()
        finally:
            for pending in submitted:
                pending.cancelled = True

    def close(self) -> None:
        """Cancel the calls not yet started and let the threads end once they finish their current one; returns
        at once."""
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[0].cancelled = True
        for _ in self._threads:
            self._tasks.put(None)

    def __enter__(self) -> "ReaderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
