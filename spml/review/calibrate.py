"""A teacher's probabilities calibrated on a person's answers: what the answers teach about the pairs nobody asked.

An EM teacher holds the scores of unobserved pairs near 0.5 by design, so its soft labels say "maybe" where the
truth is mostly "no" (issue 20: three answers in four were no). Answers to questions drawn at random are an
unbiased sample of the unknown pairs: per category, a logistic fit of the answer on the teacher's logit (Platt
scaling) maps every unknown pair's score to the chance a person would say yes. Answers drawn by the `weighted`
strategy are weighted by the inverse of their sampling weight (Horvitz-Thompson), which undoes the selection;
answers chosen deterministically (`uncertainty`) cover one band of scores only, and a fit on them extrapolates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spml.errors import SpmlError

# a category's own fit needs this many answers of each kind; with fewer, the fit of all categories pooled
MIN_ANSWERS_EACH = 5
RIDGE = 1e-3  # keeps the fit finite when yes and no are separable


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def platt_fit(p: np.ndarray, yes: np.ndarray, weights: np.ndarray | None = None, iterations: int = 100) -> tuple[float, float]:
    """(a, b) of P(yes) = sigmoid(a logit(p) + b), weighted maximum likelihood by Newton's method (IRLS)."""
    x = np.stack([logit(p), np.ones(len(p))], axis=1)
    y = np.asarray(yes, dtype=np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    theta = np.zeros(2)
    for _ in range(iterations):
        q = 1.0 / (1.0 + np.exp(-(x @ theta)))
        gradient = x.T @ (w * (q - y)) + RIDGE * theta
        hessian = (x * (w * q * (1 - q))[:, None]).T @ x + RIDGE * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def calibration_maps(p: np.ndarray, columns: np.ndarray, yes: np.ndarray, num_classes: int, *,
                     weights: np.ndarray | None = None) -> np.ndarray:
    """(num_classes, 2) Platt parameters, one row per category: its own fit where it has MIN_ANSWERS_EACH yes and
    no answers, else the pooled fit. `p`, `columns`, `yes`: each answer's teacher score, category column, answer."""
    yes = np.asarray(yes, dtype=bool)
    if not len(yes) or yes.all() or not yes.any():
        raise ValueError("calibration needs answers of both kinds (yes and no)")
    pooled = platt_fit(p, yes, weights)
    maps = np.tile(pooled, (num_classes, 1))
    for j in range(num_classes):
        mine = columns == j
        if yes[mine].sum() >= MIN_ANSWERS_EACH and (~yes[mine]).sum() >= MIN_ANSWERS_EACH:
            maps[j] = platt_fit(p[mine], yes[mine], None if weights is None else weights[mine])
    return maps


def calibrate(scores: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """(N, L) probabilities through each category's map; NaN (a failed image) stays NaN."""
    z = maps[:, 0] * logit(scores) + maps[:, 1]
    out = 1.0 / (1.0 + np.exp(-z))
    return np.where(np.isnan(scores), np.nan, out).astype(np.float32)


# --- the answers of a review folder, and a labels file calibrated on them (spml-review calibrate; the sweep) ---

DEFAULT_TAU = 0.5  # the calibrated probabilities are chances a person says yes: 0.5 is "as likely yes as no"


@dataclass
class Answered:
    """The answered questions of one or more `spml-review select` folders, in the selections' order: each pair's
    image and category id, the answer, and 1 / its sampling weight where every question has one (`weighted`)."""

    image_ids: np.ndarray
    category_ids: np.ndarray
    yes: np.ndarray
    weights: np.ndarray | None


def read_answered(folders) -> Answered:
    """The questions each folder's selection.json chose that have an answer: in its answers.csv where there is one
    (spml-review simulate's, the sweep's), else in its questions.csv with `answer` filled; a question left blank is
    skipped. SpmlError for a folder without a selection or answers, or an answer to a question not chosen there."""
    from spml.review.answers import read_answers
    from spml.review.merge import final_answers

    pairs, yes, weights = [], [], []
    for folder in map(Path, folders):
        chosen = _chosen(folder)
        answers_file = next((p for p in (folder / "answers.csv", folder / "questions.csv") if p.is_file()), None)
        if answers_file is None:
            raise SpmlError(f"{folder}: no answers.csv or questions.csv (the folder spml-review select --out wrote)") from None
        final, _ = final_answers(read_answers(answers_file))
        asked = {(q["image_id"], q["category_id"]) for q in chosen}
        stray = next((a for key, a in final.items() if key not in asked), None)
        if stray is not None:
            raise SpmlError(f"{stray.where}: image {stray.image_id}, category {stray.category_id} is not a question of "
                            f"{folder / 'selection.json'}") from None
        for q in chosen:
            answer = final.get((q["image_id"], q["category_id"]))
            if answer is not None:
                pairs.append((q["image_id"], q["category_id"]))
                yes.append(answer.present)
                weights.append(1.0 / q["weight"] if "weight" in q else None)
    weighted = bool(weights) and all(w is not None for w in weights)
    ids = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return Answered(ids[:, 0], ids[:, 1], np.array(yes, dtype=bool), np.array(weights) if weighted else None)


def _chosen(folder: Path) -> list[dict]:
    path = folder / "selection.json"
    try:
        chosen = json.loads(path.read_text(encoding="utf-8"))["questions_chosen"]
    except FileNotFoundError:
        raise SpmlError(f"{folder}: no selection.json (--answers takes the folder spml-review select --out wrote)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SpmlError(f"{path}: not spml-review select's selection ({type(e).__name__}: {e})") from None
    if not isinstance(chosen, list) or not all(isinstance(q, dict) and "image_id" in q and "category_id" in q for q in chosen):
        raise SpmlError(f"{path}: questions_chosen is not a list of questions") from None
    return chosen


def fit_answered(values: np.ndarray, answered: Answered, *, image_ids, category_ids, where: str) -> np.ndarray:
    """(L, 2) Platt maps of the teacher's probabilities `values` ((N, L): rows `image_ids`, columns
    `category_ids`) fitted on `answered` (calibration_maps: per category where it has answers enough, else
    pooled; weighted by 1 / the sampling weight). SpmlError naming `where` for an answer outside the images or
    categories, or answers of one kind only."""
    row = {int(i): n for n, i in enumerate(image_ids)}
    column = {int(c): j for j, c in enumerate(category_ids)}
    for i, c in zip(answered.image_ids.tolist(), answered.category_ids.tolist()):
        if i not in row:
            raise SpmlError(f"{where}: an answer names image {i}, which is not among the labels' images") from None
        if c not in column:
            raise SpmlError(f"{where}: an answer names category {c}, which is not among the labels' categories") from None
    rows = np.array([row[i] for i in answered.image_ids.tolist()], dtype=np.int64)
    columns = np.array([column[c] for c in answered.category_ids.tolist()], dtype=np.int64)
    p = values[rows, columns] if len(rows) else np.zeros(0)
    if np.isnan(p).any():
        raise SpmlError(f"{where}: an answer is about an image the teacher could not score") from None
    try:
        return calibration_maps(p, columns, answered.yes, values.shape[1], weights=answered.weights)
    except ValueError as e:
        raise SpmlError(f"{where}: {e}") from None


@dataclass
class CalibrateSummary:
    images: int
    answers: int
    yes: int
    own_fits: int  # categories fitted on their own answers; the others took the pooled fit
    pseudo_positives: int
    maps: list  # [a, b] per category


def calibrate_labels(labels, answer_folders, out, *, tau: float = DEFAULT_TAU) -> CalibrateSummary:
    """LABELS (an spml-label --soft file) with every probability through its category's map fitted on the answers
    in `answer_folders`, written to OUT by spml-label's own writer: the pseudo labels thresholded at `tau`, the
    observed labels (LABELS' annotations other than `pseudo`, its neg_category_ids) kept with their source, the
    maps in info.calibration. Everything is checked before OUT is written (atomically)."""
    from spml.data.coco import dataset_from_dict
    from spml.data.json_stream import load_json
    from spml.label.api import LabelConfig, label_scores
    from spml.label.labeler import Scores

    labels = Path(labels)
    raw = load_json(labels)
    dataset = dataset_from_dict(raw, labels)
    values = _teacher_scores(labels, dataset)
    info = raw.get("info") if isinstance(raw.get("info"), dict) else {}
    if info.get("tau_low") is not None:
        raise SpmlError(f"{labels}: labeled with --tau-low, whose confident negatives would pass for a person's "
                        f"answers; calibrate a file labeled without it") from None
    answered = read_answered(answer_folders)
    where = ", ".join(str(f) for f in answer_folders)
    maps = fit_answered(values, answered, image_ids=dataset.image_ids, category_ids=dataset.category_ids, where=where)
    observed = dataset_from_dict(_observed_only(raw), labels)  # what a person said; the teacher's labels are redone
    recorded = {k: v for k, v in info.items() if k in ("teacher",)}  # a student inherits the teacher's recipe
    calibration = {"method": "Platt scaling per category: p' = sigmoid(a logit(p) + b)", "maps": maps.tolist(),
                   "answers": [str(Path(f).resolve()) for f in answer_folders], "source_labels": str(labels.resolve()),
                   "tau": tau}
    config = LabelConfig(out=str(out), taus=(tau,), model=str(info.get("model") or labels), soft=True,
                         tta=info.get("tta", "none"), progress=False)
    result = label_scores(config, observed, Scores(calibrate(values, maps)), model_sha256=info.get("model_sha256"),
                          extra_info={**recorded, "calibration": calibration})
    written = result.counts["coco", tau]
    pseudo = written["annotations"] - int(observed.positives.sum())
    own = sum(1 for j in range(len(maps)) if _own_fit(answered, dataset.category_ids[j]))
    return CalibrateSummary(images=written["images"], answers=len(answered.yes), yes=int(answered.yes.sum()),
                            own_fits=own, pseudo_positives=pseudo, maps=maps.tolist())


def _teacher_scores(path: Path, dataset) -> np.ndarray:
    """(N, L) float32 `spml_scores` as the teacher wrote them (soft_targets puts a person's answers at 1 and 0)."""
    values = np.zeros((len(dataset), dataset.num_classes), dtype=np.float32)
    for n, im in enumerate(dataset.images):
        scores = im.get("spml_scores")
        if not isinstance(scores, list):
            raise SpmlError(f"{path}: image {im['id']} has no spml_scores (the teacher's probabilities); calibrate "
                            f"reads the file spml-label --soft writes") from None
        try:
            row = np.asarray(scores, dtype=np.float32)
        except (TypeError, ValueError):
            raise SpmlError(f"{path}: image {im['id']}: spml_scores are not numbers") from None
        if row.shape != (dataset.num_classes,):
            raise SpmlError(f"{path}: image {im['id']} has {len(scores)} spml_scores for {dataset.num_classes} "
                            f"categories") from None
        values[n] = row
    return values


def _observed_only(raw: dict) -> dict:
    """The labels file without the teacher's part: its pseudo annotations and its images' scores."""
    images = [{k: v for k, v in im.items() if k != "spml_scores"} for im in raw["images"]]
    annotations = [a for a in raw.get("annotations") or [] if not (isinstance(a, dict) and a.get("source") == "pseudo")]
    return {**raw, "images": images, "annotations": annotations}


def _own_fit(answered: Answered, category_id: int) -> bool:
    mine = answered.category_ids == category_id
    return answered.yes[mine].sum() >= MIN_ANSWERS_EACH and (~answered.yes[mine]).sum() >= MIN_ANSWERS_EACH
