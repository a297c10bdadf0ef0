"""spml-review merge and simulate: every answer format, later answers winning, observed labels kept, bad answers
refused with nothing written, and the result readable by pycocotools and spml."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from tests.review.conftest import CATEGORY_IDS


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "file_name", "category_id", "category", "score", "answer"])
        for image_id, category_id, answer in rows:
            writer.writerow([image_id, "x.png", category_id, f"cat{category_id}", 0.5, answer])
    return path


def unknown_pairs(world, count):
    """`count` (image id, category id) pairs the observed file does not know, in a fixed order."""
    k, j = np.nonzero(~world["known"])
    return [(world["image_ids"][a], CATEGORY_IDS[b]) for a, b in zip(k[:count], j[:count])]


def merged_labels(path):
    """(positives, negatives) of a merged file as sets of (image id, category id), checked by pycocotools."""
    from pycocotools.coco import COCO

    raw = json.loads(path.read_text())
    coco = COCO(str(path))  # indexes it: ids unique, every annotation's image and category known
    positives = {(a["image_id"], a["category_id"]) for a in coco.loadAnns(coco.getAnnIds())}
    negatives = {(im["id"], c) for im in raw["images"] for c in im.get("neg_category_ids", [])}
    return positives, negatives, raw


def test_csv_answers_become_verified_positives_and_negatives_and_observed_labels_stay(world, cli):
    from spml.data.coco import load_coco

    pairs = unknown_pairs(world, 7)
    answers = ["yes", "No", "1", "0", "TRUE", "false", ""]
    result = cli("merge", world["observed"], write_csv(world["tmp"] / "a.csv", [(*p, a) for p, a in zip(pairs, answers)]),
                 "--out", world["tmp"] / "sp2.json")
    assert result.exit_code == 0, result.output
    positives, negatives, raw = merged_labels(world["tmp"] / "sp2.json")
    before = json.loads(world["observed"].read_text())
    old_positives = {(a["image_id"], a["category_id"]) for a in before["annotations"]}
    old_negatives = {(im["id"], c) for im in before["images"] for c in im.get("neg_category_ids", [])}
    assert positives == old_positives | {pairs[0], pairs[2], pairs[4]}
    assert negatives == old_negatives | {pairs[1], pairs[3], pairs[5]}
    kept = {a["id"]: a for a in raw["annotations"]}
    for a in before["annotations"]:  # the observed annotations, unchanged but for saying they are observed
        assert kept[a["id"]] == {**a, "source": "observed"}
    assert sorted(a["source"] for a in raw["annotations"] if a["id"] not in {b["id"] for b in before["annotations"]}) == ["verified"] * 3
    dataset = load_coco(world["tmp"] / "sp2.json")
    assert dataset.positives.sum() == len(old_positives) + 3
    assert "0 conflicts" in result.output


def test_json_min_plain_string_choices_dict_and_missing_key(world, cli):
    pairs = unknown_pairs(world, 4)
    records = [
        {"id": 1, "image_id": pairs[0][0], "category_id": pairs[0][1], "answer": "yes"},
        {"id": 2, "image_id": pairs[1][0], "category_id": pairs[1][1], "answer": {"choices": ["no"]}},
        {"id": 3, "image_id": pairs[2][0], "category_id": pairs[2][1]},  # nothing chosen: the key is left out
        {"id": 4, "image_id": pairs[3][0], "category_id": pairs[3][1], "answer": {"choices": ["yes", "yes"]}},
    ]
    export = world["tmp"] / "min.json"
    export.write_text(json.dumps(records))
    assert cli("merge", world["observed"], export, "--out", world["tmp"] / "sp2.json").exit_code == 0
    positives, negatives, _ = merged_labels(world["tmp"] / "sp2.json")
    assert pairs[0] in positives and pairs[3] in positives and pairs[1] in negatives
    assert pairs[2] not in positives and pairs[2] not in negatives


def test_json_min_with_both_choices_is_refused(world, cli):
    (p,) = unknown_pairs(world, 1)
    export = world["tmp"] / "min.json"
    export.write_text(json.dumps([{"image_id": p[0], "category_id": p[1], "answer": {"choices": ["yes", "no"]}}]))
    result = cli("merge", world["observed"], export, "--out", world["tmp"] / "sp2.json")
    assert result.exit_code == 1 and "both yes and no" in result.output
    assert not (world["tmp"] / "sp2.json").exists()


def test_label_studio_json_export_reads_annotations_not_predictions(world, cli):
    pairs = unknown_pairs(world, 3)

    def task(pair, annotations):
        choice = lambda c: {"from_name": "answer", "to_name": "image", "type": "choices", "value": {"choices": c}}
        return {"id": 10, "data": {"image": "/x", "image_id": pair[0], "category_id": pair[1]},
                "annotations": [{"id": n, "was_cancelled": cancelled, "result": [choice(c)] if c else []}
                                for n, (c, cancelled) in enumerate(annotations)],
                "predictions": [{"result": [choice(["yes"])], "score": 0.9}]}

    export = world["tmp"] / "ls.json"
    export.write_text(json.dumps([
        task(pairs[0], [(["no"], False)]),  # the teacher predicted yes; the person said no
        task(pairs[1], [(["no"], True), (["yes"], False)]),  # a cancelled annotation is no answer
        task(pairs[2], [(None, False)]),  # submitted without a choice
    ]))
    result = cli("merge", world["observed"], export, "--out", world["tmp"] / "sp2.json")
    assert result.exit_code == 0, result.output
    positives, negatives, _ = merged_labels(world["tmp"] / "sp2.json")
    assert pairs[0] in negatives and pairs[0] not in positives
    assert pairs[1] in positives
    assert pairs[2] not in positives | negatives


def test_a_later_answer_wins_and_conflicts_are_counted(world, cli):
    a, b, c = unknown_pairs(world, 3)
    first = write_csv(world["tmp"] / "first.csv", [(*a, "yes"), (*b, "no"), (*c, "yes")])
    second = world["tmp"] / "second.json"  # JSON_MIN: a changes its mind, b says the same again, c twice
    second.write_text(json.dumps([{"image_id": a[0], "category_id": a[1], "answer": "no"},
                                  {"image_id": b[0], "category_id": b[1], "answer": "no"},
                                  {"image_id": c[0], "category_id": c[1], "answer": "no"},
                                  {"image_id": c[0], "category_id": c[1], "answer": "yes"}]))
    result = cli("merge", world["observed"], first, second, "--out", world["tmp"] / "sp2.json")
    assert result.exit_code == 0, result.output
    assert re.search(r"\b3 conflicts\b", result.output), result.output
    positives, negatives, _ = merged_labels(world["tmp"] / "sp2.json")
    assert a in negatives and a not in positives
    assert b in negatives and c in positives and c not in negatives


def test_answers_against_observed_labels_keep_the_observed_ones(world, cli):
    before = json.loads(world["observed"].read_text())
    observed_positive = (before["annotations"][0]["image_id"], before["annotations"][0]["category_id"])
    im = next(i for i in before["images"] if i.get("neg_category_ids"))
    observed_negative = (im["id"], im["neg_category_ids"][0])
    answers = write_csv(world["tmp"] / "a.csv", [(*observed_positive, "no"), (*observed_negative, "yes")])
    result = cli("merge", world["observed"], answers, "--out", world["tmp"] / "sp2.json")
    assert result.exit_code == 0 and "2 answers contradict" in result.output
    positives, negatives, _ = merged_labels(world["tmp"] / "sp2.json")
    assert observed_positive in positives and observed_positive not in negatives
    assert observed_negative in negatives and observed_negative not in positives


def test_answers_correct_pseudo_labels_in_a_labels_file(world, cli):
    raw = json.loads(world["labels"].read_text())
    pseudo = [a for a in raw["annotations"] if a["source"] == "pseudo"][:2]
    answers = write_csv(world["tmp"] / "a.csv", [(pseudo[0]["image_id"], pseudo[0]["category_id"], "no"),
                                                  (pseudo[1]["image_id"], pseudo[1]["category_id"], "yes")])
    assert cli("merge", world["labels"], answers, "--out", world["tmp"] / "l2.json").exit_code == 0
    positives, negatives, merged = merged_labels(world["tmp"] / "l2.json")
    first, second = [(p["image_id"], p["category_id"]) for p in pseudo]
    assert first not in positives and first in negatives
    assert [a["source"] for a in merged["annotations"] if (a["image_id"], a["category_id"]) == second] == ["verified"]


@pytest.mark.parametrize("bad", ["image", "category"])
def test_an_unknown_image_or_category_is_one_line_and_nothing_is_written(world, cli, bad):
    (good,) = unknown_pairs(world, 1)
    wrong = (999_999, good[1]) if bad == "image" else (good[0], 999)
    answers = write_csv(world["tmp"] / "a.csv", [(*good, "yes"), (*wrong, "no")])
    out = world["tmp"] / "sp2.json"
    result = cli("merge", world["observed"], answers, "--out", out)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and f"{bad} 999" in result.output and "line 3" in result.output
    assert not out.exists() and not list(world["tmp"].glob(".sp2.json*"))


def test_an_answer_that_is_not_yes_or_no_is_refused(world, cli):
    (p,) = unknown_pairs(world, 1)
    result = cli("merge", world["observed"], write_csv(world["tmp"] / "a.csv", [(*p, "maybe")]),
                 "--out", world["tmp"] / "sp2.json")
    assert result.exit_code == 1 and "'maybe'" in result.output and not (world["tmp"] / "sp2.json").exists()


def test_select_then_simulate_then_merge(world, cli):
    """The loop without a person: the merged file holds exactly the truth of the pairs asked."""
    q = world["tmp"] / "q"
    assert cli("select", world["labels"], "--budget", 20, "--out", q).exit_code == 0
    answers = world["tmp"] / "answers.csv"
    assert cli("simulate", q / "questions.csv", "--truth", world["truth"], "--out", answers).exit_code == 0
    assert cli("merge", world["observed"], answers, "--out", world["tmp"] / "sp2.json").exit_code == 0
    positives, negatives, _ = merged_labels(world["tmp"] / "sp2.json")
    truth = world["truth_matrix"]
    with open(q / "questions.csv", newline="") as f:
        for r in csv.DictReader(f):
            pair = (int(r["image_id"]), int(r["category_id"]))
            present = truth[world["image_ids"].index(pair[0]), CATEGORY_IDS.index(pair[1])]
            assert (pair in positives) == present and (pair in negatives) == (not present)


@pytest.mark.parametrize("error_rate", [0, 1])
def test_simulate_answers_the_truth_or_its_negation(world, cli, error_rate):
    rows = [(world["image_ids"][k], c, "") for k in range(world["n"]) for c in CATEGORY_IDS]
    questions = write_csv(world["tmp"] / "q.csv", rows)
    out = world["tmp"] / "a.csv"
    result = cli("simulate", questions, "--truth", world["truth"], "--out", out, "--error-rate", error_rate, "--seed", 4)
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:
        got = [r["answer"] == "yes" for r in csv.DictReader(f)]
    truth = json.loads(world["truth"].read_text())
    expected = [(i, c) in {(a["image_id"], a["category_id"]) for a in truth["annotations"]} for i, c, _ in rows]
    assert got == (expected if error_rate == 0 else [not e for e in expected])


def test_simulate_flips_about_the_error_rate_and_is_seeded(world, cli):
    rows = [(world["image_ids"][k], c, "") for k in range(world["n"]) for c in CATEGORY_IDS]
    questions = write_csv(world["tmp"] / "q.csv", rows)
    answers = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert cli("simulate", questions, "--truth", world["truth"], "--out", world["tmp"] / f"{name}.csv",
                   "--error-rate", 0.3, "--seed", seed).exit_code == 0
        answers[name] = (world["tmp"] / f"{name}.csv").read_text()
    assert answers["a"] == answers["b"] != answers["c"]
    truth = world["truth_matrix"].ravel()
    with open(world["tmp"] / "a.csv", newline="") as f:
        flipped = np.array([r["answer"] == "yes" for r in csv.DictReader(f)]) != truth
    assert 0.15 < flipped.mean() < 0.45  # 120 draws at 0.3


def test_simulate_refuses_a_question_about_an_unknown_image(world, cli):
    questions = write_csv(world["tmp"] / "q.csv", [(5, CATEGORY_IDS[0], "")])
    result = cli("simulate", questions, "--truth", world["truth"], "--out", world["tmp"] / "a.csv")
    assert result.exit_code == 1 and "image 5" in result.output and not (world["tmp"] / "a.csv").exists()


def test_the_merged_file_finds_the_observed_files_images_wherever_it_is_written(world, cli):
    """spml-data single-positive records its images as '.' next to itself: copied as it was into a file written
    elsewhere, that would name the merged file's folder."""
    from spml.data.coco import load_coco

    images = world["tmp"] / "data"
    images.mkdir()
    raw = json.loads(world["observed"].read_text())
    raw["info"].update(images_dir=str(images), images_dir_relative=".")
    observed = images / "sp.json"
    observed.write_text(json.dumps(raw))
    (world["tmp"] / "elsewhere").mkdir()
    out = world["tmp"] / "elsewhere" / "sp2.json"
    result = cli("merge", observed, write_csv(world["tmp"] / "a.csv", [(*unknown_pairs(world, 1)[0], "yes")]), "--out", out)
    assert result.exit_code == 0, result.output
    assert load_coco(out).images_dir.resolve() == images.resolve()
    info = json.loads(out.read_text())["info"]
    assert (info["images_dir"], info["images_dir_relative"]) == (str(images.resolve()), "../data")
