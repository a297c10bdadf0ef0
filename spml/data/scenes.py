"""The second built-in dataset, of another character than the shapes (`spml-data demo --dataset scenes`): 24
categories of textured stuff (brick, grass, water, wood grain, fur, ...) drawn as irregular regions filled with
procedural textures (value noise, stripes, bricks, waves, speckle, grain, weaves) that still show at 32 px.

How it differs from the shapes: what tells categories apart is texture more than outline, and several share a
colour family (greens, greys, browns, whites); co-occurrence is group-wise, not pairwise: each image is one of 6
scene types (garden, beach, street, winter, room, forest), and its 1-6 objects are drawn from that scene's
long-tailed category distribution, with an out-of-context object now and then; objects occlude each other (one
hidden under 70% is dropped), and the lighting and colours vary per image. Same layout and writer as the shapes
(`spml.data.demo.write_dataset`), deterministic by seed, no download.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from spml.data.demo import cached_dataset, hsv_to_rgb, write_dataset

# (COCO-style gappy id, name, texture, colour a (h, s, v), colour b (h, s, v), elongation, texture angle in degrees
# or None for any); colour families overlap on purpose, so the texture has to decide
CATEGORIES = [
    (2, "grass", "blades", (100, 0.7, 0.35), (85, 0.6, 0.75), 1.0, None),
    (3, "sand", "speckle", (38, 0.35, 0.8), (30, 0.5, 0.55), 1.0, None),
    (5, "water", "waves", (205, 0.75, 0.45), (195, 0.35, 0.9), 1.0, 0),
    (6, "brick", "bricks", (12, 0.7, 0.6), (30, 0.1, 0.8), 1.0, 0),
    (8, "leaves", "blobs", (110, 0.8, 0.3), (70, 0.75, 0.7), 1.0, None),
    (9, "stone", "coarse", (30, 0.08, 0.35), (30, 0.05, 0.75), 1.0, None),
    (11, "wood", "grain", (28, 0.65, 0.4), (32, 0.55, 0.7), 1.0, 0),
    (14, "cloud", "soft", (210, 0.12, 0.75), (0, 0.0, 1.0), 1.6, None),
    (15, "snow", "speckle", (205, 0.12, 0.85), (0, 0.0, 1.0), 1.0, None),
    (17, "fur", "strokes", (25, 0.5, 0.3), (35, 0.35, 0.75), 1.0, None),
    (20, "tiles", "tiles", (200, 0.1, 0.45), (190, 0.2, 0.95), 1.0, 0),
    (21, "fence", "slats", (25, 0.3, 0.15), (35, 0.2, 0.85), 1.5, 90),
    (23, "bark", "bark", (25, 0.5, 0.12), (28, 0.4, 0.45), 1.0, None),
    (26, "carpet", "fine", (345, 0.65, 0.35), (355, 0.55, 0.6), 1.0, None),
    (28, "fabric", "plaid", (220, 0.6, 0.35), (0, 0.6, 0.75), 1.0, 0),
    (29, "moss", "fine", (75, 0.75, 0.35), (65, 0.65, 0.65), 1.0, None),
    (31, "ice", "cracks", (190, 0.3, 0.95), (200, 0.45, 0.6), 1.0, None),
    (34, "gravel", "pebbles", (30, 0.15, 0.25), (35, 0.2, 0.7), 1.0, None),
    (36, "rope", "stripes", (35, 0.45, 0.4), (40, 0.4, 0.85), 3.0, 45),
    (38, "grating", "grid", (210, 0.05, 0.15), (210, 0.08, 0.7), 1.0, 0),
    (41, "marble", "veins", (0, 0.0, 0.95), (220, 0.1, 0.45), 1.0, None),
    (43, "wicker", "weave", (35, 0.55, 0.45), (40, 0.45, 0.85), 1.0, 0),
    (44, "mud", "soft", (25, 0.55, 0.15), (28, 0.45, 0.4), 1.0, None),
    (47, "concrete", "fine", (40, 0.05, 0.45), (40, 0.05, 0.65), 1.0, None),
]
NAMES = [c[1] for c in CATEGORIES]

# scene type: (frequency, background top hsv, background bottom hsv, {category: weight}); a category belongs to
# one to three scenes, and the scenes' frequencies and weights make a long tail over all 24
SCENES = {
    "garden": (0.28, (200, 0.3, 0.9), (95, 0.35, 0.5),
               {"grass": 10, "leaves": 6, "fence": 4, "stone": 3, "wood": 2, "moss": 1.5, "bark": 1}),
    "beach": (0.22, (200, 0.35, 0.95), (40, 0.25, 0.8),
              {"sand": 10, "water": 8, "cloud": 4, "rope": 2, "wood": 2, "stone": 1}),
    "street": (0.18, (210, 0.05, 0.7), (0, 0.0, 0.4),
               {"brick": 8, "concrete": 6, "tiles": 3, "grating": 3, "fence": 2, "gravel": 1.5}),
    "room": (0.14, (35, 0.15, 0.85), (30, 0.3, 0.5),
             {"wood": 6, "fabric": 5, "carpet": 4, "tiles": 2, "fur": 2, "wicker": 1.5, "marble": 1}),
    "winter": (0.10, (210, 0.15, 0.95), (200, 0.05, 0.9),
               {"snow": 10, "stone": 4, "ice": 3, "cloud": 3, "bark": 2, "gravel": 1}),
    "forest": (0.08, (110, 0.4, 0.3), (30, 0.4, 0.25),
               {"bark": 8, "leaves": 7, "moss": 4, "mud": 3, "fur": 1.5, "grass": 1.5}),
}
OUT_OF_CONTEXT = 0.08  # an object drawn from all categories, not the scene's
NUM_OBJECTS_P = np.array([0.05, 0.15, 0.25, 0.27, 0.18, 0.10])  # 1..6 objects, of distinct categories
MIN_VISIBLE = 0.3  # an object hidden under more than 70% by later ones is dropped


@dataclass(frozen=True)
class ScenesConfig:
    num_train: int = 1600  # the "official train set": 80% becomes train, 20% the validation split
    num_test: int = 800
    min_side: int = 80  # image sizes vary between these
    max_side: int = 128
    seed: int = 0


def _noise(rng: np.random.Generator, h: int, w: int, *, cell_y: float, cell_x: float | None = None) -> np.ndarray:
    """Value noise in [0, 1]: a random grid with one value per cell, bicubically interpolated."""
    cell_x = cell_y if cell_x is None else cell_x
    gh, gw = int(h / cell_y) + 3, int(w / cell_x) + 3
    grid = Image.fromarray(rng.random((gh, gw), dtype=np.float32), "F")
    big = np.asarray(grid.resize((int(gw * cell_x), int(gh * cell_y)), Image.BICUBIC))
    return np.clip(big[int(cell_y): int(cell_y) + h, int(cell_x): int(cell_x) + w], 0, 1)


def _fractal(rng: np.random.Generator, h: int, w: int, *, cell: float, octaves: int = 3) -> np.ndarray:
    total = sum(0.5 ** k * _noise(rng, h, w, cell_y=max(1.0, cell / 2 ** k)) for k in range(octaves))
    return total / sum(0.5 ** k for k in range(octaves))


def _rotated_coords(h: int, w: int, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = math.radians(angle_deg)
    return xx * math.cos(a) + yy * math.sin(a), -xx * math.sin(a) + yy * math.cos(a)


def _texture(rng: np.random.Generator, kind: str, h: int, w: int, *, angle: float) -> np.ndarray:
    """A texture's mixing weight between the category's two colours, in [0, 1]; periods of 6-14 px, so that
    the pattern survives the 3-4x downscale to a 32-px input."""
    u, v = _rotated_coords(h, w, angle)
    s = rng.uniform(1.1, 1.5)  # the texture's scale varies a little per object
    if kind == "blades":  # grass: tall thin strokes
        return _noise(rng, h, w, cell_y=7 * s, cell_x=1.5 * s) ** 1.5
    if kind == "speckle":  # sand, snow: a gentle field with grains
        return np.clip(0.7 * _fractal(rng, h, w, cell=10 * s) + 0.5 * (rng.random((h, w)) < 0.15), 0, 1)
    if kind == "waves":
        warp = _fractal(rng, h, w, cell=12)
        return 0.5 + 0.5 * np.sin(2 * math.pi * (v + 6 * warp) / (8 * s))
    if kind == "bricks":
        bh, bw = 7 * s, 14 * s
        row = np.floor(v / bh)
        mortar = ((v % bh) < 1.6) | (((u + (row % 2) * bw / 2) % bw) < 1.6)
        shade = 0.15 * _noise(rng, h, w, cell_y=5)
        return np.where(mortar, 1.0, shade)
    if kind == "blobs":  # leaves: two-tone blobs
        return (_noise(rng, h, w, cell_y=4 * s) > 0.5).astype(np.float32) * 0.8 + 0.2 * _noise(rng, h, w, cell_y=2)
    if kind == "coarse":  # stone: large patches, strong contrast
        return _fractal(rng, h, w, cell=16 * s) ** 1.3
    if kind == "grain":  # wood: warped rings
        warp = _fractal(rng, h, w, cell=20)
        return (0.5 + 0.5 * np.sin(2 * math.pi * (v + 10 * warp) / (7 * s))) ** 2
    if kind == "soft":  # cloud, mud: smooth, low-frequency
        return _fractal(rng, h, w, cell=20 * s, octaves=2)
    if kind == "strokes":  # fur: short strokes along one direction
        return _noise(rng, h, w, cell_y=1.5 * s, cell_x=6 * s)
    if kind == "tiles":
        p = 11 * s
        grout = ((u % p) < 1.6) | ((v % p) < 1.6)
        return np.where(grout, 0.0, 0.8 + 0.2 * _noise(rng, h, w, cell_y=p))
    if kind == "slats":  # fence: boards with dark gaps
        return np.where((u % (11 * s)) < 3.5 * s, 0.0, 0.7 + 0.3 * _noise(rng, h, w, cell_y=8, cell_x=2))
    if kind == "bark":  # deep vertical furrows
        return _noise(rng, h, w, cell_y=12 * s, cell_x=2.5 * s) ** 0.7
    if kind == "fine":  # carpet, moss, concrete: fine grain, little structure
        return 0.6 * _noise(rng, h, w, cell_y=1.5) + 0.4 * _noise(rng, h, w, cell_y=6 * s)
    if kind == "plaid":
        p = 12 * s
        return 0.5 * ((u % p) < p / 3) + 0.5 * ((v % p) < p / 3)
    if kind == "cracks":  # ice: a light sheet with thin dark lines
        n = _fractal(rng, h, w, cell=12 * s)
        return np.clip(np.abs(n - 0.5) * 12, 0, 1) * 0.9
    if kind == "pebbles":
        n = _noise(rng, h, w, cell_y=4.5 * s)
        return np.clip((n - 0.35) * 3, 0, 1)
    if kind == "stripes":  # rope: tight diagonal twists
        return 0.5 + 0.5 * np.sin(2 * math.pi * u / (6 * s))
    if kind == "grid":  # grating: square holes
        p = 7 * s
        return (((u % p) < 0.45 * p) | ((v % p) < 0.45 * p)).astype(np.float32)
    if kind == "veins":  # marble: white with thin warped veins
        warp = _fractal(rng, h, w, cell=16)
        return np.abs(np.sin(2 * math.pi * (u + v + 25 * warp) / (30 * s))) ** 0.25
    if kind == "weave":
        p = 8 * s
        return 0.5 + 0.5 * np.sign(np.sin(2 * math.pi * (u + v) / p) * np.sin(2 * math.pi * (u - v) / p)) * 0.8
    raise ValueError(kind)  # pragma: no cover


def _jitter(rng: np.random.Generator, hsv: tuple[float, float, float]) -> np.ndarray:
    h, s, v = hsv
    return np.array(hsv_to_rgb(h + rng.normal(0, 8), min(1.0, s * rng.uniform(0.8, 1.2)),
                                min(1.0, v * rng.uniform(0.85, 1.15))), np.float32)


def _blob_mask(rng: np.random.Generator, w: int, h: int, *, cx: float, cy: float, r: float,
               elongation: float) -> Image.Image:
    """An irregular region: a polygon whose radius wobbles with a few random harmonics."""
    t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    radius = np.ones_like(t)
    for k in (2, 3, 5):
        radius += rng.uniform(0, 0.22 / k * 2) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    rx, ry = r * math.sqrt(elongation), r / math.sqrt(elongation)
    rot = rng.uniform(0, 2 * math.pi)
    x, y = rx * radius * np.cos(t), ry * radius * np.sin(t)
    pts = [(cx + a * math.cos(rot) - b * math.sin(rot), cy + a * math.sin(rot) + b * math.cos(rot)) for a, b in zip(x, y)]
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).polygon(pts, fill=255)
    return mask


def _sample_scene(rng: np.random.Generator) -> str:
    names = list(SCENES)
    return names[int(rng.choice(len(names), p=np.array([SCENES[n][0] for n in names])))]


def _sample_labels(rng: np.random.Generator, scene: str) -> list[int]:
    weights = SCENES[scene][3]
    inside = [NAMES.index(n) for n in weights]
    p = np.array(list(weights.values()), dtype=np.float64)
    p /= p.sum()
    k = int(rng.choice(len(NUM_OBJECTS_P), p=NUM_OBJECTS_P)) + 1
    labels: list[int] = []
    for _ in range(4 * k):  # distinct categories: a repeat would add an object and no positive
        j = int(rng.integers(len(CATEGORIES))) if rng.random() < OUT_OF_CONTEXT else inside[int(rng.choice(len(inside), p=p))]
        if j not in labels:
            labels.append(j)
        if len(labels) == k:
            break
    return labels


def _background(rng: np.random.Generator, scene: str, w: int, h: int) -> np.ndarray:
    top, bottom = _jitter(rng, SCENES[scene][1]), _jitter(rng, SCENES[scene][2])
    horizon = rng.uniform(0.3, 0.7)
    t = np.clip((np.linspace(0, 1, h, dtype=np.float32) - horizon) * 6 + 0.5, 0, 1)[:, None, None]
    arr = top * (1 - t) + bottom * t + (_fractal(rng, h, w, cell=24)[:, :, None] - 0.5) * 40
    return np.broadcast_to(arr, (h, w, 3)).astype(np.float32)


def draw_image(rng: np.random.Generator, config: ScenesConfig = ScenesConfig()) -> tuple[Image.Image, list[tuple[int, list[float]]]]:
    """One image and its objects as (category index, [x, y, w, h]); the scene type is not written."""
    w, h = (int(v) for v in rng.integers(config.min_side, config.max_side + 1, size=2))
    scene = _sample_scene(rng)
    canvas = _background(rng, scene, w, h).copy()
    owner = np.full((h, w), -1, np.int16)  # which object shows at each pixel, for the occlusion rule
    drawn = []
    for k, j in enumerate(_sample_labels(rng, scene)):
        _, _, kind, col_a, col_b, elongation, angle = CATEGORIES[j]
        r = rng.uniform(0.16, 0.27) * min(w, h)
        cx, cy = rng.uniform(r * 0.5, w - r * 0.5), rng.uniform(r * 0.5, h - r * 0.5)
        mask = _blob_mask(rng, w, h, cx=cx, cy=cy, r=r, elongation=elongation)
        box = mask.getbbox()
        if box is None:
            continue
        x0, y0, x1, y1 = box
        theta = rng.uniform(0, 180) if angle is None else angle + rng.normal(0, 8)
        t = _texture(rng, kind, y1 - y0, x1 - x0, angle=theta)[:, :, None]
        patch = _jitter(rng, col_a) * (1 - t) + _jitter(rng, col_b) * t
        alpha = np.asarray(mask.filter(ImageFilter.GaussianBlur(0.7)), np.float32)[y0:y1, x0:x1, None] / 255
        canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - alpha) + patch * alpha
        inside = np.asarray(mask)[y0:y1, x0:x1] > 127
        owner[y0:y1, x0:x1][inside] = k
        drawn.append((k, j, int(inside.sum()), [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]))
    visible = np.bincount(owner[owner >= 0].ravel(), minlength=len(drawn) + 8)
    objects = [(j, box) for k, j, area, box in drawn if area and visible[k] >= MIN_VISIBLE * area]
    # the lighting: a gradient from a random direction, a colour cast, sensor noise
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx / w - 0.5) * math.cos(a) + (yy / h - 0.5) * math.sin(a))[:, :, None]
    light = rng.uniform(0.75, 1.15) + rng.uniform(0, 0.5) * ramp
    canvas = canvas * light * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    canvas += rng.normal(0, rng.uniform(2, 7), size=(h, w, 3))
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB"), objects


def make_scenes(root: str | Path, config: ScenesConfig = ScenesConfig()) -> dict[str, Path]:
    """Write the scenes dataset under `root`, in the same layout as `spml.data.demo.make_demo`: images/{train,test}/
    *.jpg and instances_{train,val,test}.json (val a 20% hold-out of the train images). Returns the json paths."""
    return write_dataset(root, lambda rng: draw_image(rng, config), CATEGORIES, num_train=config.num_train,
                         num_test=config.num_test, rng=np.random.default_rng(config.seed),
                         name="spml built-in scenes dataset", supercategory="texture")


def builtin_scenes() -> dict[str, Path]:
    """The scenes dataset in spml's cache folder, created on first use (as `builtin_dataset` is for the shapes)."""
    return cached_dataset("scenes", make_scenes)
