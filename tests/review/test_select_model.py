"""spml-review select --model: the teacher scores the observed labels' images itself, and chooses exactly what
select chooses from the labels file `spml-label MODEL --soft` writes for the same images; what a person said
(observed positives, verified positives and negatives) is never asked."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

TAU = 0.5


@pytest.fixture(scope="module")
def observed(tiny_data, tmp_path_factory):
    """tiny_data's single positives, as a merge would leave them: a person's yes on a few pairs (verified) and no
    on a few others (neg_category_ids)."""
    raw = json.loads(tiny_data["sp"].read_text())
    cats = [c["id"] for c in raw["categories"]]
    positive = {(a["image_id"], a["category_id"]) for a in raw["annotations"]}
    next_id = max(a["id"] for a in raw["annotations"]) + 1
    for k, im in enumerate(raw["images"][:6]):
        absent = [c for c in cats if (im["id"], c) not in positive]
        im["neg_category_ids"] = absent[:2]
        raw["annotations"].append({"id": next_id + k, "image_id": im["id"], "category_id": absent[2], "iscrowd": 0,
                                   "area": 1.0, "bbox": [0, 0, 1, 1], "source": "verified"})
    for a in raw["annotations"]:
        a.setdefault("source", "observed")
    raw.setdefault("info", {})["images_dir"] = str(tiny_data["train"].parent.resolve())
    path = tmp_path_factory.mktemp("observed") / "sp_answers.json"
    path.write_text(json.dumps(raw))
    known = {(a["image_id"], a["category_id"]) for a in raw["annotations"]}
    known |= {(im["id"], c) for im in raw["images"] for c in im.get("neg_category_ids", [])}
    return {"path": path, "known": known, "pairs": len(raw["images"]) * len(cats)}


def run(main, *args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def rows(folder):
    with open(folder / "questions.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("strategy,unit,budget", [("uncertainty", "pair", 25), ("random", "pair", 25),
                                                  ("uncertainty", "image", 40), ("weighted", "pair", 1000)])
def test_select_with_model_equals_select_on_spml_labels_soft_file(observed, tiny_onnx, tmp_path, strategy, unit,
                                                                  budget):
    from spml.label.cli import main as spml_label
    from spml.review.cli import main as spml_review

    labels = tmp_path / "labels.json"
    run(spml_label, tiny_onnx, "--ann", observed["path"], "--tau", TAU, "--soft", "--out", labels)
    common = ["--budget", budget, "--strategy", strategy, "--unit", unit, "--seed", 4]
    run(spml_review, "select", labels, "--out", tmp_path / "from_file", *common)
    run(spml_review, "select", observed["path"], "--model", tiny_onnx, "--tau", TAU, "--out", tmp_path / "scored",
        *common)

    by_file, scored = rows(tmp_path / "from_file"), rows(tmp_path / "scored")
    assert scored == by_file
    unknown = observed["pairs"] - len(observed["known"])
    # whole images are taken while the next one fits: the budget may be left short
    assert len(scored) == min(budget, unknown) if unit == "pair" else budget - 10 < len(scored) <= budget
    for name in ("label-studio.json", "label-studio.xml"):
        assert (tmp_path / "scored" / name).read_text() == (tmp_path / "from_file" / name).read_text()
    asked = {(int(r["image_id"]), int(r["category_id"])) for r in scored}
    assert not asked & observed["known"]
    # the scores are the teacher's: onnxruntime on the labels file's images, as spml-label wrote them
    p = {im["id"]: im["spml_scores"] for im in json.loads(labels.read_text())["images"]}
    cats = [c["id"] for c in json.loads(labels.read_text())["categories"]]
    assert all(np.isclose(float(r["score"]), p[int(r["image_id"])][cats.index(int(r["category_id"]))], atol=1e-5)
               for r in scored)
    record = json.loads((tmp_path / "scored" / "selection.json").read_text())
    assert record["labels"] == str(observed["path"].resolve()) and record["model"] == str(tiny_onnx.resolve())
    listed = [sorted(p.name for p in (tmp_path / name).iterdir()) for name in ("scored", "from_file")]
    assert listed[0] == listed[1]  # the scratch labels file is gone


def test_select_with_model_refuses_a_labels_file_as_the_observed_labels(observed, tiny_onnx, tmp_path):
    from spml.label.cli import main as spml_label
    from spml.review.cli import main as spml_review

    labels = tmp_path / "labels.json"
    run(spml_label, tiny_onnx, "--ann", observed["path"], "--tau", TAU, "--soft", "--out", labels)
    result = CliRunner().invoke(spml_review, ["select", str(labels), "--model", str(tiny_onnx), "--tau", "0.5",
                                              "--budget", "5", "--out", str(tmp_path / "q")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"Error: {labels}: has the teacher's pseudo labels")
    assert not (tmp_path / "q" / "questions.csv").exists()


@pytest.mark.parametrize("args,message", [
    (["--tau", "0.5"], "--tau goes with --model"),
    (["--model", "teacher.onnx"], "--model needs --tau"),
])
def test_tau_and_model_go_together(observed, tmp_path, args, message):
    from spml.review.cli import main as spml_review

    result = CliRunner().invoke(spml_review, ["select", str(observed["path"]), "--budget", "5",
                                              "--out", str(tmp_path / "q"), *args])
    assert result.exit_code == 2 and message in result.output
