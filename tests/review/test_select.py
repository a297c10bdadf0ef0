"""spml-review select: known pairs never asked, the budget kept, strategies ranking as their definitions say."""

from __future__ import annotations

import csv
import hashlib
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tests.review.conftest import CATEGORY_IDS, TAU


def questions(folder):
    with open(folder / "questions.csv", newline="") as f:
        return list(csv.DictReader(f))


def asked_matrix(world, rows):
    asked = np.zeros((world["n"], world["L"]), bool)
    for r in rows:
        k, j = world["image_ids"].index(int(r["image_id"])), CATEGORY_IDS.index(int(r["category_id"]))
        assert not asked[k, j], "a pair asked twice"
        asked[k, j] = True
    return asked


@pytest.mark.parametrize("strategy", ["random", "uncertainty", "weighted"])
@pytest.mark.parametrize("unit", ["pair", "image"])
def test_select_never_asks_known_pairs_and_asks_every_unknown_one_given_the_budget(world, cli, strategy, unit):
    out = world["tmp"] / "q"
    result = cli("select", world["labels"], "--budget", 10_000, "--out", out, "--strategy", strategy, "--unit", unit)
    assert result.exit_code == 0, result.output
    asked = asked_matrix(world, questions(out))
    assert not (asked & world["known"]).any()
    assert (asked == ~world["known"]).all()  # pseudo positives are the teacher's: they may be asked


@pytest.mark.parametrize("strategy", ["random", "uncertainty", "weighted"])
def test_the_budget_counts_answers_with_pair_units(world, cli, strategy):
    out = world["tmp"] / "q"
    assert cli("select", world["labels"], "--budget", 17, "--out", out, "--strategy", strategy).exit_code == 0
    assert len(questions(out)) == 17


@pytest.mark.parametrize("strategy", ["random", "uncertainty", "weighted"])
def test_image_units_ask_every_unknown_category_of_each_chosen_image_within_the_budget(world, cli, strategy):
    out = world["tmp"] / "q"
    assert cli("select", world["labels"], "--budget", 17, "--out", out, "--strategy", strategy, "--unit", "image").exit_code == 0
    asked = asked_matrix(world, questions(out))
    unknown = ~world["known"]
    chosen = asked.any(axis=1)
    assert 0 < asked.sum() <= 17
    assert (asked[chosen] == unknown[chosen]).all()
    # images are taken in order until the next one does not fit: here every image has 3 to 5 unknown pairs
    assert asked.sum() > 17 - unknown.sum(axis=1).max()


def test_uncertainty_asks_the_pairs_nearest_the_labeling_threshold_not_nearest_half(world, cli):
    out = world["tmp"] / "q"
    assert cli("select", world["labels"], "--budget", 8, "--out", out, "--strategy", "uncertainty").exit_code == 0
    distance = np.where(world["known"], np.inf, np.abs(world["p"] - TAU))
    expected = np.zeros_like(world["known"])
    expected.flat[np.argsort(distance, axis=None)[:8]] = True
    rows = questions(out)
    assert (asked_matrix(world, rows) == expected).all()
    # most uncertain first; and the scores here piled near 0.5 (EM's unobserved) are not what it asks
    d = [abs(float(r["score"]) - TAU) for r in rows]
    assert d == sorted(d)
    assert all(abs(float(r["score"]) - 0.5) > 0.1 for r in rows)


def test_uncertainty_by_image_ranks_images_by_their_pair_nearest_tau(world, cli):
    out = world["tmp"] / "q"
    assert cli("select", world["labels"], "--budget", 5, "--out", out, "--unit", "image").exit_code == 0
    distance = np.where(world["known"], np.inf, np.abs(world["p"] - TAU))
    best_image = world["image_ids"][int(np.argmin(distance.min(axis=1)))]
    assert {int(r["image_id"]) for r in questions(out)} == {best_image}


def test_random_is_uniform_and_differs_from_uncertainty(world, cli):
    picks = []
    for seed in range(40):
        out = world["tmp"] / f"r{seed}"
        assert cli("select", world["labels"], "--budget", 8, "--out", out, "--strategy", "random", "--seed", seed).exit_code == 0
        picks.append(asked_matrix(world, questions(out)))
    unc = world["tmp"] / "u"
    assert cli("select", world["labels"], "--budget", 8, "--out", unc, "--strategy", "uncertainty").exit_code == 0
    uncertain = asked_matrix(world, questions(unc))
    assert not any((p == uncertain).all() for p in picks)
    # each unknown pair is picked with chance 8 / (number of unknown pairs): 40 draws put the mean count there
    unknown = ~world["known"]
    counts = np.sum(picks, axis=0)
    assert counts[world["known"]].sum() == 0
    expected = 40 * 8 / unknown.sum()
    assert abs(counts[unknown].mean() - expected) < 1e-9  # exactly 8 a draw
    assert counts[unknown].max() <= 8 and (counts[unknown] > 0).mean() > 0.8
    # the same seed, the same questions
    again = world["tmp"] / "again"
    assert cli("select", world["labels"], "--budget", 8, "--out", again, "--strategy", "random", "--seed", 0).exit_code == 0
    assert questions(again) == questions(world["tmp"] / "r0")


def test_weighted_records_the_weights_it_sampled_with(world, cli):
    from spml.review.strategies import WEIGHT_FLOOR

    out = world["tmp"] / "q"
    assert cli("select", world["labels"], "--budget", 6, "--out", out, "--strategy", "weighted").exit_code == 0
    chosen = json.loads((out / "selection.json").read_text())["questions_chosen"]
    for q in chosen:
        # closeness to tau: 1 at tau, 0 at the far end of [0, 1] (here 0, as tau > 0.5)
        expected = max(1 - abs(q["score"] - TAU) / TAU, WEIGHT_FLOOR)
        assert q["weight"] == pytest.approx(expected, abs=1e-5)


def test_the_label_studio_files_and_the_selection_record(world, cli):
    out = world["tmp"] / "q"
    result = cli("select", world["labels"], "--budget", 6, "--out", out, "--strategy", "random", "--seed", 3,
                 "--image-url", "http://host/img/")
    assert result.exit_code == 0, result.output
    rows = questions(out)
    assert list(rows[0]) == ["image_id", "file_name", "category_id", "category", "score", "answer"]
    assert all(r["answer"] == "" for r in rows)
    tasks = json.loads((out / "label-studio.json").read_text())
    assert len(tasks) == len(rows) == 6
    for r, task in zip(rows, tasks):
        data = task["data"]
        assert data["image"] == "http://host/img/" + r["file_name"]
        assert (data["image_id"], data["category_id"], data["category"]) == (
            int(r["image_id"]), int(r["category_id"]), f"cat{r['category_id']}")
        prediction = task["predictions"][0]
        assert prediction["score"] == pytest.approx(float(r["score"]))
        assert prediction["result"][0]["value"]["choices"] == ["yes" if float(r["score"]) > TAU else "no"]
    config = ET.fromstring((out / "label-studio.xml").read_text())
    image = config.find("Image")
    choices = config.find("Choices")
    assert image.get("value") == "$image" and choices.get("toName") == image.get("name")
    assert [c.get("value") for c in choices.findall("Choice")] == ["yes", "no"]
    assert "$category" in [h.get("value") for h in config.findall("Header")]
    assert choices.get("name") == tasks[0]["predictions"][0]["result"][0]["from_name"]
    record = json.loads((out / "selection.json").read_text())
    assert (record["strategy"], record["unit"], record["budget"], record["seed"]) == ("random", "pair", 6, 3)
    assert record["labels_sha256"] == hashlib.sha256(world["labels"].read_bytes()).hexdigest()
    assert [(q["image_id"], q["category_id"]) for q in record["questions_chosen"]] == [
        (int(r["image_id"]), int(r["category_id"])) for r in rows]


def test_default_image_address_is_label_studio_local_files(world, cli, monkeypatch):
    out = world["tmp"] / "q"
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    assert cli("select", world["labels"], "--budget", 1, "--out", out).exit_code == 0
    task = json.loads((out / "label-studio.json").read_text())[0]
    images = world["labels"].parent.resolve()  # the labels file's images folder: here its own
    assert task["data"]["image"] == "/data/local-files/?d=" + str(images / task["data"]["file_name"]).lstrip("/")
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(images.parent))
    assert cli("select", world["labels"], "--budget", 1, "--out", out).exit_code == 0
    task = json.loads((out / "label-studio.json").read_text())[0]
    assert task["data"]["image"] == f"/data/local-files/?d={images.name}/{task['data']['file_name']}"


def test_a_labels_file_without_scores_is_refused_in_one_line_and_nothing_written(world, cli):
    raw = json.loads(world["observed"].read_text())
    raw["info"]["tau"] = TAU
    hard = world["tmp"] / "hard.json"
    hard.write_text(json.dumps(raw))
    out = world["tmp"] / "q"
    result = cli("select", hard, "--budget", 5, "--out", out)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "spml-label --soft" in result.output
    assert not out.exists()


def test_an_image_budget_below_every_image_is_refused(world, cli):
    out = world["tmp"] / "q"
    result = cli("select", world["labels"], "--budget", 1, "--out", out, "--unit", "image")
    assert result.exit_code == 1 and "--unit pair" in result.output and not out.exists()


def test_nothing_left_to_ask_is_an_error(world, cli, tmp_path):
    raw = json.loads(world["labels"].read_text())
    for im in raw["images"]:
        im["neg_category_ids"] = CATEGORY_IDS
    known = tmp_path / "known.json"
    known.write_text(json.dumps(raw))
    result = cli("select", known, "--budget", 5, "--out", tmp_path / "q")
    assert result.exit_code == 1 and "nothing to ask" in result.output


def test_the_image_heap_holds_only_what_can_still_be_chosen():
    from spml.review.select import ImageHeap, Question

    heap = ImageHeap(10)
    rng = np.random.default_rng(0)
    for k in range(2000):
        heap.offer(float(rng.random()), 0.0, 3, lambda: [Question(k, "x", j, 0.5) for j in range(3)])
        assert len(heap.heap) <= 4  # 10 answers at 3 a image: three to fill it, one that might still fit
    assert len(heap.chosen()) == 9


def test_the_cli_lists_the_strategies_it_implements():
    from spml.review.cli import STRATEGY_NAMES
    from spml.review.strategies import STRATEGIES

    assert STRATEGY_NAMES == tuple(STRATEGIES)


def test_observed_labels_left_out_of_the_labels_file_are_read_from_its_source(world, cli, tmp_path):
    from spml.data.coco import load_coco
    from spml.label.labeler import Scores
    from spml.label.writers import write_labels

    labels = tmp_path / "no_observed.json"
    write_labels(labels, load_coco(world["observed"]), Scores(world["p"].astype(np.float32)), TAU,
                 keep_observed=False, model_path=tmp_path / "t.onnx", model_sha256="0" * 64, soft=True)
    in_file = {(a["image_id"], a["category_id"]) for a in json.loads(labels.read_text())["annotations"]}
    observed = {(a["image_id"], a["category_id"]) for a in json.loads(world["observed"].read_text())["annotations"]}
    assert observed - in_file  # observed positives the teacher scored below tau: only the source file has them
    out = tmp_path / "q"
    assert cli("select", labels, "--budget", 10_000, "--out", out, "--strategy", "random").exit_code == 0
    assert (asked_matrix(world, questions(out)) == ~world["known"]).all()
