"""COCO annotations: validated on load, indexed with pycocotools, turned into an images x categories matrix.

Category ids are arbitrary and gappy (COCO's run 1..90 with holes): a category's column is its position in the
file's `categories` list, never `id - 1`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spml.errors import SpmlError


@dataclass
class CocoDataset:
    """A COCO file as arrays: row n is `image_ids[n]`, column j is `categories[j]`."""

    path: Path | None
    images_dir: Path
    images: list[dict]  # the file's image records, unchanged, in file order
    categories: list[dict]  # the file's category records, unchanged, in file order
    positives: np.ndarray  # (N, L) bool: annotated positives
    raw: dict = field(repr=False)  # the whole file, for writers that keep what they don't understand
    scores: np.ndarray | None = None  # (N, L) float32 annotation scores where a labels file has them
    observed: np.ndarray | None = None  # (N, L) bool: annotations with source "observed" (spml labels files)

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def image_ids(self) -> list[int]:
        return [im["id"] for im in self.images]

    @property
    def file_names(self) -> list[str]:
        return [im["file_name"] for im in self.images]

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

    def subset(self, rows: np.ndarray) -> "CocoDataset":
        rows = np.asarray(rows, dtype=np.int64)
        return CocoDataset(
            path=self.path, images_dir=self.images_dir, images=[self.images[i] for i in rows],
            categories=self.categories, positives=self.positives[rows], raw=self.raw,
            scores=None if self.scores is None else self.scores[rows],
            observed=None if self.observed is None else self.observed[rows],
        )

    def soft_targets(self) -> np.ndarray | None:
        """(N, L) float32 teacher probabilities of an `spml-label --soft` file (per image `spml_scores`, in category
        order), observed positives at 1; None when the file has none."""
        if not self.images or not all(isinstance(im.get("spml_scores"), list) for im in self.images):
            return None
        soft = np.zeros(self.positives.shape, dtype=np.float32)
        for n, im in enumerate(self.images):
            values = im["spml_scores"]
            if len(values) != self.num_classes:
                raise SpmlError(f"{self.path}: image {im['id']} has {len(values)} spml_scores for {self.num_classes} categories") from None
            soft[n] = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0).clip(0, 1)
        if self.observed is not None:
            soft[self.observed] = 1.0
        return soft

    def unknown_mask(self) -> np.ndarray | None:
        """(N, L) bool of entries marked unknown (LVIS-style `not_exhaustive_category_ids`), or None."""
        if not any("not_exhaustive_category_ids" in im for im in self.images):
            return None
        col = self.column_of()
        mask = np.zeros(self.positives.shape, dtype=bool)
        for n, im in enumerate(self.images):
            ids = im.get("not_exhaustive_category_ids")
            for cid in ids if isinstance(ids, list) else ():
                if cid in col:
                    mask[n, col[cid]] = True
        return mask & ~self.positives


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


def parse_coco(raw: object, path: Path | str = "<annotations>") -> dict:
    """Check that `raw` is a COCO instances file that spml can use; returns it. One clear error otherwise."""
    if not isinstance(raw, dict):
        _fail(path, "not a COCO annotations file (expected a JSON object with 'images' and 'categories')")
    for key in ("images", "categories"):
        if not isinstance(raw.get(key), list):
            _fail(path, f"not a COCO annotations file: no '{key}' list")
    anns = raw.setdefault("annotations", [])
    if not isinstance(anns, list):
        _fail(path, "not a COCO annotations file: 'annotations' is not a list")
    if not raw["images"]:
        _fail(path, "the dataset is empty: no images")
    if not raw["categories"]:
        _fail(path, "the dataset has no categories")
    def is_id(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    image_ids: set = set()
    for im in raw["images"]:
        if not isinstance(im, dict) or not is_id(im.get("id")) or not isinstance(im.get("file_name"), str):
            _fail(path, f"image record without an integer 'id' and a 'file_name': {str(im)[:80]}")
        if im["id"] in image_ids:
            _fail(path, f"duplicate image id {im['id']}")
        image_ids.add(im["id"])
    cat_ids: set = set()
    for c in raw["categories"]:
        if not isinstance(c, dict) or not is_id(c.get("id")):
            _fail(path, f"category record without an integer 'id': {str(c)[:80]}")
        if c["id"] in cat_ids:
            _fail(path, f"duplicate category id {c['id']}")
        cat_ids.add(c["id"])
    ann_ids: set = set()
    for a in anns:
        if not isinstance(a, dict):
            _fail(path, f"annotation is not an object: {str(a)[:80]}")
        if not is_id(a.get("image_id")) or a["image_id"] not in image_ids:
            _fail(path, f"annotation {a.get('id')} refers to image {a.get('image_id')!r}, which is not in 'images'")
        if not is_id(a.get("category_id")) or a["category_id"] not in cat_ids:
            _fail(path, f"annotation {a.get('id')} refers to category {a.get('category_id')!r}, which is not in 'categories'")
        if "id" in a:
            if not is_id(a["id"]):
                _fail(path, f"annotation id {str(a['id'])[:40]} is not an integer")
            if a["id"] in ann_ids:
                _fail(path, f"duplicate annotation id {a['id']}")
            ann_ids.add(a["id"])
    return raw


def _index_with_pycocotools(raw: dict):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {**raw, "annotations": [dict(a, id=a.get("id", i + 1)) for i, a in enumerate(raw["annotations"])]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def dataset_from_dict(raw: dict, path: Path | None = None, images_dir: str | os.PathLike | None = None) -> CocoDataset:
    raw = parse_coco(raw, path or "<annotations>")
    coco = _index_with_pycocotools(raw)
    col = {c["id"]: j for j, c in enumerate(raw["categories"])}
    n, l = len(raw["images"]), len(raw["categories"])
    positives = np.zeros((n, l), dtype=bool)
    has_scores = any("score" in a for a in raw["annotations"])
    scores = np.zeros((n, l), dtype=np.float32) if has_scores else None
    observed = np.zeros((n, l), dtype=bool) if any("source" in a for a in raw["annotations"]) else None
    for row, im in enumerate(raw["images"]):
        for a in coco.imgToAnns.get(im["id"], ()):
            j = col[a["category_id"]]
            positives[row, j] = True
            if observed is not None and a.get("source") == "observed":
                observed[row, j] = True
            if scores is not None:
                s = a.get("score", 1.0)
                scores[row, j] = max(scores[row, j], float(s) if isinstance(s, (int, float)) else 1.0)
    return CocoDataset(
        path=path, images_dir=resolve_images_dir(path, raw, images_dir), images=raw["images"],
        categories=raw["categories"], positives=positives, raw=raw, scores=scores, observed=observed,
    )


def load_coco(path: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> CocoDataset:
    """Read and validate a COCO instances (or spml labels) file. Raises SpmlError with one line on bad input."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
    except FileNotFoundError:
        _fail(path, "no such file")
    except IsADirectoryError:
        _fail(path, "is a folder, not an annotations file")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        _fail(path, f"not a JSON file ({e})")
    except OSError as e:
        _fail(path, f"cannot read ({e.strerror})")
    return dataset_from_dict(raw, path.resolve(), images_dir)


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
