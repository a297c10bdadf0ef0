"""Fixtures shared by the test modules: a tiny generated dataset and a teacher trained on it for one epoch (built once
per session), a COCO file with odd fields and its dense reference, and fiftyone with a database of its own."""

from __future__ import annotations

import os

# One thread unless told otherwise, set before numpy or torch is imported (they read it then), and inherited by the
# subprocesses. The models here are toys at 32 px: a second intra-op thread costs more than it gives, and under load it
# costs twice (make test-fast: 99 s of CPU with one thread, 190 s with two; 191 s vs 345 s on a shared 2-core machine).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


# the fixtures that start a service: every test that asks for one carries its marker (make test-fast leaves them out)
MARKER_OF_FIXTURE = {"fo": "fiftyone", "ray_session": "ray"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, marker in MARKER_OF_FIXTURE.items():
            if fixture in item.fixturenames:
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # nothing in the tests touches the user's cache folder
    monkeypatch.setenv("SPML_CACHE", str(tmp_path_factory.getbasetemp() / "spml-cache"))


@pytest.fixture
def interrupt(monkeypatch):
    """interrupt(owner, name, call): the call-th call of owner.name raises KeyboardInterrupt, as Ctrl-C would land
    there (an epoch of the trainer, a chunk of the labeler); the function it returns puts the real one back."""

    def arm(owner, name: str, call: int):
        real, calls = getattr(owner, name), []

        def interrupted(*args, **kwargs):
            calls.append(1)
            if len(calls) == call:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, interrupted)
        return lambda: monkeypatch.setattr(owner, name, real)

    return arm


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The built-in generator at toy size: instances_{train,val,test}.json and a single-positive train file."""
    from spml.data.coco import load_coco
    from spml.data.demo import DemoConfig, make_demo
    from spml.data.protocol import single_positive
    from spml.files import write_json

    root = tmp_path_factory.mktemp("tiny")
    paths = make_demo(root, DemoConfig(num_train=40, num_test=16, seed=3))
    coco, _ = single_positive(load_coco(paths["train"]), seed=0)
    paths["sp"] = root / "sp.json"
    write_json(paths["sp"], coco)
    return paths


@pytest.fixture(scope="session")
def tiny_teacher(tiny_data, tmp_path_factory):
    """A resnet18 teacher at 32px trained for one epoch on `tiny_data`'s single positives."""
    from spml.train.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    train(TrainConfig(ann=str(tiny_data["sp"]), val_ann=str(tiny_data["val"]), arch="resnet18", image_size=32,
                      epochs=1, batch_size=16, pretrained=False, out=str(out), progress=False,
                      keep_last=True), log=lambda s: None)
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tiny_teacher):
    from spml.export.onnx_export import export_onnx

    out, _ = export_onnx(tiny_teacher, tiny_teacher.with_suffix(".onnx"))
    return out


ODD_CATEGORIES = [{"id": 90, "name": "toaster"}, {"id": 1, "name": "person", "supercategory": "human"},
                  {"id": 44, "name": "bottle ünïcode"}]


def _odd_coco() -> dict:
    """Keys in several orders, unicode and escaped names, nested and float fields, images with no annotation, an
    image with several annotations of one category (scores: the largest is kept), crowd annotations."""
    images = [
        {"license": 3, "file_name": "a/0.jpg", "coco_url": "http://x/0.jpg", "height": 480, "width": 640,
         "date_captured": "2013-11-14 16:28:13", "id": 397133},
        {"id": 7, "file_name": "日本/写真 1.jpg", "width": 1, "height": 2, "extra": {"nested": [1, 2.5, None, True]}},
        {"file_name": "emoji 😀.png", "id": 12345678901},
        {"id": 8, "file_name": "lone \ud800 surrogate.jpg", "weight": 0.1, "tiny": 1e-7, "big": 2 ** 70},
        {"id": 9, "file_name": "no annotations.jpg", "flag": False, "empty": {}, "list": []},
    ]
    annotations = [
        {"id": 1, "image_id": 397133, "category_id": 44, "bbox": [0, 0, 1, 1], "iscrowd": 0, "score": 0.25},
        {"id": 2, "image_id": 397133, "category_id": 44, "iscrowd": 1, "score": 0.75, "source": "pseudo"},
        {"id": 3, "image_id": 397133, "category_id": 90, "segmentation": {"counts": "abc", "size": [2, 2]}},
        {"id": 4, "image_id": 7, "category_id": 1, "source": "observed", "score": "high"},
        {"image_id": 12345678901, "category_id": 1},
        {"id": 6, "image_id": 8, "category_id": 90, "score": -3},
    ]
    return {"annotations": annotations, "info": {"year": 2017, "images_dir": "."}, "images": images,
            "licenses": [{"id": 3, "name": "CC"}], "categories": ODD_CATEGORIES, "odd_top_level": [1, {"a": None}]}


def _dense_reference(raw: dict):
    """positives, scores and observed of a plain json.load, by hand, as the loader had them as dense matrices."""
    row = {im["id"]: n for n, im in enumerate(raw["images"])}
    col = {c["id"]: j for j, c in enumerate(raw["categories"])}
    shape = (len(raw["images"]), len(raw["categories"]))
    positives, observed, scores = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, np.float32)
    for a in raw["annotations"]:
        n, j = row[a["image_id"]], col[a["category_id"]]
        positives[n, j] = True
        observed[n, j] |= a.get("source", "observed") in ("observed", "verified")  # a person's label, not "pseudo"
        s = a.get("score", 1.0)
        scores[n, j] = max(scores[n, j], float(s) if isinstance(s, (int, float)) else 1.0)
    return positives, scores, observed


@pytest.fixture
def odd_coco() -> dict:
    """A fresh copy per test of `_odd_coco()`'s file contents (tests change it)."""
    return _odd_coco()


@pytest.fixture
def dense_reference():
    """The function raw COCO dict -> (positives, scores, observed) dense matrices, by hand."""
    return _dense_reference


@pytest.fixture(scope="module")
def fo(tmp_path_factory):
    """fiftyone, imported with a database of the test module's own (its MongoDB data in a temporary folder)."""
    mp = pytest.MonkeyPatch()
    # a database of the test's own, and no usage reporting: set before fiftyone reads its config at import
    mp.setenv("FIFTYONE_DATABASE_DIR", str(tmp_path_factory.mktemp("fiftyone-db")))
    mp.setenv("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone

    yield fiftyone
    mp.undo()
