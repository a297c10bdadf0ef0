"""The training set as a torch Dataset over spml's shared preprocessing, and the images it may use: the failure
policy of spml-train (--max-failed, --strict), spml-label's."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from spml.data.coco import CocoDataset
from spml.data.images import ImageError, Preprocess, image_path, load_image, open_regular
from spml.errors import SpmlError
from spml.files import atomic_write
from spml.train.augment import ImageAugment, draw_seed


PIXEL_CACHE_BYTES = 1 << 30  # keep decoded, resized images in memory when the whole set fits in this


class ImageLabels(Dataset):
    """(image tensor, targets, known mask, row, observed-negatives mask) for each image. Augmentation (`augment`: none, flip or strong,
    spml.train.augment) is drawn from (seed, epoch, row), so an epoch sees the same augmentation whether or not
    training was resumed.

    When every resized image fits in PIXEL_CACHE_BYTES (small inputs: 1,000 images at 64 px are 12 MB), the
    decoded uint8 pixels are kept after the first epoch, so later epochs cost only the model: decoding a JPEG
    costs more than a small network's step. Flips and normalisation come after the cache, so results are the
    same with or without it. Augmentation comes after the cache too: a cached image is augmented afresh each epoch.

    The cache is one (N, S, S, 3) uint8 array. `share_pixels()` (make_loader calls it before starting
    DataLoader workers) moves it to shared memory, so all workers fill and read one copy, instead of each
    keeping its own (N workers: N copies of up to PIXEL_CACHE_BYTES)."""

    def __init__(self, dataset: CocoDataset, targets: np.ndarray, known: np.ndarray | None, preprocess: Preprocess,
                 *, flip: bool = False, seed: int = 0, allow_outside: bool = False, augment: str | None = None,
                 negatives: np.ndarray | None = None):
        self.dataset = dataset
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        # a bool mask, or float loss weights (--answer-weights: the losses average by it)
        self.known = None if known is None else torch.as_tensor(
            known, dtype=torch.float32 if np.asarray(known).dtype.kind == "f" else torch.bool)
        self.negatives = None if negatives is None else torch.as_tensor(negatives, dtype=torch.bool)
        self.preprocess = preprocess
        self.augment = ImageAugment(augment or ("flip" if flip else "none"), preprocess.size)
        self.seed = seed
        # in shared memory, so persistent DataLoader workers see the epoch the trainer sets
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.allow_outside = allow_outside
        fits = len(dataset) * 3 * preprocess.size ** 2 <= PIXEL_CACHE_BYTES
        # torch.empty reserves address space only: pages are taken as images are cached
        self._pixels = torch.empty((len(dataset), preprocess.size, preprocess.size, 3), dtype=torch.uint8) if fits else None
        self._cached = torch.zeros(len(dataset), dtype=torch.bool) if fits else None  # set after its pixels are
        self._views()

    def _views(self) -> None:
        """numpy views of the cache, for the per-image path (indexing a tensor per image costs microseconds)."""
        self._pixels_np = self._pixels.numpy() if self._pixels is not None else None
        self._cached_np = self._cached.numpy() if self._cached is not None else None

    def __getstate__(self) -> dict:  # a spawned worker gets the tensors (shared by torch), not numpy copies
        return {k: v for k, v in self.__dict__.items() if k not in ("_pixels_np", "_cached_np")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._views()

    def share_pixels(self) -> None:
        """Move the pixel cache to shared memory, before DataLoader workers start, so they share one copy.
        Where /dev/shm cannot hold it (a container's default 64 MB), the workers decode every epoch instead:
        a cache there would crash them (SIGBUS) when it fills."""
        if self._pixels is None or self._pixels.is_shared():
            return
        import shutil

        try:
            room = shutil.disk_usage("/dev/shm").free
        except OSError:  # no /dev/shm (macOS): torch's shared memory lives elsewhere
            room = float("inf")
        if room < 2 * self._pixels.nbytes:  # room for the batches in flight too
            self._pixels = self._cached = None
        else:
            self._pixels.share_memory_()
            self._cached.share_memory_()
        self._views()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.fill_(int(value))

    def __len__(self) -> int:
        return len(self.dataset)

    def _resized(self, row: int) -> np.ndarray:
        if self._cached_np is not None and self._cached_np[row]:
            return self._pixels_np[row]
        im = self.dataset.images[row]
        try:
            path = image_path(self.dataset.images_dir, im["file_name"], self.allow_outside)
            pixels = self.preprocess.resize(load_image(path, self.preprocess.size))
        except ImageError as e:
            raise ImageError(f"{im['file_name']}: {e}") from None
        if self._cached_np is not None:
            # two workers may decode the same row at once: they write the same bytes, then the flag
            self._pixels_np[row] = pixels
            self._cached_np[row] = True
        return pixels

    def __getitem__(self, row: int):
        pixels = self._resized(row)
        pixels = self.augment(pixels, draw_seed(self.seed, int(self._epoch), row))
        x = torch.from_numpy(np.ascontiguousarray(self.preprocess.normalize(pixels)))
        known = self.known[row] if self.known is not None else torch.ones_like(self.targets[row], dtype=torch.bool)
        return x, self.targets[row], known, row, negatives_of(self, row)


def negatives_of(data, row: int) -> torch.Tensor:
    """Row `row`'s observed negatives (all False where the data has none), as the losses take them."""
    return data.negatives[row] if data.negatives is not None else torch.zeros_like(data.targets[row], dtype=torch.bool)


@dataclass(frozen=True)
class FailurePolicy:
    """spml-label's: images that cannot be read are skipped, said and listed, up to `max_failed` of a set;
    `strict` refuses any. A set none of whose images can be read is always refused."""
    max_failed: float = 0.1
    strict: bool = False
    allow_outside: bool = False


def failures_path(out: str | os.PathLike) -> Path:
    """The list of the images a run skipped, beside its checkpoint: teacher.pt -> teacher.failures.jsonl (the
    labeler's name and lines)."""
    out = Path(out)
    return out.with_name(out.stem + ".failures.jsonl")


def unreadable(dataset: CocoDataset, allow_outside: bool = False, threads: int | None = None) -> dict[int, str]:
    """{row: reason} for every image that cannot be opened: missing, outside the images folder, or a header
    Pillow cannot identify. Only the header is read (what Image.open does); pixels are decoded in training.
    Threads, as the checks wait on the file system (a network folder most of all): the labeler's daemon reader
    pool, so a read blocked for good cannot keep an interrupt from ending the run."""
    from spml.data.reader_pool import ReaderPool

    def check(row: int) -> str | None:
        try:
            path = image_path(dataset.images_dir, dataset.file_name(row), allow_outside)
        except ImageError as e:
            return str(e)
        return header_error(path)

    with ReaderPool(threads or min(8, os.cpu_count() or 1)) as pool:
        reasons = pool.map(check, range(len(dataset)))
        return {row: reason for row, reason in enumerate(reasons) if reason is not None}


def header_error(path: Path) -> str | None:
    """Why Pillow cannot open the image at `path` (load_image's wording), or None. Sizes are compared here
    rather than by turning Pillow's DecompressionBombWarning into an error: warning filters are not thread-safe."""
    try:  # open_regular: a FIFO or device named like an image is refused unopened, as the labeler does
        with open_regular(path) as f, Image.open(f) as img:
            pixels = img.width * img.height
    except ImageError as e:  # missing, not a regular file, a path the OS cannot take
        return str(e)
    except Image.DecompressionBombError as e:
        return f"image too large: {path} ({e})"
    except (OSError, SyntaxError, ValueError) as e:  # IsADirectoryError, UnidentifiedImageError, ...
        return f"cannot decode {path} ({e})"
    if Image.MAX_IMAGE_PIXELS and pixels > Image.MAX_IMAGE_PIXELS:  # load_image refuses these too
        return f"image too large: {path} ({pixels} pixels, more than Pillow's limit of {Image.MAX_IMAGE_PIXELS})"
    return None


def readable_sets(train: CocoDataset, val: CocoDataset | None, policy: FailurePolicy, listed: Path | None,
                  *, log=print) -> tuple[CocoDataset, CocoDataset | None]:
    """The training and validation sets without their unreadable images, checked before the first epoch rather
    than found in the third. The skipped images are listed in `listed` (None: not written, as on ranks > 0);
    a set beyond the policy is an error."""
    sets = {"train": train, "val": val}
    bad = {name: unreadable(dataset, policy.allow_outside) for name, dataset in sets.items() if dataset is not None}
    if listed is not None:
        write_failures(listed, sets, bad)
    kept = {}
    for name, dataset in sets.items():
        if dataset is None or not bad[name]:
            kept[name] = dataset
            continue
        what = "training set" if name == "train" else "validation set"
        check_failures(what, dataset, bad[name], policy, listed=listed)
        log(f"{what}: skipping {len(bad[name])} of {len(dataset)} images that cannot be read"
            + (f" (listed in {listed})" if listed else "") + f"; first: {first_reasons(dataset, bad[name])}")
        kept[name] = dataset.subset(np.setdiff1d(np.arange(len(dataset)), list(bad[name])))
    return kept["train"], kept["val"]


def check_failures(what: str, dataset: CocoDataset, bad: dict[int, str], policy: FailurePolicy,
                   *, listed: Path | None) -> None:
    n, failed = len(dataset), len(bad)
    where = f"in {dataset.images_dir}" + (f"; listed in {listed}" if listed else "")
    first = first_reasons(dataset, bad)
    if failed == n:
        raise SpmlError(f"{what}: none of the {n} images can be read ({where}); first: {first}") from None
    if policy.strict:
        raise SpmlError(f"{what}: {failed} of {n} images cannot be read (--strict; {where}); first: {first}") from None
    if failed > policy.max_failed * n:
        raise SpmlError(f"{what}: {failed} of {n} images ({failed / n:.0%}) cannot be read, more than --max-failed "
                        f"{policy.max_failed:g} ({where}); first: {first}") from None


def first_reasons(dataset: CocoDataset, bad: dict[int, str], count: int = 3) -> str:
    """The first few failures, each naming the file that was tried."""
    rows = sorted(bad)
    more = len(rows) - count
    return "; ".join(bad[r] for r in rows[:count]) + (f" (and {more} more)" if more > 0 else "")


def write_failures(path: Path, sets: dict[str, CocoDataset | None], bad: dict[str, dict[int, str]]) -> None:
    """One JSON line per image skipped (the labeler's fields, and the set), or no file when none was: a stale
    list of an earlier run would mislead."""
    lines = [json.dumps({"set": name, "image_id": sets[name].image_id(row), "file_name": sets[name].file_name(row),
                         "reason": reason})
             for name, rows in bad.items() for row, reason in sorted(rows.items())]
    if lines:
        with atomic_write(path) as f:
            f.write("\n".join(lines) + "\n")
    else:
        path.unlink(missing_ok=True)
