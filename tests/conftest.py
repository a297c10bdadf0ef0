"""Shared fixtures: a tiny generated dataset and a teacher trained on it for one epoch (built once per session)."""

from __future__ import annotations

import os

import pytest


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


os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
