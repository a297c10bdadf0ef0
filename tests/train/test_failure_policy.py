"""spml-train's failure policy, the labeler's: unreadable images (missing, outside the folder, an undecodable
header) are skipped up to --max-failed of a set, said on one line and listed in <out>.failures.jsonl; --strict
refuses any, and a set none of whose images can be read is always refused."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from spml.data.coco import load_coco
from spml.errors import SpmlError
from spml.train.cli import main as train_cli
from spml.train.data import failures_path
from spml.train.trainer import TrainConfig, build_data, resolve_config


def broken_copy(tiny_data, tmp_path, broken: dict[int, str]):
    """sp.json with the images of the given rows replaced: "missing", "outside" (../) or "garbage" (a file
    that is no image); returns (labels file, images folder, the broken rows' file names)."""
    dataset = load_coco(tiny_data["sp"])
    raw = json.loads(tiny_data["sp"].read_text())
    images = tmp_path / "images"
    images.mkdir()
    for row in range(len(dataset)):  # a copy of the images, to break
        copy = images / dataset.file_name(row)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dataset.images_dir / dataset.file_name(row), copy)
    names = {}
    for row, how in broken.items():
        im = next(im for im in raw["images"] if im["file_name"] == dataset.file_name(row))
        if how == "missing":
            (images / im["file_name"]).unlink()
        elif how == "outside":
            im["file_name"] = "../elsewhere/" + im["file_name"]
        elif how == "fifo":  # opening it would block for good: refused unopened, as the labeler does
            (images / im["file_name"]).unlink()
            os.mkfifo(images / im["file_name"])
        else:
            (images / im["file_name"]).unlink()
            (images / im["file_name"]).write_bytes(b"not an image at all")
        names[row] = im["file_name"]
    path = tmp_path / "sp.json"
    path.write_text(json.dumps(raw))
    return path, images, names


def data_of(ann, images, out, **kw):
    cfg = resolve_config(TrainConfig(ann=str(ann), images=str(images), arch="resnet18", image_size=32,
                                     pretrained=False, out=str(out), progress=False, **kw))
    lines = []
    return build_data(cfg, lines.append), lines


def test_unreadable_images_are_skipped_said_and_listed(tiny_data, tmp_path):
    ann, images, names = broken_copy(tiny_data, tmp_path, {3: "missing", 7: "outside", 11: "garbage"})
    total = len(load_coco(tiny_data["sp"]))
    data, lines = data_of(ann, images, tmp_path / "t.pt")
    kept = set(data.train_set.file_names)
    assert len(data.train_set) == total - 3 and not kept & set(names.values())
    said = [line for line in lines if "skipping" in line]
    assert len(said) == 1 and f"skipping 3 of {total} images" in said[0]
    listed = [json.loads(line) for line in failures_path(tmp_path / "t.pt").read_text().splitlines()]
    assert [(x["set"], x["file_name"]) for x in listed] == [("train", names[r]) for r in sorted(names)]
    reasons = [x["reason"] for x in listed]
    assert reasons[0].startswith("missing file:") and "escapes the images folder" in reasons[1]
    assert reasons[2].startswith("cannot decode")
    # a run without failures removes the stale list
    clean, _ = data_of(tiny_data["sp"], load_coco(tiny_data["sp"]).images_dir, tmp_path / "t.pt")
    assert len(clean.train_set) == total and not failures_path(tmp_path / "t.pt").exists()


def test_strict_and_max_failed_refuse(tiny_data, tmp_path):
    ann, images, names = broken_copy(tiny_data, tmp_path, {0: "missing", 1: "missing", 2: "missing"})
    total = len(load_coco(tiny_data["sp"]))
    with pytest.raises(SpmlError, match=f"3 of {total} images cannot be read \\(--strict"):
        data_of(ann, images, tmp_path / "a.pt", strict=True)
    with pytest.raises(SpmlError, match=f"3 of {total} images .* more than --max-failed 0.05"):
        data_of(ann, images, tmp_path / "b.pt", max_failed=0.05)  # 3 > 0.05 x 40
    data, _ = data_of(ann, images, tmp_path / "c.pt", max_failed=3 / total)  # exactly the share allowed
    assert len(data.train_set) == total - 3
    # refused runs still list what they found, so the user can fix it in one go
    assert len(failures_path(tmp_path / "a.pt").read_text().splitlines()) == 3


def test_a_folder_with_none_of_the_images_is_refused_whatever_max_failed(tiny_data, tmp_path):
    with pytest.raises(SpmlError, match="none of the .* images can be read"):
        data_of(tiny_data["sp"], tmp_path, tmp_path / "t.pt", max_failed=1.0)


def invoke(args):
    return CliRunner().invoke(train_cli, [str(a) for a in args])


def test_the_cli_options(tiny_data, tmp_path):
    ann, images, names = broken_copy(tiny_data, tmp_path, {5: "missing"})
    result = invoke(["--ann", ann, "--images", images, "--arch", "resnet18", "--image-size", "32",
                     "--no-pretrained", "--strict", "--out", tmp_path / "t.pt"])
    assert result.exit_code == 1 and "cannot be read (--strict" in result.output and names[5] in result.output
    assert "Traceback" not in result.output
    result = invoke(["--ann", ann, "--images", images, "--arch", "resnet18", "--image-size", "32",
                     "--no-pretrained", "--max-failed", "0", "--out", tmp_path / "t.pt"])
    assert result.exit_code == 1 and "more than --max-failed 0 " in result.output


def test_a_fifo_in_the_training_set_is_skipped_not_waited_on(tiny_data, tmp_path):
    ann, images, names = broken_copy(tiny_data, tmp_path, {5: "fifo"})
    data, lines = data_of(ann, images, tmp_path / "t.pt")
    assert names[5] not in set(data.train_set.file_names)
    listed = [json.loads(line) for line in failures_path(tmp_path / "t.pt").read_text().splitlines()]
    assert [entry["reason"] for entry in listed] == [f"not an image file (a FIFO): {images / names[5]}"]
