"""Labeler benchmark: the torch-eager baseline, the onnxruntime model-only ceiling and `spml-label` end to end,
on the same generated JPEGs, model weights, batch size and thread count, in one run. Prints a table and writes
bench.json. Each row runs in its own process so its peak RSS is its own.

    python benchmarks/label_bench.py --out bench_out                 # ResNet-50 at 224, 2000 images
    python benchmarks/label_bench.py --image-size 448                # the reference codebases' size
    python benchmarks/label_bench.py --memory-check                  # peak RSS, 20k vs 200k tiny images x 1,000 categories,
                                                                     # COCO (unlabeled, single-positive), JSON lines, CSV
    python benchmarks/label_bench.py --memory-check --memory-engine ray   # the same for the Ray engine's driver
    python benchmarks/label_bench.py --memory-check --memory-load-only    # only what reading each input adds
    python benchmarks/label_bench.py --rows spml-label,spml-label-ray --no-int8   # Ray engine (2 workers) vs local
    python benchmarks/label_bench.py --provider cuda --precision fp16 --no-int8   # on a GPU (or tensorrt)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_images(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` COCO-like 640x480 JPEGs and an instances file (cached in `folder`)."""
    from PIL import Image

    from spml.data.demo import CATEGORIES, draw_image, DemoConfig
    from spml.files import write_json

    ann = folder / f"instances_{count}.json"
    if ann.exists():
        return ann
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, anns = [], []
    cfg = DemoConfig(min_side=160, max_side=160)
    for k in range(count):
        name = f"images/{k:06d}.jpg"
        if not (folder / name).exists():
            small, objects = draw_image(rng, cfg)
            img = small.resize((640, 480), Image.BILINEAR)
            arr = np.asarray(img, np.int16) + rng.integers(-6, 7, (480, 640, 3))  # photo-like detail for the codec
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / name, quality=90)
        images.append({"id": k + 1, "file_name": name, "width": 640, "height": 480})
        anns.append({"id": k + 1, "image_id": k + 1, "category_id": CATEGORIES[k % len(CATEGORIES)][0], "bbox": [0, 0, 1, 1]})
    categories = [{"id": cid, "name": name} for cid, name, _ in CATEGORIES]
    write_json(ann, {"info": {"images_dir": "."}, "images": images, "annotations": anns, "categories": categories})
    return ann


def make_model(folder: Path, arch: str, size: int) -> tuple[Path, Path]:
    """An spml checkpoint of `arch` (random weights: speed does not depend on them) and its ONNX export."""
    import torch

    from spml.data.demo import CATEGORIES
    from spml.export.onnx_export import export_onnx
    from spml.train.model import FORMAT_VERSION, create_model

    ckpt_path = folder / f"{arch}_{size}.pt"
    onnx_path = ckpt_path.with_suffix(".onnx")
    if not onnx_path.exists():
        torch.manual_seed(0)
        model = create_model(arch, len(CATEGORIES))
        torch.save({"format_version": FORMAT_VERSION, "model": model.state_dict(), "optimizer": None, "scheduler": None,
                    "epoch": 0, "best_metric": None, "config": {"arch": arch},
                    "categories": [{"id": c, "name": n} for c, n, _ in CATEGORIES],
                    "preprocess": {"image_size": size, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                    "data": {}}, ckpt_path)
        export_onnx(ckpt_path, onnx_path)
    return ckpt_path, onnx_path


def gflops_per_image(arch: str, size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from spml.train.model import create_model

    model = create_model(arch, 10).eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


# ---- the rows; each runs in a child process: `label_bench.py --row NAME ...` prints {"images", "seconds"}

def row_torch_eager(args) -> dict:
    """What a good user writes today: DataLoader with workers, torchvision transforms, inference_mode."""
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from spml.train.model import load_checkpoint, model_from_checkpoint

    torch.set_num_threads(args.threads)
    ann = json.loads(Path(args.ann).read_text())
    root = Path(args.ann).parent
    tf = transforms.Compose([transforms.Resize((args.image_size, args.image_size)), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    class Files(Dataset):
        def __len__(self):
            return len(ann["images"])

        def __getitem__(self, i):
            return tf(Image.open(root / ann["images"][i]["file_name"]).convert("RGB"))

    device = "cuda" if args.provider != "cpu" and torch.cuda.is_available() else "cpu"
    model = model_from_checkpoint(load_checkpoint(args.ckpt)).to(device)
    loader = DataLoader(Files(), batch_size=args.batch_size, num_workers=args.threads, pin_memory=device == "cuda")
    start = time.perf_counter()
    out = []
    with torch.inference_mode(), torch.autocast(device, torch.float16, enabled=args.precision == "fp16" and device == "cuda"):
        for x in loader:
            out.append(torch.sigmoid(model(x.to(device, non_blocking=True))).float().cpu().numpy())
    return {"images": sum(len(o) for o in out), "seconds": time.perf_counter() - start}


def row_model_only(args) -> dict:
    """onnxruntime on tensors decoded beforehand: the ceiling for any labeler of this model."""
    from spml.label.providers import create_session

    import onnxruntime as ort

    session = create_session(args.onnx, args.provider, args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, 3, args.image_size, args.image_size)).astype(np.float32)
    binding = session.io_binding()  # on a GPU the input stays on the device: the model's own speed
    binding.bind_ortvalue_input("images", ort.OrtValue.ortvalue_from_numpy(x, "cpu" if args.provider == "cpu" else "cuda", 0))
    binding.bind_output("probabilities", "cpu")
    session.run_with_iobinding(binding)  # warm-up (and TensorRT's engine build)
    n, start = 0, time.perf_counter()
    while n < args.count:
        session.run_with_iobinding(binding)
        n += args.batch_size
    return {"images": n, "seconds": time.perf_counter() - start}


def row_spml_label(args) -> dict:
    """The real command, JPEG files to labels.json, its imports included (run in this fresh process so that its
    peak RSS is measured alone)."""
    out = Path(args.workdir) / "labels.json"
    start = time.perf_counter()
    from spml.label.cli import main as label_cli

    import contextlib
    import io
    import re

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # this row's stdout is its JSON result
        label_cli(["--model", args.onnx, "--ann", args.ann, "--tau", "0.5", "--out", str(out), "--batch-size",
                   str(args.batch_size), "--threads", str(args.threads), "--provider", args.provider],
                  standalone_mode=False)
    seconds = time.perf_counter() - start
    found = re.search(r"images in ([0-9.]+)s", printed.getvalue())
    # the image count from the job's own line: reading the file back here would add its records to this peak RSS
    return {"images": args.count, "seconds": seconds, "label_seconds": float(found.group(1)) if found else seconds}


def row_spml_label_ray(args) -> dict:
    """spml-label --engine ray: a local Ray instance, 2 workers sharing the --threads cores, the same model and
    images. `label_seconds` is what the command reports for its chunks: Ray's own start outside, the actors' start
    (each opening the model) inside."""
    import contextlib
    import io
    import re

    out = Path(args.workdir) / "labels_ray.json"
    start = time.perf_counter()
    from spml.label.cli import main as label_cli

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        label_cli(["--model", args.onnx, "--ann", args.ann, "--tau", "0.5", "--out", str(out), "--batch-size",
                   str(args.batch_size), "--provider", args.provider, "--engine", "ray", "--ray-actors", "2",
                   "--ray-cpus-per-actor", f"{args.threads / 2:g}", "--threads", str(max(1, args.threads // 2))],
                  standalone_mode=False)
    seconds = time.perf_counter() - start
    found = re.search(r"images in ([0-9.]+)s", printed.getvalue())
    return {"images": args.count, "seconds": seconds, "label_seconds": float(found.group(1)) if found else seconds}


def row_spml_label_int8(args) -> dict:
    """spml-label end to end with the int8 export (static quantization, calibrated on 64 of the images)."""
    args.onnx = args.onnx.replace(".onnx", ".int8.onnx")
    return row_spml_label(args)


def row_load_input(args) -> dict:
    """Only spml-label's reading of its input (`--ann`: a COCO file or an image list), after the model is opened as
    spml-label opens it: `input_peak_rss_mb` is what the input side adds to the peak."""
    from spml.data.coco import load_coco
    from spml.data.image_list import is_image_list, load_image_list
    from spml.label.labeler import PseudoLabeler

    labeler = PseudoLabeler(args.onnx, "cpu", args.batch_size, args.threads)
    base = peak_rss_mb()
    start = time.perf_counter()
    if is_image_list(args.ann):
        dataset = load_image_list(args.ann, labeler.info.categories, threads=args.threads)
    else:
        dataset = load_coco(args.ann)
    return {"images": len(dataset), "seconds": time.perf_counter() - start, "input_peak_rss_mb": peak_rss_mb() - base}


ROWS = {"load-input": row_load_input, "torch-eager": row_torch_eager, "model-only": row_model_only, "spml-label": row_spml_label,
        "spml-label-int8": row_spml_label_int8, "spml-label-ray": row_spml_label_ray}
# the Ray row where the spml[ray] extra is installed
DEFAULT_ROWS = "torch-eager,model-only,spml-label,spml-label-int8" + (
    ",spml-label-ray" if importlib.util.find_spec("ray") else "")


def run_row(name: str, args, ann: Path, ckpt: Path, onnx: Path, count: int, workdir: Path) -> dict:
    cmd = [sys.executable, __file__, "--row", name, "--ann", str(ann), "--ckpt", str(ckpt), "--onnx", str(onnx),
           "--count", str(count), "--workdir", str(workdir), "--batch-size", str(args.batch_size),
           "--threads", str(args.threads), "--image-size", str(args.image_size), "--provider", args.provider,
           "--precision", args.precision]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"row {name} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's high-water mark across
    fork+exec into it, so every child of this (torch-importing) driver would report the driver's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_out")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "tensorrt"],
                   help="onnxruntime provider of the model-only and spml-label rows (torch eager: cuda unless cpu)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"],
                   help="fp16: the spml-export --quantize fp16 model (and autocast for torch eager); for GPUs")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 row")
    p.add_argument("--rows", default=DEFAULT_ROWS,
                   help=f"rows to run, comma-separated, of {', '.join(ROWS)} (torch-eager is the baseline)")
    p.add_argument("--memory-check", action="store_true",
                   help="peak RSS of spml-label on tiny images x --memory-categories at the two --memory-images counts")
    p.add_argument("--memory-images", default="20000,200000", help="--memory-check: the two image counts")
    p.add_argument("--memory-categories", type=int, default=1000, help="--memory-check: categories of the model")
    p.add_argument("--memory-engine", default="local", choices=["local", "ray"],
                   help="--memory-check: the engine; with ray, the peak RSS is the driver's (the actors are other processes)")
    p.add_argument("--memory-load-only", action="store_true",
                   help="--memory-check: only read each input (what the input side adds to the peak; minutes, not hours)")
    p.add_argument("--memory-inputs", default=",".join(MEMORY_INPUTS),
                   help=f"--memory-check: input kinds, comma-separated, of {', '.join(MEMORY_INPUTS)}")
    p.add_argument("--row", choices=list(ROWS), help=argparse.SUPPRESS)
    p.add_argument("--ann", help=argparse.SUPPRESS)
    p.add_argument("--ckpt", help=argparse.SUPPRESS)
    p.add_argument("--onnx", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.row:
        result = ROWS[args.row](args)
        result["peak_rss_mb"] = peak_rss_mb()  # DataLoader workers of the baseline are other processes, not counted
        print(json.dumps(result))
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.memory_check:
        return memory_check(args, out)
    ann = make_images(out / "data", args.images)
    ckpt, onnx = make_model(out, args.arch, args.image_size)
    if args.precision == "fp16":
        from spml.export.quantize import convert_fp16

        fp32, onnx = onnx, onnx.with_suffix(".fp16.onnx")
        if not onnx.exists():
            convert_fp16(fp32, onnx)
    gflops = gflops_per_image(args.arch, args.image_size)
    rows = [r for r in args.rows.split(",") if not (r == "spml-label-int8" and (args.no_int8 or args.precision != "fp32"))]
    if "spml-label-int8" in rows and not Path(str(onnx).replace(".onnx", ".int8.onnx")).exists():
        from spml.data.artifacts import ModelInfo
        from spml.export.quantize import calibration_batches, quantize_int8
        import onnx as onnx_lib

        info = ModelInfo.from_props({p.key: p.value for p in onnx_lib.load(str(onnx)).metadata_props})
        quantize_int8(onnx, str(onnx).replace(".onnx", ".int8.onnx"), calibration_batches(info, str(ann), None, 64))
    results = {}
    for name in rows:
        r = run_row(name, args, ann, ckpt, onnx, args.images, out)
        r["img_per_s"] = r["images"] / r["seconds"]
        r["gflop_per_s"] = r["img_per_s"] * gflops
        results[name] = r
        print(f"  {name}: {r['img_per_s']:.1f} img/s", file=sys.stderr)
    nan = {"img_per_s": float("nan")}
    base = results.get("torch-eager", nan)["img_per_s"]
    ceiling = results.get("model-only", nan)["img_per_s"]
    print(f"\n{args.arch} at {args.image_size}px, {args.images} JPEGs 640x480, batch {args.batch_size}, "
          f"{args.threads} threads, {gflops:.2f} GFLOP/image, {args.provider} {args.precision}\n")
    print("| row | img/s | vs torch eager | vs model-only | GFLOP/s | peak RSS MB |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['img_per_s']:.1f} | {r['img_per_s'] / base:.2f}x | {r['img_per_s'] / ceiling:.0%} | "
              f"{r['gflop_per_s']:.0f} | {r['peak_rss_mb']:.0f} |")
    report = {"arch": args.arch, "image_size": args.image_size, "images": args.images, "batch_size": args.batch_size,
              "threads": args.threads, "provider": args.provider, "precision": args.precision,
              "gflop_per_image": gflops, "rows": results,
              "spml_label_vs_torch_eager": results.get("spml-label", nan)["img_per_s"] / base,
              "spml_label_vs_model_only": results.get("spml-label", nan)["img_per_s"] / ceiling}
    if "spml-label-ray" in results and "spml-label" in results:
        local, ray = results["spml-label"], results["spml-label-ray"]
        report["ray_vs_local"] = local["seconds"] / ray["seconds"]
        report["ray_vs_local_labeling"] = local["label_seconds"] / ray["label_seconds"]
        print(f"\nRay engine (2 workers) / local engine, throughput: {report['ray_vs_local']:.2f}x end to end, "
              f"{report['ray_vs_local_labeling']:.2f}x labeling (the chunks: Ray's own start excluded, its actors' included)")
    if "spml-label-int8" in results and "spml-label" in results:
        report["int8_vs_fp32_spml_label"] = results["spml-label-int8"]["img_per_s"] / results["spml-label"]["img_per_s"]
        print(f"\nint8 / fp32 (spml-label end to end): {report['int8_vs_fp32_spml_label']:.2f}x")
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out / 'bench.json'}")


def make_tiny_model(path: Path, num_classes: int, size: int = 16) -> Path:
    """A random-weights spml model of `num_classes` categories that costs next to nothing to run (global average
    pool, one linear layer, sigmoid), so that the memory check measures the labeler, not a network."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from spml.data.artifacts import ONNX_INPUT, ONNX_OUTPUT, ModelInfo

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.standard_normal((3, num_classes)).astype(np.float32), "w")
    # biases around -4: a few categories of a thousand above 0.5, as a real teacher's labels (the writer's time
    # and the file's size grow with the positives, which is not what this model is for)
    bias = numpy_helper.from_array((rng.standard_normal(num_classes) * 1.5 - 4).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", [ONNX_INPUT], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
         helper.make_node("Sigmoid", ["logits"], [ONNX_OUTPUT])],
        "tiny", [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["batch", num_classes])], [weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # what onnxruntime reads
    categories = [{"id": j + 1, "name": f"c{j}"} for j in range(num_classes)]
    info = ModelInfo(categories=categories, arch="tiny-linear", image_size=size, mean=[0.5] * 3, std=[0.25] * 3)
    helper.set_model_props(model, info.to_props())
    onnx.save(model, str(path))
    return path


def tiny_images(folder: Path, count: int, num_classes: int, kind: str = "coco", distinct: int = 8) -> Path:
    """`count` images, hard links of `distinct` 16x16 JPEGs, and a file listing them as `kind`: an unlabeled COCO
    file (coco), a single-positive one (coco-sp: one observed label per image, the file a user labels), or an image
    list with one observed label per image (jsonl: id and labels; csv: file_name,labels)."""
    from PIL import Image

    suffix = {"coco": ".json", "coco-sp": ".sp.json", "jsonl": ".jsonl", "csv": ".csv"}[kind]
    ann = folder / f"tiny_{count}x{num_classes}{suffix}"
    if ann.exists():
        return ann
    images_dir = folder / "tiny_images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(distinct):
        if not (images_dir / f"src_{k}.jpg").exists():
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(images_dir / f"src_{k}.jpg")
    names = []
    for n in range(count):
        name = f"{n:07d}.jpg"
        if not (images_dir / name).exists():
            os.link(images_dir / f"src_{n % distinct}.jpg", images_dir / name)
        names.append(name)
    label = [int(c) for c in rng.integers(0, num_classes, count)]  # category column of each image's one positive
    with open(ann, "w") as f:
        if kind == "jsonl":
            f.writelines(json.dumps({"file_name": f"tiny_images/{name}", "id": n + 1, "labels": [f"c{label[n]}"]}) + "\n"
                         for n, name in enumerate(names))
        elif kind == "csv":
            f.write("file_name,labels\n")
            f.writelines(f"tiny_images/{name},c{label[n]}\n" for n, name in enumerate(names))
        else:
            images = [{"id": n + 1, "file_name": name, "width": 16, "height": 16} for n, name in enumerate(names)]
            anns = [] if kind == "coco" else [{"id": n + 1, "image_id": n + 1, "category_id": label[n] + 1,
                                               "iscrowd": 0} for n in range(count)]
            categories = [{"id": j + 1, "name": f"c{j}"} for j in range(num_classes)]
            json.dump({"info": {"images_dir": "tiny_images"}, "images": images, "annotations": anns,
                       "categories": categories}, f)
    return ann


MEMORY_INPUTS = ("coco", "coco-sp", "jsonl", "csv")


def memory_check(args, out):
    """Peak RSS of spml-label on N and 10N tiny images x L categories, for each input kind: it must not grow with
    N x L (the scores of 200k x 1,000 alone are 800 MB of float32, a dense observed-labels matrix 200 MB). A last
    run, 10N COCO images x 10 categories, separates what grows with N alone from what grows with N x L."""
    counts = sorted(int(v) for v in args.memory_images.split(","))
    small, large = counts[0], counts[-1]
    kinds = [k.strip() for k in args.memory_inputs.split(",") if k.strip()]
    args.image_size = 16
    rss, report = {}, {}
    runs = [(kind, n, args.memory_categories) for kind in kinds for n in (small, large)] + [("coco", large, 10)]
    for kind, n, categories in runs:
        onnx = make_tiny_model(out / f"tiny_{categories}.onnx", categories)
        ann = tiny_images(out / "data", n, categories, kind)
        row = "load-input" if args.memory_load_only else "spml-label-ray" if args.memory_engine == "ray" else "spml-label"
        r = run_row(row, args, ann, onnx, onnx, n, out)
        if args.memory_load_only:
            r["peak_rss_mb"] = r["input_peak_rss_mb"]
        rss[f"{kind} {n}x{categories}"] = r["peak_rss_mb"]
        print(f"  {kind}: {n} images x {categories} categories: peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"{n / r['seconds']:.0f} img/s end to end", file=sys.stderr)
        (out / "memory.json").write_text(json.dumps({"peak_rss_mb": rss}, indent=2))  # so far: a long run stopped keeps it
    print(f"\n| input | peak RSS MB at {small} x {args.memory_categories} | at {large} x {args.memory_categories} | ratio "
          f"(target <= 1.2x) |\n|---|---|---|---|")
    for kind in kinds:
        a, b = rss[f"{kind} {small}x{args.memory_categories}"], rss[f"{kind} {large}x{args.memory_categories}"]
        report[kind] = b / a
        print(f"| {kind} | {a:.0f} | {b:.0f} | {b / a:.2f}x |")
    c = rss[f"coco {large}x10"]
    print(f"\ncoco at {large} x 10 categories: {c:.0f} MB (x {args.memory_categories} / x 10: "
          f"{rss.get(f'coco {large}x{args.memory_categories}', float('nan')) / c:.2f}x)")
    (out / "memory.json").write_text(json.dumps({"peak_rss_mb": rss, "ratio_images": report}, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()
