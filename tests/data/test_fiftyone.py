"""The FiftyOne output loaded by the real fiftyone package (which starts its own MongoDB, from fiftyone-db): every
sample has the labels, confidences and sources of labels.json, and its image where it was."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from spml.data.cli import main as data_cli
from spml.label.cli import main as label_cli


def expected(labels_json: Path) -> dict:
    """absolute image path -> {category name: (score, source)} from a COCO labels file."""
    raw = json.loads(labels_json.read_text())
    root = Path(raw["info"]["images_dir"])
    names = {c["id"]: c["name"] for c in raw["categories"]}
    files = {im["id"]: str(root / im["file_name"]) for im in raw["images"]}
    out = {f: {} for f in files.values()}
    for a in raw["annotations"]:
        out[files[a["image_id"]]][names[a["category_id"]]] = (a["score"], a["source"])
    return out


def loaded(fo, folder: Path) -> dict:
    ds = fo.Dataset.from_dir(str(folder), fo.types.FiftyOneImageClassificationDataset, label_field="spml")
    try:
        assert ds.get_field("spml").document_type is fo.Classifications  # multi-label, not one Classification
        return {s.filepath: {c.label: (c.confidence, c.source) for c in s.spml.classifications} for s in ds}
    finally:
        ds.delete()


def test_fiftyone_loads_the_labels_with_their_confidences_and_sources(fo, tiny_data, tiny_onnx, tmp_path):
    out = tmp_path / "labels.json"
    result = CliRunner().invoke(label_cli, ["--model", str(tiny_onnx), "--ann", str(tiny_data["sp"]), "--tau", "0.5",
                                            "--format", "coco,fiftyone", "--out", str(out)])
    assert result.exit_code == 0, result.output
    want = expected(out)
    assert any(v[1] == "observed" for c in want.values() for v in c.values())
    assert any(v[1] == "pseudo" for c in want.values() for v in c.values())
    got = loaded(fo, tmp_path / "labels.fiftyone")
    assert all(Path(p).is_file() for p in got)
    assert not list((tmp_path / "labels.fiftyone").rglob("*.jpg"))  # images used where they are, never copied
    same(got, want)
    # and through the converter, from labels.json
    r = CliRunner().invoke(data_cli, ["convert", str(out), "--format", "fiftyone", "--out", str(tmp_path / "conv")])
    assert r.exit_code == 0, r.output
    same(loaded(fo, tmp_path / "conv"), want)


def same(got: dict, want: dict):
    assert got.keys() == want.keys()  # every image, by its own path
    for path, cats in want.items():
        assert got[path].keys() == cats.keys(), path
        for name, (score, source) in cats.items():
            assert got[path][name][1] == source
            assert got[path][name][0] == pytest.approx(score, abs=1e-5)
