"""Every file spml-label writes, from the teacher's scores: the COCO labels file (`write_labels`) with its list of
failures, the other formats (`write_other`: FiftyOne, CSV, Parquet) and the COCO writer `spml-label merge` uses.

The scores are read block by block (`Scores.blocks`, in memory or from a job's chunk files), so no writer holds
images x categories in memory. Every file is written atomically."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import numpy as np

from spml.data.coco import CocoDataset
from spml.data.formats import LabelRows, output_path, remove_folder_temps, write_format
from spml.data.provenance import relative_to_file
from spml.errors import SpmlError
from spml.files import atomic_write, remove_temps, sha256_of
from spml.label.labeler import Scores, threshold

SCORE_DECIMALS = 5  # a soft labels file's `spml_scores`: what a student fits and spml-review calibrate reads


def created_time() -> str:
    """Now, or $SOURCE_DATE_EPOCH where set (reproducible files, as in reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch and epoch.isdigit()
           else datetime.datetime.now(datetime.timezone.utc))
    return now.isoformat(timespec="seconds")


def write_coco(out: str | os.PathLike, info: dict, *, licenses: list, images, categories: list, annotations) -> int:
    """Write a COCO file atomically, streaming `images` (an iterable of dicts) and `annotations` (an iterable of
    dicts without ids; ids are given 1, 2, ... in order). Returns the number of annotations."""
    count = 0
    with atomic_write(out) as f:
        f.write('{"info": ' + json.dumps(info) + ', "licenses": ' + json.dumps(licenses) + ', "images": [')
        for k, im in enumerate(images):
            f.write((", " if k else "") + json.dumps(im))
        f.write('], "categories": ' + json.dumps(categories) + ', "annotations": [')
        for ann in annotations:
            count += 1
            f.write((", " if count > 1 else "") + json.dumps({"id": count, **ann}))
        f.write("]}\n")
    return count


def write_labels(out: str | os.PathLike, dataset: CocoDataset, scores: Scores, tau, *, model_path: str | os.PathLike,
                 keep_observed: bool = True, model_sha256: str | None = None, rows: range | None = None,
                 shard: str | None = None, tau_low: float | None = None, soft: bool = False,
                 extra_info: dict | None = None, tta: str = "none") -> dict:
    """Write the labels file for `rows` (default all; atomically, annotations streamed) and its failures list
    beside it when any image failed. Returns a summary.

    `tau` may be one threshold per category. With `tau_low`, an ignore band: labels at or below it are written
    as confident negatives (`neg_category_ids`), those between it and tau as unknown
    (`not_exhaustive_category_ids`, LVIS-style), which the student trainer masks. With `soft`, each image also
    carries the teacher's probabilities (`spml_scores`, in category order) for a student fitting them.

    With `keep_observed`, what a person said stays: the dataset's annotations stay positive and its observed
    negatives (`neg_category_ids`, a person's "no") stay negative, whatever the teacher scores. Each annotation's
    `source` says whose it is: "verified" (a person's answer, spml-review merge), "observed" (the dataset's
    other annotations) or "pseudo" (the teacher's). A file without verified labels is written as before.

    The scores are read block by block (`scores.blocks`, from memory or from a job's chunk files), so memory does
    not grow with images x categories: 9M images x 600 categories would be 21 GB of float32."""
    rows = range(len(dataset)) if rows is None else rows
    failed_rows = [r for r in sorted(scores.failures) if r in rows]
    info = labels_info(out, dataset, tau, model_path=model_path, model_sha256=model_sha256, keep_observed=keep_observed,
                       failed=len(failed_rows), shard=shard, extra_info=extra_info, tau_low=tau_low, soft=soft, tta=tta)
    blocks = lambda: labeled_blocks(dataset, scores, rows, tau, keep_observed=keep_observed)  # noqa: E731 (each pass reads afresh)
    num_annotations = write_coco(out, info, licenses=dataset.meta.get("licenses", []),
                                 images=image_records(dataset, blocks(), tau_low=tau_low, soft=soft),
                                 categories=dataset.categories, annotations=annotation_records(dataset, blocks()))
    listed = write_failures(out, dataset, scores, failed_rows)
    num_images = len(rows) - len(failed_rows)
    return {"images": num_images, "failed": len(failed_rows), "annotations": num_annotations,
            "positives_per_image": num_annotations / max(num_images, 1), "failures_file": listed}


def labels_info(out, dataset: CocoDataset, tau, *, model_path, model_sha256, keep_observed: bool, failed: int,
                shard, extra_info, tau_low, soft: bool, tta: str) -> dict:
    """The labels file's `info`: how it was made, from what, and where its images are."""
    info = {
        "description": "spml pseudo labels",
        "tau": float(tau) if np.ndim(tau) == 0 else [float(t) for t in tau],
        "keep_observed": keep_observed,
        "model": str(Path(model_path).resolve()),
        "model_sha256": model_sha256 or sha256_of(model_path),
        "source_annotations": str(dataset.path) if dataset.path is not None else None,
        "images_dir": str(dataset.images_dir.resolve()),
        # read first, so a dataset folder moved together with its labels file still resolves
        "images_dir_relative": relative_to_file(dataset.images_dir, out),
        "date_created": created_time(),
        "failed_images": failed,
    }
    if shard is not None:
        info["shard"] = shard
    if extra_info:
        info.update(extra_info)
    if tau_low is not None:
        info["tau_low"] = tau_low
    if soft:
        info["soft"] = True
    if tta != "none":
        info["tta"] = tta
    return info


def labeled_blocks(dataset: CocoDataset, scores: Scores, rows: range, tau, *, keep_observed: bool):
    """(rows, values, observed, positives, verified, observed negatives) per block of scores, failed images' rows
    left out; the last two None where the dataset has none."""
    for start, values in scores.blocks(rows):
        block = np.arange(start, start + len(values))
        ok = np.array([r not in scores.failures for r in block.tolist()], dtype=bool)
        span = slice(start, start + len(values))
        observed = dataset.labels[span][ok]  # dense for this block only
        verified = dataset.labels.verified_of(span)[ok] if dataset.labels.pair_verified is not None else None
        said_no = dataset.negatives_of(span)
        said_no = said_no[ok] if said_no is not None and keep_observed else None
        values = values[ok]
        positives = threshold(values, tau)
        if keep_observed:
            positives |= observed
        if said_no is not None:
            positives &= ~said_no
        yield block[ok], values, observed, positives, verified, said_no


def image_records(dataset: CocoDataset, blocks, *, tau_low: float | None, soft: bool):
    """The labels file's images: the dataset's records, with the ignore band's sets and the soft scores added."""
    cat_ids = dataset.category_ids
    for block, values, _, positives, _, said_no in blocks:
        if tau_low is None and not soft:  # a record's neg_category_ids, a person's no, is copied with it
            yield from (dataset.images[n] for n in block.tolist())
            continue
        with np.errstate(invalid="ignore"):
            negative = (values <= tau_low) & ~positives if tau_low is not None else None
        if negative is not None and said_no is not None:
            negative |= said_no
        for k, n in enumerate(block.tolist()):
            im = dict(dataset.images[n])
            if negative is not None:
                im["neg_category_ids"] = [cat_ids[j] for j in np.flatnonzero(negative[k])]
                im["not_exhaustive_category_ids"] = [cat_ids[j] for j in np.flatnonzero(~negative[k] & ~positives[k])]
            if soft:
                im["spml_scores"] = [round(float(v), SCORE_DECIMALS) for v in values[k]]
            yield im


def annotation_records(dataset: CocoDataset, blocks):
    """One annotation per positive, its `source` saying whose it is (verified, observed or pseudo)."""
    cat_ids = dataset.category_ids
    for block, values, observed, positives, verified, _ in blocks:
        for k, n in enumerate(block.tolist()):
            image_id = dataset.image_id(n)
            for j in np.flatnonzero(positives[k]):
                source = "verified" if verified is not None and verified[k, j] else \
                    "observed" if observed[k, j] else "pseudo"
                yield {"image_id": image_id, "category_id": cat_ids[j], "score": round(float(values[k, j]), 6),
                       "iscrowd": 0, "source": source}


def write_failures(out, dataset: CocoDataset, scores: Scores, failed_rows: list[int]) -> str | None:
    """The images that could not be labeled, one JSON line each, beside the labels file (its path, or None and no
    file when every image was labeled: a stale list from an earlier run would mislead)."""
    path = failures_file(out)
    if not failed_rows:
        path.unlink(missing_ok=True)
        return None
    with atomic_write(path) as f:
        for row in failed_rows:
            f.write(json.dumps({"image_id": dataset.image_id(row), "file_name": dataset.file_name(row),
                                "reason": scores.failures[row]}) + "\n")
    return str(path)


def failures_file(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".failures.jsonl")


def planned_paths(out, formats: list[str], taus) -> dict[tuple[str, float], Path]:
    """(format, τ) -> path, refusing two outputs on one path (--out labels.csv --format coco,csv)."""
    paths = {(fmt, t): output_path(out, fmt, t, len(taus) > 1) for t in taus for fmt in formats}
    seen: dict[Path, str] = {}
    for (fmt, _), p in paths.items():
        if p in seen and seen[p] != fmt:
            raise SpmlError(f"--format {seen[p]} and {fmt} would both write {p}; give --out another extension") from None
        seen[p] = fmt
    return paths


def write_other(fmt: str, path: Path, dataset, scores, *, tau, keep_observed: bool = True, rows: range | None = None,
                info: dict | None = None, csv_scores: bool = False) -> int:
    """Format `fmt` (fiftyone, csv, parquet) of the labels of `scores` at `tau`; the number of images written."""
    labels = LabelRows.from_scores(dataset, RowsOf(scores), tau, keep_observed, failures=scores.failures, rows=rows, info=info)
    return write_format(fmt, path, labels, csv_scores)


class RowsOf:
    """Row indexing (`[lo:hi]`, `[row array]`) over scores that are read in blocks (`Scores` in memory, or a job's
    chunk files), which is how the format writers take them: only the rows asked for are read."""

    def __init__(self, scores):
        self.scores = scores

    def _range(self, lo: int, hi: int) -> np.ndarray:
        parts = [values for _, values in self.scores.blocks(range(lo, hi))]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._range(index.start, index.stop)
        index = np.asarray(index, dtype=np.int64)
        lo = int(index.min())
        return self._range(lo, int(index.max()) + 1)[index - lo]


def remove_partial(paths) -> None:
    """Temp files and folders of outputs an interrupt stopped half-way."""
    for p in paths:
        remove_temps(p)
        remove_folder_temps(p)
