"""Seeded mutation fuzzing: hundreds of corrupted COCO files and JPEGs through load and label, and not one
uncaught exception (only spml's one-line errors, or an image counted as failed)."""

import copy
import json
import random

import numpy as np
import pytest
from PIL import Image

from spml.data.coco import load_coco
from spml.data.images import ImageError, load_image
from spml.errors import SpmlError
from spml.label.labeler import PseudoLabeler

JUNK = [None, True, -1, 0, 2**70, 1.5, float("nan"), "", "x", "../../etc/passwd", [], [1, 2], {}, {"id": 1}]


def mutate(obj, rng: random.Random, depth=0):
    """One random structural change somewhere in a JSON value."""
    if isinstance(obj, dict) and obj and rng.random() < 0.8:
        key = rng.choice(list(obj))
        action = rng.random()
        if action < 0.25:
            del obj[key]
        elif action < 0.5:
            obj[key] = copy.deepcopy(rng.choice(JUNK))
        else:
            obj[key] = mutate(obj[key], rng, depth + 1)
        return obj
    if isinstance(obj, list) and obj and rng.random() < 0.8:
        i = rng.randrange(len(obj))
        action = rng.random()
        if action < 0.2:
            obj.pop(i)
        elif action < 0.4:
            obj.append(copy.deepcopy(obj[i]))  # duplicates
        elif action < 0.55:
            obj[i] = copy.deepcopy(rng.choice(JUNK))
        else:
            obj[i] = mutate(obj[i], rng, depth + 1)
        return obj
    return copy.deepcopy(rng.choice(JUNK))


def corrupt_text(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 5)):
        i = rng.randrange(len(chars))
        chars[i] = rng.choice('{}[]":,0a\\\x00')
    return "".join(chars)[: rng.randint(1, len(chars))] if rng.random() < 0.3 else "".join(chars)


def test_corrupted_coco_files_give_spml_errors_only(tiny_data, tmp_path):
    source = json.loads(tiny_data["sp"].read_text())
    source["images"] = source["images"][:6]
    source["annotations"] = [a for a in source["annotations"] if a["image_id"] in {im["id"] for im in source["images"]}]
    rng = random.Random(0)
    outcomes = {"loaded": 0, "refused": 0}
    for k in range(300):
        if k % 3 == 0:
            text = corrupt_text(json.dumps(source), rng)
        else:
            data = copy.deepcopy(source)
            for _ in range(rng.randint(1, 4)):
                data = mutate(data, rng)
            text = json.dumps(data)
        path = tmp_path / f"f{k}.json"
        path.write_text(text)
        try:
            ds = load_coco(path)
            assert ds.positives.shape == (len(ds.images), len(ds.categories))
            outcomes["loaded"] += 1
        except SpmlError as e:
            assert "\n" not in str(e)
            outcomes["refused"] += 1
    assert outcomes["loaded"] > 10 and outcomes["refused"] > 100, outcomes


def corrupt_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:
        return bytes(b[: rng.integers(0, len(b))])  # truncated
    if kind == 1:
        for i in rng.integers(0, len(b), rng.integers(1, 50)):
            b[i] = rng.integers(0, 256)  # flipped bytes
        return bytes(b)
    if kind == 2:
        i = rng.integers(2, 200)
        return bytes(b[:i] + rng.integers(0, 256, 300, dtype=np.uint8).tobytes() + b[i + 300:])  # mangled header
    return bytes(b[: len(b) // 2] + b[len(b) // 2:][::-1])


@pytest.fixture(scope="module")
def corrupted_jpegs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzzjpg")
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    base.save(folder / "base.jpg", quality=90)
    data = (folder / "base.jpg").read_bytes()
    names = []
    for k in range(200):
        names.append(f"{k}.jpg")
        (folder / names[-1]).write_bytes(corrupt_bytes(data, rng))
    return folder, names


def test_corrupted_jpegs_decode_or_raise_image_error(corrupted_jpegs):
    folder, names = corrupted_jpegs
    decoded = 0
    for name in names:
        try:
            img = load_image(folder / name, 32)
            assert img.mode == "RGB"
            decoded += 1
        except ImageError:
            pass
    assert 0 < decoded < len(names)


def test_labeling_corrupted_jpegs_never_raises(corrupted_jpegs, tiny_data, tiny_onnx, tmp_path):
    folder, names = corrupted_jpegs
    cats = json.loads(tiny_data["sp"].read_text())["categories"]
    (tmp_path / "c.json").write_text(json.dumps({"images": [{"id": i + 1, "file_name": n} for i, n in enumerate(names)],
                                                  "categories": cats, "annotations": []}))
    dataset = load_coco(tmp_path / "c.json", folder)
    scores = PseudoLabeler(tiny_onnx, provider="cpu", batch_size=16).scores(dataset)
    ok = ~np.isnan(scores.values).any(axis=1)
    assert ok.sum() + len(scores.failures) == len(names)
    assert 0 < len(scores.failures) < len(names)
