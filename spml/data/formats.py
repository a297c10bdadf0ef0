"""Labels in the formats other tools read: FiftyOne's image-classification dataset, a Kaggle/timm/fastai-style CSV
and Parquet. numpy only at import; fiftyone is never needed (its format is two JSON files), pyarrow only for
Parquet.

Every writer takes a `LabelRows`: the dataset, the teacher's (N, L) scores as any array-like read in row blocks (a
memmap works, so scores kept on disk are never loaded whole) and how positives follow from them (τ, kept
observed labels), or the positives of an existing labels file. One pass over the blocks per format; files are
written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from spml.errors import SpmlError
from spml.files import atomic_write

FORMATS = ("coco", "fiftyone", "csv", "parquet")
BLOCK = 4096  # rows read from the scores at a time: memory stays flat in N


@dataclass
class LabelRows:
    """Which images to write (`rows`, labeled ones in dataset order) and their positives: `scores > tau`, or'ed
    with the observed labels when `keep_observed`; or the given `positives` (a labels file read back)."""

    dataset: object  # spml.data.coco.CocoDataset
    scores: object  # (N, L) float array-like in the dataset's category order
    rows: np.ndarray
    observed: object  # (N, L) bool rows (an array, or SparseLabels): the dataset's own labels, source "observed"
    tau: object = None  # a float or (L,) per-category thresholds; None when `positives` is given
    keep_observed: bool = True
    positives: np.ndarray | None = None
    info: dict = field(default_factory=dict)  # provenance, where a format has room for it
    said_no: object = None  # (N, L) bool rows or None: observed negatives, kept negative with keep_observed

    @classmethod
    def from_scores(cls, dataset, scores, tau, keep_observed: bool = True, *, failures=(), rows=None, info=None):
        """The labeler's view: failed rows are left out, as labels.json leaves them out."""
        if rows is None or isinstance(rows, range):  # a shard's range, without a Python int per image
            rows = np.arange(len(dataset)) if rows is None else np.arange(rows.start, rows.stop, rows.step)
        rows = np.asarray(rows, dtype=np.int64)
        failed = np.zeros(len(dataset), dtype=bool)
        failed[list(failures)] = True
        # the sparse observed labels, read as dense rows a block at a time
        return cls(dataset, scores, rows[~failed[rows]], dataset.labels, tau, keep_observed, info=info or {},
                   said_no=dataset.negative_labels)

    @classmethod
    def from_labels(cls, dataset, info=None):
        """A labels file (spml-label's, or any COCO file) as it is: its annotations are the positives, their
        scores the confidences (1 where none), their `source` kept ('observed' where there is none)."""
        positives = dataset.positives
        scores = dataset.scores if dataset.scores is not None else positives.astype(np.float32)
        observed = dataset.observed if dataset.observed is not None else positives
        raw_info = dataset.meta.get("info") if isinstance(dataset.meta.get("info"), dict) else {}
        return cls(dataset, scores, np.arange(len(dataset)), observed, positives=positives,
                   info=info if info is not None else raw_info)

    def blocks(self, size: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """(rows, positive, scores, observed) for consecutive blocks of `rows`."""
        size = size or BLOCK
        for start in range(0, len(self.rows), size):
            rows = self.rows[start:start + size]
            # one contiguous slice where possible: a memmap reads it sequentially
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            contiguous = hi - lo == len(rows)
            scores = np.asarray(self.scores[lo:hi] if contiguous else self.scores[rows], dtype=np.float32)
            observed = np.asarray(self.observed[rows], dtype=bool)
            if self.positives is not None:
                positive = np.asarray(self.positives[rows], dtype=bool)
            else:
                with np.errstate(invalid="ignore"):
                    positive = scores > np.asarray(self.tau, dtype=np.float32)
                if self.keep_observed:
                    positive |= observed
                    if self.said_no is not None:  # a person's no stays no (an observed positive wins over it)
                        positive &= ~(np.asarray(self.said_no[rows], dtype=bool) & ~observed)
            yield rows, positive, scores, observed

    def records(self) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """(row, positive columns, their scores, their observed flags) per image, in row order."""
        for rows, positive, scores, observed in self.blocks():
            for k, row in enumerate(rows):
                cols = np.flatnonzero(positive[k])
                yield int(row), cols, scores[k, cols], observed[k, cols]


def output_path(out: str | os.PathLike, fmt: str, tau: float, several: bool) -> Path:
    """Where format `fmt` of `--out` goes: labels.json -> labels.csv, labels.parquet, labels.fiftyone/ (a folder),
    with .tau0.55 before the extension when several τ are written in one pass."""
    out = Path(out)
    tag = f".tau{tau:g}" if several else ""
    if fmt == "coco":
        return out.with_name(f"{out.stem}{tag}{out.suffix or '.json'}") if several else out
    ext = {"csv": ".csv", "parquet": ".parquet", "fiftyone": ".fiftyone"}[fmt]
    return out.with_name(f"{out.stem}{tag}{ext}")


def parse_formats(text: str) -> list[str]:
    """'coco,csv' -> ['coco', 'csv'] (in the given order, once each); SpmlError naming the valid ones."""
    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in names if f not in FORMATS]
    if bad or not names:
        raise SpmlError(f"--format {text!r}: expected one or more of {','.join(FORMATS)}, comma-separated") from None
    return list(dict.fromkeys(names))


def csv_name(name: str) -> str:
    """A category name as one space-free token ('traffic light' -> 'traffic_light'): the labels column is split
    on spaces by the scripts that read it."""
    return re.sub(r"\s+", "_", name.strip()) or "_"


def write_csv(out: str | os.PathLike, labels: LabelRows, with_scores: bool = False) -> int:
    """`file_name,labels[,scores]`: one row per image, its positives' names space-separated (in category order)
    and, with `with_scores`, their scores in the same order. Returns the number of rows."""
    names = [csv_name(n) for n in labels.dataset.category_names]
    count = 0
    with atomic_write(out, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file_name", "labels", *(["scores"] if with_scores else [])])
        for row, cols, scores, _ in labels.records():
            line = [labels.dataset.file_name(row), " ".join(names[j] for j in cols)]
            if with_scores:
                line.append(" ".join(f"{s:.6g}" for s in scores))
            writer.writerow(line)
            count += 1
    return count


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike):
    """Fill a temp folder beside `path`, then swap it in: readers see the old folder or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old.tmp")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_folder_temps(path: str | os.PathLike) -> None:
    """atomic_folder's leftovers for `path` (a kill between creating the temp folder and swapping it in)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


def write_fiftyone(out_dir: str | os.PathLike, labels: LabelRows) -> int:
    """FiftyOne's FiftyOneImageClassificationDataset format, multi-label, as FiftyOne's own exporter writes it for
    media left in place (export_media=False, abs_paths=True): `labels.json` keys each image by its absolute path
    and gives it a list of {"label": class index, "confidence": score, "attributes": {"source": "observed" or
    "pseudo"}}, which FiftyOne loads as a `Classifications` field. The images are never copied. Load it with

        fo.Dataset.from_dir(out_dir, fo.types.FiftyOneImageClassificationDataset, label_field="spml")

    Returns the number of images."""
    dataset = labels.dataset
    root = Path(dataset.images_dir).resolve()
    count = 0
    with atomic_folder(out_dir) as tmp:
        # the importer reads media from `data/` beside labels.json and fails where there is none; absolute keys
        # bypass it, so an empty one lets the plain from_dir(out_dir, ...) call work
        (tmp / "data").mkdir()
        with open(tmp / "labels.json", "w") as f:
            f.write('{"classes": ' + json.dumps(dataset.category_names) + ', "labels": {')
            for row, cols, scores, observed in labels.records():
                # formatted by hand: json.dumps of a dict per label was the writer's whole cost
                targets = ", ".join(f'{{"label": {j}, "confidence": {round(float(s), 6)!r}, "attributes": '
                                    f'{{"source": "{"observed" if o else "pseudo"}"}}}}'
                                    for j, s, o in zip(cols.tolist(), scores.tolist(), observed.tolist()))
                path = os.path.normpath(root / dataset.file_name(row))
                f.write(f"{', ' if count else ''}{json.dumps(path)}: [{targets}]")
                count += 1
            f.write("}}\n")
            f.flush()
            os.fsync(f.fileno())
    return count


def write_parquet(out: str | os.PathLike, labels: LabelRows) -> int:
    """One row per image: image_id, file_name, category_ids (its positives), scores and sources (aligned with
    category_ids); the categories, images folder and provenance in the file's metadata (key b"spml"). Written
    one row group per block. Returns the number of rows."""
    pa, pq = _pyarrow()
    dataset = labels.dataset
    cat_ids = np.asarray(dataset.category_ids, dtype=np.int64)
    schema = pa.schema([
        ("image_id", pa.int64()), ("file_name", pa.string()), ("category_ids", pa.list_(pa.int64())),
        ("scores", pa.list_(pa.float32())), ("sources", pa.list_(pa.string())),
    ]).with_metadata({"spml": json.dumps({"categories": dataset.categories,
                                          "images_dir": str(Path(dataset.images_dir).resolve()),
                                          "info": labels.info})})
    count = 0
    with atomic_write(out, "wb") as f:
        writer = pq.ParquetWriter(f, schema)
        for rows, positive, scores, observed in labels.blocks():
            r, c = np.nonzero(positive)  # row-major: each image's positives together, in category order
            offsets = np.concatenate([[0], np.cumsum(positive.sum(axis=1))]).astype(np.int32)
            table = pa.Table.from_arrays([
                pa.array(dataset.images.ids[rows], pa.int64()),
                pa.array([dataset.file_name(n) for n in rows], pa.string()),
                pa.ListArray.from_arrays(pa.array(offsets), pa.array(cat_ids[c], pa.int64())),
                pa.ListArray.from_arrays(pa.array(offsets), pa.array(scores[r, c], pa.float32())),
                pa.ListArray.from_arrays(pa.array(offsets),
                                         pa.array(np.where(observed[r, c], "observed", "pseudo"), pa.string())),
            ], schema=schema)
            writer.write_table(table)
            count += len(rows)
        writer.close()
    return count


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SpmlError("Parquet needs pyarrow: pip install 'spml[parquet]'") from None
    return pa, pq


WRITERS = {"fiftyone": write_fiftyone, "csv": write_csv, "parquet": write_parquet}


def write_format(fmt: str, out: str | os.PathLike, labels: LabelRows, csv_scores: bool = False) -> int:
    """Write `labels` as `fmt` (fiftyone, csv or parquet) to `out`; returns the number of images written."""
    if fmt == "csv":
        return write_csv(out, labels, csv_scores)
    if fmt not in WRITERS:
        raise SpmlError(f"no writer for format {fmt!r} (one of {', '.join(WRITERS)})") from None
    return WRITERS[fmt](out, labels)
