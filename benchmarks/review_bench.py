"""spml-review select benchmark: peak RSS and seconds at N and 4 N images x L categories, each run in its own
process. The labels file is streamed and only the budget's best candidates are kept, so memory should not grow
with images x categories (the known pairs, about one an image, grow by 16 bytes an image). Prints a table and
writes review_bench.json.

    python benchmarks/review_bench.py --out bench_out                      # 5,000 and 20,000 images x 200
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_labels(path: Path, n: int, classes: int, seed: int = 0) -> None:
    """An spml-label --soft file: one observed positive an image, pseudo positives above tau 0.5, spml_scores."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        f.write('{"info": {"tau": 0.5, "keep_observed": true, "soft": true}, "licenses": [], "images": [')
        observed = rng.integers(0, classes, n)
        for i in range(n):
            scores = np.round(rng.random(classes), 5).tolist()
            f.write(("," if i else "") + json.dumps({"id": i + 1, "file_name": f"{i:08d}.jpg", "spml_scores": scores}))
        f.write('], "categories": ' + json.dumps([{"id": c + 1, "name": f"c{c}"} for c in range(classes)]))
        f.write(', "annotations": [')
        f.write(",".join(json.dumps({"id": i + 1, "image_id": i + 1, "category_id": int(observed[i]) + 1,
                                     "source": "observed"}) for i in range(n)))
        f.write("]}\n")


def one(labels: str, out: str, budget: int, unit: str) -> dict:
    from spml.review.select import select_questions, write_selection

    started = time.time()
    selection = select_questions(labels, budget=budget, strategy="uncertainty", unit=unit, seed=0)
    write_selection(out, selection, labels=labels, strategy="uncertainty", unit=unit, budget=budget, seed=0)
    return {"seconds": round(time.time() - started, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        labels, out, budget, unit = args.child
        print(json.dumps(one(labels, out, int(budget), unit)))
        return
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (args.images, 4 * args.images):
        labels = folder / f"labels_{n}x{args.classes}.json"
        if not labels.exists():
            make_labels(labels, n, args.classes)
        for unit in ("pair", "image"):
            result = subprocess.run([sys.executable, __file__, "--child", str(labels), str(folder / f"q_{n}_{unit}"),
                                     str(args.budget), unit], capture_output=True, text=True, check=True)
            rows.append({"images": n, "classes": args.classes, "unit": unit, "budget": args.budget,
                         "file_mb": round(labels.stat().st_size / 2 ** 20, 1), **json.loads(result.stdout)})
            print(rows[-1], flush=True)
    (folder / "review_bench.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
