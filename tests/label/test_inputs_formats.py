"""spml-label on a plain folder and on image lists; several output formats from one pass, each matching labels.json;
spml-data convert; resuming; the labeler importing neither torch nor the formats' libraries."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image
from pycocotools.coco import COCO

from spml.data.cli import main as data_cli
from spml.label.cli import main as label_cli
from spml.label.labeler import PseudoLabeler


@pytest.fixture(autouse=True)
def _fixed_time(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def label(*args):
    return CliRunner().invoke(label_cli, [str(a) for a in args])


def by_file(labels_json):
    """file_name -> {category name: (score, source)} from a COCO labels file."""
    raw = json.loads(labels_json.read_text())
    names = {c["id"]: c["name"] for c in raw["categories"]}
    files = {im["id"]: im["file_name"] for im in raw["images"]}
    out = {f: {} for f in files.values()}
    for a in raw["annotations"]:
        out[files[a["image_id"]]][names[a["category_id"]]] = (a["score"], a["source"])
    return out


@pytest.fixture
def photos(tiny_data, tmp_path):
    """The tiny dataset's train images as a plain folder, with a note and a corrupt image mixed in."""
    root = tmp_path / "photos"
    shutil.copytree(tiny_data["sp"].parent / "images" / "train", root / "train")
    (root / "README.txt").write_text("holiday photos")
    (root / "train" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_a_folder_is_labeled_into_a_coco_file_a_student_trains_on(tiny_data, tiny_onnx, photos, tmp_path):
    out = tmp_path / "labels.json"
    result = label("--model", tiny_onnx, "--images", photos, "--tau", "0.3", "--out", out)
    assert result.exit_code == 0, result.output
    raw = json.loads(out.read_text())
    COCO(str(out))
    names = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg") if p.name != "broken.jpg")
    assert [im["file_name"] for im in raw["images"]] == names  # sorted walk, note skipped, broken one failed
    assert [im["id"] for im in raw["images"]] == list(range(1, len(names) + 1))
    for im in raw["images"]:
        with Image.open(photos / im["file_name"]) as img:
            assert (im["width"], im["height"]) == img.size
    failures = (tmp_path / "labels.failures.jsonl").read_text().splitlines()
    assert len(failures) == 1 and "broken.jpg" in failures[0]
    assert raw["annotations"] and {a["source"] for a in raw["annotations"]} == {"pseudo"}
    # the same images labeled through their COCO file: the same scores (the COCO file's observed labels aside)
    ref = tmp_path / "ref.json"
    assert label("--model", tiny_onnx, "--ann", tiny_data["sp"], "--tau", "0.3", "--no-keep-observed", "--out", ref).exit_code == 0
    got, want = by_file(out), by_file(ref)
    scores = lambda c: {k: v[0] for k, v in c.items()}  # noqa: E731 - the sources differ: no observed labels here
    want = {f.split("/", 2)[2]: scores(c) for f, c in want.items()}  # sp.json holds the train split of the folder
    got = {f.split("/", 1)[1]: scores(c) for f, c in got.items()}
    assert len(want) >= 30 and {f: got[f] for f in want} == want

    from spml.train.trainer import TrainConfig, train

    student = train(TrainConfig(ann=str(out), loss="bce", arch="resnet18", image_size=32, epochs=1, batch_size=16,
                                pretrained=False, out=str(tmp_path / "student.pt"), progress=False), log=lambda s: None)
    assert student.exists()


def test_image_lists_label_like_the_coco_file(tiny_data, tiny_onnx, tmp_path):
    sp = json.loads(tiny_data["sp"].read_text())
    root = tiny_data["sp"].parent
    names = {c["id"]: c["name"] for c in sp["categories"]}
    observed = {a["image_id"]: names[a["category_id"]] for a in sp["annotations"]}
    lists = {
        "l.txt": "".join(f"{root / im['file_name']}\n" for im in sp["images"]),  # absolute paths
        "l.jsonl": "".join(json.dumps({"file_name": im["file_name"], "id": im["id"], "labels": [observed[im["id"]]]})
                           + "\n" for im in sp["images"]),
        "l.csv": "file_name,id,labels\n" + "".join(f"{im['file_name']},{im['id']},{observed[im['id']].replace(' ', '_')}\n"
                                               for im in sp["images"]),
    }
    ref = tmp_path / "ref.json"
    assert label("--model", tiny_onnx, "--ann", tiny_data["sp"], "--tau", "0.5", "--out", ref).exit_code == 0
    want = by_file(ref)
    assert label("--model", tiny_onnx, "--ann", tiny_data["sp"], "--tau", "0.5", "--no-keep-observed", "--out", ref).exit_code == 0
    plain = {f: {k: v[0] for k, v in c.items()} for f, c in by_file(ref).items()}
    for name, text in lists.items():
        (tmp_path / name).write_text(text)
        out = tmp_path / f"{name}.labels.json"
        args = ["--images", root] if name != "l.txt" else []
        result = label("--model", tiny_onnx, "--ann", tmp_path / name, *args, "--tau", "0.5", "--out", out)
        assert result.exit_code == 0, result.output
        got = by_file(out)
        if name == "l.txt":  # no observed labels in a plain list: the teacher's positives only
            assert {"images/train/" + f: {k: v[0] for k, v in c.items()} for f, c in got.items()} == plain
        else:
            assert got == want, name


def test_every_format_in_one_pass_matches_labels_json(tiny_data, tiny_onnx, tmp_path, monkeypatch):
    calls = []
    real = PseudoLabeler.scores
    monkeypatch.setattr(PseudoLabeler, "scores", lambda self, *a, **kw: (calls.append(1), real(self, *a, **kw))[1])
    out = tmp_path / "labels.json"
    result = label("--model", tiny_onnx, "--ann", tiny_data["sp"], "--tau", "0.4", "--tau", "0.6",
                   "--format", "coco,fiftyone,csv,parquet", "--csv-scores", "--out", out)
    assert result.exit_code == 0, result.output
    assert len(calls) == 1  # the model ran once for two τ and four formats
    for t in ("0.4", "0.6"):
        want = by_file(tmp_path / f"labels.tau{t}.json")
        root = json.loads((tmp_path / f"labels.tau{t}.json").read_text())["info"]["images_dir"]
        with open(tmp_path / f"labels.tau{t}.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["file_name"] for r in rows] == list(want)
        for r in rows:
            expect = want[r["file_name"]]
            assert r["labels"].split() == [n.replace(" ", "_") for n in expect]
            np.testing.assert_allclose([float(s) for s in r["scores"].split()], [v[0] for v in expect.values()], atol=1e-5)
        table = pq.read_table(tmp_path / f"labels.tau{t}.parquet").to_pylist()
        cats = {c["id"]: c["name"] for c in json.loads((tmp_path / f"labels.tau{t}.json").read_text())["categories"]}
        assert {r["file_name"]: {cats[c]: s for c, s in zip(r["category_ids"], r["sources"])} for r in table} \
            == {f: {k: v[1] for k, v in c.items()} for f, c in want.items()}
        fo = json.loads((tmp_path / f"labels.tau{t}.fiftyone" / "labels.json").read_text())
        got = {p[len(root) + 1:]: {fo["classes"][x["label"]]: (x["confidence"], x["attributes"]["source"]) for x in v}
               for p, v in fo["labels"].items()}
        assert got.keys() == want.keys()
        for f in want:
            assert got[f].keys() == want[f].keys()
            for k in want[f]:
                assert got[f][k][1] == want[f][k][1] and abs(got[f][k][0] - want[f][k][0]) < 1e-5
    # the converter writes the same files from labels.json
    runner = CliRunner()
    for to, name in (("csv", "c.csv"), ("parquet", "c.parquet"), ("fiftyone", "c.fiftyone")):
        r = runner.invoke(data_cli, ["convert", str(tmp_path / "labels.tau0.4.json"), "--to", to, str(tmp_path / name)])
        assert r.exit_code == 0, r.output
    with open(tmp_path / "c.csv") as f:
        assert [(r["file_name"], r["labels"]) for r in csv.DictReader(f)] \
            == [(r["file_name"], r["labels"]) for r in csv.DictReader(open(tmp_path / "labels.tau0.4.csv"))]
    a, b = pq.read_table(tmp_path / "c.parquet"), pq.read_table(tmp_path / "labels.tau0.4.parquet")
    for col in ("image_id", "file_name", "category_ids", "sources"):
        assert a.column(col).to_pylist() == b.column(col).to_pylist()
    conv = json.loads((tmp_path / "c.fiftyone" / "labels.json").read_text())
    direct = json.loads((tmp_path / "labels.tau0.4.fiftyone" / "labels.json").read_text())
    assert {k: [x["label"] for x in v] for k, v in conv["labels"].items()} \
        == {k: [x["label"] for x in v] for k, v in direct["labels"].items()}


def test_a_killed_run_resumes_to_the_same_files_in_every_format(tiny_data, tiny_onnx, tmp_path, interrupt):
    common = ["--model", tiny_onnx, "--ann", tiny_data["sp"], "--tau", "0.5", "--batch-size", "4", "--chunk-size", "8",
              "--format", "coco,csv,parquet,fiftyone"]
    assert label(*common, "--out", tmp_path / "whole" / "labels.json").exit_code == 0
    restore = interrupt(PseudoLabeler, "scores", 3)  # on the third chunk
    out = tmp_path / "run" / "labels.json"
    assert label(*common, "--out", out).exit_code != 0
    assert not any(p.suffix in (".csv", ".parquet", ".fiftyone") for p in out.parent.iterdir())
    restore()
    result = label(*common, "--out", out)
    assert result.exit_code == 0 and "resuming: 2 of" in result.output
    for name in ("labels.json", "labels.csv", "labels.parquet", "labels.fiftyone/labels.json"):
        assert (out.parent / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert sorted(p.name for p in out.parent.iterdir()) == ["labels.csv", "labels.fiftyone", "labels.json", "labels.parquet"]


@pytest.mark.parametrize("args, message", [
    (["--format", "coco,yolo"], "expected one or more of coco,fiftyone,csv,parquet"),
    (["--format", "coco,csv", "--out-name", "labels.csv"], "would both write"),
])
def test_bad_formats_are_one_line_errors(tiny_onnx, tmp_path, args, message):
    out = tmp_path / "labels.json"
    if "--out-name" in args:
        out, args = tmp_path / args[-1], args[:2]
    result = label("--model", tiny_onnx, "--images", tmp_path, "--tau", "0.5", *args, "--out", out)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_no_images_in_the_folder_is_one_line_error(tiny_onnx, tmp_path):
    (tmp_path / "empty").mkdir()
    result = label("--model", tiny_onnx, "--images", tmp_path / "empty", "--tau", "0.5", "--out", tmp_path / "l.json")
    assert result.exit_code == 1 and "no image files" in result.output


def test_the_labeler_needs_neither_torch_nor_fiftyone_nor_pyarrow_unless_asked(tiny_onnx, photos, tmp_path):
    code = (
        "import sys\n"
        "for m in ('torch', 'torchvision', 'fiftyone', 'pyarrow'): sys.modules[m] = None\n"  # import -> ImportError
        "from spml.label.cli import main\n"
        f"main(['--model', {str(tiny_onnx)!r}, '--images', {str(photos)!r}, '--tau', '0.5', '--format', "
        f"'coco,fiftyone,csv', '--out', {str(tmp_path / 'l.json')!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "l.csv").exists() and (tmp_path / "l.fiftyone" / "labels.json").exists()
    code = code.replace("coco,fiftyone,csv", "parquet")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1 and "pip install 'spml[parquet]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_folder_that_changed_is_not_resumed_from_the_old_chunks(tiny_onnx, photos, tmp_path, interrupt):
    common = ["--model", tiny_onnx, "--images", photos, "--tau", "0.5", "--batch-size", "4", "--chunk-size", "8"]
    restore = interrupt(PseudoLabeler, "scores", 2)  # on the second chunk
    out = tmp_path / "labels.json"
    assert label(*common, "--out", out).exit_code != 0
    restore()
    # as many images, other names: only the listing tells the two jobs apart
    (photos / "train" / "000008.jpg").rename(photos / "train" / "000000.jpg")
    result = label(*common, "--out", out)
    assert result.exit_code == 0 and "starting afresh" in result.output, result.output
    assert label(*common, "--out", tmp_path / "fresh.json").exit_code == 0
    assert out.read_bytes() == (tmp_path / "fresh.json").read_bytes().replace(b"fresh.json", b"labels.json")
