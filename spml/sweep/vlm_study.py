"""Issue 21's study on one seed: the vision-language teachers of the built-in VLM (spml-data vlm) against the cnn4
EM teacher of the pretrained regime (docs/sweep-students), each with the soft student it teaches.

    python -m spml.sweep.vlm_study --data s0 --seed 0 --reference out0 --out vlm0

--data holds one seed's built-in data (sp_train.json, instances_{train,val,test}.json, images/). --reference is
the spml-sweep report folder of the pretrained regime on exactly that data: its cnn4 EM teacher (teacher_em.pt) and
the test mAP of the EM teacher and of full labels at 8 and 16 epochs (report.json's teachers, full and variants
teacher+epochs:16, full+epochs:16) are read from there, not retrained.

Teachers: the zero-shot teacher of the VLM, raw and calibrated on the single positives; the VLM-linear EM teacher
(its image tower frozen, the zero-shot head trained by the EM loss on cached features); the cnn4 EM teacher. Each
one's test mAP, its labels of the training images at tau 0.5 and 0.75 against the ground truth, its soft targets'
quality, and its soft student: cnn4 from the backbone of spml-data backbone, 32 px, 8 epochs, batch 32, lr 3e-4,
fitting the teacher's probabilities (spml-label --soft). Every artifact lands in --out and is reused when present,
so an interrupted study continues; each step's wall seconds are kept in steps.json (a reused step keeps the seconds
it took when it ran). OUT/report.json holds every number, the config and the costs."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import click

from spml.cli_util import command
from spml.errors import SpmlError
from spml.files import write_json

TEACHERS = ("zero-shot", "zero-shot-calibrated", "vlm-linear", "cnn4-em")
TAUS = (0.5, 0.75)
SOFT_TAU = 0.75  # the soft labels file's hard part (the student fits the probabilities): the sweep's variant tau
# the pretrained regime's student (docs/sweep-students), weights: the built-in backbone, seed: the study's
STUDENT = {"arch": "cnn4", "image_size": 32, "epochs": 8, "batch_size": 32, "lr": 3e-4}
DATA_FILES = ("sp_train.json", "instances_train.json", "instances_val.json", "instances_test.json")
STEM = {"zero-shot": "zs", "zero-shot-calibrated": "zs_cal", "vlm-linear": "vlm_linear", "cnn4-em": "cnn4_em"}


@dataclass
class StudyConfig:
    data: str  # one seed's built-in data: DATA_FILES and images/
    reference: str  # the spml-sweep report folder of the pretrained regime on the same data
    out: str
    seed: int = 0  # the trainings' seed (the data's seed, by the convention of docs/sweep-students)
    vlm_seed: int = 0  # spml-data vlm's seed
    vlm: tuple[str, str] | None = None  # (model config JSON, whole CLIP weights); None: spml-data vlm's
    student: dict = field(default_factory=lambda: dict(STUDENT))  # TrainConfig options; no "weights": the backbone

    def path(self, name: str) -> Path:
        return Path(self.data) / name


@dataclass
class Study:
    """The study's settings, its folder and the wall seconds of its steps (steps.json)."""

    cfg: StudyConfig
    out: Path
    log: Callable[[str], None]
    seconds: dict = field(default_factory=dict)

    def step(self, name: str, outputs: list[Path], make: Callable[[], object]) -> None:
        """Run `make` unless every one of `outputs` exists; its wall seconds kept under `name`."""
        if outputs and all(p.exists() for p in outputs):
            self.log(f"reusing {name}")
            return
        started = time.time()
        make()
        self.seconds[name] = round(time.time() - started, 1)
        write_json(self.out / "steps.json", self.seconds)
        self.log(f"{name}: {self.seconds[name]:.0f}s")


def run_study(cfg: StudyConfig, log=print) -> dict:
    """Every step in order, each reused when its files are there; returns report.json's dict."""
    references = reference_lines(Path(cfg.reference))
    study = start_study(cfg, log)
    vlm = vlm_record(study)
    teachers = {
        "zero-shot": zero_shot_teacher(study, vlm, calibrated=False),
        "zero-shot-calibrated": zero_shot_teacher(study, vlm, calibrated=True),
        "vlm-linear": vlm_linear_teacher(study, vlm),
        "cnn4-em": cnn4_em_teacher(study, references),
    }
    for name, entry in teachers.items():
        label_teacher(study, name, entry)
        entry["student"] = soft_student(study, name)
        entry["cost"] = cost(name, entry, study.seconds)
        add_gap_shares(entry, references)
    report = {"seed": cfg.seed, "references": references, "vlm": vlm, "teachers": teachers,
              "steps_seconds": dict(study.seconds), "config": config_record(cfg)}
    write_json(study.out / "report.json", report)
    log(f"wrote {study.out / 'report.json'}")
    return report


def start_study(cfg: StudyConfig, log) -> Study:
    missing = [n for n in DATA_FILES if not cfg.path(n).is_file()]
    if missing:
        raise SpmlError(f"--data {cfg.data}: no {', '.join(missing)} (one seed's built-in data)") from None
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = out / "steps.json"
    return Study(cfg, out, log, json.loads(steps.read_text()) if steps.exists() else {})


def reference_lines(folder: Path) -> dict:
    """The cnn4 EM teacher's and full labels' test mAP at 8 and 16 epochs, from the sweep report in `folder`."""
    from spml.data.json_stream import load_json

    path = folder / "report.json"
    if not path.is_file():
        raise SpmlError(f"--reference {folder}: no report.json (an spml-sweep report folder)") from None
    report = load_json(path, "--reference")
    try:
        by_name = {v["variant"]: v["map"] for v in report.get("variants", [])}
        epochs = report["config"]["train"]["epochs"]
        em, full = report["teachers"]["em"], report["full"]
    except (AttributeError, KeyError, TypeError):
        raise SpmlError(f"{path}: not an spml-sweep report with an EM teacher, a full line and its epochs") from None
    lines = {"source": str(path.resolve()), "epochs": epochs,
             "em": {str(epochs): em, "16": by_name.get("teacher+epochs:16")},
             "full": {str(epochs): full, "16": by_name.get("full+epochs:16")},
             "em_checkpoint": str((folder / "teacher_em.pt").resolve()), "train": report["config"]["train"]}
    if None in (lines["em"]["16"], lines["full"]["16"], lines["full"][str(epochs)]):
        raise SpmlError(f"{path}: needs --gt-ann's full line and the variants teacher+epochs:16, full+epochs:16") from None
    return lines


def vlm_record(study: Study) -> dict:
    """The VLM: the built-in one (trained once, cached), with the check that its scenes are none of the data's
    images; or the caller's (no scenes to check)."""
    from spml.train.vlm import SCENE_SEED, VLM_SCENES, builtin_vlm

    if study.cfg.vlm is not None:
        config, weights = study.cfg.vlm
        return {"config": str(config), "weights": str(weights), "arch": f"open_clip/{config}", "overlap": None}
    config, weights = builtin_vlm(study.cfg.vlm_seed, log=study.log)
    check = study.out / "vlm_overlap.json"
    study.step("vlm overlap check", [check], lambda: write_json(check, scene_overlap(study.cfg, VLM_SCENES)))
    return {"config": str(config), "weights": str(weights), "arch": f"open_clip/{config}",
            "scene_seed": SCENE_SEED + study.cfg.vlm_seed, "scenes": VLM_SCENES,
            "overlap": json.loads(check.read_text())}


def scene_signature(width: int, height: int, objects) -> tuple:
    """What identifies a drawn scene: its size and each object's category and box (drawn at random, in pixels)."""
    return (width, height, tuple(sorted((int(c), tuple(round(v, 1) for v in box)) for c, box in objects)))


def scene_overlap(cfg: StudyConfig, num_scenes: int) -> dict:
    """The VLM's training scenes redrawn from its generator seed, compared with every image of the data (train, val
    and test) by scene_signature: the count that coincide (0: disjoint)."""
    import numpy as np

    from spml.data.demo import CATEGORIES, DemoConfig, draw_image
    from spml.data.json_stream import load_json
    from spml.train.vlm import SCENE_SEED

    seed = SCENE_SEED + cfg.vlm_seed
    rng, config = np.random.default_rng(seed), DemoConfig(seed=seed)
    scenes = set()
    for _ in range(num_scenes):
        img, objects = draw_image(rng, config)
        scenes.add(scene_signature(img.width, img.height, [(CATEGORIES[j][0], box) for j, box in objects]))
    data = {}
    for split in ("train", "val", "test"):
        coco = load_json(cfg.path(f"instances_{split}.json"), f"instances_{split}.json")
        boxes = {im["id"]: [] for im in coco["images"]}
        for a in coco["annotations"]:
            boxes[a["image_id"]].append((a["category_id"], a["bbox"]))
        data[split] = [scene_signature(im["width"], im["height"], boxes[im["id"]]) for im in coco["images"]]
    return {"vlm_scenes": num_scenes, "scene_seed": seed, "data_images": {k: len(v) for k, v in data.items()},
            "coinciding": sum(s in scenes for v in data.values() for s in v),
            "measure": "image size and every object's category and box equal"}


def _exported(study: Study, name: str, checkpoint) -> Path:
    """STEM[name].onnx from `checkpoint` (a path, or a checkpoint dict made in memory), validated, made once."""
    from spml.export.onnx_export import export_onnx, validate_onnx

    onnx = study.out / f"{STEM[name]}.onnx"
    if not onnx.exists():
        export_onnx(checkpoint, onnx)
        validate_onnx(onnx, checkpoint)
    return onnx


def zero_shot_teacher(study: Study, vlm: dict, *, calibrated: bool) -> dict:
    """spml-export --zero-shot open_clip/CONFIG --weights W --categories SP [--calibrate SP]: no training; the
    calibration's fit (one temperature, a bias per class) on the frozen logits of the single-positive images."""
    from spml.train.zero_shot import zero_shot_teacher as make

    sp = study.cfg.path("sp_train.json")
    name = "zero-shot-calibrated" if calibrated else "zero-shot"
    record = study.out / f"{STEM[name]}.json"

    def export():
        ckpt = make(vlm["arch"], weights=vlm["weights"], categories=sp, calibrate=sp if calibrated else None,
                    log=study.log)
        _exported(study, name, ckpt)
        write_json(record, {"calibration": ckpt["open_clip"].get("calibration")})

    study.step(f"{name}: export", [study.out / f"{STEM[name]}.onnx", record], export)
    entry = {"model": str(study.out / f"{STEM[name]}.onnx"), **json.loads(record.read_text())}
    return _with_test_map(study, name, entry)


def vlm_linear_teacher(study: Study, vlm: dict) -> dict:
    """spml-train --arch open_clip/CONFIG --weights W --mode linear: the EM loss, the zero-shot head its start,
    the image tower frozen (its features cached)."""
    from spml.train.trainer import TrainConfig, train

    cfg, model = study.cfg, study.out / "vlm_linear.pt"
    options = dict(ann=str(cfg.path("sp_train.json")), val_ann=str(cfg.path("instances_val.json")), arch=vlm["arch"],
                   weights=vlm["weights"], mode="linear", loss="em", seed=cfg.seed, out=str(model), progress=False)
    study.step("vlm-linear: train", [model], lambda: train(TrainConfig(**options), log=lambda s: None))
    study.step("vlm-linear: export", [study.out / "vlm_linear.onnx"], lambda: _exported(study, "vlm-linear", model))
    entry = {"model": str(study.out / "vlm_linear.onnx"), "checkpoint": str(model), "train": _trained(model)}
    return _with_test_map(study, "vlm-linear", entry)


def cnn4_em_teacher(study: Study, references: dict) -> dict:
    """The reference sweep's cnn4 EM teacher (8 epochs from the backbone), exported here; its test mAP is the
    sweep's (the same model on the same test set)."""
    model = Path(references["em_checkpoint"])
    if not model.is_file():
        raise SpmlError(f"--reference: no {model}") from None
    study.step("cnn4-em: export", [study.out / "cnn4_em.onnx"], lambda: _exported(study, "cnn4-em", model))
    return {"model": str(study.out / "cnn4_em.onnx"), "checkpoint": str(model), "train": _trained(model),
            "test_map": references["em"][str(references["epochs"])], "test_map_source": references["source"]}


def _trained(model: Path) -> dict:
    from spml.train.model import load_checkpoint

    ckpt = load_checkpoint(model)
    keys = ("arch", "mode", "epochs", "loss", "seed", "lr", "batch_size", "image_size")
    return {"epochs_best": ckpt.get("epoch"), **{k: ckpt["config"].get(k) for k in keys if k in ckpt["config"]}}


def _with_test_map(study: Study, name: str, entry: dict) -> dict:
    """entry with test_map: the exported teacher on the test set (spml-eval), kept in test_map_NAME.json."""
    from spml.eval.evaluate import evaluate_model

    path = study.out / f"test_map_{STEM[name]}.json"
    study.step(f"{name}: test mAP", [path], lambda: write_json(
        path, {"map": evaluate_model(entry["model"], study.cfg.path("instances_test.json"))["map"]}))
    return {**entry, "test_map": json.loads(path.read_text())["map"]}


def label_files(study: Study, name: str) -> dict:
    files = {f"{tau:g}": study.out / f"labels_{STEM[name]}_tau{tau:g}.json" for tau in TAUS}
    return {**files, "soft": study.out / f"labels_{STEM[name]}_soft.json"}


def label_teacher(study: Study, name: str, entry: dict) -> None:
    """One labeling pass of the teacher over the training images (spml-label's scores), then its labels at each
    tau and its soft labels; their quality against the ground truth goes into `entry`."""
    from spml.data.coco import load_coco
    from spml.eval.evaluate import evaluate_labels
    from spml.label import LabelConfig, label_scores
    from spml.label.labeler import PseudoLabeler
    from spml.sweep.run import soft_target_quality

    cfg, files = study.cfg, label_files(study, name)
    sp = load_coco(cfg.path("sp_train.json"))

    def write():
        scores = PseudoLabeler(entry["model"], batch_size=64).scores(sp)
        for key, path in files.items():
            soft = key == "soft"
            label_scores(LabelConfig(out=str(path), taus=(SOFT_TAU if soft else float(key),), model=entry["model"],
                                     soft=soft), sp, scores, warn=study.log)

    study.step(f"{name}: labeling pass", list(files.values()), write)
    truth = cfg.path("instances_train.json")
    entry["labels"] = {}
    for key in (f"{tau:g}" for tau in TAUS):
        q = evaluate_labels(files[key], truth)
        entry["labels"][key] = {k: q[k] for k in ("precision", "recall", "f1", "positives_per_image")}
        entry["true_positives_per_image"] = q["true_positives_per_image"]
    entry["soft_targets"] = soft_target_quality(files["soft"], str(truth), sp)


def soft_student(study: Study, name: str) -> dict:
    """The pretrained regime's cnn4 student fitting the teacher's soft labels; its test mAP and validation mAP."""
    from spml.eval.evaluate import evaluate_model
    from spml.train.model import load_checkpoint
    from spml.train.trainer import TrainConfig, train

    cfg = study.cfg
    model = study.out / f"student_{STEM[name]}.pt"
    options = dict(cfg.student, weights=student_weights(cfg, study.log), seed=cfg.seed, loss="bce",
                   soft_targets=True, ann=str(label_files(study, name)["soft"]),
                   val_ann=str(cfg.path("instances_val.json")), out=str(model), progress=False)
    study.step(f"{name}: student", [model], lambda: train(TrainConfig(**options), log=lambda s: None))
    path = study.out / f"test_map_student_{STEM[name]}.json"
    study.step(f"{name}: student test mAP", [path], lambda: write_json(
        path, {"map": evaluate_model(model, cfg.path("instances_test.json"))["map"]}))
    return {"checkpoint": str(model), "test_map": json.loads(path.read_text())["map"],
            "val_map": load_checkpoint(model)["best_metric"], "epochs": cfg.student["epochs"]}


# what each teacher trains: (what, end to end), its epochs from its checkpoint; None: nothing
TEACHER_TRAINING = {
    "zero-shot": None,
    "zero-shot-calibrated": ("calibration: a temperature and a bias per class (L-BFGS)", False),
    "vlm-linear": ("linear head on frozen cached features (EM loss)", False),
    "cnn4-em": ("cnn4 end to end from the backbone (EM loss)", True),
}
# the passes of a model over the training images besides the labeling pass
OTHER_PASSES = {"zero-shot-calibrated": "frozen logits of the single-positive images",
                "vlm-linear": "the image tower's features of the training and validation images (cached)"}


def cost(name: str, entry: dict, seconds: dict) -> dict:
    """What the teacher and its student cost: the trainings (what they train, how many epochs, end to end or a
    head on cached features), the passes of a model over the training images (labeling, features, calibration's
    logits), and the wall seconds of the steps measured here."""
    trainings = []
    if TEACHER_TRAINING[name] is not None:
        what, end_to_end = TEACHER_TRAINING[name]
        epochs = entry.get("train", {}).get("epochs") if "train" in entry else None
        trainings.append({"what": what, "epochs": epochs, "end_to_end": end_to_end})
    student = {"what": "cnn4 student end to end from the backbone (soft targets)", "epochs": entry["student"]["epochs"],
               "end_to_end": True}
    own = {k.split(": ", 1)[1]: v for k, v in seconds.items() if k.startswith(f"{name}: ")}
    return {"teacher_trainings": trainings,
            "teacher_end_to_end_epochs": sum(t["epochs"] or 0 for t in trainings if t["end_to_end"]),
            "student_training": student, "labeling_passes": 1,
            "other_passes": int(name in OTHER_PASSES), "other_passes_are": OTHER_PASSES.get(name), "seconds": own,
            "seconds_note": "the teacher's training is the reference sweep's, not timed here" if name == "cnn4-em" else None}


def gap_share(value: float, em: float, full: float) -> float:
    """The share of the EM -> full-labels gap `value` closes (negative below the EM teacher)."""
    return (value - em) / (full - em)


def add_gap_shares(entry: dict, references: dict) -> None:
    """The teacher's and its student's shares of the gap against the EM and full lines at each epoch count."""
    lines = {k: (references["em"][k], references["full"][k]) for k in references["em"]}
    entry["gap_share"] = {k: gap_share(entry["test_map"], em, full) for k, (em, full) in lines.items()}
    entry["student"]["gap_share"] = {k: gap_share(entry["student"]["test_map"], em, full) for k, (em, full) in lines.items()}


def student_weights(cfg: StudyConfig, log=print) -> str | None:
    """The students' starting weights: the config's, else the built-in backbone (spml-data backbone)."""
    from spml.train.pretrain import builtin_backbone

    return cfg.student["weights"] if "weights" in cfg.student else str(builtin_backbone(log=log))


def config_record(cfg: StudyConfig) -> dict:
    return {**asdict(cfg), "student": {**cfg.student, "weights": student_weights(cfg), "seed": cfg.seed,
                                       "loss": "bce", "soft_targets": True},
            "taus": list(TAUS), "soft_tau": SOFT_TAU, "data_files": list(DATA_FILES)}


@command()
@click.option("--data", required=True, type=click.Path(file_okay=False, exists=True),
              help="One seed's built-in data: sp_train.json, instances_{train,val,test}.json, images/.")
@click.option("--reference", required=True, type=click.Path(file_okay=False, exists=True),
              help="The spml-sweep report folder of the pretrained regime on the same data (teacher_em.pt, report.json).")
@click.option("--seed", default=0, show_default=True, help="Seed of the trainings.")
@click.option("--vlm-seed", default=0, show_default=True, help="Seed of spml-data vlm.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The study's folder (report.json).")
def main(*, data, reference, seed, vlm_seed, out):
    """Issue 21's study on one seed: zero-shot (raw, calibrated), VLM-linear and cnn4 EM teachers, each with its
    soft student, against the EM and full-label lines (report.json)."""
    run_study(StudyConfig(data=data, reference=reference, out=out, seed=seed, vlm_seed=vlm_seed),
              log=lambda s: click.echo(s, err=True))


if __name__ == "__main__":
    main()
