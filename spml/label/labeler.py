"""PseudoLabeler: an exported teacher run over a COCO dataset's images, thresholded into pseudo multi-labels.

Decoding runs in threads ahead of inference (Pillow releases the GIL while it decodes and resizes), JPEGs are
decoded at reduced scale when the model's input is much smaller, and normalisation is one numpy operation per
batch. Images that cannot be read are counted and listed, never fatal.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spml.data.artifacts import ONNX_INPUT, ONNX_OUTPUT, ModelInfo
from spml.data.coco import CocoDataset, same_categories
from spml.data.images import ImageError, image_path, load_image
from spml.data.reader_pool import ReaderPool
from spml.errors import SpmlError
from spml.label.providers import PROVIDERS, create_session
from spml.label.tta import TTA_CROP, aggregate_views, tile_boxes, tile_grid, tta_views


@dataclass
class Scores:
    """The teacher's probabilities for rows `start .. start + len(values) - 1` of a dataset: (n, L) float32 in the
    dataset's category order, NaN rows for images that failed; `failures` maps dataset row -> reason."""

    values: np.ndarray
    failures: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    start: int = 0

    def blocks(self, rows: range, size: int = 4096):
        """(first row, (n, L) values) for `rows` in pieces: the interface writers stream from, which the chunk
        files of a labeling job (spml.label.job.ChunkScores) offer too."""
        for s in range(rows.start, rows.stop, size):
            yield s, self.values[s - self.start:min(s + size, rows.stop) - self.start]


class PseudoLabeler:
    def __init__(self, model_path: str | os.PathLike, provider: str = "auto", batch_size: int = 32,
                 threads: int | None = None, *, allow_outside: bool = False, tta: str = "none"):
        tta_views(tta)
        self.tta = tta
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

    def _decode(self, images_dir: Path, file_name: str) -> np.ndarray:
        """HWC uint8 at the model's size; with --tta, its views stacked as (V, H, W, 3)."""
        path = image_path(images_dir, file_name, self.allow_outside)
        grid = tile_grid(self.tta)
        img = load_image(path, self.preprocess.size * max(grid, 1))  # a tile needs the model's size in pixels
        pixels = self.preprocess.resize(img)
        if self.tta == "none":
            return pixels
        if grid:
            tiles = [self.preprocess.resize(img.crop(box)) for box in tile_boxes(img.width, img.height, grid)]
            return np.stack([pixels, *tiles])
        views = [pixels, pixels[:, ::-1]]
        if self.tta == "flip-crop":
            w, h = img.size
            dx, dy = w * (1 - TTA_CROP) / 2, h * (1 - TTA_CROP) / 2
            crop = self.preprocess.resize(img.crop((round(dx), round(dy), round(w - dx), round(h - dy))))
            views += [crop, crop[:, ::-1]]
        return np.stack(views)

    def _decoded(self, images_dir: Path, file_names):
        """(index, HWC uint8 or ImageError) in order, decoded by a thread pool kept a few batches ahead (daemon
        threads: a decode blocked for good cannot keep an interrupt from ending the process)."""
        ahead = self.batch_size * 4
        with ReaderPool(self.threads) as pool:
            pending: deque = deque()
            it = iter(enumerate(file_names))
            for k, name in it:
                pending.append((k, pool.submit(self._decode, images_dir, name)))
                if len(pending) >= ahead:
                    break
            while pending:
                k, future = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt[0], pool.submit(self._decode, images_dir, nxt[1])))
                try:
                    yield k, future.result()
                except ImageError as e:
                    yield k, e

    def predict(self, batch_uint8: np.ndarray) -> np.ndarray:
        """Probabilities for a (B, H, W, 3) uint8 batch, or (B, V, H, W, 3) views of each image: all B x V in one
        run, each image's V views' probabilities aggregated (aggregate_views)."""
        if batch_uint8.ndim == 5:
            b, v = batch_uint8.shape[:2]
            probs = self.predict(batch_uint8.reshape(b * v, *batch_uint8.shape[2:])).reshape(b, v, -1)
            return aggregate_views(probs, self.tta)
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

    def scores(self, dataset: CocoDataset, rows: range | None = None, progress: bool = False, bar=None,
               *, desc: str = "labeling") -> Scores:
        """Run the model over the dataset's images (or the contiguous `rows`); the scores hold those rows only."""
        from spml.progress import tqdm

        columns = self.check_categories(dataset)
        rows = range(len(dataset)) if rows is None else rows
        started = time.time()
        own_bar = bar is None
        if own_bar:
            bar = tqdm(total=len(rows), unit="img", disable=not progress, mininterval=1.0, desc=desc)
        values, failures = self.score_files(dataset.images_dir, [dataset.file_name(r) for r in rows],
                                            columns, bar)
        if own_bar:
            bar.close()
        return Scores(values, {rows[k]: m for k, m in failures.items()}, time.time() - started, rows.start)

    def score_files(self, images_dir: str | os.PathLike, file_names, columns: np.ndarray, bar=None):
        """Probabilities of the images `file_names` (in `images_dir`) as (n, L) float32 in dataset column order
        (`columns`: the dataset column of each model output), NaN rows where an image failed, and the failures
        {index: reason}. Images are batched in order, failures skipped, so a given list of files always meets the
        model in the same batches (the Ray engine's actors call this on a job's chunks, as the local engine does)."""
        images_dir = Path(images_dir)
        values = np.full((len(file_names), len(columns)), np.nan, dtype=np.float32)
        failures: dict[int, str] = {}
        batch_index, batch = [], []

        def flush():
            probs = self.predict(np.stack(batch))
            for k, p in zip(batch_index, probs):
                if np.all(np.isfinite(p)):
                    values[k, columns] = p
                else:
                    failures[k] = "model output is not finite (NaN or inf)"
            if bar is not None:
                bar.update(len(batch))
            batch_index.clear()
            batch.clear()

        for k, pixels in self._decoded(images_dir, file_names):
            if isinstance(pixels, ImageError):
                failures[k] = str(pixels)
                if bar is not None:
                    bar.update(1)
                continue
            batch_index.append(k)
            batch.append(pixels)
            if len(batch) == self.batch_size:
                flush()
        if batch:
            flush()
        return values, failures


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


def prior_thresholds(scores, priors: np.ndarray, rows: range | None = None) -> np.ndarray:
    """Per-category thresholds that make each category's pseudo-positive rate equal its prior: just below the
    `round(prior x n)`-th largest score of that category over the n images that were scored.

    `scores` is an (N, L) array or anything with Scores' `blocks(rows)` (a job's chunk files): the order
    statistic is found by a radix select over the float32 bit patterns, three passes over the blocks holding
    only (L, 2048) counts, so memory does not grow with images x categories and the result is exact."""
    if isinstance(scores, np.ndarray):
        rows = range(len(scores)) if rows is None else rows
        scores = Scores(scores)
    num_classes, ok_count = len(priors), 0
    for _, values in scores.blocks(rows):
        ok_count += int((~np.isnan(values).any(axis=1)).sum())
    above = np.rint(np.clip(np.asarray(priors, np.float64), 0, 1) * ok_count).astype(np.int64)
    rank = ok_count - above  # 0-based rank, ascending, of the value each threshold sits just below
    prefix = np.zeros(num_classes, dtype=np.int64)
    columns = np.arange(num_classes)
    for shift, width in ((21, 11), (10, 11), (0, 10)):
        counts = np.zeros((num_classes, 1 << width), dtype=np.int64)
        for _, values in scores.blocks(rows):
            keys = _order_keys(values[~np.isnan(values).any(axis=1)])
            digit = (keys >> shift) & ((1 << width) - 1)
            match = (keys >> (shift + width)) == prefix  # the values still in each column's chosen bucket
            flat = (columns * (1 << width) + digit)[match]
            counts += np.bincount(flat, minlength=counts.size).reshape(counts.shape)
        cumulative = np.cumsum(counts, axis=1)
        bucket = np.array([np.searchsorted(c, min(r, max(c[-1] - 1, 0)), side="right") for c, r in zip(cumulative, rank)])
        rank = rank - np.where(bucket > 0, cumulative[columns, np.maximum(bucket - 1, 0)], 0)
        prefix = (prefix << width) | bucket
    value = _from_order_keys(prefix)
    below = np.nextafter(value, np.float32(-1))
    taus = np.where(above <= 0, np.float32(1), np.where(above <= ok_count, below, np.float32(0))).astype(np.float32)
    return np.clip(taus, 0.0, 1.0)


def _order_keys(values: np.ndarray) -> np.ndarray:
    """float32 -> int64 keys in the same order (IEEE bits, sign-flipped so that negatives sort below)."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.int64)
    return np.where(bits >> 31, 0xFFFFFFFF - bits, bits | 0x80000000)


def _from_order_keys(keys: np.ndarray) -> np.ndarray:
    bits = np.where(keys >> 31, keys & 0x7FFFFFFF, 0xFFFFFFFF - keys).astype(np.uint32)
    return bits.view(np.float32)


def observed_priors(dataset: CocoDataset, expected_positives: float) -> np.ndarray:
    """Each category's share of images, estimated from single positives: a uniformly chosen positive is category
    c with probability about prior_c / k, so prior_c = k x (share of images whose observed positive is c)."""
    share = dataset.labels.column_counts() / len(dataset)
    return np.clip(share * expected_positives, 0.0, 1.0)
