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
from spml.errors import SpmlError
from spml.files import atomic_write, remove_temps, sha256_of
from spml.label.labeler import PseudoLabeler, Scores


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


def resumable_scores(labeler: PseudoLabeler, dataset: CocoDataset, out: str | os.PathLike, rows: range,
                     model_sha256: str, chunk_images: int = 1024, progress: bool = False, log=print) -> Scores:
    """Scores for `rows`, computed chunk by chunk and kept beside `out` until the labels are written."""
    chunk = labeler.batch_size * max(1, chunk_images // labeler.batch_size)  # whole batches: a resumed run batches alike
    manifest = {
        "model_sha256": model_sha256,
        "annotations_sha256": sha256_of(dataset.path) if dataset.path else listing_sha256(dataset),  # a scanned folder
        "images_dir": str(dataset.images_dir.resolve()),
        "rows": [rows.start, rows.stop],
        "chunk": chunk,
        "num_classes": dataset.num_classes,
    }
    folder = state_dir(out)
    manifest_path = folder / "manifest.json"
    if folder.exists():
        try:
            previous = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            previous = None
        if previous != manifest:
            log(f"note: {folder} belongs to another job (model, annotations or options changed); starting afresh")
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_temps(folder)  # from a job killed without a chance to clean up (SIGKILL, power loss)
    if not manifest_path.exists():
        with atomic_write(manifest_path) as f:
            json.dump(manifest, f)

    values = np.full((len(dataset), dataset.num_classes), np.nan, dtype=np.float32)
    failures: dict[int, str] = {}
    seconds = 0.0
    starts = list(range(rows.start, rows.stop, chunk))
    done = 0
    for start in starts:
        path = folder / f"chunk_{start:09d}.npz"
        if path.exists():
            with np.load(path) as saved:
                stop = start + len(saved["values"])
                values[start:stop] = saved["values"]
                failures.update({int(r): str(m) for r, m in zip(saved["failed_rows"], saved["failed_reasons"])})
            done += 1
    if done:
        log(f"resuming: {done} of {len(starts)} chunks already labeled in {folder}")
    from spml.progress import tqdm

    bar = tqdm(total=len(rows), initial=min(done * chunk, len(rows)), unit="img", disable=not progress,
               mininterval=1.0, desc="labeling")
    for start in starts:
        path = folder / f"chunk_{start:09d}.npz"
        if path.exists():
            continue
        part = range(start, min(start + chunk, rows.stop))
        scores = labeler.scores(dataset, part, bar=bar)
        values[part.start:part.stop] = scores.values[part.start:part.stop]
        failures.update(scores.failures)
        seconds += scores.seconds
        failed = sorted(scores.failures)
        with atomic_write(path, "wb") as f:
            np.savez(f, values=scores.values[part.start:part.stop], failed_rows=np.array(failed, dtype=np.int64),
                     failed_reasons=np.array([scores.failures[r] for r in failed], dtype=str))
    bar.close()
    return Scores(values, failures, seconds)


def finish(out: str | os.PathLike) -> None:
    """The labels are written: the chunks are no longer needed."""
    shutil.rmtree(state_dir(out), ignore_errors=True)


def merge_labels(parts: list[str | os.PathLike], out: str | os.PathLike) -> dict:
    """Join the labels files of shards 0/N .. N-1/N of one job into the file a single run would have written."""
    from spml.label.labeler import failures_file, write_coco

    loaded = []
    for p in parts:
        try:
            raw = json.loads(Path(p).read_text())
        except FileNotFoundError:
            raise SpmlError(f"{p}: no such file") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise SpmlError(f"{p}: not a JSON file ({e})") from None
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
    count = write_coco(out, info, first.get("licenses", []), images, first["categories"], annotations)
    failure_lines = []
    for _, p, _ in loaded:
        if failures_file(p).exists():
            failure_lines.extend(failures_file(p).read_text().splitlines())
    if failure_lines:
        with atomic_write(failures_file(out)) as f:
            f.write("\n".join(failure_lines) + "\n")
    return {"images": len(images), "annotations": count, "failed": info["failed_images"], "shards": total}
