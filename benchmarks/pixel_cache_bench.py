"""The pixel cache's memory with DataLoader workers: PSS of the main process and its workers after some epochs
of the training loader (flips), and the seconds of each epoch.

    python benchmarks/pixel_cache_bench.py --workers 4 --size 224   # 1,600 images at 224 px: 230 MiB of pixels
"""

import argparse
import tempfile
import time
from pathlib import Path

import psutil

from spml.data.coco import load_coco
from spml.data.demo import DemoConfig, make_demo
from spml.data.images import Preprocess
from spml.train.data import ImageLabels
from spml.train.trainer import TrainConfig, make_loader


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=2000, help="drawn; 80%% are the training split")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.gettempdir()) / f"spml-pixel-bench-{args.images}"
    if not (root / "instances_train.json").exists():
        make_demo(root, DemoConfig(num_train=args.images, num_test=1, seed=1))
    dataset = load_coco(root / "instances_train.json")
    data = ImageLabels(dataset, dataset.positives.astype("float32"), None, Preprocess(args.size), augment="flip")
    loader = make_loader(data, TrainConfig(batch_size=32, workers=args.workers, device="cpu"), True)
    seconds = []
    for epoch in range(args.epochs):
        started = time.perf_counter()
        data.epoch = epoch
        loader.batch_sampler.set_epoch(epoch)
        for _ in loader:
            pass
        seconds.append(time.perf_counter() - started)
    procs = [psutil.Process()] + psutil.Process().children(recursive=True)
    pss = sum(p.memory_full_info().pss for p in procs) / 2**20
    print(f"workers {args.workers}, {len(dataset)} images at {args.size}px "
          f"({len(dataset) * 3 * args.size ** 2 / 2**20:.0f} MiB of pixels): PSS {pss:.0f} MiB over {len(procs)} "
          f"processes; epochs {', '.join(f'{s:.1f}s' for s in seconds)}")


if __name__ == "__main__":
    main()
