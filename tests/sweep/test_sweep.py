"""spml-sweep on a tiny dataset: the report's numbers are what the tests recompute from the artifacts."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score

from spml.data.coco import load_coco
from spml.sweep.run import plot_figure1, report_markdown
from spml.sweep.cli import main as sweep_cli

pytestmark = pytest.mark.slow  # the module's sweep trains a dozen teachers and students


@pytest.fixture(scope="module")
def sweep(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    args = ["--ann", tiny_data["sp"], "--val-ann", tiny_data["val"], "--test-ann", tiny_data["test"],
            "--gt-ann", tiny_data["train"], "--tau", "0.4", "--tau", "0.6", "--arch", "resnet18", "--image-size", "32",
            "--epochs", "1", "--batch-size", "16", "--no-pretrained", "--variants", "soft,init,round2,rounds:2+tta+mix,init-soft+ens:2+tloss:an,teacher+epochs:2", "--losses", "wan",
            "--out", out]
    result = CliRunner().invoke(sweep_cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "report.json").read_text())


def test_report_schema(sweep):
    out, report = sweep
    assert set(report["teachers"]) == {"an", "em"} and report["full"] is not None
    assert [s["tau"] for s in report["students"]] == [0.4, 0.6]
    for s in report["students"]:
        assert {"tau", "map", "positives_per_image", "precision", "recall"} <= set(s)
        assert 0 <= s["map"] <= 100
    assert [v["variant"] for v in report["variants"]] == ["soft", "init", "round2", "rounds:2+tta+mix",
                                                          "init-soft+ens:2+tloss:an", "teacher+epochs:2"]
    assert set(report["losses"]) == {"wan"}
    # round 2's labels come from the soft student, not from the teacher
    assert json.loads((out / "labels_round2.json").read_text())["info"]["model"] == str((out / "student_soft.onnx").resolve())
    assert json.loads((out / "labels_soft.json").read_text())["info"]["model"] == str((out / "teacher.onnx").resolve())
    for name in ("report.md", "fig1a_map_vs_tau.png", "fig1b_positives_vs_tau.png"):
        assert (out / name).stat().st_size > 0


def test_rounds_chain_their_students_and_report_the_gap_share(sweep):
    out, report = sweep
    rounds = report["variants"][3]
    # round 1 is labelled by the teacher, round 2 by round 1's student, both with --tta flip; each round starts
    # from the model that labelled it and mixes its batches
    first, second = (json.loads((out / f"labels_rounds2_tta_mix{s}.json").read_text())["info"] for s in ("", "_r2"))
    assert first["model"] == str((out / "teacher.onnx").resolve()) and first["tta"] == "flip" and first["soft"]
    assert second["model"] == str((out / "student_rounds2_tta_mix.onnx").resolve()) and second["tta"] == "flip"
    import torch

    r1 = torch.load(out / "student_rounds2_tta_mix.pt", weights_only=True)["config"]
    r2 = torch.load(out / "student_rounds2_tta_mix_r2.pt", weights_only=True)["config"]
    assert r1["init"] == str(out / "teacher_em.pt") and r2["init"] == str(out / "student_rounds2_tta_mix.pt")
    assert r1["mix_prob"] == r2["mix_prob"] == 1.0 and r2["soft_targets"]
    assert len(rounds["rounds"]) == 2 and rounds["rounds"][-1] == rounds["map"]
    # ens:2+tloss:an labels with the AN teacher and a second one (seed + 1) averaged in one ONNX model, and
    # starts from the first
    ens = json.loads((out / "labels_init-soft_ens2_tlossan.json").read_text())["info"]
    assert ens["model"] == str((out / "teacher_an_ensemble2.onnx").resolve())
    second = torch.load(out / "teacher_an_seed1.pt", weights_only=True)["config"]
    assert second["seed"] == 1 and second["loss"] == "an"
    student = torch.load(out / "student_init-soft_ens2_tlossan.pt", weights_only=True)["config"]
    assert student["init"] == str(out / "teacher_an.pt") and student["soft_targets"]
    from spml.eval.evaluate import evaluate_model

    assert report["variants"][4]["teacher_map"] == pytest.approx(
        evaluate_model(out / "teacher_an_ensemble2.onnx", report["config"]["test_ann"])["map"])
    longer = torch.load(out / "teacher_epochs2.pt", weights_only=True)["config"]
    assert longer["epochs"] == 2 and longer["loss"] == "em" and report["variants"][-1]["positives_per_image"] is None
    em, full = report["teachers"]["em"], report["full"]
    for entry in report["students"] + report["variants"]:
        assert entry["gap_share"] == pytest.approx((entry["map"] - em) / (full - em))


def test_report_figures_are_recomputed_from_report_json(sweep, tmp_path):
    out, report = sweep
    assert (out / "report.md").read_text() == report_markdown(report)
    plot_figure1(report, tmp_path)
    for name in ("fig1a_map_vs_tau.png", "fig1b_positives_vs_tau.png"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()


def test_report_numbers_match_the_artifacts(sweep, tiny_data):
    out, report = sweep
    gt = load_coco(tiny_data["train"])
    row = {im["id"]: n for n, im in enumerate(gt.images)}
    for s in report["students"]:
        labels = load_coco(out / f"labels_tau{s['tau']:g}.json")
        assert s["positives_per_image"] == pytest.approx(labels.positives.sum(axis=1).mean())
        truth = gt.positives[[row[i] for i in labels.image_ids]]
        tp = (labels.positives & truth).sum()
        assert s["precision"] == pytest.approx(tp / labels.positives.sum())
        assert s["recall"] == pytest.approx(tp / truth.sum())
    ppi = [s["positives_per_image"] for s in report["students"]]
    assert ppi == sorted(ppi, reverse=True)  # the curve falls as tau rises

    import torch

    from spml.data.images import Preprocess
    from spml.train.model import load_checkpoint, model_from_checkpoint

    test = load_coco(tiny_data["test"])
    model = model_from_checkpoint(load_checkpoint(out / "teacher_em.pt"))
    x = np.stack([Preprocess(32)(test.images_dir / f) for f in test.file_names])
    with torch.inference_mode():
        scores = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    expected = 100 * np.mean([average_precision_score(test.positives[:, j], scores[:, j])
                              for j in range(test.num_classes) if test.positives[:, j].any()])
    assert report["teachers"]["em"] == pytest.approx(expected, abs=1e-6)
