"""spml-review calibrate: a labels file calibrated on a person's answers. The maps are checked against sklearn's
logistic regression on the same answers, the file against the Platt formula by hand, and bad input against its
one-line errors (nothing written)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from spml.review.calibrate import MIN_ANSWERS_EACH, RIDGE


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def ask(cli, world, folder, *, budget, strategy="random", seed=0, labels=None):
    """select + simulate: the folder with its answers.csv; the answers as {(image, category): yes}."""
    result = cli("select", labels or world["labels"], "--budget", budget, "--strategy", strategy, "--seed", seed,
                 "--out", folder)
    assert result.exit_code == 0, result.output
    result = cli("simulate", folder / "questions.csv", "--truth", world["truth"], "--out", folder / "answers.csv")
    assert result.exit_code == 0, result.output
    with open(folder / "answers.csv", newline="") as f:
        return {(int(r["image_id"]), int(r["category_id"])): r["answer"] == "yes" for r in csv.DictReader(f)}


def test_calibrate_fits_sklearns_logistic_regression_and_writes_the_platt_probabilities(cli, world):
    from sklearn.linear_model import LogisticRegression

    folder, out = world["tmp"] / "r", world["tmp"] / "cal.json"
    answers = ask(cli, world, folder, budget=1000)  # every unknown pair
    result = cli("calibrate", world["labels"], "--answers", folder, "--out", out, "--tau", "0.6")
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    categories = [c["id"] for c in written["categories"]]
    maps = written["info"]["calibration"]["maps"]
    row = {i: k for k, i in enumerate(world["image_ids"])}
    own = 0
    for j, c in enumerate(categories):
        mine = [(row[i], yes) for (i, cc), yes in answers.items() if cc == c]
        yes = np.array([y for _, y in mine])
        if yes.sum() < MIN_ANSWERS_EACH or (~yes).sum() < MIN_ANSWERS_EACH:
            continue
        own += 1
        x = logit(world["p"][[k for k, _ in mine], j])
        # the same objective, spml's small ridge on slope and intercept (on ~20 nearly separable answers it moves
        # the fit by ~0.3 from plain maximum likelihood, so a large C is no reference here)
        same = LogisticRegression(C=1 / RIDGE, fit_intercept=False, tol=1e-12, max_iter=10000)
        same.fit(np.stack([x, np.ones_like(x)], 1), yes)
        assert maps[j] == pytest.approx(same.coef_[0], abs=1e-4)
    assert own >= 2
    a, b = np.array(maps).T
    q = sigmoid(a * logit(world["p"]) + b)
    got = np.array([im["spml_scores"] for im in written["images"]])
    assert got == pytest.approx(q, abs=1e-5)  # the writer rounds to 5 decimals
    # the labels: a person's (the observed positives, the verified negatives) kept, the teacher's at tau 0.6
    observed = json.loads(world["observed"].read_text())
    said_no = {(im["id"], c) for im in observed["images"] for c in im.get("neg_category_ids", [])}
    positives = {(a["image_id"], a["category_id"]) for a in observed["annotations"]}
    expected = {(i, c): ("observed" if (i, c) in positives else "pseudo") for k, i in enumerate(world["image_ids"])
                for j, c in enumerate(categories)
                if (i, c) in positives or (q[k, j] > 0.6 and (i, c) not in said_no)}
    assert {(x["image_id"], x["category_id"]): x["source"] for x in written["annotations"]} == expected
    assert {(im["id"], c) for im in written["images"] for c in im.get("neg_category_ids", [])} == said_no
    assert written["info"]["tau"] == 0.6 and written["info"]["model_sha256"] == "0" * 64
    assert "0.6" in result.output and f"{len(answers)} answers" in result.output


def test_weighted_answers_are_fitted_with_one_over_their_sampling_weight(cli, world):
    from spml.review.calibrate import platt_fit

    folder, out = world["tmp"] / "w", world["tmp"] / "cal.json"
    answers = ask(cli, world, folder, budget=40, strategy="weighted")
    assert cli("calibrate", world["labels"], "--answers", folder, "--out", out).exit_code == 0
    chosen = json.loads((folder / "selection.json").read_text())["questions_chosen"]
    categories = [c["id"] for c in json.loads(world["labels"].read_text())["categories"]]
    row = {i: k for k, i in enumerate(world["image_ids"])}
    p = np.array([world["p"][row[q["image_id"]], categories.index(q["category_id"])] for q in chosen])
    yes = np.array([answers[q["image_id"], q["category_id"]] for q in chosen])
    pooled = platt_fit(p, yes, np.array([1 / q["weight"] for q in chosen]))
    maps = json.loads(out.read_text())["info"]["calibration"]["maps"]
    unweighted = platt_fit(p, yes)
    # categories with too few answers pool (float32 scores in the command: 1e-5)
    assert any(m == pytest.approx(pooled, abs=1e-5) for m in maps)
    assert not any(m == pytest.approx(unweighted, abs=1e-2) for m in maps)


def test_two_answer_folders_are_one_sample(cli, world):
    first, second = world["tmp"] / "a", world["tmp"] / "b"
    ask(cli, world, first, budget=30)
    ask(cli, world, second, budget=30, seed=1)
    both = world["tmp"] / "both.json"
    assert cli("calibrate", world["labels"], "--answers", f"{first},{second}", "--out", both).exit_code == 0
    again = world["tmp"] / "again.json"
    assert cli("calibrate", world["labels"], "--answers", first, "--answers", second, "--out", again).exit_code == 0
    maps = json.loads(both.read_text())["info"]["calibration"]["maps"]
    assert maps == json.loads(again.read_text())["info"]["calibration"]["maps"]
    assert maps != json.loads((cli("calibrate", world["labels"], "--answers", first, "--out", again), again)[1]
                              .read_text())["info"]["calibration"]["maps"]


def one_line_error(result, message, out):
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_file_without_scores_is_refused(cli, world):
    folder, out = world["tmp"] / "r", world["tmp"] / "cal.json"
    ask(cli, world, folder, budget=20)
    one_line_error(cli("calibrate", world["observed"], "--answers", folder, "--out", out), "no spml_scores", out)


def test_answers_of_one_kind_are_refused(cli, world):
    folder, out = world["tmp"] / "r", world["tmp"] / "cal.json"
    ask(cli, world, folder, budget=20)
    with open(folder / "answers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(folder / "answers.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "answer": "no"} for r in rows)
    one_line_error(cli("calibrate", world["labels"], "--answers", folder, "--out", out), "answers of both kinds", out)


def test_answers_about_images_the_labels_do_not_have_are_refused(cli, world):
    folder, out = world["tmp"] / "r", world["tmp"] / "cal.json"
    answers = ask(cli, world, folder, budget=60)
    image = next(iter(answers))[0]
    raw = json.loads(world["labels"].read_text())
    raw["images"] = [im for im in raw["images"] if im["id"] != image]
    raw["annotations"] = [a for a in raw["annotations"] if a["image_id"] != image]
    fewer = world["tmp"] / "fewer.json"
    fewer.write_text(json.dumps(raw))
    one_line_error(cli("calibrate", fewer, "--answers", folder, "--out", out), f"image {image}, which is not", out)


def test_answers_about_categories_the_labels_do_not_have_are_refused(cli, world):
    folder, out = world["tmp"] / "r", world["tmp"] / "cal.json"
    answers = ask(cli, world, folder, budget=60)
    category = next(iter(answers))[1]
    raw = json.loads(world["labels"].read_text())
    j = [c["id"] for c in raw["categories"]].index(category)
    raw["categories"].pop(j)
    raw["annotations"] = [a for a in raw["annotations"] if a["category_id"] != category]
    for im in raw["images"]:
        im["spml_scores"].pop(j)
        im["neg_category_ids"] = [c for c in im.get("neg_category_ids", []) if c != category]
    fewer = world["tmp"] / "fewer.json"
    fewer.write_text(json.dumps(raw))
    one_line_error(cli("calibrate", fewer, "--answers", folder, "--out", out), f"category {category}, which is not", out)


def test_a_folder_without_a_selection_is_refused(cli, world):
    out = world["tmp"] / "cal.json"
    (world["tmp"] / "empty").mkdir()
    one_line_error(cli("calibrate", world["labels"], "--answers", world["tmp"] / "empty", "--out", out),
                   "no selection.json", out)


def test_an_answer_to_a_question_not_asked_is_refused(cli, world):
    folder, out = world["tmp"] / "r", world["tmp"] / "cal.json"
    ask(cli, world, folder, budget=10)
    with open(folder / "answers.csv", "a", newline="") as f:
        f.write(f"{world['image_ids'][0]},img00.png,999,cat999,0.5,yes\n")
    one_line_error(cli("calibrate", world["labels"], "--answers", folder, "--out", out),
                   "category 999 is not a question of", out)
