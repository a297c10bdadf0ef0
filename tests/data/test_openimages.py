"""spml-data from-openimages: Open Images' human-verified image-level labels -> COCO with observed negatives, read
back by spml.data as three-state labels."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from spml.data.cli import main as data_cli
from spml.data.coco import load_coco

LABELS = """ImageID,Source,LabelName,Confidence
000a1,verification,/m/dog,1
000a1,verification,/m/cat,0
000b2,crowdsource-verification,/m/cat,1
000b2,verification,/m/car,0
000b2,verification,/m/dog,0
000c3,verification,/m/car,1
000c3,verification,/m/car,0
000d4,verification,/m/dog,1
"""
CLASSES = "LabelName,DisplayName\n/m/car,Car\n/m/zebra,Zebra\n/m/cat,Cat\n/m/dog,Dog\n"


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("000a1", "000b2", "000c3"):  # 000d4 is not there
        (tmp_path / "images" / f"{name}.jpg").write_bytes(b"jpeg")
    (tmp_path / "labels.csv").write_text(LABELS)
    (tmp_path / "classes.csv").write_text(CLASSES)
    return tmp_path


def run(args):
    return CliRunner().invoke(data_cli, ["from-openimages", *map(str, args)])


def test_converts_to_positives_and_negatives(folder):
    out = folder / "verified.json"
    result = run([folder / "labels.csv", "--images", folder / "images", "--classes", folder / "classes.csv",
                  "--out", out])
    assert result.exit_code == 0, result.output
    assert "3 images, 3 categories, 2 verified positives, 4 verified negatives" in result.output
    assert "1 images not in" in result.output and "1 pairs answered both ways" in result.output
    raw = json.loads(out.read_text())
    # the class file's order, only the classes the labels use; names from it
    assert [(c["id"], c["name"], c["label_name"]) for c in raw["categories"]] == \
        [(1, "Car", "/m/car"), (2, "Cat", "/m/cat"), (3, "Dog", "/m/dog")]
    assert [(im["file_name"], im["neg_category_ids"]) for im in raw["images"]] == \
        [("000a1.jpg", [2]), ("000b2.jpg", [1, 3]), ("000c3.jpg", [1])]  # 000c3's car: the later row, absent
    assert all(a["source"] == "verified" for a in raw["annotations"])
    ds = load_coco(out)
    F, T = False, True
    np.testing.assert_array_equal(ds.positives, [[F, F, T], [F, T, F], [F, F, F]])
    np.testing.assert_array_equal(ds.negatives, [[F, T, F], [T, F, T], [T, F, F]])
    np.testing.assert_array_equal(ds.verified, ds.positives)
    assert ds.images_dir == (folder / "images").resolve()


def test_without_classes_the_label_names_are_the_names(folder):
    out = folder / "v.json"
    assert run([folder / "labels.csv", "--images", folder / "images", "--out", out]).exit_code == 0
    assert [c["name"] for c in json.loads(out.read_text())["categories"]] == ["/m/car", "/m/cat", "/m/dog"]


@pytest.mark.parametrize("text, message", [
    ("ImageID,LabelName,Confidence\na,/m/dog,1\n", "expected the header ImageID,Source,LabelName,Confidence"),
    ("ImageID,Source,LabelName,Confidence\n000a1,v,/m/dog\n", "labels.csv:2: expected 4 fields"),
    ("ImageID,Source,LabelName,Confidence\n000a1,v,/m/dog,1\n000a1,v,/m/cat,0.7\n",
     "labels.csv:3: Confidence '0.7' is neither 1"),
    ("ImageID,Source,LabelName,Confidence\n../x,v,/m/dog,1\n", "labels.csv:2: ImageID '../x' is not a file name"),
    ("ImageID,Source,LabelName,Confidence\n000a1,v,,1\n", "labels.csv:2: empty LabelName"),
    ("ImageID,Source,LabelName,Confidence\n", "no labels"),
    ("ImageID,Source,LabelName,Confidence\n000a1,v,/m/owl,1\n", "LabelName /m/owl is not in"),
])
def test_malformed_input_is_one_line_and_writes_nothing(folder, text, message):
    (folder / "labels.csv").write_text(text)
    out = folder / "v.json"
    result = run([folder / "labels.csv", "--images", folder / "images", "--classes", folder / "classes.csv",
                  "--out", out])
    assert result.exit_code != 0 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_no_image_found_is_an_error(folder, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run([folder / "labels.csv", "--images", tmp_path / "empty", "--out", folder / "v.json"])
    assert result.exit_code != 0 and "none of the 4 images" in result.output
