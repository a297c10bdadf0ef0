"""Trainer benchmark: `spml-train` img/s against a bare torch loop on preloaded tensors (the compute ceiling),
same model, loss, optimizer, batch size and threads, as a ratio, in one run. Prints a table and writes
train_bench.json.

On the CPU: one row (target: spml-train >= 0.95 of the ceiling). On a GPU also fp32, bf16 (channels_last
either way: the trainer always uses it on CUDA), bf16 + --compile, 2 GPUs through torchrun where there are
two, and where the time goes: decoding (the DataLoader alone), host-to-device copies (pinned batches), compute
(the ceiling).

    python benchmarks/train_bench.py --out bench_out                    # resnet18 at 64 px, batch 32, 1024 images
    python benchmarks/train_bench.py --arch resnet50 --image-size 448 --batch-size 64 --images 4096   # on a GPU
    python benchmarks/train_bench.py --tiny                             # seconds: that it runs, not a measurement
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def ceiling(args, ann: Path, precision: str, compile_model: bool = False) -> float:
    """img/s of the bare loop: Adam on em, over tensors decoded once and already on the device."""
    import torch

    from spml.data.coco import load_coco
    from spml.data.images import Preprocess
    from spml.train.losses import compute_loss
    from spml.train.model import create_model
    from spml.train.precision import autocast, set_up_cuda

    torch.manual_seed(0)
    data = load_coco(ann)
    pre = Preprocess(args.image_size)
    count = min(len(data), 8 * args.batch_size)  # distinct images to cycle through; speed does not depend on them
    x = torch.stack([torch.from_numpy(pre(data.images_dir / im["file_name"])) for im in data.images[:count]])
    y = torch.as_tensor(data.positives[:count], dtype=torch.float32)
    model = create_model(args.arch, data.num_classes).to(args.device)
    layout = torch.preserve_format
    if args.device == "cuda":
        model, layout = set_up_cuda(model), torch.channels_last
    x, y = x.to(args.device).contiguous(memory_format=layout), y.to(args.device)
    net = torch.compile(model) if compile_model else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    steps = -(-len(data) // args.batch_size)
    batches = [(i * args.batch_size) % count for i in range(steps)]

    def step(start):
        xb, yb = x[start:start + args.batch_size], y[start:start + args.batch_size]
        with autocast(precision, args.device):
            logits = net(xb)
        loss = compute_loss("em", logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()

    for start in batches[: max(3, steps // 10)]:  # warm-up: allocator, cuDNN autotuning, compilation
        step(start)
    sync(args.device)
    started = time.perf_counter()
    images = 0
    for start in batches:
        step(start)
        images += len(x[start:start + args.batch_size])
    sync(args.device)
    return images / (time.perf_counter() - started)


def spml_train(args, ann: Path, workdir: Path, *extra: str, nproc: int = 1) -> float:
    """img/s of spml-train: the fastest epoch after the first (which warms up), from the checkpoint's history
    (epoch time, without start-up or checkpoint writing)."""
    import torch

    out = workdir / f"bench-{len(list(workdir.glob('bench-*.pt')))}.pt"
    cmd = [sys.executable, "-m", "spml.train.cli", "--ann", str(ann), "--arch", args.arch, "--no-pretrained",
           "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
           "--loss", "em", "--device", args.device, "--out", str(out), "--keep-last", *extra]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"spml-train {' '.join(extra)} failed: {result.stderr[-1500:]}")
    history = torch.load(out.with_name(out.stem + ".last.pt"), weights_only=True)["history"]
    seconds = min(h["seconds"] for h in history[1:]) if len(history) > 1 else history[0]["seconds"]
    count = len(json.loads(ann.read_text())["images"])
    return count / seconds


def decode_rate(args, ann: Path) -> float:
    """img/s of the training DataLoader alone (decode, resize, normalise, collate), as spml-train builds it."""
    from spml.data.coco import load_coco
    from spml.data.images import Preprocess
    from spml.train.data import ImageLabels
    from spml.train.trainer import TrainConfig, make_loader

    data = load_coco(ann)
    workers = args.workers if args.workers is not None else (0 if args.device == "cpu" else min(8, os.cpu_count() or 1))
    cfg = TrainConfig(batch_size=args.batch_size, workers=workers, device=args.device)
    loader = make_loader(ImageLabels(data, data.positives, None, Preprocess(args.image_size), flip=True), cfg, True)
    started, images = time.perf_counter(), 0
    for x, *_ in loader:
        images += len(x)
    return images / (time.perf_counter() - started)


def h2d_rate(args) -> float:
    """img/s of pinned host-to-device copies of one batch, non_blocking as the trainer does."""
    import torch

    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size).pin_memory()
    for _ in range(3):
        x.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    started, reps = time.perf_counter(), 50
    for _ in range(reps):
        x.to("cuda", non_blocking=True, memory_format=torch.channels_last)
    torch.cuda.synchronize()
    return reps * args.batch_size / (time.perf_counter() - started)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_out")
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2, help="spml-train epochs; the fastest after the first counts")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--workers", type=int, default=None, help="spml-train --workers (default: the trainer's)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when there is one")
    p.add_argument("--tiny", action="store_true", help="64 images at 32 px: checks the bench runs, measures nothing")
    p.add_argument("--rows", default=None, help="GPU rows, comma-separated: fp32,bf16,compile,2gpu,where (default all)")
    args = p.parse_args()
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.tiny:
        args.images, args.image_size, args.batch_size = 64, 32, 16
    torch.set_num_threads(args.threads)
    from label_bench import make_images

    out = Path(args.out)
    ann = make_images(out / "data", args.images)
    workdir = out / "train"
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("bench-*.pt"):
        old.unlink()

    rows = []

    def row(name, spml, ceil):
        if callable(spml):  # a failing row is reported, and the others still run
            try:
                spml, ceil = spml(), ceil()
            except Exception as e:
                print(f"  {name}: FAILED: {type(e).__name__}: {e}", flush=True)
                rows.append({"row": name, "spml_train": None, "ceiling": None, "ratio": None, "error": str(e)[-300:]})
                return
        rows.append({"row": name, "spml_train": spml, "ceiling": ceil, "ratio": spml / ceil if spml and ceil else None})
        print(f"  {name}: spml-train {spml:.1f} img/s, ceiling {ceil:.1f} img/s" + (f", ratio {spml / ceil:.2f}" if spml and ceil else ""),
              flush=True)

    where = {}
    if args.device == "cpu":
        row("cpu fp32", lambda: spml_train(args, ann, workdir, "--precision", "fp32"), lambda: ceiling(args, ann, "fp32"))
        if rows[0]["ceiling"]:  # the CPU trainer decodes in its main process (workers 0): decode + compute add up
            where = {"decode_img_s": decode_rate(args, ann), "compute_img_s": rows[0]["ceiling"]}
    else:
        wanted = set((args.rows or "fp32,bf16,compile,2gpu,where").split(","))
        half = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if "fp32" in wanted:
            row("cuda fp32", lambda: spml_train(args, ann, workdir, "--precision", "fp32"), lambda: ceiling(args, ann, "fp32"))
        if "bf16" in wanted:
            row(f"cuda {half} + channels_last", lambda: spml_train(args, ann, workdir, "--precision", half),
                lambda: ceiling(args, ann, half))
        if "compile" in wanted:
            row(f"cuda {half} + --compile", lambda: spml_train(args, ann, workdir, "--precision", half, "--compile"),
                lambda: ceiling(args, ann, half, compile_model=True))
        if "2gpu" in wanted and torch.cuda.device_count() >= 2:
            one = next((r["spml_train"] for r in rows if r["row"].startswith(f"cuda {half} +")), None)
            try:
                two = spml_train(args, ann, workdir, "--precision", half, nproc=2)
                rows.append({"row": f"2 GPUs {half} (torchrun; ratio: vs 1 GPU)", "spml_train": two, "ceiling": None,
                             "ratio": two / one if one else None})
                print(f"  2 GPUs {half}: spml-train {two:.1f} img/s" + (f", {two / one:.2f}x one GPU" if one else ""), flush=True)
            except Exception as e:
                print(f"  2 GPUs: FAILED: {e}", flush=True)
        if "where" in wanted:
            try:
                where = {"decode_img_s": decode_rate(args, ann), "h2d_img_s": h2d_rate(args),
                         "compute_img_s": ceiling(args, ann, half)}
            except Exception as e:
                print(f"  where the time goes: FAILED: {e}", flush=True)

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"\nspml-train vs a bare torch loop on preloaded tensors: {args.arch} at {args.image_size} px, batch "
          f"{args.batch_size}, {args.images} images, {args.threads} threads, {device_name}"
          + (" (--tiny: checks that it runs; the figures mean nothing)" if args.tiny else ""))
    print("| row | spml-train img/s | ceiling img/s | ratio |\n|---|---|---|---|")
    def fmt(value, digits=1):
        return f"{value:.{digits}f}" if value else "-"

    for r in rows:
        print(f"| {r['row']} | {fmt(r['spml_train'])} | {fmt(r['ceiling'])} | {fmt(r['ratio'], 2)} |")
    if where:
        names = {"decode_img_s": "decode", "h2d_img_s": "host-to-device", "compute_img_s": "compute"}
        print("where the time goes (img/s each stage sustains alone): "
              + ", ".join(f"{names[k]} {v:.0f}" for k, v in where.items())
              + ("; stages overlap on CUDA (workers, prefetch), so the slowest bounds training" if args.device == "cuda"
                 else "; on the CPU decoding runs between steps, so 1/rate adds up"))
    (out / "train_bench.json").write_text(json.dumps({
        "arch": args.arch, "image_size": args.image_size, "batch_size": args.batch_size, "images": args.images,
        "threads": args.threads, "device": device_name, "tiny": args.tiny, "rows": rows, "where": where}, indent=1))


if __name__ == "__main__":
    main()
