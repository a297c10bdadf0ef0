"""spml-export --zero-shot open_clip/NAME: a teacher from a vision-language model with no training, on a tiny
random-initialised open_clip config written here (never the network). Checked against open_clip's own
encode_image/encode_text, onnxruntime against torch, the categories (a COCO file's ids, a .txt), the resize modes
against open_clip's transform, and the calibration against independent fits (sklearn, scipy)."""

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

open_clip = pytest.importorskip("open_clip")

from spml.data.artifacts import ModelInfo  # noqa: E402
from spml.errors import SpmlError  # noqa: E402
from spml.train.model import model_from_checkpoint  # noqa: E402
from spml.train.zero_shot import (apply_calibration, fit_calibration, read_categories,  # noqa: E402
                                  zero_shot_checkpoint)
from tests.clip_util import LOGIT_SCALE, tiny_clip  # noqa: E402

ONE_TEMPLATE = ["a photo of a {}."]


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


def run(cli, args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def onnx_info(path) -> ModelInfo:
    return ModelInfo.from_props({p.key: p.value for p in onnx.load(str(path)).metadata_props})


def test_zero_shot_logits_are_open_clips_cosine_logits(clip_files):
    config, weights, clip = clip_files
    names = ["red circle", "blue square", "dog"]
    ckpt = zero_shot_checkpoint(f"open_clip/{config}", [{"id": i, "name": n} for i, n in enumerate(names, 1)],
                                weights=weights, prompts=ONE_TEMPLATE)
    model = model_from_checkpoint(ckpt)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=16)
    with torch.no_grad():
        image = clip.encode_image(x, normalize=True)
        text = clip.encode_text(tokenizer([ONE_TEMPLATE[0].format(n) for n in names]), normalize=True)
        expected = clip.logit_scale.exp() * image @ text.T
        got = model(x)
    assert clip.logit_scale.exp().item() == pytest.approx(LOGIT_SCALE)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not any(k.startswith(("transformer.", "token_embedding", "text")) for k in ckpt["model"])  # no text tower


def test_the_head_averages_normalised_prompt_embeddings(clip_files):
    config, weights, clip = clip_files
    prompts = ["a photo of a {}.", "itap of a {}.", "a {} on grass"]
    ckpt = zero_shot_checkpoint(f"open_clip/{config}", [{"id": 5, "name": "cat"}], weights=weights, prompts=prompts)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=16)
    with torch.no_grad():
        each = clip.encode_text(tokenizer([p.format("cat") for p in prompts]))
    each = each / each.norm(dim=-1, keepdim=True)
    mean = each.mean(0)
    torch.testing.assert_close(ckpt["model"]["head.weight"][0], LOGIT_SCALE * mean / mean.norm(), atol=1e-5, rtol=1e-5)
    assert ckpt["model"]["head.bias"].tolist() == [0.0]


def test_export_from_coco_categories_keeps_their_ids_and_matches_onnxruntime(clip_files, tmp_path, tiny_data):
    from spml.export.cli import main as export_cli

    config, weights, _ = clip_files
    cats = tmp_path / "cats.json"
    cats.write_text(json.dumps({"images": [], "annotations": [], "categories": [
        {"id": 42, "name": "kite"}, {"id": 7, "name": "boat"}, {"id": 13, "name": "red circle"}]}))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a picture of a {}.\n\na {} drawn on a background\n")
    out = tmp_path / "zs.onnx"
    run(export_cli, ["--zero-shot", f"open_clip/{config}", "--weights", weights, "--categories", cats,
                     "--prompts", prompts, "--out", out])
    info = onnx_info(out)
    assert info.categories == [{"id": 42, "name": "kite"}, {"id": 7, "name": "boat"}, {"id": 13, "name": "red circle"}]
    assert info.arch == f"open_clip/{config}" and info.image_size == 32
    assert (info.mean, info.std) == (list(open_clip.OPENAI_DATASET_MEAN), list(open_clip.OPENAI_DATASET_STD))
    assert (info.interpolation, info.resize_mode) == ("bicubic", "shortest")
    assert info.extra["open_clip"]["prompts"] == ["a picture of a {}.", "a {} drawn on a background"]
    # onnxruntime against the torch model rebuilt from the same checkpoint
    ckpt = zero_shot_checkpoint(f"open_clip/{config}", info.categories, weights=weights,
                                prompts=info.extra["open_clip"]["prompts"])
    model = model_from_checkpoint(ckpt)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 3, 32, 32)).astype(np.float32)
        with torch.no_grad():
            expected = torch.sigmoid(model(torch.from_numpy(x))).numpy()
        np.testing.assert_allclose(session.run(None, {"images": x})[0], expected, atol=1e-4)


def test_label_and_eval_run_the_zero_shot_model_unchanged(clip_files, tmp_path, tiny_data):
    from spml.eval.cli import main as eval_cli
    from spml.export.cli import main as export_cli
    from spml.label.cli import main as label_cli

    config, weights, _ = clip_files
    names = tmp_path / "names.txt"
    names.write_text("\n".join(c["name"] for c in read_categories(tiny_data["sp"])) + "\n")
    out = tmp_path / "zs.onnx"
    run(export_cli, ["--zero-shot", f"open_clip/{config}", "--weights", weights, "--categories", tiny_data["sp"],
                     "--out", out])
    run(label_cli, [out, "--images", tiny_data["train"].parent / "images", "--tau", 0.5, "--soft",
                    "--out", tmp_path / "l.json"])
    labels = json.loads((tmp_path / "l.json").read_text())
    # the labeler's probabilities are the torch model's on the same preprocessed pixels
    from spml.data.images import Preprocess

    ckpt = zero_shot_checkpoint(f"open_clip/{config}", read_categories(tiny_data["sp"]), weights=weights)
    model, pre = model_from_checkpoint(ckpt), Preprocess.from_dict(ckpt["preprocess"])
    image = labels["images"][0]
    x = torch.from_numpy(pre(tiny_data["train"].parent / "images" / image["file_name"]))[None]
    with torch.no_grad():
        expected = torch.sigmoid(model(x))[0].numpy()
    np.testing.assert_allclose(image["spml_scores"], expected, atol=1e-4)
    report = tmp_path / "eval.json"
    run(eval_cli, [out, "--ann", tiny_data["test"], "--out", report])
    assert 0 <= json.loads(report.read_text())["map"] <= 100


def test_categories_from_a_txt(tmp_path):
    path = tmp_path / "cats.txt"
    path.write_text("person\n\n traffic light \ndog\n")
    assert read_categories(path) == [{"id": 1, "name": "person"}, {"id": 2, "name": "traffic light"},
                                     {"id": 3, "name": "dog"}]
    path.write_text("dog\ncat\ndog\n")
    with pytest.raises(SpmlError, match="dog named twice"):
        read_categories(path)


def test_open_clips_resize_modes_are_reproduced(tmp_path):
    """Preprocess's shortest and longest against open_clip's own (torchvision) transform on a non-square image."""
    from PIL import Image
    from open_clip.transform import image_transform

    from spml.data.images import Preprocess

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (37, 61, 3), dtype=np.uint8))
    for mode in ("shortest", "longest", "squash"):
        pre = Preprocess(24, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD, "bicubic", mode)
        theirs = image_transform(24, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN,
                                 std=open_clip.OPENAI_DATASET_STD, interpolation="bicubic", resize_mode=mode)(img)
        ours = pre.normalize(pre.resize(img))
        np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-5, err_msg=mode)


def test_fit_calibration_an_is_logistic_regression():
    """an: a shared slope 1/T and a bias per class, the maximum-likelihood logistic regression on [z, one-hot]."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n, c = 300, 4
    z = rng.normal(20, 3, (n, c))
    true_t, true_b = 2.5, np.array([-9.0, -7.5, -8.5, -8.0])
    y = (rng.random((n, c)) < 1 / (1 + np.exp(-(z / true_t + true_b)))).astype(np.float32)
    t, b = fit_calibration(z, y, "an")
    features = np.concatenate([z.reshape(-1, 1), np.tile(np.eye(c), (n, 1))], axis=1)
    reference = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-10, max_iter=10_000)  # C=inf: no penalty
    reference.fit(features, y.reshape(-1))
    slope, biases = reference.coef_[0, 0], reference.coef_[0, 1:]
    assert 1 / t == pytest.approx(slope, rel=1e-3)
    np.testing.assert_allclose(b, biases, atol=1e-2)
    assert t == pytest.approx(true_t, rel=0.3)  # and near the truth the labels were drawn from


def test_fit_calibration_em_minimises_the_em_loss():
    """em: the same minimum as scipy's optimiser on the EM loss written out in numpy."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    n, c, alpha = 200, 3, 0.1
    z = rng.normal(25, 2, (n, c))
    y = np.zeros((n, c), np.float32)
    y[np.arange(n), np.argmax(z + rng.normal(0, 2, (n, c)), axis=1)] = 1

    def em(params):
        logits = z * math.exp(params[0]) + params[1:]
        p = 1 / (1 + np.exp(-logits))
        log_p, log_q = -np.logaddexp(0, -logits), -np.logaddexp(0, logits)
        entropy = -(p * log_p + (1 - p) * log_q)
        return np.where(y > 0.5, -log_p, -alpha * entropy).mean()

    t, b = fit_calibration(z, y, "em", alpha=alpha)
    ours = em(np.concatenate([[-math.log(t)], b]))
    start = np.concatenate([[-math.log(z.std())], -z.mean(0) / z.std()])
    reference = minimize(em, start, method="Nelder-Mead", options={"maxiter": 40_000, "xatol": 1e-9, "fatol": 1e-12})
    assert ours <= reference.fun + 1e-7


def test_calibrated_head_outputs_the_calibrated_logits(clip_files):
    config, weights, _ = clip_files
    ckpt = zero_shot_checkpoint(f"open_clip/{config}", [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                                weights=weights, prompts=ONE_TEMPLATE)
    calibrated = apply_calibration(ckpt, {"temperature": 4.0, "bias": [-2.0, 1.0], "method": "em"})
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        raw, got = model_from_checkpoint(ckpt)(x), model_from_checkpoint(calibrated)(x)
    torch.testing.assert_close(got, raw / 4.0 + torch.tensor([-2.0, 1.0]), atol=1e-5, rtol=1e-5)


def test_calibrate_on_single_positives_end_to_end(clip_files, tmp_path, tiny_data):
    from spml.export.cli import main as export_cli

    config, weights, _ = clip_files
    out = tmp_path / "zs.onnx"
    output = run(export_cli, ["--zero-shot", f"open_clip/{config}", "--weights", weights, "--categories",
                              tiny_data["sp"], "--calibrate", tiny_data["sp"], "--out", out])
    assert "held-out" in output and "kept" in output
    calibration = onnx_info(out).extra["open_clip"]["calibration"]
    assert calibration["method"] in ("em", "an", "raw") and len(calibration["bias"]) == 10
    assert calibration["held_out"][calibration["method"]] == max(calibration["held_out"].values())
    assert onnx_info(out).train_ann == str(tiny_data["sp"].resolve())


def test_pretrained_tags_are_checked_offline_and_passed_to_open_clip(monkeypatch):
    """The download path: open_clip.create_model gets the tag (stubbed here: no network in tests)."""
    from spml.train.clip_models import clip_preprocess, create_clip_model

    with pytest.raises(SpmlError, match="no pretrained tag 'nope'.*openai"):
        create_clip_model("open_clip/RN50", 2, "nope", class_names=["a", "b"])
    with pytest.raises(SpmlError, match="needs a tag"):
        create_clip_model("open_clip/RN50", 2, True, class_names=["a", "b"])
    asked = {}

    def fake_create_model(name, pretrained=None, **kwargs):
        asked.update(name=name, pretrained=pretrained)
        raise RuntimeError("Failed to download weights for tag 'openai': no network")

    monkeypatch.setattr(open_clip, "create_model", fake_create_model)
    with pytest.raises(SpmlError, match="cannot get open_clip's 'openai' weights for open_clip/RN50"):
        create_clip_model("open_clip/RN50", 2, "openai", class_names=["a", "b"])
    assert asked == {"name": "RN50", "pretrained": "openai"}
    pre = clip_preprocess("open_clip/ViT-B-32", None, "openai")
    assert (pre.size, pre.resize_mode, pre.interpolation) == (224, "shortest", "bicubic")


def test_bad_zero_shot_inputs_are_one_line(clip_files, tmp_path):
    from spml.export.cli import main as export_cli

    config, weights, _ = clip_files
    names = tmp_path / "n.txt"
    names.write_text("cat\n")
    bad_prompts = tmp_path / "p.txt"
    bad_prompts.write_text("a photo of a cat\n")
    cases = [
        (["--zero-shot", "open_clip/ViT-B-33", "--categories", names, "--out", tmp_path / "z.onnx"], "did you mean"),
        (["--zero-shot", f"open_clip/{config}", "--weights", weights, "--categories", names, "--prompts", bad_prompts,
          "--out", tmp_path / "z.onnx"], "exactly one {}"),
        (["--zero-shot", f"open_clip/{config}", "--pretrained", "openai", "--categories", names,
          "--out", tmp_path / "z.onnx"], "is a model config"),
        (["--zero-shot", f"open_clip/{config}", "--weights", names, "--categories", names,
          "--out", tmp_path / "z.onnx"], "not a loadable weights file"),
        (["--categories", names], "only with --zero-shot"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(export_cli, [str(a) for a in args])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output
