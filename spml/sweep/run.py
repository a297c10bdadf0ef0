"""The seed paper's tau study as one command (spml-sweep): AN and EM teachers (and a full-label model) as the
reference lines, the teacher's scores computed once, labels and a student for every tau, optional extra losses
and beyond-the-paper student variants, and a report (report.json, report.md, the two plots of Figure 1).

Every artifact lands in the report folder and is reused when present, so an interrupted sweep continues."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from spml.data.coco import CocoDataset, load_coco
from spml.data.protocol import COCO_EXPECTED_POSITIVES
from spml.errors import SpmlError
from spml.files import write_json
from spml.sweep.variants import BASES, Variant, parse_variant

VARIANTS = BASES  # the variants' bases; options join them with '+' (spml.sweep.variants)


@dataclass
class SweepConfig:
    ann: str  # single-positive training labels
    val_ann: str
    test_ann: str
    out: str
    images: str | None = None
    val_images: str | None = None
    test_images: str | None = None
    gt_ann: str | None = None  # full labels of the training images: label quality and the full-label line
    taus: tuple = (0.55, 0.65, 0.75, 0.85, 0.95)
    teacher_loss: str = "em"
    student_loss: str = "bce"
    losses: tuple = ()  # extra teacher losses for the table of all losses
    variants: tuple = ()  # variant names (spml.sweep.variants: base[+option...]), trained at the best tau (by validation mAP)
    variant_tau: float | None = None  # None: the best tau by validation mAP
    tau_low: float = 0.5  # band variant
    expected_positives: float = COCO_EXPECTED_POSITIVES  # prior variant
    train: dict = field(default_factory=dict)  # TrainConfig options for every model: arch, image_size, ..., preset, seed


@dataclass
class Sweep:
    """What every step of a sweep shares, in place of closures: its settings, its folder, the single-positive
    training set, the test-mAP cache, and the artifacts made so far (teachers, the ONNX teacher, its scores)."""

    cfg: SweepConfig
    out: Path
    log: Callable[[str], None]
    sp: CocoDataset | None = None  # the single-positive training set
    cache: dict = field(default_factory=dict)  # model path -> test mAP, kept in test_map_cache.json
    teachers: dict = field(default_factory=dict)  # loss -> checkpoint: an and the teacher loss
    onnx: Path | None = None  # the teacher exported (teacher.onnx)
    scores: dict = field(default_factory=dict)  # tta -> the ONNX teacher's scores over the training images

    @property
    def teacher(self) -> Path:
        return self.teachers[self.cfg.teacher_loss]

    def train(self, name: str, ann: str, loss: str, images=None, **extra) -> Path:
        """Model `name`.pt of the sweep's settings, or the one already in the folder."""
        return _train(self.cfg, self.out / f"{name}.pt", ann, loss, images=images, log=self.log, **extra)

    def test_map(self, model: Path) -> float:
        value = _test_map(self.cfg, model, self.cache)
        write_json(self.out / "test_map_cache.json", self.cache)
        return value


def _train(cfg: SweepConfig, out: Path, ann: str, loss: str, *, images=None, log=print, **extra) -> Path:
    from spml.train.trainer import TrainConfig, train

    if out.exists():
        log(f"reusing {out}")
        return out
    options = dict(cfg.train, ann=ann, images=images, val_ann=cfg.val_ann, val_images=cfg.val_images, loss=loss,
                   out=str(out), progress=False, **extra)
    return train(TrainConfig(**options), log=lambda s: None)


def _test_map(cfg: SweepConfig, model: Path, cache: dict) -> float:
    from spml.eval.evaluate import evaluate_model

    key = str(model)
    if key not in cache:
        cache[key] = evaluate_model(model, cfg.test_ann, cfg.test_images)["map"]
    return cache[key]


def run_sweep(cfg: SweepConfig, log=print) -> dict:
    """Every artifact of the study in order, each reused when its file is there; returns report.json's dict."""
    try:
        variants_asked = [parse_variant(v) for v in cfg.variants]
    except ValueError as e:
        raise SpmlError(str(e)) from None
    sweep = start_sweep(cfg, log)
    train_teachers(sweep)
    losses = loss_table(sweep)
    full = full_line(sweep)
    teacher_maps = {name: sweep.test_map(path) for name, path in sweep.teachers.items()}
    log("teachers: " + ", ".join(f"{k} {v:.2f}" for k, v in teacher_maps.items()))
    export_teacher(sweep)
    score_teacher(sweep)
    students = tau_students(sweep)
    variants = variant_students(sweep, variants_asked, students)
    return write_report(sweep, teacher_maps=teacher_maps, full=full, students=students, variants=variants,
                        losses=losses)


def start_sweep(cfg: SweepConfig, log) -> Sweep:
    """The report folder, the test-mAP cache of an earlier run, the single-positive training set."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = out / "test_map_cache.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    return Sweep(cfg=cfg, out=out, log=log, sp=load_coco(cfg.ann, cfg.images), cache=cache)


def train_teachers(sweep: Sweep) -> None:
    """The AN teacher (the reference line) and the teacher whose pseudo labels train the students."""
    cfg = sweep.cfg
    sweep.log(f"teachers: an and {cfg.teacher_loss} on {len(sweep.sp)} single-positive images")
    sweep.teachers["an"] = sweep.train("teacher_an", cfg.ann, "an", cfg.images)
    sweep.teachers[cfg.teacher_loss] = sweep.train(f"teacher_{cfg.teacher_loss}", cfg.ann, cfg.teacher_loss, cfg.images)


def loss_table(sweep: Sweep) -> dict:
    """The test mAP of a teacher of each extra loss (the table of all losses)."""
    cfg, losses = sweep.cfg, {}
    for loss in cfg.losses:
        model = sweep.teachers.get(loss) or sweep.train(f"teacher_{loss}", cfg.ann, loss, cfg.images)
        losses[loss] = sweep.test_map(model)
        sweep.log(f"loss {loss}: test mAP {losses[loss]:.2f}")
    return losses


def full_line(sweep: Sweep) -> float | None:
    """The test mAP of a model trained on the full labels (--gt-ann): the upper line of the report."""
    if not sweep.cfg.gt_ann:
        return None
    full = sweep.test_map(sweep.train("full", sweep.cfg.gt_ann, "bce", sweep.cfg.images))
    sweep.log(f"full labels: test mAP {full:.2f}")
    return full


def export_teacher(sweep: Sweep) -> None:
    sweep.onnx = sweep.out / "teacher.onnx"
    if not sweep.onnx.exists():
        _export(sweep.teacher, sweep.onnx)


def _export(model, onnx: Path) -> None:
    from spml.export.onnx_export import export_onnx, validate_onnx

    export_onnx(model, onnx)
    validate_onnx(onnx, model)


def exported(model: Path) -> Path:
    """`model`'s ONNX export beside it, made once."""
    onnx = model.with_suffix(".onnx")
    if not onnx.exists():
        _export(model, onnx)
    return onnx


def score_teacher(sweep: Sweep) -> None:
    """The ONNX teacher's scores over the training images, once: every tau reuses them (teacher_scores.npy)."""
    scores = scores_of(sweep, sweep.onnx, "none")
    np.save(sweep.out / "teacher_scores.npy", scores.values)


def scores_of(sweep: Sweep, onnx: Path, tta: str):
    """The scores of `onnx` (with test-time augmentation `tta`) over the training images; the sweep's teacher's
    are computed once per tta."""
    from spml.label.labeler import PseudoLabeler

    if onnx == sweep.onnx and tta in sweep.scores:
        return sweep.scores[tta]
    result = PseudoLabeler(onnx, batch_size=64, tta=tta).scores(sweep.sp)
    if onnx == sweep.onnx:
        sweep.scores[tta] = result
    return result


def write_labels_file(sweep: Sweep, labels: Path, scores, model: Path, *, tau: float,
                      dataset: CocoDataset | None = None, **settings) -> Path:
    """One labels file through spml-label's own policy and writers (spml.label.label_scores); `settings` are
    LabelConfig's (soft, tau_low, class_prior, tta). `dataset`: the training images with their labels (by default
    the single positives; a reviewed copy keeps a person's answers), `scores` being of the same images in the
    same order. No teacher recipe is recorded: the sweep gives every student its settings itself."""
    from spml.label import LabelConfig, label_scores

    label_scores(LabelConfig(out=str(labels), taus=(tau,), model=str(model), **settings),
                 sweep.sp if dataset is None else dataset, scores, warn=sweep.log)
    return labels


def student(sweep: Sweep, name: str, labels: Path, **extra) -> dict:
    """Train student `name` on `labels`; its report entry (test mAP, label quality, validation mAP)."""
    from spml.eval.evaluate import evaluate_labels
    from spml.train.model import load_checkpoint

    cfg = sweep.cfg
    model = sweep.train(f"student_{name}", str(labels), cfg.student_loss, **extra)
    entry = {"map": sweep.test_map(model)}
    if cfg.gt_ann:
        q = evaluate_labels(labels, cfg.gt_ann)
        entry.update(precision=q["precision"], recall=q["recall"], f1=q["f1"],
                     positives_per_image=q["positives_per_image"], gt_positives_per_image=q["true_positives_per_image"])
    else:
        positives = load_coco(labels).positives
        entry.update(precision=None, recall=None, positives_per_image=float(positives.sum(axis=1).mean()))
    entry["val_map"] = load_checkpoint(model)["best_metric"]
    sweep.log(f"student {name}: test mAP {entry['map']:.2f}, {entry['positives_per_image']:.2f} positives per image")
    return entry


def tau_students(sweep: Sweep) -> list[dict]:
    """The hard-threshold labels and their student at every tau (Figure 1)."""
    students = []
    for tau in sweep.cfg.taus:
        labels = write_labels_file(sweep, sweep.out / f"labels_tau{tau:g}.json", sweep.scores["none"], sweep.onnx, tau=tau)
        students.append({"tau": tau, **student(sweep, f"tau{tau:g}", labels)})
    return students


def variant_students(sweep: Sweep, variants_asked: list[Variant], students: list[dict]) -> list[dict]:
    """Each variant's student at the variant tau (by default the hard-threshold student's best by validation mAP)."""
    if not variants_asked:
        return []
    cfg = sweep.cfg
    best = max(students, key=lambda s: s["val_map"] if s["val_map"] is not None else -1)
    tau = cfg.variant_tau if cfg.variant_tau is not None else best["tau"]
    sweep.log(f"variants at tau {tau:g}"
              + ("" if cfg.variant_tau is not None else " (best validation mAP of the hard-threshold students)"))
    return [{"variant": v.name, "tau": tau, "description": v.description(), **variant_student(sweep, v, tau),
             "epochs": chain_epochs(v, cfg.train.get("epochs"))} for v in variants_asked]


def chain_epochs(v: Variant, epochs: int | None) -> int | None:
    """The epochs behind variant v's model, `epochs` being the sweep's: a model started from another's weights
    (init) counts both trainings'. None when the sweep's epochs were left to the trainer's default."""
    if epochs is None:
        return None
    own = v.train.get("epochs", epochs)
    if v.base in ("teacher", "full") or not v.init:
        return own
    if v.base == "review" and v.review.fix:  # each round's student starts from the last: all count
        return (v.teacher_epochs or epochs) + own * v.review.rounds
    return (v.teacher_epochs or epochs) + own * v.rounds


def variant_student(sweep: Sweep, v: Variant, tau: float) -> dict:
    """Train variant `v`'s student (all its rounds) at `tau`; the report entry of its last round."""
    if v.base in ("teacher", "full"):
        return reference_variant(sweep, v)
    if v.base == "review":
        return review_variant(sweep, v, tau)
    teacher_model, per_round = variant_teacher(sweep, v), []
    teacher_onnx = sweep.onnx if teacher_model == sweep.teacher else exported(teacher_model)
    if v.ensemble > 1:
        teacher_onnx = ensemble_onnx(sweep, v)
    # the model that labels the first round, when it is not the sweep's teacher: its own test mAP
    own_teacher = sweep.test_map(teacher_onnx) if teacher_onnx != sweep.onnx else None
    for k in range(1, v.rounds + 1):
        suffix = f"_r{k}" if v.base == "rounds" and k > 1 else ""
        labels = sweep.out / f"labels_{v.file_name}{suffix}.json"
        if v.base == "round2":
            teacher_onnx = exported(soft_student(sweep, tau))
        if not labels.exists():
            variant_labels(sweep, v, labels, teacher_onnx, tau=tau)
        extra = dict(v.train)
        if v.soft:
            extra["soft_targets"] = True
        if v.init:
            extra["init"] = str(teacher_model)
        entry = student(sweep, f"{v.file_name}{suffix}", labels, **extra)
        per_round.append(entry["map"])
        if k < v.rounds:  # this round's student is the next round's teacher
            teacher_model = sweep.out / f"student_{v.file_name}{suffix}.pt"
            teacher_onnx = exported(teacher_model)
    if v.base == "rounds":
        entry["rounds"] = per_round
    if own_teacher is not None:
        entry["teacher_map"] = own_teacher
    return entry


def reference_variant(sweep: Sweep, v: Variant) -> dict:
    """A reference line with other options: the teacher's or the full line's labels, trained with `v.train`."""
    from spml.train.model import load_checkpoint

    cfg = sweep.cfg
    if v.base == "full" and not cfg.gt_ann:
        raise SpmlError(f"variant {v.name}: needs --gt-ann (the full labels)") from None
    ann, loss = (cfg.ann, cfg.teacher_loss) if v.base == "teacher" else (cfg.gt_ann, "bce")
    model = sweep.train(v.file_name, ann, loss, cfg.images, **v.train)
    return {"map": sweep.test_map(model), "val_map": load_checkpoint(model)["best_metric"], "positives_per_image": None}


def variant_labels(sweep: Sweep, v: Variant, labels: Path, teacher_onnx: Path, *, tau: float) -> None:
    """Variant v's labels from `teacher_onnx`: an ignore band, per-class prior thresholds, or soft targets."""
    scores = scores_of(sweep, teacher_onnx, v.tta)
    if v.base == "band":
        settings = {"tau_low": min(sweep.cfg.tau_low, tau - 1e-3)}
    elif v.base == "prior":
        settings = {"class_prior": "auto", "expected_positives": sweep.cfg.expected_positives}
    else:
        settings = {"soft": v.soft}
    write_labels_file(sweep, labels, scores, teacher_onnx, tau=tau, tta=v.tta, **settings)


def soft_student(sweep: Sweep, tau: float) -> Path:
    """The teacher's soft labels at `tau` and their student: round2's teacher."""
    labels = sweep.out / "labels_soft.json"
    if not labels.exists():
        write_labels_file(sweep, labels, sweep.scores["none"], sweep.onnx, tau=tau, soft=True)
    return sweep.train("student_soft", str(labels), sweep.cfg.student_loss, soft_targets=True)


def variant_teacher(sweep: Sweep, v: Variant, j: int = 0) -> Path:
    """Variant v's teacher (of its tloss and tepochs), seed + j: the sweep's own teacher when they are unset."""
    cfg = sweep.cfg
    loss = v.teacher_loss or cfg.teacher_loss
    if loss == cfg.teacher_loss and v.teacher_epochs is None and j == 0:
        return sweep.teacher
    seed = cfg.train.get("seed", 0) + j
    name = f"teacher_{loss}" + (f"_epochs{v.teacher_epochs}" if v.teacher_epochs else "") + (f"_seed{seed}" if j else "")
    extra = {"seed": seed} | ({"epochs": v.teacher_epochs} if v.teacher_epochs else {})
    return sweep.train(name, cfg.ann, loss, cfg.images, **extra)


def ensemble_onnx(sweep: Sweep, v: Variant) -> Path:
    """Variant v's teacher and ens - 1 more like it, seeds seed + 1 ..., as one ONNX model."""
    members = [variant_teacher(sweep, v, j) for j in range(v.ensemble)]
    onnx = sweep.out / (members[0].stem + f"_ensemble{v.ensemble}.onnx")
    if not onnx.exists():
        _export(members, onnx)
    return onnx


def review_variant(sweep: Sweep, v: Variant, tau: float) -> dict:
    """Variant `review:B[:strategy[:unit]][+fix]`: the teacher's questions answered from --gt-ann and merged into
    the single positives; then the teacher retrained on them (EM with verified positives and negatives), or, with
    fix, the teacher's own labels corrected by them; init-soft from that teacher. Its report entry."""
    cfg = sweep.cfg
    if not cfg.gt_ann:
        raise SpmlError(f"variant {v.name}: needs --gt-ann (the answers are simulated from it)") from None
    if v.review.rounds > 1:
        return review_rounds(sweep, v, tau)
    first = variant_teacher(sweep, v)
    first_onnx = sweep.onnx if first == sweep.teacher else exported(first)
    folder = sweep.out / (f"review_{first.stem}_{v.review.per_image:g}_{v.review.strategy}_{v.review.unit}"
                          + ("_staged" if v.review.staged else ""))
    reviewed_ann, answers = review_answers(sweep, v, folder, first_onnx, tau=tau)
    if v.review.fix:
        teacher_model, teacher_onnx = first, first_onnx
    else:
        loss = v.teacher_loss or cfg.teacher_loss
        extra = {"epochs": v.teacher_epochs} if v.teacher_epochs else {}
        if v.review.ipw:  # each answer weighted by 1 / its sampling weight, recorded by select
            extra["answer_weights"] = str(folder / "selection.json")
        teacher_model = sweep.train(f"teacher_{loss}_{folder.name}" + ("_ipw" if v.review.ipw else ""),
                                    str(reviewed_ann), loss, cfg.images, **extra)
        teacher_onnx = exported(teacher_model)
    labels = sweep.out / f"labels_{v.file_name}.json"
    scores, calibration = scores_of(sweep, teacher_onnx, v.tta), None
    if v.review.calibrate:  # on the random half alone where staged: an unbiased sample of the unknown pairs
        scores, calibration = calibrated_scores(sweep, folder / "stage1" if v.review.staged else folder, scores)
    if not labels.exists():
        reviewed = load_coco(reviewed_ann, cfg.images)
        if reviewed.image_ids != sweep.sp.image_ids:  # the scores are the single positives' rows
            raise SpmlError(f"{reviewed_ann}: not the images of {cfg.ann} in their order; delete {reviewed_ann.parent}") from None
        write_labels_file(sweep, labels, scores, teacher_onnx, tau=tau, dataset=reviewed, soft=True, tta=v.tta)
    entry = student(sweep, v.file_name, labels, **v.train, soft_targets=True, init=str(teacher_model))
    entry["answers"] = answers
    entry["soft_targets"] = soft_target_quality(labels, cfg.gt_ann, sweep.sp)
    if calibration is not None:
        entry["calibration"] = calibration
    if teacher_onnx != sweep.onnx:
        entry["teacher_map"] = sweep.test_map(teacher_onnx)
    return entry


def review_rounds(sweep: Sweep, v: Variant, tau: float) -> dict:
    """`review:...+rounds:R`: the budget asked in R rounds, each round's questions chosen by the model updated on
    every answer so far, never asking a pair answered before. With fix, cal or staged, round k's labels are the
    scores of round k-1's model (the first teacher's for k = 1; calibrated on round k's own answers, which that
    model has not trained on) corrected by every answer so far, and round k's student starts from round k-1's
    model: the last round's student is the variant's, its epochs those of the whole chain. Without, the EM teacher
    is retrained on every answer so far after each round, and the last one is init-soft's teacher. The report
    entry of the last round's student, with each round's answers and test mAP under `review_rounds`."""
    cfg, review = sweep.cfg, v.review
    first = variant_teacher(sweep, v)
    model, onnx = first, sweep.onnx if first == sweep.teacher else exported(first)
    base = sweep.out / (f"review_{first.stem}_{review.per_image:g}_{review.strategy}_{review.unit}"
                        + ("_staged" if review.staged else "") + f"_rounds{review.rounds}")
    try:
        budgets = review.round_budgets(len(sweep.sp))
    except ValueError as e:
        raise SpmlError(f"variant {v.name}: {e}") from None
    observed, rounds, calibration = Path(cfg.ann), [], None
    for k, budget in enumerate(budgets, start=1):
        folder, last = base / f"round{k}", k == len(budgets)
        scores = scores_of(sweep, onnx, v.tta)
        observed, counts = ask_round(sweep, v, folder, (onnx, scores), observed=observed, tau=tau,
                                     budget=budget)
        if not review.fix:  # retrain on every answer so far; the last teacher is init-soft's
            loss = v.teacher_loss or cfg.teacher_loss
            extra = {"epochs": v.teacher_epochs} if v.teacher_epochs else {}
            model = sweep.train(f"teacher_{loss}_{base.name}_r{k}", str(observed), loss, cfg.images, **extra)
            onnx = exported(model)
            rounds.append({"round": k, **counts, "teacher_map": sweep.test_map(onnx)})
            if not last:
                continue
            scores = scores_of(sweep, onnx, v.tta)
        elif review.calibrate:  # on this round's random half (staged) or answers: fresh to the model that scored
            scores, calibration = calibrated_scores(sweep, folder / "stage1" if review.staged else folder, scores)
        name = v.file_name if last else f"{v.file_name}_r{k}"
        labels = sweep.out / f"labels_{name}.json"
        if not labels.exists():
            write_labels_file(sweep, labels, scores, onnx, tau=tau, dataset=load_coco(observed, cfg.images), soft=True,
                              tta=v.tta)
        entry = student(sweep, name, labels, **v.train, soft_targets=True, init=str(model))
        if review.fix:
            rounds.append({"round": k, **counts, "map": entry["map"]})
            model = sweep.out / f"student_{name}.pt"  # the next round's scorer and starting point
            onnx = exported(model) if not last else onnx
    entry["answers"] = {key: sum(r[key] for r in rounds) for key in ("questions", "yes", "no")}
    entry["review_rounds"] = rounds
    entry["soft_targets"] = soft_target_quality(labels, cfg.gt_ann, sweep.sp)
    if calibration is not None:
        entry["calibration"] = calibration  # the last round's
    if not review.fix:
        entry["teacher_map"] = rounds[-1]["teacher_map"]
    return entry


def ask_round(sweep: Sweep, v: Variant, folder: Path, scorer: tuple, *, observed: Path, tau: float,
              budget: int) -> tuple[Path, dict]:
    """One round of `review_rounds` in `folder`: the scorer's (onnx, scores) soft labels of `observed`, whose
    answered pairs are known and not asked again; `budget` questions (staged: half at random, the rest on the
    probabilities calibrated on that half), answered and merged into `observed`. The merged file and the counts."""
    cfg = sweep.cfg
    onnx, scores = scorer
    source = folder / "labels_soft.json"
    if not source.exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_labels_file(sweep, source, scores, onnx, tau=tau, dataset=load_coco(observed, cfg.images), soft=True,
                          tta=v.tta)
    reviewed, counts = ask_budget(sweep, v, folder, source=source, observed=observed, scores=lambda: scores,
                                  onnx=onnx, budget=budget)
    sweep.log(f"review {folder.parent.name} {folder.name}: {counts['questions']} answers, {counts['yes']} yes, "
              f"{counts['no']} no")
    return reviewed, counts


def ask_budget(sweep: Sweep, v: Variant, folder: Path, *, source: Path, observed: Path, scores, onnx: Path,
               budget: int) -> tuple[Path, dict]:
    """`budget` questions on the soft labels `source` of `observed`, answered and merged into it (folder/reviewed):
    by the variant's strategy, or staged: half at random (folder/stage1), the other half by the strategy on the
    probabilities (`scores()`, computed only when needed) calibrated on that half. The merged file and the counts
    (questions, yes, no) of both stages."""
    cfg, review = sweep.cfg, v.review
    if not review.staged:
        reviewed = ask(sweep, folder, source, observed, budget=budget, strategy=review.strategy, unit=review.unit)
        return reviewed, answer_counts(folder / "answers.csv")
    first = ask(sweep, folder / "stage1", source, observed, budget=budget // 2, strategy="random", unit=review.unit)
    calibrated = folder / "labels_calibrated.json"
    if not calibrated.exists():
        values, _ = calibrated_scores(sweep, folder / "stage1", scores())
        write_labels_file(sweep, calibrated, values, onnx, tau=0.5, dataset=load_coco(first, cfg.images), soft=True,
                          tta=v.tta)
    reviewed = ask(sweep, folder, calibrated, first, budget=budget - budget // 2, strategy=review.strategy,
                   unit=review.unit)
    counts = {k: a + b for (k, a), b in zip(answer_counts(folder / "stage1" / "answers.csv").items(),
                                             answer_counts(folder / "answers.csv").values())}
    return reviewed, counts


def review_answers(sweep: Sweep, v: Variant, folder: Path, teacher_onnx: Path, *, tau: float) -> tuple[Path, dict]:
    """spml-review's loop with a simulated person, in `folder`: the teacher's soft labels, the questions its
    strategy chooses within the budget, their answers from --gt-ann, merged into the single positives
    (reviewed.json). With `staged`, half the budget first at random (folder/stage1), the teacher's probabilities
    calibrated on those answers, then the strategy's half on the calibrated probabilities (uncertainty: nearest
    0.5). Returns the reviewed file and the answers' counts (questions, yes, no)."""
    cfg, review = sweep.cfg, v.review
    source = sweep.out / f"labels_{teacher_onnx.stem}_soft_tau{tau:g}{'' if v.tta == 'none' else '_' + v.tta}.json"
    if not source.exists():
        write_labels_file(sweep, source, scores_of(sweep, teacher_onnx, v.tta), teacher_onnx, tau=tau, soft=True,
                          tta=v.tta)
    reviewed, counts = ask_budget(sweep, v, folder, source=source, observed=Path(cfg.ann),
                                  scores=lambda: scores_of(sweep, teacher_onnx, v.tta), onnx=teacher_onnx,
                                  budget=review.budget(len(sweep.sp)))
    sweep.log(f"review {folder.name}: {counts['questions']} answers, {counts['yes']} yes, {counts['no']} no")
    return reviewed, counts


def ask(sweep: Sweep, folder: Path, labels: Path, observed: Path, *, budget: int, strategy: str, unit: str) -> Path:
    """Questions chosen from `labels` (select), answered from --gt-ann (simulate), merged into `observed` (merge):
    folder/reviewed.json, made once."""
    from spml.review.merge import merge_answers
    from spml.review.select import select_questions, write_selection
    from spml.review.simulate import simulate_answers

    seed, reviewed = cfg_seed(sweep.cfg), folder / "reviewed.json"
    if not reviewed.exists():
        folder.mkdir(parents=True, exist_ok=True)
        selection = select_questions(labels, budget=budget, strategy=strategy, unit=unit, seed=seed)
        paths = write_selection(folder, selection, labels=labels, strategy=strategy, unit=unit, budget=budget, seed=seed)
        simulate_answers(paths["questions.csv"], sweep.cfg.gt_ann, folder / "answers.csv", seed=seed)
        merge_answers(observed, [folder / "answers.csv"], reviewed)
    return reviewed


def soft_target_quality(labels: Path, gt_ann: str, sp: CocoDataset) -> dict:
    """How far a soft labels file's targets (what the student fits) are from the truth on the pairs the single
    positives leave unknown: the mean target against the share of true positives, the mean absolute error, the
    mean binary cross-entropy of the targets as predictions of the truth, and the mAP of the targets as a ranking of
    those pairs (the observed positives set aside)."""
    targets = load_coco(labels).soft_targets()
    truth = load_coco(gt_ann)
    row = {i: n for n, i in enumerate(truth.image_ids)}
    columns = [truth.column_of()[c] for c in sp.category_ids]
    y = truth.positives[[row[i] for i in sp.image_ids]][:, columns]
    from spml.eval.metrics import mean_average_precision

    ranking = mean_average_precision(np.where(sp.positives, -1.0, targets), np.where(sp.positives, 0, y))
    unknown = ~sp.positives
    t, y = np.clip(targets[unknown].astype(np.float64), 1e-6, 1 - 1e-6), y[unknown]
    return {"mean_target": float(t.mean()), "truth_rate": float(y.mean()), "mean_abs_error": float(np.abs(t - y).mean()),
            "bce": float(-(y * np.log(t) + (1 - y) * np.log(1 - t)).mean()), "map": float(ranking)}


def calibrated_scores(sweep: Sweep, folder: Path, scores) -> tuple:
    """The teacher's `scores` calibrated on the answers in `folder` (spml.review.calibrate, as spml-review
    calibrate does: per category Platt scaling, weighted answers by 1 / their sampling weight, on the scores at the
    precision a labels file keeps); the maps as [a, b] per category."""
    from spml.label.labeler import Scores
    from spml.label.writers import SCORE_DECIMALS
    from spml.review.calibrate import calibrate, fit_answered, read_answered

    # the scores as the soft labels file records them: the numbers spml-review calibrate reads, so that the
    # loop typed as commands writes the sweep's labels (a change below 1e-5 of each probability)
    values = np.round(scores.values.astype(np.float64), SCORE_DECIMALS).astype(np.float32)
    maps = fit_answered(values, read_answered([folder]), image_ids=sweep.sp.image_ids[scores.start:][:len(values)],
                        category_ids=sweep.sp.category_ids, where=str(folder))
    return Scores(calibrate(values, maps), scores.failures, scores.seconds, scores.start), maps.tolist()


def _answers(path: Path) -> list[tuple[int, int, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return [(int(r["image_id"]), int(r["category_id"]), r["answer"].strip().lower()) for r in csv.DictReader(f)]


def cfg_seed(cfg: SweepConfig) -> int:
    return int(cfg.train.get("seed") or 0)


def answer_counts(answers: Path) -> dict:
    """Questions asked and answered yes / no in a filled questions CSV."""
    said = [answer for *_, answer in _answers(answers)]
    return {"questions": len(said), "yes": said.count("yes"), "no": said.count("no")}


def write_report(sweep: Sweep, *, teacher_maps: dict, full: float | None, students: list, variants: list,
                 losses: dict) -> dict:
    """report.json, report.md and the two plots; each entry gains its share of the teacher -> full-labels gap."""
    em = teacher_maps[sweep.cfg.teacher_loss]
    for entry in students + variants:  # (student - teacher) / (full - teacher): how much of the way to full labels
        entry["gap_share"] = gap_share(entry["map"], em, full)
    equal = equal_epoch_lines(sweep.cfg, em, full, variants)
    if equal is not None:
        for entry in students + variants:
            entry["gap_share_equal_epochs"] = gap_share(entry["map"], equal["em"], equal["full"]) \
                if equal["em"] is not None else None
        if equal["em"] is None or equal["full"] is None:
            sweep.log(f"no equal-epoch gap shares: add the variants teacher+epochs:{equal['epochs']} and "
                      f"full+epochs:{equal['epochs']} (the longest training in the report)")
    report = {
        "teachers": teacher_maps,
        "full": full,
        **({"equal_epochs": equal} if equal is not None else {}),
        "students": students,
        "variants": variants,
        "losses": losses,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(sweep.cfg).items()},
    }
    write_json(sweep.out / "report.json", report)
    write_report_files(report, sweep.out)
    return report


def equal_epoch_lines(cfg: SweepConfig, em: float, full: float | None, variants: list) -> dict | None:
    """The EM and full-label lines at the epochs of the longest training in the report (a model started from
    another's weights counting both), where the report has them: the sweep's own at its epochs, else the
    variants teacher+epochs:N and full+epochs:N. None when no variant records its epochs."""
    epochs = cfg.train.get("epochs")
    longest = max([v["epochs"] for v in variants if v.get("epochs") is not None], default=None)
    if longest is None or epochs is None:
        return None
    longest = max(longest, epochs)
    if longest == epochs:
        return {"epochs": longest, "em": em, "full": full}
    by_name = {v["variant"]: v["map"] for v in variants}
    return {"epochs": longest, "em": by_name.get(f"teacher+epochs:{longest}"), "full": by_name.get(f"full+epochs:{longest}")}


def gap_share(student: float, teacher: float, full: float | None) -> float | None:
    """The share of the teacher -> full-labels gap a student closes (negative when it falls below the teacher)."""
    if full is None or full == teacher:
        return None
    return (student - teacher) / (full - teacher)


def write_report_files(report: dict, out: Path) -> None:
    """report.md and the two plots, from report.json's numbers alone."""
    (out / "report.md").write_text(report_markdown(report))
    plot_figure1(report, out)
    from spml.sweep.review_report import plot_review_gap, review_entries, review_markdown

    if review_entries(report):  # the review variants' own table and plot (issue 20's measures)
        (out / "review.md").write_text(review_markdown([report]))
        plot_review_gap([report], out / "gap_share_vs_budget.png")


def _fmt(value, digits=2):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def report_markdown(report: dict) -> str:
    t = report["teachers"]
    lines = ["# tau sweep", "", "| model | test mAP |", "|---|---|"]
    lines += [f"| {name.upper()} teacher | {_fmt(v)} |" for name, v in t.items()]
    lines.append(f"| full labels | {_fmt(report['full'])} |")
    lines += ["", "| tau | student test mAP | positives / image | precision | recall |", "|---|---|---|---|---|"]
    lines += [f"| {s['tau']:g} | {_fmt(s['map'])} | {_fmt(s['positives_per_image'])} | {_fmt(s.get('precision'), 3)} | "
              f"{_fmt(s.get('recall'), 3)} |" for s in report["students"]]
    if report.get("variants"):
        share = any(v.get("gap_share") is not None for v in report["variants"])
        lines += ["", "| variant | tau | student test mAP | positives / image |" + (" share of the gap to full labels |" if share else ""),
                  "|---|---|---|---|" + ("---|" if share else "")]
        lines += [f"| {v['variant']} ({v['description']}"
                  + ("; test mAP by round: " + ", ".join(_fmt(m) for m in v["rounds"]) if v.get("rounds") else "")
                  + (f"; its teacher's test mAP {_fmt(v['teacher_map'])}" if v.get("teacher_map") is not None else "")
                  + f") | {v['tau']:g} | {_fmt(v['map'])} | {_fmt(v['positives_per_image'])} |"
                  + (f" {_percent(v.get('gap_share'))} |" if share else "")
                  for v in report["variants"]]
    if report.get("losses"):
        lines += ["", "| loss (teacher on single positives) | test mAP |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in report["losses"].items()]
        lines.append(f"| full labels (bce, upper bound) | {_fmt(report['full'])} |")
    lines += ["", "Figures: fig1a_map_vs_tau.png, fig1b_positives_vs_tau.png", ""]
    return "\n".join(lines)


def plot_figure1(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = [s["tau"] for s in report["students"]]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(taus, [s["map"] for s in report["students"]], "o-", label="student")
    styles = {"an": ("tab:red", ":"), "em": ("tab:green", "--")}
    for name, value in report["teachers"].items():
        color, style = styles.get(name, ("tab:gray", "-."))
        ax.axhline(value, color=color, linestyle=style, label=f"{name.upper()} teacher")
    if report["full"] is not None:
        ax.axhline(report["full"], color="black", linestyle="-", label="full labels")
    ax.set_xlabel("tau")
    ax.set_ylabel("test mAP")
    ax.legend(fontsize=8)
    ax.set_title("(a) student mAP against tau")
    fig.tight_layout()
    fig.savefig(out / "fig1a_map_vs_tau.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(taus, [s["positives_per_image"] for s in report["students"]], "o-", label="pseudo labels")
    gt = [s.get("gt_positives_per_image") for s in report["students"] if s.get("gt_positives_per_image") is not None]
    if gt:
        ax.axhline(gt[0], color="black", linestyle="--", label="ground truth")
    ax.set_xlabel("tau")
    ax.set_ylabel("positives per image")
    ax.legend(fontsize=8)
    ax.set_title("(b) positives per image against tau")
    fig.tight_layout()
    fig.savefig(out / "fig1b_positives_vs_tau.png", dpi=120)
    plt.close(fig)
