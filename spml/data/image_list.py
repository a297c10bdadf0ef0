"""Images to label without a COCO file: a plain folder, or a list of paths as text, JSON lines or CSV.

Each becomes a COCO dataset (ids, file names, widths, heights, the model's categories) so the labeler, the resume
logic and the writers see one kind of input. Lists are read a line at a time into compact columns. Lists may carry ids and observed labels (category names or ids).

    folder/              every image under it, recursive, in sorted order; other files skipped
    list.txt             one path per line (blank lines and lines starting with # skipped)
    list.jsonl           {"file_name": ..., "id": 7, "labels": ["dog", 18]} per line; id and labels optional
    list.csv             a header with file_name and optionally id and labels (space-separated names or ids)

Paths are relative to the images folder (default: the list's folder) or absolute.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
from array import array
from collections import deque
from pathlib import Path

from spml.data.compact import PackedStrings
from spml.data.json_stream import DECODE_ERRORS, decode_error
from spml.data.reader_pool import ReaderPool
from spml.errors import SpmlError

# What Pillow decodes and people keep photos in; anything else under the folder (labels, notes, .DS_Store) is skipped
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
LIST_SUFFIXES = (".txt", ".jsonl", ".csv")


def is_image_list(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in LIST_SUFFIXES


def scan_folder(images_dir: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the image files under `images_dir`, recursive, sorted; hidden files and folders
    skipped (.git, .ipynb_checkpoints, macOS's ._ files).

    Links are followed, but each real folder is visited once and each real file taken once (by device and
    inode), so a link cycle (`sub/loop -> ..`) or a second link to a folder does not repeat its images; a file is
    named by its path without links where it has one. Only regular files are taken: a FIFO, device or socket
    named like an image would block its reader or never end."""
    root = Path(images_dir)
    if not root.is_dir():
        raise SpmlError(f"{images_dir}: no such folder") from None
    first_name: dict[tuple[int, int], tuple[bool, str]] = {}  # a real file -> (reached through a link, its name)
    for via_link, name, st in _walk(root):
        key = (st.st_dev, st.st_ino)
        if key not in first_name or (via_link, name) < first_name[key]:
            first_name[key] = (via_link, name)
    found = sorted(name for _, name in first_name.values())
    if not found:
        raise SpmlError(f"{images_dir}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under it") from None
    return found


def _walk(root: Path):
    """(reached through a link, relative POSIX name, stat after links) of each regular image file under `root`:
    the folders reached without links first, then those only a link leads to, each real folder once."""
    seen: set[tuple[int, int]] = set()
    plain, linked = deque([(root, "", False)]), deque()
    while plain or linked:
        folder, rel, via_link = plain.popleft() if plain else linked.popleft()
        try:
            st = os.stat(folder)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue  # unreadable (no permission, gone): as os.walk, skipped
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                target = entry.stat()  # after links
                is_link = entry.is_symlink()
            except OSError:
                continue  # a dangling link or a link loop
            name = f"{rel}{entry.name}"
            if stat.S_ISDIR(target.st_mode):
                (linked if via_link or is_link else plain).append((entry.path, name + "/", via_link or is_link))
            elif stat.S_ISREG(target.st_mode) and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                yield via_link or is_link, name, target


def _read_entries(path: Path):
    """(line number, {"file_name", optionally "id", "labels"}) of a .txt, .jsonl or .csv list, one at a time: a
    list of millions of images is never all dicts at once."""
    suffix = path.suffix.lower()
    if suffix not in LIST_SUFFIXES:
        raise SpmlError(f"{path}: an image list ends in {', '.join(LIST_SUFFIXES)}") from None
    try:
        f = open(path, encoding="utf-8-sig", newline="" if suffix == ".csv" else None)  # a BOM from spreadsheets
    except FileNotFoundError:
        raise SpmlError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpmlError(f"{path}: is a folder, not an image list") from None
    except OSError as e:
        raise SpmlError(f"{path}: cannot read ({e})") from None
    try:
        with f:
            yield from _parse_entries(path, suffix, f)
    except (OSError, UnicodeDecodeError, csv.Error) as e:  # csv.Error: a field over the csv module's limit, ...
        raise SpmlError(f"{path}: cannot read ({e})") from None
    except MemoryError:
        raise SpmlError(f"{path}: cannot read (a line too large for memory)") from None


def _parse_entries(path: Path, suffix: str, f):
    if suffix == ".txt":
        for n, line in enumerate(f, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                yield n, {"file_name": line.strip()}
    elif suffix == ".jsonl":
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except DECODE_ERRORS as e:
                raise SpmlError(f"{path}:{n}: not a JSON line ({decode_error(e)})") from None
            if isinstance(obj, str):
                obj = {"file_name": obj}
            if not isinstance(obj, dict) or not isinstance(obj.get("file_name"), str):
                raise SpmlError(f"{path}:{n}: expected an object with a 'file_name' string") from None
            yield n, obj
    else:
        reader = csv.DictReader(f)  # quoted fields may hold commas and newlines
        if not reader.fieldnames or "file_name" not in reader.fieldnames:
            raise SpmlError(f"{path}: the CSV header has no 'file_name' column (got {reader.fieldnames})") from None
        for n, row in enumerate(reader, 2):
            if not (row.get("file_name") or "").strip():
                raise SpmlError(f"{path}:{n}: empty file_name") from None
            entry = {"file_name": row["file_name"].strip()}
            if (row.get("id") or "").strip():
                entry["id"] = row["id"].strip()
            if "labels" in row:
                entry["labels"] = (row["labels"] or "").split()
            yield n, entry


def _category_lookup(categories: list[dict]) -> dict[str, int]:
    """Names, names with '_' for spaces (as the CSV writer spells them) and ids, each to a category id."""
    lookup = {}
    for c in categories:
        name = str(c.get("name", c["id"]))
        lookup.setdefault(name, c["id"])
        lookup.setdefault(name.replace(" ", "_"), c["id"])
    for c in categories:
        lookup.setdefault(str(c["id"]), c["id"])
    return lookup


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header (Pillow reads no pixels here), or None where it cannot be read; the
    labeler then lists that image as a failure with the reason."""
    from PIL import Image

    from spml.data.images import open_regular

    try:
        with open_regular(path) as f, Image.open(f) as img:  # a FIFO or device is refused, never waited on
            orientation = img.getexif().get(0x0112, 1)
            width, height = img.size
    except Exception:  # noqa: BLE001 - any unreadable file is the labeler's failure to report, not ours
        return None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)  # as decoded: EXIF-rotated


def _relative(file_name: str, base: Path) -> str:
    """An absolute path inside `base` as a path relative to it (others unchanged)."""
    p = Path(file_name)
    if p.is_absolute():
        try:
            return p.resolve().relative_to(base.resolve()).as_posix()
        except (OSError, ValueError):  # outside base, or a path the OS cannot take: the labeler lists why
            return file_name
    return file_name


def _labels_of(names, lookup: dict[str, int], file_name: str, source: str) -> list[int]:
    """The category ids of one entry's observed labels (names or ids), once each, in order."""
    if isinstance(names, (str, int)):
        names = [names]
    if not isinstance(names, list):
        raise SpmlError(f"{source}: labels of {file_name} must be a list of category names or ids") from None
    ids = []
    for name in dict.fromkeys(str(n) for n in names):
        if name not in lookup:
            close = sorted(k for k in lookup if k.lower() == name.lower())[:1]
            raise SpmlError(f"{source}: {file_name}: unknown category {name!r}"
                            + (f" (did you mean {close[0]!r}?)" if close else "")) from None
        ids.append(lookup[name])
    return ids


def _sizes(images_dir: Path, file_names, threads: int, window: int = 4096):
    """image_size of each file, in order; header reads are I/O, so threads hide a network disk's latency. A window
    at a time: a future per image of a 9M-image list, all at once, would be gigabytes. With one thread, in this
    one: a pool of one only adds that thread's own malloc arena (~8 MB at 200k images). Daemon threads (ReaderPool):
    a header read blocked for good cannot keep an interrupt from ending the process."""
    if threads <= 1:
        yield from (image_size(images_dir / file_names[k]) for k in range(len(file_names)))
        return
    with ReaderPool(threads) as pool:
        for start in range(0, len(file_names), window):
            part = [images_dir / file_names[k] for k in range(start, min(start + window, len(file_names)))]
            yield from pool.map(image_size, part)


def _collect(file_names, images_dir: Path, ids=None, labels=None, *, threads: int = 8, source: str | None = None,
             path: Path | None = None):
    """The images' records (widths and heights read from their headers) and, where `labels` is given (category ids
    per image, aligned with `file_names`), their observed labels, in a DatasetBuilder's compact columns."""
    from spml.data.coco import DatasetBuilder

    collector = DatasetBuilder(path or source or "list")
    count = 0
    for n, size in enumerate(_sizes(images_dir, file_names, threads)):
        image_id = n + 1 if ids is None else int(ids[n])
        im = {"id": image_id, "file_name": file_names[n]}
        if size is not None:
            im["width"], im["height"] = size
        collector.image(im)
        for cid in labels[n] if labels is not None else ():
            count += 1
            collector.annotation({"id": count, "image_id": image_id, "category_id": cid, "iscrowd": 0})
    return collector


def _dataset(collector, images_dir: Path, categories: list[dict], source: str | None = None):
    return collector.build([{k: c[k] for k in ("id", "name", "supercategory") if k in c} for c in categories],
                           {"description": f"images of {source}" if source else "images",
                            "images_dir": str(images_dir.resolve())}, images_dir)


def images_dataset(file_names, images_dir: str | os.PathLike, categories: list[dict], ids=None, *, labels=None,
                   threads: int = 8, source: str | None = None, path: Path | None = None):
    """A CocoDataset of these images (widths and heights read from their headers) with the given categories and,
    where `labels` is given (category ids per image, aligned with `file_names`), those observed labels. Built in
    compact columns: no dict per image is kept."""
    images_dir = Path(images_dir)
    return _dataset(_collect(file_names, images_dir, ids, labels, threads=threads, source=source, path=path), images_dir, categories, source)


def load_image_folder(images_dir: str | os.PathLike, categories: list[dict], threads: int = 8):
    """Every image under `images_dir` as a CocoDataset with no observed labels."""
    names = scan_folder(images_dir)
    return images_dataset(names, images_dir, categories, threads=threads, source=str(images_dir))


class _LabelColumns:
    """The observed labels of a list as it is read: all entries' category ids in one array, with offsets."""

    def __init__(self):
        self.ids, self.offsets = array("q"), array("q", [0])

    def append(self, ids: list[int]) -> None:
        self.ids.extend(ids)
        self.offsets.append(len(self.ids))

    def __getitem__(self, n: int):
        return self.ids[self.offsets[n]:self.offsets[n + 1]]


def load_image_list(path: str | os.PathLike, categories: list[dict], images_dir: str | os.PathLike | None = None,
                    threads: int = 8):
    """The images of a .txt, .jsonl or .csv list as a CocoDataset (its `path` is the list, so a changed list is
    a new job for the resume logic). Read a line at a time into compact columns."""
    path = Path(path)
    names, ids, labels = PackedStrings(), array("q"), _LabelColumns()
    lookup = _category_lookup(categories)
    with_id = with_labels = 0
    bad_id = None
    absolute, common = True, None  # whether every path is absolute, and their common folder
    for _, entry in _read_entries(path):
        name = entry["file_name"]
        names.append(name)
        if "id" in entry:
            with_id += 1
            try:
                ids.append(int(entry["id"]))
            except (TypeError, ValueError, OverflowError):
                bad_id = bad_id or (entry["id"], name)
                ids.append(0)
        with_labels += "labels" in entry
        labels.append(_labels_of(entry.get("labels", []), lookup, name, str(path)))
        if absolute and os.path.isabs(name):
            folder = os.path.dirname(name)
            common = folder if common is None else os.path.commonpath([common, folder])
        else:
            absolute = False
    if not len(names):
        raise SpmlError(f"{path}: the list is empty") from None
    if with_id and with_id != len(names):
        raise SpmlError(f"{path}: some entries have an id and some do not; give all or none") from None
    if bad_id is not None:
        raise SpmlError(f"{path}: id {str(bad_id[0])[:40]!r} of {bad_id[1]} is not an integer") from None
    if images_dir is None:
        # a list of absolute paths: their common folder, so they are inside the images folder and open as-is
        images_dir = Path(common) if absolute else path.parent
    images_dir = Path(images_dir)
    if any(os.path.isabs(names[k]) for k in range(len(names))):
        relative = PackedStrings()
        for k in range(len(names)):
            relative.append(_relative(names[k], images_dir))
        names = relative
    collector = _collect(names, images_dir, ids if with_id else None, labels if with_labels else None, threads=threads,
                         source=str(path), path=path.resolve())
    del names, ids, labels  # the collector has its own columns: the list's go before the dataset is built
    return _dataset(collector, images_dir, categories, str(path))


def listing_sha256(dataset) -> str:
    """A fingerprint of a dataset's images, for one with no file of its own (a scanned folder)."""
    h = hashlib.sha256()
    for im in dataset.images:
        h.update(json.dumps([im["id"], im["file_name"], im.get("width"), im.get("height")]).encode() + b"\n")
    return h.hexdigest()
