"""spml.sweep.vlm_study end to end on toy data, with a tiny random-initialised open_clip model (tests/clip_util) in
place of spml-data vlm and a hand-written reference report in place of the pretrained regime's sweep; its
resumption; the check that the VLM's scenes are none of the data's; and the tables of spml.sweep.vlm_report."""

import json
import shutil

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")

from spml.sweep.vlm_report import vlm_markdown  # noqa: E402
from spml.sweep.vlm_study import TEACHERS, StudyConfig, gap_share, run_study, scene_overlap  # noqa: E402
from tests.clip_util import tiny_clip  # noqa: E402

EM8, FULL8, EM16, FULL16 = 40.0, 60.0, 45.0, 70.0  # the reference report's lines, made up


@pytest.fixture(scope="module")
def study_data(tiny_data, tmp_path_factory):
    """One seed's data as the study reads it: DATA_FILES and images/ in one folder."""
    folder = tmp_path_factory.mktemp("seed")
    for name, key in (("sp_train.json", "sp"), ("instances_train.json", "train"), ("instances_val.json", "val"),
                      ("instances_test.json", "test")):
        shutil.copy(tiny_data[key], folder / name)
    shutil.copytree(tiny_data["train"].parent / "images", folder / "images")
    return folder


@pytest.fixture(scope="module")
def reference(study_data, tmp_path_factory):
    """A sweep report folder: a cnn4 EM teacher trained here and made-up reference lines."""
    from spml.train.trainer import TrainConfig, train

    folder = tmp_path_factory.mktemp("reference")
    train(TrainConfig(ann=str(study_data / "sp_train.json"), val_ann=str(study_data / "instances_val.json"),
                      arch="cnn4", image_size=32, epochs=1, batch_size=16, loss="em", out=str(folder / "teacher_em.pt"),
                      progress=False), log=lambda s: None)
    report = {"teachers": {"an": 39.0, "em": EM8}, "full": FULL8, "config": {"train": {"epochs": 8}},
              "variants": [{"variant": "teacher+epochs:16", "map": EM16}, {"variant": "full+epochs:16", "map": FULL16}]}
    (folder / "report.json").write_text(json.dumps(report))
    return folder


@pytest.fixture(scope="module")
def study(study_data, reference, tmp_path_factory):
    config, weights, _ = tiny_clip(tmp_path_factory.mktemp("clip"))
    cfg = StudyConfig(data=str(study_data), reference=str(reference), out=str(tmp_path_factory.mktemp("study")),
                      seed=0, vlm=(str(config), str(weights)),
                      student={"arch": "cnn4", "image_size": 32, "epochs": 1, "batch_size": 16, "weights": None})
    return cfg, run_study(cfg, log=lambda s: None)


def test_every_teacher_and_its_student_is_measured_against_the_reference_lines(study):
    cfg, report = study
    assert list(report["teachers"]) == list(TEACHERS)
    em = report["teachers"]["cnn4-em"]
    assert em["test_map"] == EM8 and em["test_map_source"].endswith("report.json")
    for name, t in report["teachers"].items():
        for value, shares in ((t["test_map"], t["gap_share"]), (t["student"]["test_map"], t["student"]["gap_share"])):
            assert shares["8"] == pytest.approx((value - EM8) / (FULL8 - EM8))
            assert shares["16"] == pytest.approx((value - EM16) / (FULL16 - EM16))
        assert 0 <= t["student"]["test_map"] <= 100 and t["student"]["epochs"] == 1
        assert t["cost"]["labeling_passes"] == 1 and t["cost"]["student_training"]["epochs"] == 1
    assert report["teachers"]["zero-shot-calibrated"]["calibration"]["method"] in ("em", "an", "raw")
    assert report["teachers"]["zero-shot"]["cost"]["teacher_trainings"] == []
    linear = report["teachers"]["vlm-linear"]["cost"]["teacher_trainings"]
    assert [(t["epochs"], t["end_to_end"]) for t in linear] == [(25, False)]
    assert report["vlm"]["overlap"] is None  # a VLM given by the caller: no generator seeds to compare


def test_label_quality_is_the_labels_files_against_the_truth(study, study_data):
    """The positives per image at tau 0.75 counted from the labels file itself, and F1 from sklearn."""
    from sklearn.metrics import f1_score

    from spml.data.coco import load_coco

    cfg, report = study
    truth = load_coco(study_data / "instances_train.json")
    labels = load_coco(f"{cfg.out}/labels_zs_cal_tau0.75.json")
    rows = [truth.image_ids.index(i) for i in labels.image_ids]
    got = report["teachers"]["zero-shot-calibrated"]["labels"]["0.75"]
    assert got["positives_per_image"] == pytest.approx(labels.positives.sum() / len(labels.image_ids))
    assert got["f1"] == pytest.approx(f1_score(truth.positives[rows].ravel(), labels.positives.ravel()))


def test_a_second_run_reuses_every_artifact(study):
    import os

    cfg, report = study
    models = sorted(p for p in os.listdir(cfg.out) if p.endswith((".pt", ".onnx", ".json")))
    before = {p: os.stat(f"{cfg.out}/{p}").st_mtime_ns for p in models if p != "report.json"}
    again = run_study(cfg, log=lambda s: None)
    assert {p: os.stat(f"{cfg.out}/{p}").st_mtime_ns for p in before} == before
    assert again == report


def test_the_scene_check_finds_a_scene_drawn_from_the_vlms_generator_seed(tmp_path):
    """Data drawn by the built-in generator under the VLM's scene seed starts with the VLM's first scene (the
    data's generator draws a JPEG quality after each image, so only the first coincides); another seed's, none."""
    from spml.data.demo import DemoConfig, make_demo
    from spml.train.vlm import SCENE_SEED

    for seed, expected in ((SCENE_SEED, 1), (3, 0)):
        folder = tmp_path / str(seed)
        make_demo(folder, DemoConfig(num_train=5, num_test=2, seed=seed))
        check = scene_overlap(StudyConfig(data=str(folder), reference="", out=""), 40)
        assert check["coinciding"] == expected and check["data_images"] == {"train": 4, "val": 1, "test": 2}


def test_gap_share_by_hand():
    assert gap_share(66.0, 62.0, 70.0) == 0.5 and gap_share(60.0, 62.0, 70.0) == -0.25


def test_the_tables_are_means_over_the_seeds(study):
    """Two reports whose figures differ by 2: each mean sits halfway."""
    _, report = study
    other = json.loads(json.dumps(report))
    other["seed"] = 1
    for t in other["teachers"].values():
        for entry in (t, t["student"]):
            entry["test_map"] += 2.0
            entry["gap_share"] = {"8": gap_share(entry["test_map"], EM8, FULL8),
                                  "16": gap_share(entry["test_map"], EM16, FULL16)}
    text = vlm_markdown([report, other])
    zero_shot = report["teachers"]["zero-shot"]
    row = next(line for line in text.splitlines() if line.startswith("| zero-shot, raw |"))
    cells = [c.strip() for c in row.split("|")]
    assert cells[2] == f"{zero_shot['test_map'] + 1.0:.2f}"
    assert cells[5] == f"{zero_shot['student']['test_map'] + 1.0:.2f}"
    share = np.mean([(zero_shot["test_map"] + d - EM8) / (FULL8 - EM8) for d in (0.0, 2.0)])
    assert cells[3].startswith(f"{100 * share:.1f}%")
    assert "### Means over seeds 0, 1" in text
