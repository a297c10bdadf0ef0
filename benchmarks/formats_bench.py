"""Output formats benchmark: each writer (CSV, Parquet, FiftyOne) over memmapped (N, L) scores, at N and 10 N
images, each in its own process. The writers read the scores in row blocks, so their memory should not grow with
N x L beyond the dataset's own records. Peak RSS counts the memmap's pages the kernel keeps cached (file-backed,
reclaimable), so the table also gives the peak of the process's own memory (RssAnon, sampled every 20 ms).
Prints a table and writes formats_bench.json.

    python benchmarks/formats_bench.py --out bench_out                      # 20,000 and 200,000 images x 1,000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def rss_anon_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(fmt: str, n: int, classes: int, folder: Path) -> dict:
    """Write `fmt` for n images (run in a child process): seconds and peak RSS."""
    from spml.data.coco import CocoDataset
    from spml.data.formats import LabelRows, output_path, write_format

    path = folder / f"scores_{n}x{classes}.f32"
    scores = np.memmap(path, dtype=np.float32, mode="r", shape=(n, classes))
    observed = np.memmap(folder / f"observed_{n}x{classes}.bool", dtype=bool, mode="r", shape=(n, classes))
    images = [{"id": i + 1, "file_name": f"images/{i:08d}.jpg"} for i in range(n)]
    categories = [{"id": j + 1, "name": f"category {j}"} for j in range(classes)]
    # the dataset's own arrays as memmaps too: what is measured is the writer
    dataset = CocoDataset(None, folder, images, categories, positives=observed, raw={})
    labels = LabelRows(dataset, scores, np.arange(n), observed, tau=0.995)
    if fmt == "parquet":
        import pyarrow.parquet  # noqa: F401 - imported before the baseline, like the other writers' modules
    peak, done = [rss_anon_mb()], threading.Event()
    base = peak[0]

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_anon_mb())

    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    count = write_format(fmt, output_path(folder / f"labels_{n}.json", fmt, 0.995, False), labels)
    seconds = time.perf_counter() - started
    done.set()
    return {"format": fmt, "images": count, "classes": classes, "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "anon_before_mb": base, "peak_anon_mb": max(peak[0], rss_anon_mb())}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--formats", default="csv,parquet,fiftyone")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.out) / "formats"
    if args.child:
        print(json.dumps(one(args.child[0], int(args.child[1]), args.classes, folder)))
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for n in (args.images, args.images * 10):
        scores = np.memmap(folder / f"scores_{n}x{args.classes}.f32", dtype=np.float32, mode="w+", shape=(n, args.classes))
        for start in range(0, n, 10_000):  # written in blocks: the benchmark itself stays small too
            scores[start:start + 10_000] = rng.random((min(10_000, n - start), args.classes), dtype=np.float32)
        scores.flush()
        np.memmap(folder / f"observed_{n}x{args.classes}.bool", dtype=bool, mode="w+", shape=(n, args.classes)).flush()
        del scores
        for fmt in args.formats.split(","):
            out = subprocess.run([sys.executable, __file__, "--out", args.out, "--classes", str(args.classes),
                                  "--child", fmt, str(n)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.splitlines()[-1]))
            r = rows[-1]
            print(f"{r['format']:9s} {r['images']:>8,d} x {r['classes']:,d}: {r['seconds']:7.1f}s "
                  f"{r['images'] / r['seconds']:>9,.0f} img/s  peak RSS {r['peak_rss_mb']:7.0f} MB, own memory "
                  f"{r['anon_before_mb']:5.0f} -> peak {r['peak_anon_mb']:5.0f} MB", flush=True)
    small = {r["format"]: r for r in rows if r["images"] == args.images}
    for r in rows:
        if r["images"] != args.images:
            grow = lambda x: x["peak_anon_mb"] - x["anon_before_mb"]  # noqa: E731 - the writer's own
            print(f"{r['format']}: at {r['images']:,d} / at {args.images:,d} images: peak RSS "
                  f"{r['peak_rss_mb'] / small[r['format']]['peak_rss_mb']:.2f}x, own memory "
                  f"{r['peak_anon_mb'] / small[r['format']]['peak_anon_mb']:.2f}x, the writer's growth "
                  f"{grow(r):.0f} vs {grow(small[r['format']]):.0f} MB")
    (Path(args.out) / "formats_bench.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
