"""spml-eval writes its report with --out (the old --json still works, with one line of deprecation); the
report's numbers against hand-counted ones."""

import json

import pytest
from click.testing import CliRunner

from spml.eval.cli import main as eval_cli


@pytest.fixture
def files(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}]
    categories = [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}]
    truth = {"images": images, "categories": categories,  # a: x; b: x and y
             "annotations": [{"id": 1, "image_id": 1, "category_id": 1}, {"id": 2, "image_id": 2, "category_id": 1},
                             {"id": 3, "image_id": 2, "category_id": 2}]}
    labels = {"images": images, "categories": categories,  # a: x (right); b: y (right, x missed)
              "annotations": [{"id": 1, "image_id": 1, "category_id": 1}, {"id": 2, "image_id": 2, "category_id": 2}]}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    return tmp_path


def test_out_and_the_old_json_write_the_same_report(files):
    runner = CliRunner()
    new = runner.invoke(eval_cli, [str(files / "labels.json"), "--ann", str(files / "truth.json"),
                                   "--out", str(files / "new.json")])
    assert new.exit_code == 0 and "deprecated" not in new.stderr, new.output
    old = runner.invoke(eval_cli, [str(files / "labels.json"), "--ann", str(files / "truth.json"),
                                   "--json", str(files / "old.json")])
    assert old.exit_code == 0, old.output
    assert old.stderr.splitlines() == ["deprecated: --json will be removed in the next release; use --out"]
    report = json.loads((files / "new.json").read_text())
    assert report == json.loads((files / "old.json").read_text())
    # 2 positives given, both true; 3 true positives, 2 found
    assert report["precision"] == pytest.approx(1.0) and report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(0.8) and report["positives_per_image"] == pytest.approx(1.0)
