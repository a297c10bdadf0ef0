"""The labeler over the compact input side writes what a writer over plain json.load dicts and dense matrices
writes: the input's image records copied exactly (odd fields, unicode, key order), observed labels from the
sparse form, failed images left out; an image list gives the same labels as the equivalent COCO file."""

import json

import numpy as np
from PIL import Image

from spml.data.coco import load_coco
from spml.data.image_list import load_image_list
from spml.label.labeler import Scores
from spml.label.writers import write_labels


def reference_labels(raw: dict, values: np.ndarray, *, positives: np.ndarray, failed: set,
                     tau: float) -> tuple[list, list]:
    """images and annotations of labels.json from the json.load of the input and its dense positives, by hand."""
    cat_ids = [c["id"] for c in raw["categories"]]
    images, annotations = [], []
    for n, im in enumerate(raw["images"]):
        if n in failed:
            continue
        images.append(im)
        for j in range(len(cat_ids)):
            if values[n, j] > tau or positives[n, j]:
                annotations.append({"id": len(annotations) + 1, "image_id": im["id"], "category_id": cat_ids[j],
                                    "score": round(float(values[n, j]), 6), "iscrowd": 0,
                                    "source": "observed" if positives[n, j] else "pseudo"})
    return images, annotations


def test_labels_of_a_compact_coco_input_equal_the_plain_reference(tmp_path, odd_coco, dense_reference):
    ann = tmp_path / "odd.json"
    ann.write_text(json.dumps(odd_coco))
    raw = json.loads(ann.read_text())
    dataset = load_coco(ann)
    values = np.random.default_rng(1).random((len(dataset), dataset.num_classes)).astype(np.float32)
    values[2] = np.nan
    (tmp_path / "m.onnx").write_bytes(b"model")
    out = tmp_path / "labels.json"
    summary = write_labels(out, dataset, Scores(values, {2: "missing file"}), 0.6, model_path=tmp_path / "m.onnx",
                           model_sha256="sha")
    written = json.loads(out.read_text())
    images, annotations = reference_labels(raw, values, positives=dense_reference(raw)[0], failed={2}, tau=0.6)
    assert json.dumps(written["images"]) == json.dumps(images)  # same records, same key order
    assert written["annotations"] == annotations
    assert written["licenses"] == raw["licenses"] and written["categories"] == raw["categories"]
    assert summary["failed"] == 1 and summary["annotations"] == len(annotations)
    failures = [json.loads(line) for line in (tmp_path / "labels.failures.jsonl").read_text().splitlines()]
    assert failures == [{"image_id": raw["images"][2]["id"], "file_name": raw["images"][2]["file_name"],
                         "reason": "missing file"}]


def test_an_image_list_labels_like_the_equivalent_coco_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    cats = [{"id": 3, "name": "dog"}, {"id": 8, "name": "traffic light"}, {"id": 9, "name": "cat"}]
    names = ["ä/1.jpg", "b 2.png", "c.jpg", "d.jpg"]
    labels = [["dog"], [], ["traffic light", "dog", "dog"], ["cat"]]
    for k, name in enumerate(names):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (5 + k, 9)).save(tmp_path / name)
    with open(tmp_path / "list.jsonl", "w") as f:
        f.writelines(json.dumps({"file_name": n, "id": 20 + k, "labels": l}) + "\n"
                     for k, (n, l) in enumerate(zip(names, labels)))
    col = {c["name"]: c["id"] for c in cats}
    coco = {"images": [{"id": 20 + k, "file_name": n, "width": 5 + k, "height": 9} for k, n in enumerate(names)],
            "categories": cats, "annotations": [{"id": len(names) * k + i + 1, "image_id": 20 + k, "category_id": col[c]}
                                                for k, l in enumerate(labels) for i, c in enumerate(l)]}
    (tmp_path / "list.json").write_text(json.dumps(coco))
    values = np.random.default_rng(2).random((len(names), len(cats))).astype(np.float32)
    (tmp_path / "m.onnx").write_bytes(b"model")
    written = {}
    for source in ("list.jsonl", "list.json"):
        dataset = load_image_list(tmp_path / source, cats) if source.endswith(".jsonl") else load_coco(tmp_path / source)
        write_labels(tmp_path / f"{source}.labels.json", dataset, Scores(values), 0.7, model_path=tmp_path / "m.onnx",
                     model_sha256="sha")
        written[source] = json.loads((tmp_path / f"{source}.labels.json").read_text())
    jsonl, plain = written["list.jsonl"], written["list.json"]
    assert jsonl["images"] == plain["images"] == coco["images"]
    assert jsonl["annotations"] == plain["annotations"]
    assert [a["category_id"] for a in plain["annotations"] if a["source"] == "observed"] == [3, 3, 8, 9]
