"""COCO annotations: validated on load, streamed into compact columns (spml.data.compact), an images x categories
label matrix in sparse form.

Category ids are arbitrary and gappy (COCO's run 1..90 with holes): a category's column is its position in the
file's `categories` list, never `id - 1`.
"""

from __future__ import annotations

import functools
import json
import os
from array import array
from pathlib import Path

import numpy as np

from spml.data.compact import ImageTable, ImageTableBuilder, SparseLabels
from spml.data.json_stream import DECODE_ERRORS, STREAMED, decode_error, stream_object
from spml.errors import SpmlError


class CocoDataset:
    """A COCO file as arrays: row n is `image_ids[n]`, column j is `categories[j]`.

    The image records are an `ImageTable` (a sequence building each record's dict when it is read) and the
    annotations `labels`, sparse (CSR): what a 9M-image file costs is tens of bytes an image. The dense (N, L)
    `positives`, `scores` and `observed` of the trainer and eval are built on first use, and `raw` (the whole
    file, for code that copies what it does not understand) is read again from the file on first use.

    Observed labels are three-state: the annotations are observed positives, each image's LVIS-style
    `neg_category_ids` its observed negatives (`negative_labels`, sparse, or None where no image has the field;
    `negatives` dense on demand), and everything else is unobserved. An ignore-band labels file
    (spml-label --tau-low) writes its confident negatives there too, which its student's bce already trains as
    negatives: for it nothing changes."""

    def __init__(self, path: Path | None, images_dir: Path, images, categories: list[dict], *, positives,
                 raw: dict | None = None, scores: np.ndarray | None = None, observed: np.ndarray | None = None,
                 meta: dict | None = None, raw_loader=None, negatives=None):
        self.path, self.images_dir = path, images_dir
        self.images = images if isinstance(images, ImageTable) else ImageTable.from_records(images)
        self.categories = categories  # the file's category records, unchanged, in file order
        self.labels = positives if isinstance(positives, SparseLabels) else SparseLabels.from_dense(positives, scores, observed)
        self.negative_labels = negatives if negatives is None or isinstance(negatives, SparseLabels) else \
            SparseLabels.from_dense(negatives)
        self._raw, self._raw_loader = raw, raw_loader
        # the file's top-level fields other than its images, annotations and categories (info, licenses, ...)
        self.meta = meta if meta is not None else {k: v for k, v in (raw or {}).items()
                                                     if k not in ("images", "annotations", "categories")}
        self._dense: dict = {}

    def __repr__(self) -> str:
        return f"CocoDataset({self.path}, {len(self)} images, {self.num_classes} categories)"

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def image_ids(self) -> list[int]:
        return self.images.ids.tolist()

    @property
    def file_names(self) -> list[str]:
        return [self.images.file_name(n) for n in range(len(self.images))]

    def file_name(self, row: int) -> str:
        return self.images.file_name(row)

    def image_id(self, row: int) -> int:
        return self.images.image_id(row)

    @property
    def category_ids(self) -> list[int]:
        return [c["id"] for c in self.categories]

    @property
    def category_names(self) -> list[str]:
        return [str(c.get("name", c["id"])) for c in self.categories]

    def column_of(self) -> dict[int, int]:
        return {c["id"]: j for j, c in enumerate(self.categories)}

    def __len__(self) -> int:
        return len(self.images)

    def _cached(self, name: str, build):
        if name not in self._dense:
            self._dense[name] = build()
        return self._dense[name]

    @property
    def positives(self) -> np.ndarray:
        """(N, L) bool: annotated positives (dense, built on first use; `labels` is the sparse form)."""
        return self._cached("positives", self.labels.toarray)

    @property
    def scores(self) -> np.ndarray | None:
        """(N, L) float32 annotation scores where a labels file has them, else None."""
        if self.labels.pair_scores is None:
            return None
        return self._cached("scores", lambda: self.labels.scores_of(slice(None)))

    @property
    def observed(self) -> np.ndarray | None:
        """(N, L) bool: annotations a person gave (source "observed" or "verified", or none), not the labeler's
        "pseudo" ones; None where no annotation has a source (then every annotation is observed)."""
        if self.labels.pair_observed is None:
            return None
        return self._cached("observed", lambda: self.labels.observed_of(slice(None)))

    @property
    def verified(self) -> np.ndarray | None:
        """(N, L) bool: annotations with source "verified" (a person's yes, spml-review merge); None where none."""
        if self.labels.pair_verified is None:
            return None
        return self._cached("verified", lambda: self.labels.verified_of(slice(None)))

    @property
    def negatives(self) -> np.ndarray | None:
        """(N, L) bool: observed negatives (each image's `neg_category_ids`), an annotated positive excepted;
        None where no image has the field. Dense, built on first use (the trainer's); `negative_labels` is sparse."""
        if self.negative_labels is None:
            return None
        return self._cached("negatives", lambda: self.negative_labels.toarray() & ~self.positives)

    def negatives_of(self, index) -> np.ndarray | None:
        """Dense bool observed negatives of these rows (as `negatives`), for code that reads rows in blocks."""
        if self.negative_labels is None:
            return None
        return self.negative_labels[index] & ~self.labels[index]

    @property
    def raw(self) -> dict:
        """The whole file as json.load gives it (its annotations included), read on first use."""
        if self._raw is None:
            self._raw = self._raw_loader() if self._raw_loader is not None else self._rebuilt_raw()
        return self._raw

    def _rebuilt_raw(self) -> dict:
        """A COCO dict of this dataset, for one that was never a file (an image list or folder)."""
        annotations = [{"id": k + 1, "image_id": self.image_id(n), "category_id": self.categories[j]["id"], "iscrowd": 0}
                       for k, (n, j) in enumerate(zip(np.repeat(np.arange(len(self)), np.diff(self.labels.indptr)).tolist(),
                                                      self.labels.indices.tolist()))]
        return {**self.meta, "images": list(self.images), "categories": self.categories, "annotations": annotations}

    def subset(self, rows: np.ndarray) -> "CocoDataset":
        rows = np.asarray(rows, dtype=np.int64)
        return CocoDataset(path=self.path, images_dir=self.images_dir, images=self.images.take(rows),
                           categories=self.categories, positives=self.labels.take(rows), raw=self._raw, meta=self.meta,
                           raw_loader=self._raw_loader,
                           negatives=None if self.negative_labels is None else self.negative_labels.take(rows))

    def soft_targets(self) -> np.ndarray | None:
        """(N, L) float32 teacher probabilities of an `spml-label --soft` file (per image `spml_scores`, in category
        order), observed positives at 1 and a person's no (`neg_category_ids`) at 0; None when the file has none.
        In an ignore-band file (info.tau_low) `neg_category_ids` are the teacher's confident negatives as well as a
        person's: there the teacher's probabilities stay, as before."""
        if not len(self.images) or not all(isinstance(im.get("spml_scores"), list) for im in self.images):
            return None
        soft = np.zeros((len(self), self.num_classes), dtype=np.float32)
        for n, im in enumerate(self.images):
            values = im["spml_scores"]
            if len(values) != self.num_classes:
                raise SpmlError(f"{self.path}: image {im['id']} has {len(values)} spml_scores for {self.num_classes} categories") from None
            soft[n] = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0).clip(0, 1)
        if self.observed is not None:
            soft[self.observed] = 1.0
        info = self.meta.get("info") if isinstance(self.meta.get("info"), dict) else {}
        if self.negatives is not None and info.get("tau_low") is None:
            soft[self.negatives] = 0.0  # a person's no is certain, whatever the teacher scored
        return soft

    def unknown_mask(self) -> np.ndarray | None:
        """(N, L) bool of entries marked unknown (LVIS-style `not_exhaustive_category_ids`), or None. A positive or
        an observed negative is never unknown (spml writes the three sets disjoint; a person's answer wins)."""
        if not any("not_exhaustive_category_ids" in im for im in self.images):
            return None
        col = self.column_of()
        mask = np.zeros((len(self), self.num_classes), dtype=bool)
        for n, im in enumerate(self.images):
            ids = im.get("not_exhaustive_category_ids")
            for cid in ids if isinstance(ids, list) else ():
                if cid in col:
                    mask[n, col[cid]] = True
        mask &= ~self.positives
        if self.negatives is not None:
            mask &= ~self.negatives
        return mask


def _fail(path, message: str):
    raise SpmlError(f"{path}: {message}") from None


def resolve_images_dir(ann_path: Path | None, raw: dict, explicit: str | os.PathLike | None = None) -> Path:
    """--images when given; else the folder the file records (`info.images_dir_relative` when that folder exists,
    then `info.images_dir`, as spml writes them, absolute or relative to the file); else the file's own folder."""
    if explicit is not None:
        return Path(explicit)
    base = ann_path.parent if ann_path is not None else Path.cwd()
    info = raw.get("info") if isinstance(raw.get("info"), dict) else {}
    relative = info.get("images_dir_relative")  # spml labels files: moved with the dataset, this still holds
    if isinstance(relative, str) and relative and not os.path.isabs(relative) and (base / relative).is_dir():
        return base / relative
    recorded = info.get("images_dir")
    if isinstance(recorded, str) and recorded:
        return (base / recorded) if not os.path.isabs(recorded) else Path(recorded)
    return base


def _is_id(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class DatasetBuilder:
    """A CocoDataset built from image and annotation records handed over one at a time (by the streaming parser,
    or by a maker of datasets such as spml.data.image_list): each checked, then kept in columns (the image records
    in an ImageTable, the annotations as a few numbers each) and the dict dropped. `path` names the source in
    errors. Finish with `build` (the categories and info given) or `dataset` (a file's top-level fields)."""

    def __init__(self, path):
        self.path = path
        self.restart("images")
        self.restart("annotations")

    def restart(self, key: str) -> None:
        """Forget the images or the annotations collected so far: a file giving the key again means its last
        value, as json.load (and so pycocotools) reads it."""
        if key == "images":
            self.images = ImageTableBuilder()
            self.any_negatives = False
            self.neg_row, self.neg_category = array("q"), array("q")  # observed negatives: (row, category id) pairs
        elif key == "annotations":
            self.ann_image, self.ann_category, self.ann_id = array("q"), array("q"), array("q")
            self.ann_has_id, self.ann_observed, self.ann_verified = bytearray(), bytearray(), bytearray()
            self.ann_score = array("d")
            self.any_score = self.any_source = self.any_verified = False

    def image(self, im) -> None:
        if not isinstance(im, dict) or not _is_id(im.get("id")) or not isinstance(im.get("file_name"), str):
            _fail(self.path, f"image record without an integer 'id' and a 'file_name': {str(im)[:80]}")
        if "neg_category_ids" in im:
            self._negatives(im)
        self.images.add(im)

    def _negatives(self, im: dict) -> None:
        """The image's observed negatives (`neg_category_ids`, LVIS-style; null is none)."""
        self.any_negatives = True
        ids = im["neg_category_ids"]
        if ids is None:
            return
        if not isinstance(ids, list) or not all(_is_id(c) for c in ids):
            _fail(self.path, f"image {im['id']}: neg_category_ids is not a list of category ids: {str(ids)[:80]}")
        row = len(self.images)
        try:
            for c in ids:
                self.neg_row.append(row)
                self.neg_category.append(c)
        except OverflowError:
            _fail(self.path, f"image {im['id']}: a category id in neg_category_ids does not fit in 64 bits")

    def annotation(self, a) -> None:
        if type(a) is dict and type(a.get("image_id")) is int and type(a.get("category_id")) is int and \
                type(a.get("id", 0)) is int:  # the common case in few operations: millions of annotations
            self._add(a)
            return
        if not isinstance(a, dict):
            _fail(self.path, f"annotation is not an object: {str(a)[:80]}")
        if not _is_id(a.get("image_id")):
            _fail(self.path, f"annotation {a.get('id')} refers to image {a.get('image_id')!r}, which is not in 'images'")
        if not _is_id(a.get("category_id")):
            _fail(self.path, f"annotation {a.get('id')} refers to category {a.get('category_id')!r}, which is not in 'categories'")
        if "id" in a and not _is_id(a["id"]):
            _fail(self.path, f"annotation id {str(a['id'])[:40]} is not an integer")
        self._add(a)

    def _add(self, a: dict) -> None:
        try:
            self.ann_image.append(a["image_id"])
            self.ann_category.append(a["category_id"])
            self.ann_id.append(a.get("id", 0))
        except OverflowError:
            _fail(self.path, f"annotation {a.get('id')}: an id does not fit in 64 bits")
        self.ann_has_id.append("id" in a)
        s = a.get("score", 1.0)
        self.ann_score.append(float(s) if isinstance(s, (int, float)) else 1.0)
        self.any_score |= "score" in a
        self.any_source |= "source" in a
        source = a.get("source", "observed")  # no source: an observed label, as in any COCO file
        self.ann_observed.append(source == "observed" or source == "verified")
        self.ann_verified.append(source == "verified")
        self.any_verified |= source == "verified"

    def add_all(self, top: dict) -> None:
        """The images and annotations of a COCO dict already in memory."""
        for key, add in (("images", self.image), ("annotations", self.annotation)):
            if isinstance(top.get(key), list):
                for item in top[key]:
                    add(item)

    def build(self, categories: list[dict], info: dict, images_dir: str | os.PathLike | None = None) -> CocoDataset:
        """The dataset of the records added, with these categories and this `info`, checked as a file would be."""
        top = {"info": info, "licenses": [], "images": STREAMED, "categories": categories, "annotations": STREAMED}
        return self.dataset(top, images_dir)

    def dataset(self, top: object, images_dir, raw: dict | None = None, raw_loader=None) -> CocoDataset:
        """Check the file as a whole (`top`: its top-level fields) and build the dataset."""
        path = self.path
        if not isinstance(top, dict):
            _fail(path, "not a COCO annotations file (expected a JSON object with 'images' and 'categories')")
        for key in ("images", "categories"):
            if key not in top or not (top[key] is STREAMED or isinstance(top[key], list)):
                _fail(path, f"not a COCO annotations file: no '{key}' list")
        if "annotations" in top and not (top["annotations"] is STREAMED or isinstance(top["annotations"], list)):
            _fail(path, "not a COCO annotations file: 'annotations' is not a list")
        if not len(self.images):
            _fail(path, "the dataset is empty: no images")
        categories = top["categories"]
        if not categories:
            _fail(path, "the dataset has no categories")
        table = self.images.build()
        ids = np.sort(table.ids)
        repeated = np.flatnonzero(ids[1:] == ids[:-1])
        if len(repeated):
            _fail(path, f"duplicate image id {ids[repeated[0]]}")
        col: dict[int, int] = {}
        for c in categories:
            if not isinstance(c, dict) or not _is_id(c.get("id")):
                _fail(path, f"category record without an integer 'id': {str(c)[:80]}")
            if c["id"] in col:
                _fail(path, f"duplicate category id {c['id']}")
            col[c["id"]] = len(col)
        rows, cols = self._rows_and_columns(table, ids, col)
        ann_ids = np.frombuffer(self.ann_id, np.int64)[np.frombuffer(self.ann_has_id, bool)] if len(self.ann_id) else \
            np.zeros(0, np.int64)
        ann_ids = np.sort(ann_ids)
        repeated = np.flatnonzero(ann_ids[1:] == ann_ids[:-1])
        if len(repeated):
            _fail(path, f"duplicate annotation id {ann_ids[repeated[0]]}")
        scores = observed = None
        if self.any_score:
            # an annotation's score, at least 0 (NaN read as 0); the largest where one category has several
            scores = np.fmax(np.frombuffer(self.ann_score, np.float64), 0.0)
        if self.any_source:
            observed = np.frombuffer(self.ann_observed, bool)
        verified = np.frombuffer(self.ann_verified, bool) if self.any_verified else None
        shape = (len(table), len(categories))
        labels = SparseLabels.from_pairs(rows, cols, shape, scores, observed=observed, verified=verified)
        meta = {k: v for k, v in top.items() if k not in ("images", "annotations", "categories")}
        return CocoDataset(path=path if isinstance(path, Path) else None,
                           images_dir=resolve_images_dir(path if isinstance(path, Path) else None, meta, images_dir),
                           images=table, categories=categories, positives=labels, raw=raw, meta=meta,
                           raw_loader=raw_loader, negatives=self._negative_labels(table, col, shape))

    def _negative_labels(self, table: ImageTable, col: dict[int, int], shape) -> SparseLabels | None:
        if not self.any_negatives:
            return None
        category_ids = np.frombuffer(self.neg_category, np.int64) if len(self.neg_category) else np.zeros(0, np.int64)
        rows = np.frombuffer(self.neg_row, np.int64) if len(self.neg_row) else np.zeros(0, np.int64)
        columns = np.fromiter((col.get(c, -1) for c in category_ids.tolist()), np.int64, len(category_ids))
        bad = np.flatnonzero(columns < 0)
        if len(bad):
            k = int(bad[0])
            _fail(self.path, f"image {table.image_id(int(rows[k]))}: neg_category_ids names category "
                             f"{int(category_ids[k])}, which is not in 'categories'")
        return SparseLabels.from_pairs(rows, columns, shape)

    def _rows_and_columns(self, table: ImageTable, sorted_ids: np.ndarray, col: dict[int, int]):
        """Each annotation's dataset row and category column; the first that refers to nothing is the error."""
        image_ids = np.frombuffer(self.ann_image, np.int64) if len(self.ann_image) else np.zeros(0, np.int64)
        category_ids = np.frombuffer(self.ann_category, np.int64) if len(self.ann_category) else np.zeros(0, np.int64)
        order = np.argsort(table.ids, kind="stable")
        at = np.minimum(np.searchsorted(sorted_ids, image_ids), len(sorted_ids) - 1)
        known_image = sorted_ids[at] == image_ids
        cat_sorted = np.array(sorted(col), dtype=np.int64)
        cat_at = np.minimum(np.searchsorted(cat_sorted, category_ids), len(cat_sorted) - 1)
        known_category = cat_sorted[cat_at] == category_ids
        bad = np.flatnonzero(~(known_image & known_category))
        if len(bad):
            k = int(bad[0])
            ann = int(self.ann_id[k]) if self.ann_has_id[k] else None
            if not known_image[k]:
                _fail(self.path, f"annotation {ann} refers to image {int(image_ids[k])}, which is not in 'images'")
            _fail(self.path, f"annotation {ann} refers to category {int(category_ids[k])}, which is not in 'categories'")
        column_of_sorted = np.array([col[c] for c in cat_sorted.tolist()], dtype=np.int64)
        return order[at], column_of_sorted[cat_at]


def parse_coco(raw: object, path: Path | str = "<annotations>") -> dict:
    """Check that `raw` is a COCO instances file that spml can use; returns it. One clear error otherwise."""
    dataset_from_dict(raw, path if isinstance(path, Path) else None)
    if isinstance(raw, dict):
        raw.setdefault("annotations", [])
    return raw


def dataset_from_dict(raw: dict, path: Path | None = None, images_dir: str | os.PathLike | None = None) -> CocoDataset:
    collector = DatasetBuilder(path or "<annotations>")
    if isinstance(raw, dict):
        collector.add_all(raw)
    dataset = collector.dataset(raw, images_dir, raw=raw)
    raw.setdefault("annotations", [])  # `raw` is what protocol.single_positive and writers read back
    return dataset


def load_coco(path: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> CocoDataset:
    """Read and validate a COCO instances (or spml labels) file. Raises SpmlError with one line on bad input.

    The images and annotations are streamed (spml.data.json_stream), never all Python objects at once: the
    dataset holds columns and sparse labels, tens of bytes an image."""
    path = Path(path)
    collector = DatasetBuilder(path)
    try:
        with open(path, "rb") as f:
            top = stream_object(f, {"images": collector.image, "annotations": collector.annotation},
                                restart=collector.restart)
    except FileNotFoundError:
        _fail(path, "no such file")
    except IsADirectoryError:
        _fail(path, "is a folder, not an annotations file")
    except DECODE_ERRORS as e:
        _fail(path, f"not a JSON file ({decode_error(e)})")
    except OSError as e:
        _fail(path, f"cannot read ({e.strerror})")
    path = path.resolve()
    collector.path = path
    return collector.dataset(top, images_dir, raw_loader=functools.partial(_read_raw, path))  # picklable, for workers


def _read_raw(path: Path) -> dict:
    """The whole file with json.load, for the few users of `CocoDataset.raw` (copying annotations as they are)."""
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
    except (OSError, *DECODE_ERRORS) as e:
        _fail(path, f"cannot read it again ({decode_error(e)})")
    raw.setdefault("annotations", [])
    return raw


def same_categories(model_categories: list[dict], dataset: CocoDataset, what: str) -> np.ndarray:
    """Columns of `dataset` in the model's category order; SpmlError when the two category sets differ."""
    ours = {c["id"]: str(c.get("name", c["id"])) for c in model_categories}
    theirs = {c["id"]: str(c.get("name", c["id"])) for c in dataset.categories}
    if ours != theirs:
        def listed(pairs):
            pairs = sorted(pairs)
            return ", ".join(f"{i}:{n}" for i, n in pairs[:4]) + (f" and {len(pairs) - 4} more" if len(pairs) > 4 else "") or "none"

        only_ours, only_theirs = set(ours.items()) - set(theirs.items()), set(theirs.items()) - set(ours.items())
        raise SpmlError(
            f"{what}'s categories differ from those of {dataset.path}: {what} has {len(ours)}, the data has "
            f"{len(theirs)}; only in {what}: {listed(only_ours)}; only in the data: {listed(only_theirs)} (id:name)"
        ) from None
    col = dataset.column_of()
    return np.array([col[c["id"]] for c in model_categories], dtype=np.int64)
