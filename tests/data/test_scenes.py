"""The second built-in dataset (spml/data/scenes.py): it loads with pycocotools, it is deterministic, it has its
24 categories and several positives per image, and its co-occurrence is group-wise where the shapes' is pairwise,
measured on the written annotations."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from spml.data.demo import DemoConfig, make_demo
from spml.data.scenes import CATEGORIES, SCENES, ScenesConfig, make_scenes


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def _label_matrix(path: Path) -> tuple[np.ndarray, list[str]]:
    """Images x categories, 1 where the category has an annotation, from the file alone."""
    coco = json.loads(path.read_text())
    cats = sorted(c["id"] for c in coco["categories"])
    names = {c["id"]: c["name"] for c in coco["categories"]}
    rows = {im["id"]: k for k, im in enumerate(coco["images"])}
    y = np.zeros((len(rows), len(cats)), np.int8)
    for a in coco["annotations"]:
        y[rows[a["image_id"]], cats.index(a["category_id"])] = 1
    return y, [names[c] for c in cats]


def _partner_graph(y: np.ndarray, lift_min: float = 1.5, min_count: int = 5) -> np.ndarray:
    """Category pairs that occur together clearly more often than independence predicts (lift > lift_min, with
    enough images to tell)."""
    n = len(y)
    p = y.mean(0)
    both = y.T.astype(np.int64) @ y
    lift = both / np.maximum(np.outer(p, p) * n, 1e-9)
    graph = (lift > lift_min) & (both >= min_count)
    np.fill_diagonal(graph, False)
    return graph


def _clustering(graph: np.ndarray) -> float:
    """The share of a node's partner pairs that are partners themselves, averaged over nodes with two or more:
    high for groups (a scene's categories all go together), zero for disjoint pairs."""
    shares = []
    for i in range(len(graph)):
        partners = np.flatnonzero(graph[i])
        if len(partners) >= 2:
            shares.append(np.mean([graph[a, b] for a, b in itertools.combinations(partners, 2)]))
    return float(np.mean(shares)) if shares else 0.0


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    return root, make_scenes(root, ScenesConfig(num_train=400, num_test=20, seed=1))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return make_demo(root, DemoConfig(num_train=400, num_test=20, seed=1))


def test_loads_with_pycocotools_with_its_categories_and_boxes(scenes):
    root, paths = scenes
    train = COCO(str(paths["train"]))
    assert sorted(train.getCatIds()) == sorted(c[0] for c in CATEGORIES) and len(CATEGORIES) == 24
    assert len(train.getImgIds()) + len(COCO(str(paths["val"])).getImgIds()) == 400
    assert len(COCO(str(paths["test"])).getImgIds()) == 20
    for ann in train.loadAnns(train.getAnnIds()):
        image = train.loadImgs(ann["image_id"])[0]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"] and w * h > 0
    for image in train.loadImgs(train.getImgIds()[:5]):
        assert (root / image["file_name"]).stat().st_size > 0


def test_positives_per_image_and_a_long_tail(scenes):
    y, _ = _label_matrix(scenes[1]["train"])
    per_image = y.sum(1)
    assert per_image.min() >= 1  # the single-positive protocol needs one; the last object drawn always shows
    assert 2.5 <= per_image.mean() <= 4.0 and per_image.max() >= 5  # seed 0, 1280 images: 3.32 (the shapes: 3.15)
    freq = np.sort(y.mean(0))[::-1]
    assert (freq > 0).all()  # every category occurs
    assert freq[0] > 4 * freq[-1]  # a long tail (seed 0, 1280 images: 28% of the images to 5.2%)


def test_deterministic_by_seed(tmp_path):
    config = ScenesConfig(num_train=10, num_test=3, seed=5)
    make_scenes(tmp_path / "a", config)
    make_scenes(tmp_path / "b", config)
    make_scenes(tmp_path / "c", ScenesConfig(num_train=10, num_test=3, seed=6))
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b") != _tree_hash(tmp_path / "c")


def test_co_occurrence_is_group_wise_where_the_shapes_are_pairwise(scenes, shapes):
    y_scenes, names = _label_matrix(scenes[1]["train"])
    y_shapes, _ = _label_matrix(shapes["train"])
    g_scenes, g_shapes = _partner_graph(y_scenes), _partner_graph(y_shapes)
    # the shapes: a few companion pairs (star-crescent, cross-bar, ...), each category one partner at most;
    # the scenes: each category goes with a group, and the groups are cliques, so partners are partners' partners
    assert g_shapes.sum(1).mean() <= 1.0 and _clustering(g_shapes) <= 0.2
    assert g_scenes.sum(1).mean() >= 2.5 and _clustering(g_scenes) >= 0.4  # measured: 4.1, 0.68 (seed 1, 320 images)
    # and the measured groups are the generator's scenes: most measured partners share a scene
    scene_of = {n: {s for s, spec in SCENES.items() if n in spec[3]} for n in names}
    pairs = list(zip(*np.nonzero(np.triu(g_scenes))))
    assert np.mean([bool(scene_of[names[a]] & scene_of[names[b]]) for a, b in pairs]) >= 0.8


def test_cli_writes_scenes_and_the_default_stays_shapes(tmp_path):
    def data(*args):
        result = subprocess.run([sys.executable, "-m", "spml.data.cli", *map(str, args)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout

    data("demo", "--dataset", "scenes", "--out", tmp_path / "d", "--num-train", 10, "--num-test", 2, "--seed", 5)
    make_scenes(tmp_path / "ref", ScenesConfig(num_train=10, num_test=2, seed=5))
    assert _tree_hash(tmp_path / "d") == _tree_hash(tmp_path / "ref")
    out = data("single-positive", tmp_path / "d" / "instances_train.json", "--out", tmp_path / "d" / "sp.json")
    assert "one positive each" in out
    sp = COCO(str(tmp_path / "d" / "sp.json"))
    assert all(len(sp.getAnnIds(imgIds=[i])) == 1 for i in sp.getImgIds())

    data("demo", "--out", tmp_path / "s", "--num-train", 10, "--num-test", 2)
    assert {c["name"] for c in json.loads((tmp_path / "s" / "instances_test.json").read_text())["categories"]} == {
        "circle", "square", "triangle", "ring", "cross", "star", "crescent", "hexagon", "diamond", "bar"}


def test_an_unknown_dataset_is_a_usage_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "spml.data.cli", "demo", "--dataset", "cats", "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "cats" in result.stderr
