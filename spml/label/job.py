"""A labeling job that survives being killed: scores are kept in chunk files beside the output
(`labels.json.partial/`), each written atomically, so the same command resumes where it stopped and produces the
same file as an uninterrupted run. Shards (`--shard I/N`) label contiguous parts that `merge_labels` joins."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from spml.data.coco import CocoDataset
from spml.data.image_list import listing_sha256
from spml.data.json_stream import DECODE_ERRORS, load_json
from spml.errors import SpmlError
from spml.files import atomic_write, remove_temps, sha256_of
from spml.label.labeler import PseudoLabeler


def parse_shard(text: str | None) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N; None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SpmlError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise SpmlError(f"--shard {text}: I must be in 0..N-1 (got {i}/{n})") from None
    return i, n


def shard_rows(num_images: int, shard: tuple[int, int]) -> range:
    """Contiguous part I of N, so concatenating the shards in order restores the source order."""
    i, n = shard
    return range(num_images * i // n, num_images * (i + 1) // n)


def state_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


class ChunkScores:
    """A job's scores read from its chunk files, one chunk at a time (the Scores interface writers stream from):
    memory stays flat in images x categories. `failures` (dataset row -> reason) is held in memory."""

    def __init__(self, folder: Path, rows: range, chunk: int, seconds: float = 0.0):
        self.folder, self.rows, self.chunk, self.seconds = folder, rows, chunk, seconds
        self.failures: dict[int, str] = {}
        for start in range(rows.start, rows.stop, chunk):
            with np.load(chunk_path(folder, start)) as saved:
                self.failures.update({int(r): str(m) for r, m in zip(saved["failed_rows"], saved["failed_reasons"])})

    def blocks(self, rows: range | None = None):
        rows = self.rows if rows is None else rows
        for start in range(self.rows.start, self.rows.stop, self.chunk):
            stop = min(start + self.chunk, self.rows.stop)
            if stop <= rows.start or start >= rows.stop:
                continue
            with np.load(chunk_path(self.folder, start)) as saved:
                values = saved["values"]
            lo, hi = max(start, rows.start), min(stop, rows.stop)
            yield lo, values[lo - start:hi - start]


def chunk_path(folder: Path, start: int) -> Path:
    return folder / f"chunk_{start:09d}.npz"


def local_engine(labeler: PseudoLabeler, dataset: CocoDataset):
    """The engine of one machine: chunks scored one after another by `labeler` in this process."""

    def score(parts, bar):
        for part in parts:
            yield part, labeler.scores(dataset, part, bar=bar)

    return score


def resumable_scores(labeler: PseudoLabeler, dataset: CocoDataset, out: str | os.PathLike, rows: range, *,
                     model_sha256: str, chunk_images: int = 1024, progress: bool = False, log=print,
                     engine=None) -> ChunkScores:
    """Scores for `rows`, computed chunk by chunk and kept beside `out` until the labels are written.

    `engine(parts, bar)` scores the chunks not yet done (`parts`: ranges of rows, in order) and yields
    (part, Scores of that part) as each completes: `local_engine` (default), or the Ray engine
    (spml.label.ray_engine). Both batch a chunk's images alike, so either can resume the other's job."""
    chunk = labeler.batch_size * max(1, chunk_images // labeler.batch_size)  # whole batches: a resumed run batches alike
    manifest = {
        "model_sha256": model_sha256,
        "annotations_sha256": sha256_of(dataset.path) if dataset.path else listing_sha256(dataset),  # a scanned folder
        "images_dir": str(dataset.images_dir.resolve()),
        "rows": [rows.start, rows.stop],
        "chunk": chunk,
        "num_classes": dataset.num_classes,
        "tta": getattr(labeler, "tta", "none"),
    }
    folder = state_dir(out)
    manifest_path = folder / "manifest.json"
    if folder.exists():
        try:
            previous = json.loads(manifest_path.read_text())
        except (OSError, *DECODE_ERRORS):
            previous = None
        if previous != manifest:
            log(f"note: {folder} belongs to another job (model, annotations or options changed); starting afresh")
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_temps(folder)  # from a job killed without a chance to clean up (SIGKILL, power loss)
    if not manifest_path.exists():
        with atomic_write(manifest_path) as f:
            json.dump(manifest, f)

    parts = [range(start, min(start + chunk, rows.stop)) for start in range(rows.start, rows.stop, chunk)]
    pending = [part for part in parts if not chunk_path(folder, part.start).exists()]
    done = len(parts) - len(pending)
    if done:
        log(f"resuming: {done} of {len(parts)} chunks already labeled in {folder}")
    from spml.progress import tqdm

    bar = tqdm(total=len(rows), initial=len(rows) - sum(len(p) for p in pending), unit="img", disable=not progress,
               mininterval=1.0, desc="labeling")
    seconds = 0.0
    score = engine or local_engine(labeler, dataset)
    for part, scores in score(pending, bar):
        seconds += scores.seconds
        failed = sorted(scores.failures)
        with atomic_write(chunk_path(folder, part.start), "wb") as f:
            np.savez(f, values=scores.values[part.start - scores.start:part.stop - scores.start],
                     failed_rows=np.array(failed, dtype=np.int64),
                     failed_reasons=np.array([scores.failures[r] for r in failed], dtype=str))
    bar.close()
    return ChunkScores(folder, rows, chunk, seconds)


def finish(out: str | os.PathLike) -> None:
    """The labels are written: the chunks are no longer needed."""
    shutil.rmtree(state_dir(out), ignore_errors=True)


def merge_labels(parts: list[str | os.PathLike], out: str | os.PathLike) -> dict:
    """Join the labels files of shards 0/N .. N-1/N of one job into the file a single run would have written."""
    from spml.label.writers import failures_file, write_coco

    loaded = []
    for p in parts:
        raw = load_json(p)
        info = raw.get("info") if isinstance(raw, dict) else None
        if not isinstance(info, dict) or "shard" not in info:
            raise SpmlError(f"{p}: not a shard of spml-label (no info.shard)") from None
        loaded.append((parse_shard(info["shard"]), Path(p), raw))
    loaded.sort(key=lambda t: t[0])
    total = loaded[0][0][1]
    if [s for s, _, _ in loaded] != [(i, total) for i in range(total)]:
        got = ", ".join(f"{i}/{n}" for (i, n), _, _ in loaded)
        raise SpmlError(f"need shards 0/{total} .. {total - 1}/{total} exactly once, got {got}") from None
    same = ("tau", "keep_observed", "model_sha256", "source_annotations", "images_dir")
    first = loaded[0][2]
    for _, p, raw in loaded[1:]:
        differ = [k for k in same if raw["info"].get(k) != first["info"].get(k)]
        if differ or raw["categories"] != first["categories"]:
            raise SpmlError(f"{p}: not from the same job as {loaded[0][1]} (differs in {', '.join(differ) or 'categories'})") from None
    info = {k: v for k, v in first["info"].items() if k != "shard"}
    info["failed_images"] = sum(raw["info"].get("failed_images", 0) for _, _, raw in loaded)
    if info.get("images_dir"):
        from spml.data.provenance import relative_to_file

        info["images_dir_relative"] = relative_to_file(info["images_dir"], out)
    images = [im for _, _, raw in loaded for im in raw["images"]]
    annotations = ({k: v for k, v in a.items() if k != "id"} for _, _, raw in loaded for a in raw["annotations"])
    count = write_coco(out, info, licenses=first.get("licenses", []), images=images, categories=first["categories"],
                       annotations=annotations)
    failure_lines = []
    for _, p, _ in loaded:
        if failures_file(p).exists():
            failure_lines.extend(failures_file(p).read_text().splitlines())
    if failure_lines:
        with atomic_write(failures_file(out)) as f:
            f.write("\n".join(failure_lines) + "\n")
    return {"images": len(images), "annotations": count, "failed": info["failed_images"], "shards": total}
