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
from spml.data.provenance import relative_to_file
from spml.data.images import ImageError, image_path, load_image
from spml.errors import SpmlError
from spml.files import atomic_write, sha256_of
from spml.label.providers import PROVIDERS, create_session


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
        if is_checkpoint(self.model_path):
            raise SpmlError(f"{model_path} is a checkpoint: export it first with spml-export {model_path}") from None
        from spml.files import cache_dir

        # TensorRT builds an engine per model and shape once; keep it in spml's cache for the next run. The decode
        # threads share the cores with onnxruntime's: its idle threads must sleep, not spin (int8 labeling ran
        # 82 img/s against 80 with spinning, benchmarks/label_bench.py, ResNet-50 at 224 on 2 cores)
        self.session = create_session(str(self.model_path), provider, threads, str(cache_dir() / "tensorrt"),
                                      spinning=False)
        try:
            self.info = ModelInfo.from_props(self.session.get_modelmeta().custom_metadata_map)
        except (KeyError, ValueError) as e:
            raise SpmlError(f"{model_path}: not an spml model ({e}); export it with spml-export") from None
        self.provider = self.session.get_providers()[0]
        self.io_binding = self.provider in (PROVIDERS["cuda"], PROVIDERS["tensorrt"])
        self._device = "cuda" if self.io_binding else "cpu"
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
        if not self.io_binding:
            return self.session.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0]
        # On a GPU the batch is copied to the device once, the graph runs there with no staging copies by
        # onnxruntime, and only the (B, L) probabilities come back.
        import onnxruntime as ort

        binding = self.session.io_binding()
        binding.bind_ortvalue_input(ONNX_INPUT, ort.OrtValue.ortvalue_from_numpy(x, self._device, 0))
        binding.bind_output(ONNX_OUTPUT, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def check_categories(self, dataset: CocoDataset) -> np.ndarray:
        """The dataset's columns in the model's output order; SpmlError naming which list is which if they differ."""
        return same_categories(self.info.categories, dataset, f"model {self.model_path}")

    def scores(self, dataset: CocoDataset, rows=None, progress: bool = False, bar=None, desc: str = "labeling") -> Scores:
        """Run the model over the dataset's images (or the given rows)."""
        from spml.progress import tqdm

        columns = self.check_categories(dataset)
        rows = range(len(dataset)) if rows is None else rows
        values = np.full((len(dataset), dataset.num_classes), np.nan, dtype=np.float32)
        failures: dict[int, str] = {}
        started = time.time()
        own_bar = bar is None
        if own_bar:
            bar = tqdm(total=len(rows), unit="img", disable=not progress, mininterval=1.0, desc=desc)
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


def is_checkpoint(path: str | os.PathLike) -> bool:
    """A torch checkpoint (a zip archive, or a legacy pickle) rather than an ONNX model (a protobuf)."""
    if Path(path).suffix.lower() in (".pt", ".pth"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def threshold(scores: np.ndarray, tau) -> np.ndarray:
    """Algorithm 1: a label is a pseudo positive when the teacher's probability is above tau (strictly);
    `tau` is one number or one per category (column)."""
    with np.errstate(invalid="ignore"):
        return scores > np.asarray(tau, dtype=np.float32)


def prior_thresholds(scores: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Per-category thresholds that make each category's pseudo-positive rate equal its prior: the (1 - prior)
    quantile of that category's scores over the images that were scored."""
    ok = ~np.isnan(scores).any(axis=1)
    taus = np.empty(scores.shape[1], dtype=np.float32)
    for j in range(scores.shape[1]):
        column = np.sort(scores[ok, j])
        above = int(round(float(np.clip(priors[j], 0, 1)) * len(column)))  # images that should be positive
        taus[j] = 1.0 if above <= 0 else (np.nextafter(column[-above], -1) if above <= len(column) else 0.0)
    return np.clip(taus, 0.0, 1.0)


def observed_priors(dataset: CocoDataset, expected_positives: float) -> np.ndarray:
    """Each category's share of images, estimated from single positives: a uniformly chosen positive is category
    c with probability about prior_c / k, so prior_c = k x (share of images whose observed positive is c)."""
    share = dataset.positives.mean(axis=0)
    return np.clip(share * expected_positives, 0.0, 1.0)


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


def write_labels(out: str | os.PathLike, dataset: CocoDataset, scores: Scores, tau, keep_observed: bool,
                 model_path: str | os.PathLike, model_sha256: str | None = None, rows: range | None = None,
                 shard: str | None = None, tau_low: float | None = None, soft: bool = False,
                 extra_info: dict | None = None) -> dict:
    """Write the labels file for `rows` (default all; atomically, annotations streamed) and its failures list
    beside it when any image failed. Returns a summary.

    `tau` may be one threshold per category. With `tau_low`, an ignore band: labels at or below it are written
    as confident negatives (`neg_category_ids`), those between it and tau as unknown
    (`not_exhaustive_category_ids`, LVIS-style), which the student trainer masks. With `soft`, each image also
    carries the teacher's probabilities (`spml_scores`, in category order) for a student fitting them."""
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
        "tau": float(tau) if np.ndim(tau) == 0 else [float(t) for t in tau],
        "keep_observed": keep_observed,
        "model": str(Path(model_path).resolve()),
        "model_sha256": model_sha256 or sha256_of(model_path),
        "source_annotations": str(dataset.path),
        "images_dir": str(dataset.images_dir.resolve()),
        # read first, so a dataset folder moved together with its labels file still resolves
        "images_dir_relative": relative_to_file(dataset.images_dir, out),
        "date_created": created_time(),
        "failed_images": int(failed[rows.start:rows.stop].sum()),
    }
    if shard is not None:
        info["shard"] = shard
    if extra_info:
        info.update(extra_info)
    if tau_low is not None:
        info["tau_low"] = tau_low
    if soft:
        info["soft"] = True
    images = [dataset.images[n] for n in rows if not failed[n]]
    if tau_low is not None or soft:
        with np.errstate(invalid="ignore"):
            negative = (scores.values <= tau_low) & ~positives if tau_low is not None else None
        extended = []
        for n in rows:
            if failed[n]:
                continue
            im = dict(dataset.images[n])
            if negative is not None:
                im["neg_category_ids"] = [cat_ids[j] for j in np.flatnonzero(negative[n])]
                im["not_exhaustive_category_ids"] = [cat_ids[j] for j in np.flatnonzero(~negative[n] & ~positives[n])]
            if soft:
                im["spml_scores"] = [round(float(v), 5) for v in scores.values[n]]
            extended.append(im)
        images = extended

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
