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

import numpy as np

from spml.data.coco import load_coco
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


def _train(cfg: SweepConfig, out: Path, ann: str, loss: str, images=None, log=print, **extra) -> Path:
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
    from spml.export.onnx_export import export_onnx, validate_onnx
    from spml.label.labeler import PseudoLabeler, observed_priors, prior_thresholds, write_labels
    from spml.eval.evaluate import evaluate_labels

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        variants_asked = [parse_variant(v) for v in cfg.variants]
    except ValueError as e:
        raise SpmlError(str(e)) from None
    cache_path = out / "test_map_cache.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}

    def test_map(model: Path) -> float:
        value = _test_map(cfg, model, cache)
        write_json(cache_path, cache)
        return value

    sp = load_coco(cfg.ann, cfg.images)
    log(f"teachers: an and {cfg.teacher_loss} on {len(sp)} single-positive images")
    teachers = {"an": _train(cfg, out / "teacher_an.pt", cfg.ann, "an", cfg.images, log)}
    teachers[cfg.teacher_loss] = _train(cfg, out / f"teacher_{cfg.teacher_loss}.pt", cfg.ann, cfg.teacher_loss, cfg.images, log)
    losses = {}
    for loss in cfg.losses:
        path = out / f"teacher_{loss}.pt"
        losses[loss] = test_map(teachers.get(loss) or _train(cfg, path, cfg.ann, loss, cfg.images, log))
        log(f"loss {loss}: test mAP {losses[loss]:.2f}")
    full = None
    if cfg.gt_ann:
        full = test_map(_train(cfg, out / "full.pt", cfg.gt_ann, "bce", cfg.images, log))
        log(f"full labels: test mAP {full:.2f}")
    teacher_maps = {name: test_map(path) for name, path in teachers.items()}
    log("teachers: " + ", ".join(f"{k} {v:.2f}" for k, v in teacher_maps.items()))

    onnx_path = out / "teacher.onnx"
    if not onnx_path.exists():
        export_onnx(teachers[cfg.teacher_loss], onnx_path)
        validate_onnx(onnx_path, teachers[cfg.teacher_loss])
    labeler = PseudoLabeler(onnx_path, batch_size=64)
    scores = labeler.scores(sp)  # once: every tau reuses them
    np.save(out / "teacher_scores.npy", scores.values)

    def student(name: str, labels: Path, **extra) -> dict:
        model = _train(cfg, out / f"student_{name}.pt", str(labels), cfg.student_loss, log=log, **extra)
        entry = {"map": test_map(model)}
        if cfg.gt_ann:
            q = evaluate_labels(labels, cfg.gt_ann)
            entry.update(precision=q["precision"], recall=q["recall"], f1=q["f1"],
                         positives_per_image=q["positives_per_image"], gt_positives_per_image=q["true_positives_per_image"])
        else:
            positives = load_coco(labels).positives
            entry.update(precision=None, recall=None, positives_per_image=float(positives.sum(axis=1).mean()))
        from spml.train.model import load_checkpoint

        entry["val_map"] = load_checkpoint(model)["best_metric"]
        log(f"student {name}: test mAP {entry['map']:.2f}, {entry['positives_per_image']:.2f} positives per image")
        return entry

    students = []
    for tau in cfg.taus:
        labels = out / f"labels_tau{tau:g}.json"
        write_labels(labels, sp, scores, tau, True, onnx_path)
        students.append({"tau": tau, **student(f"tau{tau:g}", labels)})

    def soft_student(tau: float) -> Path:
        labels = out / "labels_soft.json"
        if not labels.exists():
            write_labels(labels, sp, scores, tau, True, onnx_path, soft=True)
        return _train(cfg, out / "student_soft.pt", str(labels), cfg.student_loss, log=log, soft_targets=True)

    def variant_student(v: Variant, tau: float) -> dict:
        """Train variant `v`'s student (all its rounds) at `tau`; the report entry of its last round."""
        if v.base in ("teacher", "full"):  # a reference line: the same labels as the teacher or full line, other options
            if v.base == "full" and not cfg.gt_ann:
                raise SpmlError(f"variant {v.name}: needs --gt-ann (the full labels)") from None
            ann, loss = (cfg.ann, cfg.teacher_loss) if v.base == "teacher" else (cfg.gt_ann, "bce")
            model = _train(cfg, out / f"{v.file_name}.pt", ann, loss, cfg.images, log, **v.train)
            from spml.train.model import load_checkpoint

            return {"map": test_map(model), "val_map": load_checkpoint(model)["best_metric"], "positives_per_image": None}
        teacher_model, per_round = variant_teacher(v), []
        teacher_onnx = onnx_path if teacher_model == teachers[cfg.teacher_loss] else exported(teacher_model)
        if v.ensemble > 1:
            teacher_onnx = ensemble_onnx(v)
        # the model that labels the first round, when it is not the sweep's teacher: its own test mAP
        own_teacher = test_map(teacher_onnx) if teacher_onnx != onnx_path else None
        for k in range(1, v.rounds + 1):
            suffix = f"_r{k}" if v.base == "rounds" and k > 1 else ""
            labels = out / f"labels_{v.file_name}{suffix}.json"
            extra = dict(v.train)
            if v.base == "round2":
                teacher_onnx = exported(soft_student(tau))
            if not labels.exists():
                if v.base == "band":
                    write_labels(labels, sp, scores_of(teacher_onnx, v.tta), tau, True, teacher_onnx,
                                 tau_low=min(cfg.tau_low, tau - 1e-3), tta=v.tta)
                elif v.base == "prior":
                    taus = prior_thresholds(scores_of(teacher_onnx, v.tta).values, observed_priors(sp, cfg.expected_positives))
                    write_labels(labels, sp, scores_of(teacher_onnx, v.tta), taus, True, teacher_onnx, tta=v.tta)
                else:
                    write_labels(labels, sp, scores_of(teacher_onnx, v.tta), tau, True, teacher_onnx, soft=v.soft, tta=v.tta)
            if v.soft:
                extra["soft_targets"] = True
            if v.init:
                extra["init"] = str(teacher_model)
            entry = student(f"{v.file_name}{suffix}", labels, **extra)
            per_round.append(entry["map"])
            if k < v.rounds:  # this round's student is the next round's teacher
                teacher_model = out / f"student_{v.file_name}{suffix}.pt"
                teacher_onnx = exported(teacher_model)
        if v.base == "rounds":
            entry["rounds"] = per_round
        if own_teacher is not None:
            entry["teacher_map"] = own_teacher
        return entry

    teacher_scores = {"none": scores}

    def scores_of(onnx: Path, tta: str):
        """The scores of `onnx` (with test-time augmentation `tta`) over the training images, computed once."""
        if onnx == onnx_path and tta in teacher_scores:
            return teacher_scores[tta]
        result = PseudoLabeler(onnx, batch_size=64, tta=tta).scores(sp)
        if onnx == onnx_path:
            teacher_scores[tta] = result
        return result

    def variant_teacher(v: Variant, j: int = 0) -> Path:
        """Variant v's teacher (of its tloss and tepochs), seed + j: the sweep's own teacher when they are unset."""
        loss = v.teacher_loss or cfg.teacher_loss
        if loss == cfg.teacher_loss and v.teacher_epochs is None and j == 0:
            return teachers[cfg.teacher_loss]
        seed = cfg.train.get("seed", 0) + j
        name = f"teacher_{loss}" + (f"_epochs{v.teacher_epochs}" if v.teacher_epochs else "") + (f"_seed{seed}" if j else "")
        extra = {"seed": seed} | ({"epochs": v.teacher_epochs} if v.teacher_epochs else {})
        return _train(cfg, out / f"{name}.pt", cfg.ann, loss, cfg.images, log, **extra)

    def ensemble_onnx(v: Variant) -> Path:
        """Variant v's teacher and ens - 1 more like it, seeds seed + 1 ..., as one ONNX model."""
        members = [variant_teacher(v, j) for j in range(v.ensemble)]
        onnx = out / (members[0].stem + f"_ensemble{v.ensemble}.onnx")
        if not onnx.exists():
            export_onnx(members, onnx)
            validate_onnx(onnx, members)
        return onnx

    def exported(model: Path) -> Path:
        onnx = model.with_suffix(".onnx")
        if not onnx.exists():
            export_onnx(model, onnx)
            validate_onnx(onnx, model)
        return onnx

    variants = []
    if variants_asked:
        best = max(students, key=lambda s: s["val_map"] if s["val_map"] is not None else -1)
        tau = cfg.variant_tau if cfg.variant_tau is not None else best["tau"]
        log(f"variants at tau {tau:g}" + ("" if cfg.variant_tau is not None else " (best validation mAP of the hard-threshold students)"))
        for v in variants_asked:
            entry = variant_student(v, tau)
            variants.append({"variant": v.name, "tau": tau, "description": v.description(), **entry})

    em = teacher_maps[cfg.teacher_loss]
    for entry in students + variants:  # (student - teacher) / (full - teacher): how much of the way to full labels
        entry["gap_share"] = gap_share(entry["map"], em, full)
    report = {
        "teachers": teacher_maps,
        "full": full,
        "students": students,
        "variants": variants,
        "losses": losses,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
    }
    write_json(out / "report.json", report)
    write_report_files(report, out)
    return report


def gap_share(student: float, teacher: float, full: float | None) -> float | None:
    """The share of the teacher -> full-labels gap a student closes (negative when it falls below the teacher)."""
    if full is None or full == teacher:
        return None
    return (student - teacher) / (full - teacher)


def write_report_files(report: dict, out: Path) -> None:
    """report.md and the two plots, from report.json's numbers alone."""
    (out / "report.md").write_text(report_markdown(report))
    plot_figure1(report, out)


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
