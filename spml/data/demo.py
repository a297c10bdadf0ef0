"""The built-in dataset: procedurally drawn shapes on cluttered, noisy backgrounds, written as JPEG files and
COCO instances files (train / val / test, full labels, bboxes, gappy category ids). No download, no extra package.

What makes it a multi-label problem worth the name: a long-tailed category frequency, categories that co-occur
(a star usually comes with a crescent), 2-5 objects per image that occlude each other, colours that hint at the
category without deciding it, and clutter that is not a category.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from spml.files import write_json

# (COCO-style gappy id, name, typical hue in degrees); order = frequency rank (long tail)
CATEGORIES = [
    (1, "circle", 0), (3, "square", 210), (4, "triangle", 120), (7, "ring", 45), (9, "cross", 280),
    (12, "star", 60), (15, "crescent", 30), (18, "hexagon", 180), (22, "diamond", 330), (27, "bar", 150),
]
# when the key is drawn, the value comes along with this probability (co-occurrence)
COMPANIONS = {"star": ("crescent", 0.6), "cross": ("bar", 0.5), "hexagon": ("diamond", 0.5), "square": ("ring", 0.3)}
# The source task of the pretrained regime: other shapes, none of them a built-in category, so a backbone
# pretrained on it has seen images like these but never the categories spml is asked to learn.
SOURCE_CATEGORIES = [
    (1, "pentagon", 0), (2, "octagon", 36), (3, "ellipse", 72), (4, "arrow", 108), (5, "chevron", 144),
    (6, "trapezoid", 180), (7, "semicircle", 216), (8, "l-shape", 252), (9, "t-shape", 288), (10, "frame", 324),
]
# 1..5 objects, most images with several: the more positives an image has, the more of them a single positive
# leaves unobserved, which is the setting where the way a loss treats unobserved labels matters
NUM_OBJECTS_P = np.array([0.0, 0.1, 0.2, 0.35, 0.35])


@dataclass(frozen=True)
class DemoConfig:
    num_train: int = 1600  # the "official train set": 80% becomes train, 20% the validation split
    num_test: int = 800
    min_side: int = 80  # image sizes vary between these
    max_side: int = 128
    seed: int = 0
    source: bool = False  # the source task's categories (SOURCE_CATEGORIES), uniform, no companions


def hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    h = (h % 360) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    m = v - c
    return tuple(int(255 * (t + m)) for t in (r, g, b))


def _polygon(cx, cy, radii, rot):
    n = len(radii)
    return [(cx + r * math.cos(rot + 2 * math.pi * k / n), cy + r * math.sin(rot + 2 * math.pi * k / n))
            for k, r in enumerate(radii)]


def _draw_shape(mask: ImageDraw.ImageDraw, name: str, cx: float, cy: float, *, r: float, rot: float) -> None:
    if name == "circle":
        mask.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif name == "ring":
        mask.ellipse([cx - r, cy - r, cx + r, cy + r], outline=255, width=max(2, int(r * 0.3)))
    elif name == "crescent":
        mask.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        dx, dy = 0.55 * r * math.cos(rot), 0.55 * r * math.sin(rot)
        mask.ellipse([cx + dx - r, cy + dy - r, cx + dx + r, cy + dy + r], fill=0)
    elif name == "square":
        mask.polygon(_polygon(cx, cy, [r] * 4, rot), fill=255)
    elif name == "diamond":
        mask.polygon(_polygon(cx, cy, [r, 0.55 * r] * 2, rot), fill=255)
    elif name == "triangle":
        mask.polygon(_polygon(cx, cy, [r] * 3, rot), fill=255)
    elif name == "hexagon":
        mask.polygon(_polygon(cx, cy, [r] * 6, rot), fill=255)
    elif name == "star":
        mask.polygon(_polygon(cx, cy, [r, 0.45 * r] * 5, rot), fill=255)
    elif name == "cross":
        w = 0.32 * r
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
        c, s = math.cos(rot), math.sin(rot)
        mask.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=255)
    elif name == "bar":
        w = 0.25 * r
        pts = [(-r, -w), (r, -w), (r, w), (-r, w)]
        c, s = math.cos(rot), math.sin(rot)
        mask.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=255)
    elif name == "pentagon":
        mask.polygon(_polygon(cx, cy, [r] * 5, rot), fill=255)
    elif name == "octagon":
        mask.polygon(_polygon(cx, cy, [r] * 8, rot), fill=255)
    elif name == "ellipse":
        _rotated(mask, [(r * math.cos(t), 0.5 * r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 24)], cx, cy, rot=rot)
    elif name == "semicircle":
        _rotated(mask, [(r * math.cos(t), r * math.sin(t)) for t in np.linspace(0, math.pi, 16)], cx, cy, rot=rot)
    elif name == "arrow":
        pts = [(-r, -0.2 * r), (0.2 * r, -0.2 * r), (0.2 * r, -0.6 * r), (r, 0), (0.2 * r, 0.6 * r), (0.2 * r, 0.2 * r),
               (-r, 0.2 * r)]
        _rotated(mask, pts, cx, cy, rot=rot)
    elif name == "chevron":
        _rotated(mask, [(-r, -r), (-0.4 * r, -r), (r, 0), (-0.4 * r, r), (-r, r), (0.3 * r, 0)], cx, cy, rot=rot)
    elif name == "trapezoid":
        _rotated(mask, [(-r, 0.6 * r), (r, 0.6 * r), (0.45 * r, -0.6 * r), (-0.45 * r, -0.6 * r)], cx, cy, rot=rot)
    elif name == "l-shape":
        _rotated(mask, [(-r, -r), (-0.4 * r, -r), (-0.4 * r, 0.4 * r), (r, 0.4 * r), (r, r), (-r, r)], cx, cy, rot=rot)
    elif name == "t-shape":
        _rotated(mask, [(-r, -r), (r, -r), (r, -0.45 * r), (0.3 * r, -0.45 * r), (0.3 * r, r), (-0.3 * r, r),
                        (-0.3 * r, -0.45 * r), (-r, -0.45 * r)], cx, cy, rot=rot)
    elif name == "frame":
        mask.polygon(_polygon(cx, cy, [r] * 4, rot), outline=255, width=max(2, int(r * 0.3)))
    else:  # pragma: no cover
        raise ValueError(name)


def _rotated(mask: ImageDraw.ImageDraw, pts, cx: float, cy: float, *, rot: float) -> None:
    c, s = math.cos(rot), math.sin(rot)
    mask.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=255)


def _sample_labels(rng: np.random.Generator, source: bool = False) -> list[int]:
    if source:  # the source task: 1-3 objects of uniformly drawn source categories
        return [int(j) for j in rng.integers(0, len(SOURCE_CATEGORIES), size=int(rng.integers(1, 4)))]
    names = [c[1] for c in CATEGORIES]
    freq = 1.0 / np.arange(1, len(CATEGORIES) + 1) ** 1.1
    freq /= freq.sum()
    k = int(rng.choice(5, p=NUM_OBJECTS_P)) + 1
    objects: list[int] = []
    while len(objects) < k:
        j = int(rng.choice(len(CATEGORIES), p=freq))
        objects.append(j)
        comp = COMPANIONS.get(names[j])
        if comp and len(objects) < k + 1 and rng.random() < comp[1]:
            objects.append(names.index(comp[0]))
    return objects[:5]


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    c0 = np.array(hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0, 0.5), rng.uniform(0.2, 0.9)), np.float32)
    c1 = np.array(hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0, 0.5), rng.uniform(0.2, 0.9)), np.float32)
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 1), np.float32)
    if rng.random() < 0.5:
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None] * np.ones((1, w, 1), np.float32)
    arr = c0 * (1 - t) + c1 * t
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 5))):  # clutter that is not a category
        color = hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0, 1), rng.uniform(0.1, 1))
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:
            draw.line([x0, y0, x0 + rng.normal(0, w / 3), y0 + rng.normal(0, h / 3)], fill=color, width=int(rng.integers(1, 4)))
        else:
            s = rng.uniform(2, 6)
            draw.ellipse([x0 - s, y0 - s, x0 + s, y0 + s * rng.uniform(0.3, 1.5)], fill=color)
    return img


def draw_image(rng: np.random.Generator, config: DemoConfig = DemoConfig()) -> tuple[Image.Image, list[tuple[int, list[float]]]]:
    """One image and its objects as (category index, [x, y, w, h])."""
    w, h = (int(v) for v in rng.integers(config.min_side, config.max_side + 1, size=2))
    img = _background(rng, w, h)
    objects = []
    categories = SOURCE_CATEGORIES if config.source else CATEGORIES
    for j in _sample_labels(rng, config.source):
        name, hue = categories[j][1], categories[j][2]
        r = rng.uniform(0.15, 0.28) * min(w, h)
        cx, cy = rng.uniform(r * 0.6, w - r * 0.6), rng.uniform(r * 0.6, h - r * 0.6)
        mask = Image.new("L", (w, h), 0)
        _draw_shape(ImageDraw.Draw(mask), name, cx, cy, r=r, rot=rng.uniform(0, 2 * math.pi))
        box = mask.getbbox()
        if box is None:
            continue
        if rng.random() < 0.85:  # the category's hue, jittered; otherwise any colour
            color = hsv_to_rgb(hue + rng.normal(0, 12), rng.uniform(0.6, 1), rng.uniform(0.6, 1))
        else:
            color = hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.2, 1), rng.uniform(0.3, 1))
        img.paste(color, (0, 0), mask.filter(ImageFilter.GaussianBlur(0.6)))
        objects.append((j, [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(3, 10), size=(h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"), objects


def _coco(images: list[dict], annotations: list[dict], split: str, categories=CATEGORIES, *,
          name: str = "spml built-in dataset", supercategory: str = "shape") -> dict:
    return {
        "info": {"description": f"{name}, {split} split", "version": "1", "images_dir": "."},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c[0], "name": c[1], "supercategory": supercategory} for c in categories],
    }


def write_dataset(root: str | Path, draw, categories, *, num_train: int, num_test: int, rng: np.random.Generator,
                  name: str = "spml built-in dataset", supercategory: str = "shape") -> dict[str, Path]:
    """The writer every built-in dataset shares: `draw(rng)` makes one image and its objects as (category index,
    [x, y, w, h]); writes images/{train,test}/*.jpg and instances_{train,val,test}.json (val is a 20% hold-out of
    the train images, with full labels, for model choice), gappy image ids. Returns the json paths."""
    root = Path(root)
    records: dict[str, tuple[list, list]] = {}
    ann_id = 1
    for part, count, id0 in (("train", num_train, 1), ("test", num_test, 100001)):
        (root / "images" / part).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for k in range(count):
            img, objects = draw(rng)
            image_id = id0 + 7 * k  # gappy image ids too
            file_name = f"images/{part}/{image_id:06d}.jpg"
            img.save(root / file_name, quality=int(rng.integers(80, 96)))
            images.append({"id": image_id, "file_name": file_name, "width": img.width, "height": img.height})
            for j, box in objects:
                anns.append({"id": ann_id, "image_id": image_id, "category_id": categories[j][0], "bbox": box,
                             "area": box[2] * box[3], "iscrowd": 0})
                ann_id += 1
        records[part] = (images, anns)
    train_images, train_anns = records["train"]
    held_out = set(rng.permutation(len(train_images))[: len(train_images) // 5].tolist())
    val_ids = {im["id"] for k, im in enumerate(train_images) if k in held_out}
    splits = {
        "train": ([im for im in train_images if im["id"] not in val_ids], [a for a in train_anns if a["image_id"] not in val_ids]),
        "val": ([im for im in train_images if im["id"] in val_ids], [a for a in train_anns if a["image_id"] in val_ids]),
        "test": records["test"],
    }
    paths = {}
    for split, (images, anns) in splits.items():
        paths[split] = root / f"instances_{split}.json"
        write_json(paths[split], _coco(images, anns, split, categories, name=name, supercategory=supercategory))
    return paths


def make_demo(root: str | Path, config: DemoConfig = DemoConfig()) -> dict[str, Path]:
    """Write the built-in dataset under `root`: images/{train,test}/*.jpg and instances_{train,val,test}.json
    (val is a 20% hold-out of the train images, with full labels, for model choice). Returns the json paths."""
    categories = SOURCE_CATEGORIES if config.source else CATEGORIES
    return write_dataset(root, lambda rng: draw_image(rng, config), categories, num_train=config.num_train,
                         num_test=config.num_test, rng=np.random.default_rng(config.seed))


def builtin_dataset() -> dict[str, Path]:
    """The built-in dataset in spml's cache folder, created on first use."""
    return cached_dataset("demo", make_demo)


def cached_dataset(folder: str, make) -> dict[str, Path]:
    """The instances files of a generated dataset in spml's cache folder/`folder`, made by `make(root)` on first use."""
    from spml.files import cache_dir

    root = cache_dir() / folder
    paths = {s: root / f"instances_{s}.json" for s in ("train", "val", "test")}
    if not all(p.exists() for p in paths.values()):
        make(root)
    return paths


def builtin_single_positive(seed: int = 0) -> Path:
    """Single-positive labels of the built-in train split (cached), the default teacher training set."""
    from spml.data.coco import load_coco
    from spml.data.protocol import single_positive

    paths = builtin_dataset()
    out = paths["train"].with_name(f"instances_train_sp{seed}.json")
    if not out.exists():
        coco, _ = single_positive(load_coco(paths["train"]), seed)
        write_json(out, coco)
    return out
