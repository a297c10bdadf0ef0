"""Open Images' human-verified image-level labels as a COCO file with observed negatives.

Input: a CSV `ImageID,Source,LabelName,Confidence` (Open Images' `*-annotations-human-imagelabels*.csv`), where a
person checked each (image, label): Confidence 1 = present, 0 = absent. Optionally the class descriptions
(`LabelName,DisplayName`, with or without that header, as Open Images ships them). Such data is partially labeled
like single-positive data: each image has a few verified labels and every other category is unobserved.

Output: one COCO image per ImageID whose `ImageID.jpg` is under the images folder (the others are left out and
counted), one category per LabelName the labels use (in the class file's order where given, else sorted), each
verified present label an annotation with `source: verified`, each verified absent one in the image's
`neg_category_ids` (every image has the field, as in LVIS). Where one (image, label) is answered twice the later
row wins, and the conflicts are counted.

Memory: the rows are kept as three numbers each in flat arrays, not as Python objects; the file is streamed out.
"""

from __future__ import annotations

import csv
import json
import os
from array import array
from pathlib import Path

import numpy as np

from spml.data.provenance import relative_to_file
from spml.errors import SpmlError
from spml.files import atomic_write

HEADER = ["ImageID", "Source", "LabelName", "Confidence"]
CLASS_HEADER = ["LabelName", "DisplayName"]


def _open_csv(path: Path, what: str):
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpmlError(f"{path}: no such file ({what})") from None
    except IsADirectoryError:
        raise SpmlError(f"{path}: is a folder, not a CSV file ({what})") from None
    except OSError as e:
        raise SpmlError(f"{path}: cannot read ({e.strerror})") from None


def read_class_names(path: str | os.PathLike) -> dict[str, str]:
    """LabelName -> DisplayName, in file order; a header row `LabelName,DisplayName` is skipped where present."""
    path = Path(path)
    names: dict[str, str] = {}
    with _open_csv(path, "--classes") as f:
        try:
            for line, row in enumerate(csv.reader(f), start=1):
                if line == 1 and row == CLASS_HEADER:
                    continue
                if not row:
                    continue
                if len(row) != 2 or not row[0].strip():
                    raise SpmlError(f"{path}:{line}: expected LabelName,DisplayName, got {','.join(row)[:80]!r}") from None
                if row[0] in names:
                    raise SpmlError(f"{path}:{line}: LabelName {row[0]} appears twice") from None
                names[row[0]] = row[1]
        except (csv.Error, UnicodeDecodeError) as e:
            raise SpmlError(f"{path}: not a CSV file ({e})") from None
    if not names:
        raise SpmlError(f"{path}: no classes") from None
    return names


class _Rows:
    """The labels CSV as (image, label, confidence) numbers, with the image and label ids interned."""

    def __init__(self):
        self.image_ids: dict[str, int] = {}
        self.label_names: dict[str, int] = {}
        self.image, self.label = array("q"), array("q")
        self.present = bytearray()

    def add(self, image_id: str, label_name: str, present: bool) -> None:
        self.image.append(self.image_ids.setdefault(image_id, len(self.image_ids)))
        self.label.append(self.label_names.setdefault(label_name, len(self.label_names)))
        self.present.append(present)


def _valid_image_id(image_id: str) -> bool:
    # an ImageID becomes a file name: no folders, no way out of --images
    return bool(image_id) and "/" not in image_id and "\\" not in image_id and image_id not in (".", "..")


def read_verified_labels(path: str | os.PathLike) -> _Rows:
    """The rows of an Open Images human-verified labels CSV; SpmlError with the line on a malformed row."""
    path = Path(path)
    rows = _Rows()
    with _open_csv(path, "the labels") as f:
        try:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != HEADER:
                raise SpmlError(f"{path}: expected the header {','.join(HEADER)} (Open Images' human-verified "
                                f"image labels), got {','.join(header or [])[:80]!r}") from None
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != 4:
                    raise SpmlError(f"{path}:{line}: expected 4 fields ({','.join(HEADER)}), got {len(row)}") from None
                image_id, _, label_name, confidence = (v.strip() for v in row)
                if not _valid_image_id(image_id):
                    raise SpmlError(f"{path}:{line}: ImageID {image_id!r} is not a file name") from None
                if not label_name:
                    raise SpmlError(f"{path}:{line}: empty LabelName") from None
                if confidence not in ("0", "1", "0.0", "1.0"):
                    raise SpmlError(f"{path}:{line}: Confidence {confidence!r} is neither 1 (verified present) nor "
                                    f"0 (verified absent); machine-generated labels are not read") from None
                rows.add(image_id, label_name, confidence.startswith("1"))
        except (csv.Error, UnicodeDecodeError) as e:
            raise SpmlError(f"{path}: not a CSV file ({e})") from None
    if not rows.image_ids:
        raise SpmlError(f"{path}: no labels") from None
    return rows


def _last_answers(rows: _Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One answer per (image, label), the later row winning: (image, label, present) sorted, and how many pairs
    were answered both ways."""
    image = np.frombuffer(rows.image, np.int64)
    label = np.frombuffer(rows.label, np.int64)
    present = np.frombuffer(rows.present, np.uint8).astype(bool)
    key = image * len(rows.label_names) + label
    order = np.argsort(key, kind="stable")  # equal keys keep file order: the last of each run is the later row
    key, present = key[order], present[order]
    last = np.ones(len(key), bool)
    last[:-1] = key[1:] != key[:-1]
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    run = np.cumsum(first) - 1  # which pair each row belongs to
    both = np.zeros(int(run[-1]) + 1 if len(run) else 0, np.int8)
    np.bitwise_or.at(both, run, np.where(present, 1, 2).astype(np.int8))
    conflicts = int((both == 3).sum())
    key, present = key[last], present[last]
    return key // len(rows.label_names), key % len(rows.label_names), present, conflicts


def from_openimages(labels: str | os.PathLike, images_dir: str | os.PathLike, out: str | os.PathLike,
                    classes: str | os.PathLike | None = None) -> dict:
    """Write the COCO file `out` from an Open Images human-verified labels CSV; returns a summary (images,
    categories, positives, negatives, conflicts, missing images)."""
    labels, images_dir, out = Path(labels), Path(images_dir), Path(out)
    if not images_dir.is_dir():
        raise SpmlError(f"--images {images_dir}: no such folder") from None
    names = read_class_names(classes) if classes is not None else None
    rows = read_verified_labels(labels)
    if names is not None:
        unknown = [n for n in rows.label_names if n not in names]
        if unknown:
            raise SpmlError(f"{labels}: LabelName {unknown[0]} is not in {classes}"
                            + (f" (nor are {len(unknown) - 1} more)" if len(unknown) > 1 else "")) from None
        ordered = [n for n in names if n in rows.label_names]
    else:
        ordered = sorted(rows.label_names)
    category_of = {rows.label_names[n]: k + 1 for k, n in enumerate(ordered)}  # label index -> category id
    categories = [{"id": k + 1, "name": names[n] if names is not None else n, "label_name": n}
                  for k, n in enumerate(ordered)]
    image, label, present, conflicts = _last_answers(rows)
    image_names = list(rows.image_ids)
    exists = np.array([(images_dir / f"{name}.jpg").is_file() for name in image_names], bool)
    if not exists.any():
        raise SpmlError(f"--images {images_dir}: none of the {len(image_names)} images of {labels} is there "
                        f"(expected ImageID.jpg)") from None
    starts = np.searchsorted(image, np.arange(len(image_names) + 1))
    category_ids = np.array([category_of[k] for k in range(len(rows.label_names))], np.int64)
    info = {"description": "Open Images human-verified image-level labels", "source_annotations": str(labels.resolve()),
            "images_dir": str(images_dir.resolve()), "images_dir_relative": relative_to_file(images_dir, out)}
    summary = {"images": int(exists.sum()), "missing_images": int((~exists).sum()), "categories": len(categories),
               "positives": 0, "negatives": 0, "conflicts": conflicts}
    with atomic_write(out) as f:
        f.write('{"info": ' + json.dumps(info) + ', "licenses": [], "categories": ' + json.dumps(categories)
                + ', "images": [')
        written = 0
        for n in np.flatnonzero(exists).tolist():
            a, b = starts[n], starts[n + 1]
            said_no = sorted(category_ids[label[a:b][~present[a:b]]].tolist())
            f.write((", " if written else "") + json.dumps({"id": n + 1, "file_name": f"{image_names[n]}.jpg",
                                                            "neg_category_ids": said_no}))
            written += 1
            summary["negatives"] += len(said_no)
        f.write('], "annotations": [')
        for n in np.flatnonzero(exists).tolist():
            a, b = starts[n], starts[n + 1]
            for c in sorted(category_ids[label[a:b][present[a:b]]].tolist()):
                summary["positives"] += 1
                f.write((", " if summary["positives"] > 1 else "")
                        + json.dumps({"id": summary["positives"], "image_id": n + 1, "category_id": c, "iscrowd": 0,
                                      "source": "verified"}))
        f.write("]}\n")
    return summary
