"""The writers against hand-written expected files: which positives, their scores and sources, failed images left
out, memmapped scores, paths, atomic folders."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from spml.data.coco import dataset_from_dict
from spml.data.formats import LabelRows, output_path, parse_formats, write_csv, write_fiftyone, write_parquet
from spml.errors import SpmlError


@pytest.fixture
def labels(tmp_path):
    raw = {"images": [{"id": i, "file_name": f"img/{i}.jpg"} for i in (30, 10, 20, 40)],
           "categories": [{"id": 5, "name": "dog"}, {"id": 9, "name": "traffic light"}, {"id": 2, "name": "cat"}],
           "annotations": [{"image_id": 10, "category_id": 2}]}  # observed: image 10 is a cat
    dataset = dataset_from_dict(raw, None, tmp_path)
    scores = np.array([[0.9, 0.1, 0.7],
                       [0.2, 0.3, 0.1],   # cat kept although 0.1 < tau
                       [0.6, 0.95, 0.0],
                       [np.nan, np.nan, np.nan]], dtype=np.float32)  # failed: left out
    path = tmp_path / "scores.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=scores.shape)
    mm[:] = scores
    mm.flush()
    return LabelRows.from_scores(dataset, np.memmap(path, dtype=np.float32, mode="r", shape=scores.shape),
                                 0.5, True, failures={3: "cannot decode"}, info={"tau": 0.5})


def test_csv(labels, tmp_path):
    assert write_csv(tmp_path / "l.csv", labels) == 3
    assert (tmp_path / "l.csv").read_text() == "file_name,labels\nimg/30.jpg,dog cat\nimg/10.jpg,cat\nimg/20.jpg,dog traffic_light\n"
    write_csv(tmp_path / "s.csv", labels, with_scores=True)
    assert (tmp_path / "s.csv").read_text().splitlines()[1:] == ["img/30.jpg,dog cat,0.9 0.7", "img/10.jpg,cat,0.1",
                                                                "img/20.jpg,dog traffic_light,0.6 0.95"]


def test_per_category_tau_and_no_kept_observed(labels, tmp_path):
    labels.tau, labels.keep_observed = np.array([0.95, 0.2, 0.05], dtype=np.float32), False
    write_csv(tmp_path / "l.csv", labels)
    assert (tmp_path / "l.csv").read_text().splitlines()[1:] == ["img/30.jpg,cat", "img/10.jpg,traffic_light cat",
                                                                "img/20.jpg,traffic_light"]


def test_parquet(labels, tmp_path):
    assert write_parquet(tmp_path / "l.parquet", labels) == 3
    table = pq.read_table(tmp_path / "l.parquet")
    assert table.column("image_id").to_pylist() == [30, 10, 20]
    assert table.column("file_name").to_pylist() == ["img/30.jpg", "img/10.jpg", "img/20.jpg"]
    assert table.column("category_ids").to_pylist() == [[5, 2], [2], [5, 9]]
    np.testing.assert_allclose(np.concatenate(table.column("scores").to_pylist()), [0.9, 0.7, 0.1, 0.6, 0.95], rtol=1e-6)
    assert table.column("sources").to_pylist() == [["pseudo", "pseudo"], ["observed"], ["pseudo", "pseudo"]]
    meta = json.loads(table.schema.metadata[b"spml"])
    assert [c["id"] for c in meta["categories"]] == [5, 9, 2] and meta["info"] == {"tau": 0.5}


def test_parquet_in_several_row_groups(labels, tmp_path, monkeypatch):
    monkeypatch.setattr("spml.data.formats.BLOCK", 2)
    write_parquet(tmp_path / "l.parquet", labels)
    f = pq.ParquetFile(tmp_path / "l.parquet")
    assert f.metadata.num_row_groups == 2
    assert f.read().column("category_ids").to_pylist() == [[5, 2], [2], [5, 9]]


def test_fiftyone_files(labels, tmp_path):
    assert write_fiftyone(tmp_path / "l.fiftyone", labels) == 3
    got = json.loads((tmp_path / "l.fiftyone" / "labels.json").read_text())
    img = str(tmp_path / "img")
    assert got == {"classes": ["dog", "traffic light", "cat"], "labels": {
        f"{img}/30.jpg": [{"label": 0, "confidence": 0.9, "attributes": {"source": "pseudo"}},
                          {"label": 2, "confidence": 0.7, "attributes": {"source": "pseudo"}}],
        f"{img}/10.jpg": [{"label": 2, "confidence": 0.1, "attributes": {"source": "observed"}}],
        f"{img}/20.jpg": [{"label": 0, "confidence": 0.6, "attributes": {"source": "pseudo"}},
                          {"label": 1, "confidence": 0.95, "attributes": {"source": "pseudo"}}]}}
    # written again over the old folder: replaced whole, no temp folder left
    write_fiftyone(tmp_path / "l.fiftyone", labels)
    assert sorted(p.name for p in tmp_path.iterdir() if "fiftyone" in p.name) == ["l.fiftyone"]


def test_a_labels_file_converts_as_it_is(tmp_path):
    raw = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
           "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}],
           "annotations": [{"image_id": 1, "category_id": 2, "score": 0.8, "source": "pseudo"},
                           {"image_id": 2, "category_id": 1, "score": 0.4, "source": "observed"}]}
    write_csv(tmp_path / "l.csv", LabelRows.from_labels(dataset_from_dict(raw, None, tmp_path)), with_scores=True)
    assert (tmp_path / "l.csv").read_text() == "file_name,labels,scores\na.jpg,y,0.8\nb.jpg,x,0.4\n"



def test_convert_new_and_old_spellings_write_the_same_file(tmp_path):
    """`convert LABELS --format csv --out OUT`, and the old `convert LABELS OUT --to csv` with one line of
    deprecation per retired spelling; both against the hand-written file."""
    from click.testing import CliRunner

    from spml.data.cli import main as data_cli

    raw = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
           "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}],
           "annotations": [{"image_id": 1, "category_id": 2, "score": 0.8, "source": "pseudo"}]}
    (tmp_path / "l.json").write_text(json.dumps(raw))
    expected = "file_name,labels,scores\na.jpg,y,0.8\nb.jpg,,\n"
    runner = CliRunner()
    new = runner.invoke(data_cli, ["convert", str(tmp_path / "l.json"), "--format", "csv", "--out",
                                   str(tmp_path / "new.csv"), "--csv-scores"])
    assert new.exit_code == 0 and "deprecated" not in new.stderr, new.output
    old = runner.invoke(data_cli, ["convert", str(tmp_path / "l.json"), str(tmp_path / "old.csv"), "--to", "csv",
                                   "--csv-scores"])
    assert old.exit_code == 0, old.output
    assert (tmp_path / "new.csv").read_text() == (tmp_path / "old.csv").read_text() == expected
    assert old.stderr.splitlines() == [
        "deprecated: --to will be removed in the next release; use --format",
        f"deprecated: the positional OUT will be removed in the next release; use --out {tmp_path / 'old.csv'}"]
    missing = runner.invoke(data_cli, ["convert", str(tmp_path / "l.json"), "--format", "csv"])
    assert missing.exit_code == 2 and "Missing option '--out'" in missing.output

def test_paths_and_format_names(tmp_path):
    assert output_path("d/labels.json", "csv", 0.5, False).as_posix() == "d/labels.csv"
    assert output_path("d/labels.json", "fiftyone", 0.55, True).as_posix() == "d/labels.tau0.55.fiftyone"
    assert output_path("d/labels.json", "coco", 0.55, True).as_posix() == "d/labels.tau0.55.json"
    assert output_path("labels.json", "coco", 0.5, False).as_posix() == "labels.json"
    assert parse_formats("coco, CSV,csv") == ["coco", "csv"]
    with pytest.raises(SpmlError, match="coco,fiftyone,csv,parquet"):
        parse_formats("coco,yolo")
