"""Images to label without a COCO file: a plain folder, or a list of paths as text, JSON lines or CSV.

Each becomes a COCO dataset (ids, file names, widths, heights, the model's categories) so the labeler, the resume
logic and the writers see one kind of input. Lists may carry ids and observed labels (category names or ids).

    folder/              every image under it, recursive, in sorted order; other files skipped
    list.txt             one path per line (blank lines and lines starting with # skipped)
    list.jsonl           {"file_name": ..., "id": 7, "labels": ["dog", 18]} per line; id and labels optional
    list.csv             a header with file_name and optionally id and labels (space-separated names or ids)

Paths are relative to the images folder (default: the list's folder) or absolute.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from spml.errors import SpmlError

# What Pillow decodes and people keep photos in; anything else under the folder (labels, notes, .DS_Store) is skipped
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
LIST_SUFFIXES = (".txt", ".jsonl", ".csv")


def is_image_list(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in LIST_SUFFIXES


def scan_folder(images_dir: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the image files under `images_dir`, recursive, sorted; hidden files and folders
    skipped (.git, .ipynb_checkpoints, macOS's ._ files)."""
    root = Path(images_dir)
    if not root.is_dir():
        raise SpmlError(f"{images_dir}: no such folder") from None
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(folder, name).relative_to(root).as_posix())
    if not found:
        raise SpmlError(f"{images_dir}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under it") from None
    return sorted(found)


def _read_entries(path: Path) -> list[dict]:
    """[{"file_name", optionally "id", "labels"}] from a .txt, .jsonl or .csv list."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from spreadsheet programs
    except FileNotFoundError:
        raise SpmlError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpmlError(f"{path}: is a folder, not an image list") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpmlError(f"{path}: cannot read ({e})") from None
    suffix = path.suffix.lower()
    entries = []
    if suffix == ".txt":
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                entries.append({"file_name": line.strip()})
    elif suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise SpmlError(f"{path}:{n}: not a JSON line ({e})") from None
            if isinstance(obj, str):
                obj = {"file_name": obj}
            if not isinstance(obj, dict) or not isinstance(obj.get("file_name"), str):
                raise SpmlError(f"{path}:{n}: expected an object with a 'file_name' string") from None
            entries.append(obj)
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))  # quoted fields may hold commas and newlines
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
            entries.append(entry)
    else:
        raise SpmlError(f"{path}: an image list ends in {', '.join(LIST_SUFFIXES)}") from None
    if not entries:
        raise SpmlError(f"{path}: the list is empty") from None
    return entries


def _ids(entries: list[dict], path: Path) -> list[int]:
    given = ["id" in e for e in entries]
    if not any(given):
        return list(range(1, len(entries) + 1))
    if not all(given):
        raise SpmlError(f"{path}: some entries have an id and some do not; give all or none") from None
    ids = []
    for e in entries:
        try:
            ids.append(int(e["id"]))
        except (TypeError, ValueError):
            raise SpmlError(f"{path}: id {str(e['id'])[:40]!r} of {e['file_name']} is not an integer") from None
    return ids


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

    try:
        with Image.open(path) as img:
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
        except ValueError:
            return file_name
    return file_name


def image_list_coco(file_names: list[str], images_dir: str | os.PathLike, categories: list[dict],
                    ids: list[int] | None = None, labels: list[list] | None = None, threads: int = 8,
                    source: str | None = None) -> dict:
    """A COCO dict of these images (widths and heights read from their headers) with the given categories and,
    where `labels` is given, one annotation per observed label (category names or ids)."""
    images_dir = Path(images_dir)
    ids = ids or list(range(1, len(file_names) + 1))
    with ThreadPoolExecutor(max(1, threads)) as pool:  # header reads are I/O: threads hide a network disk's latency
        sizes = list(pool.map(lambda f: image_size(images_dir / f), file_names))
    images = []
    for i, f, size in zip(ids, file_names, sizes):
        im = {"id": i, "file_name": f}
        if size is not None:
            im["width"], im["height"] = size
        images.append(im)
    annotations = []
    if labels is not None:
        lookup = _category_lookup(categories)
        for i, f, names in zip(ids, file_names, labels):
            if isinstance(names, (str, int)):
                names = [names]
            if not isinstance(names, list):
                raise SpmlError(f"{source or 'list'}: labels of {f} must be a list of category names or ids") from None
            for name in dict.fromkeys(str(n) for n in names):  # once each, in order
                if name not in lookup:
                    close = sorted(k for k in lookup if k.lower() == name.lower())[:1]
                    raise SpmlError(f"{source or 'list'}: {f}: unknown category {name!r}"
                                    + (f" (did you mean {close[0]!r}?)" if close else "")) from None
                annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": lookup[name],
                                    "iscrowd": 0})
    info = {"description": f"images of {source}" if source else "images", "images_dir": str(images_dir.resolve())}
    return {"info": info, "licenses": [], "images": images,
            "categories": [{k: c[k] for k in ("id", "name", "supercategory") if k in c} for c in categories],
            "annotations": annotations}


def load_image_folder(images_dir: str | os.PathLike, categories: list[dict], threads: int = 8):
    """Every image under `images_dir` as a CocoDataset with no observed labels."""
    from spml.data.coco import dataset_from_dict

    names = scan_folder(images_dir)
    raw = image_list_coco(names, images_dir, categories, threads=threads, source=str(images_dir))
    return dataset_from_dict(raw, None, images_dir)


def load_image_list(path: str | os.PathLike, categories: list[dict], images_dir: str | os.PathLike | None = None,
                    threads: int = 8):
    """The images of a .txt, .jsonl or .csv list as a CocoDataset (its `path` is the list, so a changed list is
    a new job for the resume logic)."""
    from spml.data.coco import dataset_from_dict

    path = Path(path)
    entries = _read_entries(path)
    names = [e["file_name"] for e in entries]
    if images_dir is None:
        absolute = [n for n in names if os.path.isabs(n)]
        # a list of absolute paths: their common folder, so they are inside the images folder and open as-is
        images_dir = Path(os.path.commonpath([os.path.dirname(n) for n in absolute])) if len(absolute) == len(names) \
            else path.parent
    images_dir = Path(images_dir)
    names = [_relative(n, images_dir) for n in names]
    has_labels = any("labels" in e for e in entries)
    labels = [e.get("labels", []) for e in entries] if has_labels else None
    raw = image_list_coco(names, images_dir, categories, _ids(entries, path), labels, threads, source=str(path))
    return dataset_from_dict(raw, path.resolve(), images_dir)


def listing_sha256(dataset) -> str:
    """A fingerprint of a dataset's images, for one with no file of its own (a scanned folder)."""
    h = hashlib.sha256()
    for im in dataset.images:
        h.update(json.dumps([im["id"], im["file_name"], im.get("width"), im.get("height")]).encode() + b"\n")
    return h.hexdigest()
