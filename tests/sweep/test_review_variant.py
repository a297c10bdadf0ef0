"""spml-sweep's review:B[:strategy[:unit]][+fix] variant: its name, its epochs, and (slow) the loop end to end on
the tiny data, every figure of its report entry recomputed from the files it wrote."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from spml.data.coco import load_coco
from spml.sweep.run import SweepConfig, chain_epochs, equal_epoch_lines
from spml.sweep.variants import Review, parse_variant


@pytest.mark.parametrize("name, review", [
    ("review:1", Review(1.0, "uncertainty", "pair", False)),
    ("review:0.25:random", Review(0.25, "random", "pair", False)),
    ("review:2:weighted:image+fix", Review(2.0, "weighted", "image", True)),
    ("review:0.5:uncertainty:pair+fix+epochs:4", Review(0.5, "uncertainty", "pair", True)),
])
def test_review_names(name, review):
    v = parse_variant(name)
    assert (v.base, v.review, v.soft, v.init) == ("review", review, True, True)


def test_rounds_after_a_review_base_are_the_reviews_and_the_base_rounds_stays_init_softs():
    v = parse_variant("review:1:uncertainty:pair+staged+rounds:2")
    assert v.review == Review(1.0, "uncertainty", "pair", True, True, True, rounds=2) and v.rounds == 1
    assert parse_variant("rounds:2+epochs:4").rounds == 2 and parse_variant("rounds:2").review is None
    assert v.file_name == "review1uncertaintypair_staged_rounds2"


@pytest.mark.parametrize("rounds, images, budgets", [(2, 1280, [640, 640]), (3, 10, [3, 3, 4]), (1, 5, [5])])
def test_the_budget_is_split_over_the_rounds(rounds, images, budgets):
    assert Review(1.0, rounds=rounds).round_budgets(images) == budgets


def test_review_options_still_reach_the_student():
    v = parse_variant("review:1:random+fix+epochs:4+tloss:gr")
    assert v.train == {"epochs": 4} and v.teacher_loss == "gr" and v.review.fix


@pytest.mark.parametrize("name, message", [
    ("review", "expected review:B[:strategy[:unit]]"),
    ("review:", "expected review:B[:strategy[:unit]]"),
    ("review:0", "must be a positive number"),
    ("review:-1", "must be a positive number"),
    ("review:nan", "must be a positive number"),
    ("review:two", "expected a number"),
    ("review:1:nearest", "unknown strategy 'nearest'; valid: random, uncertainty, weighted"),
    ("review:1:random:box", "unknown unit 'box'; valid: pair, image"),
    ("review:1:random:pair:x", "expected review:B[:strategy[:unit]]"),
    ("review:1:random+ipw", "ipw weights a retrained teacher's answers by their sampling weights"),
    ("review:1:weighted+fix+ipw", "ipw weights a retrained teacher's answers"),
    ("init-soft+ipw", "ipw is an option of review"),
    ("init-soft+rounds:2", "rounds:R is an option of review:B[:strategy[:unit]] only"),
    ("review:1+staged+rounds:2+rounds:3", "rounds:R given 2 times"),
    ("review:1+rounds:0", "'rounds:0': must be at least 1"),
    ("init-soft+fix", "fix is an option of review"),
    ("review:1+ens:2", "ens:K is not supported"),
])
def test_bad_review_names(name, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_variant(name)


def test_a_bad_review_name_is_one_line_at_the_command_line(tmp_path):
    from spml.sweep.cli import main as sweep_cli

    args = ["--ann", "sp.json", "--val-ann", "v.json", "--test-ann", "t.json", "--out", str(tmp_path),
            "--variants", "review:1:nearest"]
    result = CliRunner().invoke(sweep_cli, args)
    assert result.exit_code == 2 and "unknown strategy 'nearest'" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("per_image, images, answers", [(1, 1280, 1280), (0.25, 1280, 320), (0.5, 3, 2),
                                                        (0.001, 10, 1)])
def test_the_budget_counts_answers(per_image, images, answers):
    assert Review(per_image).budget(images) == answers


@pytest.mark.parametrize("name, epochs", [
    ("review:1", 16),                    # the retrained teacher 8, its student 8
    ("review:1+fix", 16),                # the first teacher 8, its student 8
    ("review:1+tepochs:16", 24),
    ("review:1+fix+epochs:4", 12),
    ("init-soft", 16), ("soft", 8), ("tau", None),
    ("rounds:3", 32),                    # teacher, then three students each started from the last
    ("review:1+staged+rounds:2", 24),    # the first teacher 8, then each round's student started from the last
    ("review:1+fix+rounds:3", 32),
    ("review:1+rounds:2", 16),           # retrained teachers start afresh: the last one 8, its student 8
    ("teacher+epochs:16", 16), ("full", 8),
])
def test_chain_epochs(name, epochs):
    if name == "tau":
        assert chain_epochs(parse_variant("init-soft"), None) is None  # the trainer's default: unknown here
    else:
        assert chain_epochs(parse_variant(name), 8) == epochs


def test_equal_epoch_lines_are_the_references_of_the_longest_training():
    cfg = SweepConfig(ann="a", val_ann="v", test_ann="t", out="o", train={"epochs": 8})
    variants = [{"variant": "review:1", "map": 66.0, "epochs": 16}, {"variant": "teacher+epochs:16", "map": 65.0, "epochs": 16},
                {"variant": "full+epochs:16", "map": 72.0, "epochs": 16}]
    assert equal_epoch_lines(cfg, 63.0, 70.0, variants) == {"epochs": 16, "em": 65.0, "full": 72.0}
    assert equal_epoch_lines(cfg, 63.0, 70.0, variants[:1]) == {"epochs": 16, "em": None, "full": None}
    assert equal_epoch_lines(cfg, 63.0, 70.0, [{"variant": "soft", "map": 64.0, "epochs": 8}]) == \
        {"epochs": 8, "em": 63.0, "full": 70.0}


def tiny_sweep(tiny_data, out, variants: str) -> dict:
    """spml-sweep on the tiny data (1-epoch resnet18 at 32 px, tau 0.5) with `variants`, into `out`: its report."""
    from spml.sweep.cli import main as sweep_cli

    args = ["--ann", tiny_data["sp"], "--val-ann", tiny_data["val"], "--test-ann", tiny_data["test"],
            "--gt-ann", tiny_data["train"], "--tau", "0.5", "--variant-tau", "0.5", "--arch", "resnet18",
            "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--no-pretrained", "--variants", variants,
            "--out", out]
    result = CliRunner().invoke(sweep_cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def review_sweep(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("review_sweep")
    return out, tiny_sweep(tiny_data, out, "review:1:random,review:0.5:uncertainty+fix,review:1:uncertainty+staged,"
                                           "teacher+epochs:2,full+epochs:2")


def truth_pairs(path) -> set:
    return {(a["image_id"], a["category_id"]) for a in json.loads(open(path).read())["annotations"]}


def questions_of(folder) -> list[tuple[int, int, str]]:
    with open(folder / "answers.csv", newline="") as f:
        return [(int(r["image_id"]), int(r["category_id"]), r["answer"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_the_answers_are_the_truth_of_the_questions_chosen(review_sweep, tiny_data):
    out, report = review_sweep
    truth = truth_pairs(tiny_data["train"])
    images = len(load_coco(tiny_data["sp"]))
    for entry, folder, per_image in ((report["variants"][0], "review_teacher_em_1_random_pair", 1),
                                     (report["variants"][1], "review_teacher_em_0.5_uncertainty_pair", 0.5)):
        asked = questions_of(out / folder)
        assert len(asked) == round(per_image * images)
        yes = sum((i, c) in truth for i, c, _ in asked)
        assert all(answer == ("yes" if (i, c) in truth else "no") for i, c, answer in asked)
        assert entry["answers"] == {"questions": len(asked), "yes": yes, "no": len(asked) - yes}
        # merged into the single positives: a yes a verified annotation, a no a verified negative
        reviewed = json.loads((out / folder / "reviewed.json").read_text())
        verified = {(a["image_id"], a["category_id"]) for a in reviewed["annotations"] if a.get("source") == "verified"}
        negatives = {(im["id"], c) for im in reviewed["images"] for c in im.get("neg_category_ids", [])}
        assert verified == {(i, c) for i, c, a in asked if a == "yes"}
        assert negatives == {(i, c) for i, c, a in asked if a == "no"}
        assert entry["epochs"] == 2


@pytest.mark.slow
def test_retrain_and_fix_start_where_they_should(review_sweep):
    import torch

    out, report = review_sweep
    folder = out / "review_teacher_em_1_random_pair"
    retrained = torch.load(out / "teacher_em_review_teacher_em_1_random_pair.pt", weights_only=True)["config"]
    assert retrained["ann"] == str(folder / "reviewed.json") and retrained["loss"] == "em"
    student = torch.load(out / "student_review1random.pt", weights_only=True)["config"]
    assert student["init"] == str(out / "teacher_em_review_teacher_em_1_random_pair.pt") and student["soft_targets"]
    fixed = torch.load(out / "student_review0.5uncertainty_fix.pt", weights_only=True)["config"]
    assert fixed["init"] == str(out / "teacher_em.pt") and fixed["soft_targets"]
    assert report["variants"][0]["teacher_map"] is not None and "teacher_map" not in report["variants"][1]


@pytest.mark.slow
def test_fix_keeps_the_teachers_probabilities_except_where_a_person_answered(review_sweep):
    out, _ = review_sweep
    teacher = json.loads((out / "labels_teacher_soft_tau0.5.json").read_text())
    fixed_path = out / "labels_review0.5uncertainty_fix.json"
    fixed = json.loads(fixed_path.read_text())
    assert [im["spml_scores"] for im in fixed["images"]] == [im["spml_scores"] for im in teacher["images"]]
    asked = questions_of(out / "review_teacher_em_0.5_uncertainty_pair")
    labels = load_coco(fixed_path)
    row, column = {i: n for n, i in enumerate(labels.image_ids)}, labels.column_of()
    targets = labels.soft_targets()
    for i, c, answer in asked:
        assert targets[row[i], column[c]] == (1.0 if answer == "yes" else 0.0)
        assert labels.positives[row[i], column[c]] == (answer == "yes")


@pytest.mark.slow
def test_label_quality_and_the_equal_epoch_share(review_sweep, tiny_data):
    out, report = review_sweep
    truth = truth_pairs(tiny_data["train"])
    by_name = {v["variant"]: v for v in report["variants"]}
    em16, full16 = by_name["teacher+epochs:2"]["map"], by_name["full+epochs:2"]["map"]
    assert report["equal_epochs"] == {"epochs": 2, "em": em16, "full": full16}
    for name, labels in (("review:1:random", "labels_review1random.json"),
                         ("review:0.5:uncertainty+fix", "labels_review0.5uncertainty_fix.json")):
        entry = by_name[name]
        predicted = {(a["image_id"], a["category_id"]) for a in json.loads((out / labels).read_text())["annotations"]}
        tp = len(predicted & truth)
        precision, recall = tp / len(predicted), tp / len(truth)
        assert (entry["precision"], entry["recall"]) == pytest.approx((precision, recall))
        assert entry["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
        assert entry["gap_share_equal_epochs"] == pytest.approx((entry["map"] - em16) / (full16 - em16))


@pytest.mark.slow
def test_the_review_table_and_plot_render_from_the_report(review_sweep, tmp_path):
    from spml.sweep.review_report import plot_review_gap, review_markdown

    _, report = review_sweep
    table = review_markdown([report])
    row = next(line for line in table.splitlines() if line.startswith("| review:1:random |"))
    entry = report["variants"][0]
    assert row.split(" | ")[1] == f"{entry['answers']['yes']} / {entry['answers']['no']}"
    soft = entry["soft_targets"]
    assert row.split(" | ")[3] == f"{soft['mean_target']:.3f} / {soft['bce']:.3f} / {soft['map']:.2f}"
    assert row.split(" | ")[6] == f"{100 * entry['gap_share_equal_epochs']:.1f}%"
    plot_review_gap([report], tmp_path / "gap.png")
    assert (tmp_path / "gap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_staged_asks_half_at_random_and_calibrates_on_that_half(review_sweep, tiny_data):
    from sklearn.linear_model import LogisticRegression

    from spml.review.calibrate import RIDGE

    out, report = review_sweep
    entry = next(v for v in report["variants"] if v["variant"] == "review:1:uncertainty+staged")
    folder = out / "review_teacher_em_1_uncertainty_pair_staged"
    first, second = questions_of(folder / "stage1"), questions_of(folder)
    images = len(load_coco(tiny_data["sp"]))
    assert (len(first), len(second)) == (images // 2, images - images // 2)
    assert json.loads((folder / "stage1" / "selection.json").read_text())["strategy"] == "random"
    assert not {(i, c) for i, c, _ in first} & {(i, c) for i, c, _ in second}  # nothing asked twice
    assert entry["answers"]["questions"] == images
    # too few answers for any category's own fit: every category takes the fit of the random half pooled
    teacher = json.loads((out / "labels_teacher_soft_tau0.5.json").read_text())
    categories = [c["id"] for c in teacher["categories"]]
    p_of = {(im["id"], c): im["spml_scores"][j] for im in teacher["images"] for j, c in enumerate(categories)}
    p = np.clip([p_of[i, c] for i, c, _ in first], 1e-6, 1 - 1e-6)
    yes = [a == "yes" for *_, a in first]
    # the same small ridge as spml's fit: the tiny teacher's logits span +-0.2, where it matters
    fit = LogisticRegression(C=1 / RIDGE, max_iter=10000, tol=1e-10).fit(np.log(p / (1 - p))[:, None], yes)
    for a, b in entry["calibration"]:
        assert (a, b) == pytest.approx((fit.coef_[0, 0], fit.intercept_[0]), abs=0.02)
    # the student's soft targets: the calibrated probabilities, a person's answers at 1 and 0
    labels = json.loads((out / "labels_review1uncertainty_staged.json").read_text())
    a, b = entry["calibration"][0]
    q = [1 / (1 + np.exp(-(a * np.log(v / (1 - v)) + b))) for v in np.clip(teacher["images"][0]["spml_scores"], 1e-6, 1 - 1e-6)]
    assert labels["images"][0]["spml_scores"] == pytest.approx(q, abs=2e-4)


@pytest.mark.slow
def test_the_staged_loop_as_commands_writes_the_sweeps_student_labels(review_sweep, tiny_data, tmp_path):
    """`+staged` typed as docs/review/index.md gives it: spml-label --soft, half the budget at random, calibrate on its
    answers, the other half by uncertainty on the calibrated file, merge, calibrate again at tau: the student's
    labels file the sweep wrote (the same labels; probabilities to the 5 decimals the file keeps)."""
    from spml.label.cli import main as label_cli
    from spml.review.cli import main as review_cli

    out, report = review_sweep
    sweep = out / "review_teacher_em_1_uncertainty_pair_staged"
    seed = json.loads((sweep / "stage1" / "selection.json").read_text())["seed"]
    budget = len(load_coco(tiny_data["sp"]))

    def run(cli, *args):
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    def review(*args):
        run(review_cli, *args)

    soft, stage1, stage2 = tmp_path / "soft.json", tmp_path / "stage1", tmp_path / "stage2"
    run(label_cli, out / "teacher.onnx", "--ann", tiny_data["sp"], "--soft", "--tau", "0.5", "--out", soft)
    review("select", soft, "--strategy", "random", "--budget", budget // 2, "--seed", seed, "--out", stage1)
    review("simulate", stage1 / "questions.csv", "--truth", tiny_data["train"], "--out", stage1 / "answers.csv")
    review("merge", soft, stage1 / "answers.csv", "--out", tmp_path / "soft1.json")
    review("calibrate", tmp_path / "soft1.json", "--answers", stage1, "--out", tmp_path / "calibrated.json")
    review("select", tmp_path / "calibrated.json", "--strategy", "uncertainty", "--budget", budget - budget // 2,
           "--seed", seed, "--out", stage2)
    review("simulate", stage2 / "questions.csv", "--truth", tiny_data["train"], "--out", stage2 / "answers.csv")
    review("merge", tmp_path / "soft1.json", stage2 / "answers.csv", "--out", tmp_path / "soft2.json")
    review("calibrate", tmp_path / "soft2.json", "--answers", stage1, "--tau", "0.5", "--out", tmp_path / "student.json")

    assert questions_of(stage1) == questions_of(sweep / "stage1") and questions_of(stage2) == questions_of(sweep)
    mine = json.loads((tmp_path / "student.json").read_text())
    theirs = json.loads((out / "labels_review1uncertainty_staged.json").read_text())
    entry = next(v for v in report["variants"] if v["variant"] == "review:1:uncertainty+staged")
    # both fit the scores at the file's 5 decimals (unrounded, the tiny teacher's slope moves by 1e-3)
    assert np.array(mine["info"]["calibration"]["maps"]) == pytest.approx(np.array(entry["calibration"]), abs=1e-6)
    # and sklearn's logistic regression on the same answers, with spml's small ridge on slope and intercept (the
    # tiny teacher's logits span +-0.2, where it matters): too few answers for a category's own fit, all pooled
    from sklearn.linear_model import LogisticRegression

    from spml.review.calibrate import RIDGE

    teacher = json.loads(soft.read_text())
    categories = [c["id"] for c in teacher["categories"]]
    p_of = {(im["id"], c): im["spml_scores"][j] for im in teacher["images"] for j, c in enumerate(categories)}
    answers = questions_of(stage1)
    x = np.log(np.clip([p_of[i, c] for i, c, _ in answers], 1e-6, 1 - 1e-6))
    x = x - np.log1p(-np.exp(x))
    fit = LogisticRegression(C=1 / RIDGE, fit_intercept=False, tol=1e-12, max_iter=10000)
    fit.fit(np.stack([x, np.ones_like(x)], 1), [a == "yes" for *_, a in answers])
    for a, b in mine["info"]["calibration"]["maps"]:
        assert (a, b) == pytest.approx(tuple(fit.coef_[0]), abs=1e-4)
    assert [im["id"] for im in mine["images"]] == [im["id"] for im in theirs["images"]]
    # the same numbers through the same writer
    assert np.array([im["spml_scores"] for im in mine["images"]]) == \
        pytest.approx(np.array([im["spml_scores"] for im in theirs["images"]]), abs=1e-6)
    labels = lambda f: {(a["image_id"], a["category_id"], a["source"]) for a in f["annotations"]}  # noqa: E731
    negatives = lambda f: {(im["id"], c) for im in f["images"] for c in im.get("neg_category_ids", [])}  # noqa: E731
    assert labels(mine) == labels(theirs) and negatives(mine) == negatives(theirs)
    assert load_coco(tmp_path / "student.json").soft_targets() == \
        pytest.approx(load_coco(out / "labels_review1uncertainty_staged.json").soft_targets(), abs=1e-6)


@pytest.mark.slow
def test_the_soft_targets_distance_from_the_truth(review_sweep, tiny_data):
    out, report = review_sweep
    entry = report["variants"][1]  # review:0.5:uncertainty+fix
    labels = json.loads((out / "labels_review0.5uncertainty_fix.json").read_text())
    truth, sp = truth_pairs(tiny_data["train"]), truth_pairs(tiny_data["sp"])
    categories = [c["id"] for c in labels["categories"]]
    answered = {(i, c): a == "yes" for i, c, a in questions_of(out / "review_teacher_em_0.5_uncertainty_pair")}
    t, y = [], []
    for im in labels["images"]:
        for j, c in enumerate(categories):
            if (im["id"], c) in sp:
                continue
            t.append(float(answered[im["id"], c]) if (im["id"], c) in answered else im["spml_scores"][j])
            y.append((im["id"], c) in truth)
    t, y = np.clip(np.array(t), 1e-6, 1 - 1e-6), np.array(y)
    assert entry["soft_targets"]["mean_target"] == pytest.approx(t.mean(), abs=1e-5)
    assert entry["soft_targets"]["truth_rate"] == pytest.approx(y.mean())
    assert entry["soft_targets"]["bce"] == pytest.approx(-(y * np.log(t) + (1 - y) * np.log(1 - t)).mean(), abs=1e-4)


@pytest.fixture(scope="module")
def rounds_sweep(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("rounds_sweep")
    report = tiny_sweep(tiny_data, out, "review:2:uncertainty+staged+rounds:2,review:1:random+rounds:2,"
                                        "review:1:weighted+ipw")
    return out, {v["variant"]: v for v in report["variants"]}


def _pairs(rows) -> set:
    return {(i, c) for i, c, _ in rows}


@pytest.mark.slow
def test_staged_rounds_ask_new_questions_of_the_last_rounds_student(rounds_sweep, tiny_data):
    import torch

    out, entries = rounds_sweep
    entry = entries["review:2:uncertainty+staged+rounds:2"]
    base = out / "review_teacher_em_2_uncertainty_pair_staged_rounds2"
    images, truth = len(load_coco(tiny_data["sp"])), truth_pairs(tiny_data["train"])
    asked = {(k, stage): questions_of(base / f"round{k}" / stage) for k in (1, 2) for stage in ("stage1", ".")}
    assert [len(a) for a in asked.values()] == [images // 2] * 4  # 2 per image in 2 rounds, each half at random
    every = [p for a in asked.values() for p in _pairs(a)]
    assert len(set(every)) == len(every)  # nothing asked twice, in a round or across them
    assert all(answer == ("yes" if (i, c) in truth else "no") for a in asked.values() for i, c, answer in a)
    yes = sum(a == "yes" for rows in asked.values() for *_, a in rows)
    assert entry["answers"] == {"questions": 2 * images, "yes": yes, "no": 2 * images - yes}
    assert [r["round"] for r in entry["review_rounds"]] == [1, 2] and entry["review_rounds"][-1]["map"] == entry["map"]
    # round 1 scored by the teacher, round 2 by round 1's student; every answer so far is known in round 2
    scorer = [json.loads((base / f"round{k}" / "labels_soft.json").read_text())["info"]["model"] for k in (1, 2)]
    first_student = out / "student_review2uncertainty_staged_rounds2_r1.pt"
    assert scorer == [str((out / "teacher.onnx").resolve()), str(first_student.with_suffix(".onnx").resolve())]
    merged = json.loads((base / "round2" / "reviewed.json").read_text())
    verified = {(a["image_id"], a["category_id"]) for a in merged["annotations"] if a.get("source") == "verified"}
    negatives = {(im["id"], c) for im in merged["images"] for c in im.get("neg_category_ids", [])}
    answered = {(i, c): a == "yes" for rows in asked.values() for i, c, a in rows}
    assert verified == {p for p, y in answered.items() if y} and negatives == {p for p, y in answered.items() if not y}
    # each round's student starts from the last: the epochs of the chain
    configs = [torch.load(p, weights_only=True)["config"] for p in
               (first_student, out / "student_review2uncertainty_staged_rounds2.pt")]
    assert [c["init"] for c in configs] == [str(out / "teacher_em.pt"), str(first_student)]
    assert configs[1]["ann"] == str(out / "labels_review2uncertainty_staged_rounds2.json")
    assert entry["epochs"] == 3


@pytest.mark.slow
def test_staged_rounds_calibrate_on_the_rounds_own_random_half(rounds_sweep):
    from sklearn.linear_model import LogisticRegression

    from spml.review.calibrate import RIDGE

    out, entries = rounds_sweep
    entry = entries["review:2:uncertainty+staged+rounds:2"]
    folder = out / "review_teacher_em_2_uncertainty_pair_staged_rounds2" / "round2"
    scored = json.loads((folder / "labels_soft.json").read_text())  # round 1's student's probabilities
    categories = [c["id"] for c in scored["categories"]]
    p_of = {(im["id"], c): im["spml_scores"][j] for im in scored["images"] for j, c in enumerate(categories)}
    first = questions_of(folder / "stage1")
    p = np.clip([p_of[i, c] for i, c, _ in first], 1e-6, 1 - 1e-6)
    fit = LogisticRegression(C=1 / RIDGE, max_iter=10000, tol=1e-10).fit(np.log(p / (1 - p))[:, None],
                                                                           [a == "yes" for *_, a in first])
    for a, b in entry["calibration"]:  # too few answers for a category's own fit: the pooled one
        assert (a, b) == pytest.approx((fit.coef_[0, 0], fit.intercept_[0]), abs=0.02)


@pytest.mark.slow
def test_retrain_rounds_retrain_the_teacher_on_every_answer_so_far(rounds_sweep):
    import torch

    out, entries = rounds_sweep
    entry = entries["review:1:random+rounds:2"]
    base = out / "review_teacher_em_1_random_pair_rounds2"
    teachers = [out / f"teacher_em_{base.name}_r{k}.pt" for k in (1, 2)]
    configs = [torch.load(t, weights_only=True)["config"] for t in teachers]
    assert [c["ann"] for c in configs] == [str(base / f"round{k}" / "reviewed.json") for k in (1, 2)]
    assert [c["init"] for c in configs] == [None, None]  # afresh: only the last one's epochs count
    scorer = json.loads((base / "round2" / "labels_soft.json").read_text())["info"]["model"]
    assert scorer == str(teachers[0].with_suffix(".onnx").resolve())
    student = torch.load(out / "student_review1random_rounds2.pt", weights_only=True)["config"]
    assert student["init"] == str(teachers[1]) and entry["epochs"] == 2
    assert not _pairs(questions_of(base / "round1")) & _pairs(questions_of(base / "round2"))
    assert [r["teacher_map"] for r in entry["review_rounds"]][-1] == entry["teacher_map"]


@pytest.mark.slow
def test_the_review_table_gives_each_round(rounds_sweep):
    from spml.sweep.review_report import review_markdown

    out, entries = rounds_sweep
    report = json.loads((out / "report.json").read_text())
    line = next(x for x in review_markdown([report]).splitlines()
                if x.startswith("review:2:uncertainty+staged+rounds:2, by round:"))
    r1, r2 = entries["review:2:uncertainty+staged+rounds:2"]["review_rounds"]
    assert line == (f"review:2:uncertainty+staged+rounds:2, by round: round 1: {r1['yes']} yes / {r1['no']} no, "
                    f"student test mAP {r1['map']:.2f}; round 2: {r2['yes']} yes / {r2['no']} no, student test mAP "
                    f"{r2['map']:.2f}.")


@pytest.mark.slow
def test_ipw_retrains_the_teacher_with_each_answer_weighted_by_its_selection(rounds_sweep):
    import torch

    out, entries = rounds_sweep
    folder = out / "review_teacher_em_1_weighted_pair"
    teacher = torch.load(out / f"teacher_em_{folder.name}_ipw.pt", weights_only=True)["config"]
    assert teacher["ann"] == str(folder / "reviewed.json") and teacher["answer_weights"] == str(folder / "selection.json")
    assert all(q["weight"] > 0 for q in json.loads((folder / "selection.json").read_text())["questions_chosen"])
    student = torch.load(out / "student_review1weighted_ipw.pt", weights_only=True)["config"]
    assert student["init"] == str(out / f"teacher_em_{folder.name}_ipw.pt") and student["answer_weights"] is None
    assert entries["review:1:weighted+ipw"]["teacher_map"] is not None
