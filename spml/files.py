"""Atomic file writing and spml's cache folder, shared by every stage."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Write to a temp file beside `path`, fsync it and rename it over `path`: a crash or a full disk leaves
    either the old file or the complete new one, never half a file."""
    from spml.errors import SpmlError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        # mkstemp creates the file 0600, and the mode survives the rename: give it what open() would have
        os.chmod(tmp, 0o666 & ~current_umask())
    except OSError as e:
        raise SpmlError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
            from spml.errors import SpmlError

            raise SpmlError(f"cannot write {path}: {e.strerror or e} (the previous file, if any, is untouched)") from None
        raise


def current_umask() -> int:
    """The process's umask. Linux reports it in /proc; elsewhere it can only be read by setting it (and back)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_temps(path: str | os.PathLike) -> None:
    """Remove atomic_write's temp files for `path` (or, for a folder, inside it). A signal that lands between
    creating a temp file and entering the `with` that cleans it up can leave one behind; callers sweep on
    interrupt and before resuming."""
    path = Path(path)
    pattern = (path, ".*.tmp") if path.is_dir() else (path.parent, f".{path.name}.*.tmp")
    for tmp in pattern[0].glob(pattern[1]):
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """`text` written to `path` atomically (a report table, a rendered page)."""
    with atomic_write(path) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f)


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    """spml's own cache (built-in dataset, feature caches): $SPML_CACHE, else $XDG_CACHE_HOME/spml, else ~/.cache/spml."""
    if os.environ.get("SPML_CACHE"):
        return Path(os.environ["SPML_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spml"
