"""PseudoLabeler: an exported teacher run over a COCO dataset's images, thresholded into pseudo multi-labels.

Decoding runs in threads ahead of inference (Pillow releases the GIL while it decodes and resizes), JPEGs are
decoded at reduced scale when the model's input is much smaller, and normalisation is one numpy operation per
batch. Images that cannot be read are counted and listed, never fatal.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spml.data.artifacts import ONNX_INPUT, ONNX_OUTPUT, ModelInfo
from spml.data.coco import CocoDataset, same_categories
from spml.data.images import ImageError, image_path, load_image
from spml.errors import SpmlError
from spml.files import atomic_write, sha256_of
from spml.label.providers import create_session


@dataclass
class Scores:
    """The teacher's probabilities for a dataset: (N, L) float32 in the dataset's category order, NaN rows for
    images that failed; `failures` maps row -> reason."""

    values: np.ndarray
    failures: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0


class PseudoLabeler:
    def __init__(self, model_path: str | os.PathLike, provider: str = "auto", batch_size: int = 32,
                 threads: int | None = None, allow_outside: bool = False):
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise SpmlError(f"{model_path}: no such file") from None
        self.session = create_session(str(self.model_path), provider, threads)
        try:
            self.info = ModelInfo.from_props(self.session.get_modelmeta().custom_metadata_map)
        except (KeyError, ValueError) as e:
            raise SpmlError(f"{model_path}: not an spml model ({e}); export it with spml-export") from None
        self.provider = self.session.get_providers()[0]
        self.batch_size = batch_size
        self.threads = threads or min(8, os.cpu_count() or 1)
        self.allow_outside = allow_outside
        self.preprocess = self.info.preprocess
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 4 or shape[2:] != [self.info.image_size] * 2:
            raise SpmlError(f"{model_path}: input shape {shape} does not match its metadata's image size "
                            f"{self.info.image_size}") from None

    def _decode(self, dataset: CocoDataset, row: int) -> np.ndarray:
        path = image_path(dataset.images_dir, dataset.images[row]["file_name"], self.allow_outside)
        return self.preprocess.resize(load_image(path, self.preprocess.size))

    def _decoded(self, dataset: CocoDataset, rows):
        """(row, HWC uint8 or ImageError) in order, decoded by a thread pool kept a few batches ahead."""
        ahead = self.batch_size * 4
        with ThreadPoolExecutor(self.threads) as pool:
            pending: deque = deque()
            it = iter(rows)
            for row in it:
                pending.append((row, pool.submit(self._decode, dataset, row)))
                if len(pending) >= ahead:
                    break
            while pending:
                row, future = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(self._decode, dataset, nxt)))
                try:
                    yield row, future.result()
                except ImageError as e:
                    yield row, e

    def predict(self, batch_uint8: np.ndarray) -> np.ndarray:
        """Probabilities for a (B, H, W, 3) uint8 batch."""
        x = np.ascontiguousarray(self.preprocess.normalize(batch_uint8))
        return self.session.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0]

    def scores(self, dataset: CocoDataset, rows=None, progress: bool = False, bar=None) -> Scores:
        """Run the model over the dataset's images (or the given rows)."""
        from tqdm import tqdm

        columns = same_categories(self.info.categories, dataset, f"model {self.model_path}")
        rows = range(len(dataset)) if rows is None else rows
        values = np.full((len(dataset), dataset.num_classes), np.nan, dtype=np.float32)
        failures: dict[int, str] = {}
        started = time.time()
        own_bar = bar is None
        if own_bar:
            bar = tqdm(total=len(rows), unit="img", disable=not progress, mininterval=1.0, desc="labeling")
        batch_rows, batch = [], []

        def flush():
            probs = self.predict(np.stack(batch))
            for r, p in zip(batch_rows, probs):
                if np.all(np.isfinite(p)):
                    values[r, columns] = p
                else:
                    failures[r] = "model output is not finite (NaN or inf)"
            bar.update(len(batch))
            batch_rows.clear()
            batch.clear()

        for row, pixels in self._decoded(dataset, rows):
            if isinstance(pixels, ImageError):
                failures[row] = str(pixels)
                bar.update(1)
                continue
            batch_rows.append(row)
            batch.append(pixels)
            if len(batch) == self.batch_size:
                flush()
        if batch:
            flush()
        if own_bar:
            bar.close()
        return Scores(values, failures, time.time() - started)


def threshold(scores: np.ndarray, tau: float) -> np.ndarray:
    """Algorithm 1: a label is a pseudo positive when the teacher's probability is above tau (strictly)."""
    with np.errstate(invalid="ignore"):
        return scores > tau


def created_time() -> str:
    """Now, or $SOURCE_DATE_EPOCH where set (reproducible files, as in reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch and epoch.isdigit()
           else datetime.datetime.now(datetime.timezone.utc))
    return now.isoformat(timespec="seconds")


def write_coco(out: str | os.PathLike, info: dict, licenses: list, images: list, categories: list, annotations) -> int:
    """Write a COCO file atomically, streaming `annotations` (an iterable of dicts without ids; ids are given
    1, 2, ... in order). Returns the number of annotations."""
    count = 0
    with atomic_write(out) as f:
        f.write('{"info": ' + json.dumps(info) + ', "licenses": ' + json.dumps(licenses))
        f.write(', "images": ' + json.dumps(images) + ', "categories": ' + json.dumps(categories))
        f.write(', "annotations": [')
        for ann in annotations:
            count += 1
            f.write((", " if count > 1 else "") + json.dumps({"id": count, **ann}))
        f.write("]}\n")
    return count


def write_labels(out: str | os.PathLike, dataset: CocoDataset, scores: Scores, tau: float, keep_observed: bool,
                 model_path: str | os.PathLike, model_sha256: str | None = None, rows: range | None = None,
                 shard: str | None = None) -> dict:
    """Write the labels file for `rows` (default all; atomically, annotations streamed) and its failures list
    beside it when any image failed. Returns a summary."""
    rows = range(len(dataset)) if rows is None else rows
    positives = threshold(scores.values, tau)
    observed = dataset.positives
    if keep_observed:
        positives = positives | observed
    failed = np.zeros(len(dataset), dtype=bool)
    failed[list(scores.failures)] = True
    positives[failed] = False
    cat_ids = dataset.category_ids
    info = {
        "description": "spml pseudo labels",
        "tau": tau,
        "keep_observed": keep_observed,
        "model": str(Path(model_path).resolve()),
        "model_sha256": model_sha256 or sha256_of(model_path),
        "source_annotations": str(dataset.path),
        "images_dir": str(dataset.images_dir.resolve()),
        "date_created": created_time(),
        "failed_images": int(failed[rows.start:rows.stop].sum()),
    }
    if shard is not None:
        info["shard"] = shard
    images = [dataset.images[n] for n in rows if not failed[n]]

    def annotations():
        for n in rows:
            image_id = dataset.images[n]["id"]
            for j in np.flatnonzero(positives[n]):
                yield {"image_id": image_id, "category_id": cat_ids[j], "score": round(float(scores.values[n, j]), 6),
                       "iscrowd": 0, "source": "observed" if observed[n, j] else "pseudo"}

    num_annotations = write_coco(out, info, dataset.raw.get("licenses", []), images, dataset.categories, annotations())
    failures_path = failures_file(out)
    failed_rows = [r for r in sorted(scores.failures) if r in rows]
    if failed_rows:
        with atomic_write(failures_path) as f:
            for row in failed_rows:
                f.write(json.dumps({"image_id": dataset.images[row]["id"], "file_name": dataset.images[row]["file_name"],
                                    "reason": scores.failures[row]}) + "\n")
    elif failures_path.exists():
        failures_path.unlink()  # a stale list from an earlier run would mislead
    labeled = max(len(images), 1)
    return {"images": len(images), "failed": len(failed_rows), "annotations": num_annotations,
            "positives_per_image": num_annotations / labeled,
            "failures_file": str(failures_path) if failed_rows else None}


def failures_file(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".failures.jsonl")
