"""spml-train --arch open_clip/NAME: the image tower as the backbone, the head starting as the zero-shot head,
linear mode on cached features, export; on a tiny random-initialised open_clip config written here."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

open_clip = pytest.importorskip("open_clip")

from spml.errors import SpmlError  # noqa: E402
from spml.train.model import create_model, load_checkpoint, model_from_checkpoint  # noqa: E402
from spml.train.zero_shot import read_categories, zero_shot_checkpoint  # noqa: E402
from tests.clip_util import tiny_clip  # noqa: E402


def run(cli, args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def linear_teacher(clip_files, tiny_data, tmp_path_factory):
    from spml.train.cli import main as train_cli

    config, weights, _ = clip_files
    out = tmp_path_factory.mktemp("clip-teacher") / "teacher.pt"
    output = run(train_cli, ["--ann", tiny_data["sp"], "--val-ann", tiny_data["val"], "--arch", f"open_clip/{config}",
                             "--weights", weights, "--mode", "linear", "--epochs", 1, "--batch-size", 16,
                             "--out", out])
    assert "the zero-shot head" in output
    return out


def test_the_head_starts_as_the_zero_shot_head(clip_files, tiny_data):
    config, weights, _ = clip_files
    categories = read_categories(tiny_data["sp"])
    model = create_model(f"open_clip/{config}", len(categories), weights=weights,
                         class_names=[c["name"] for c in categories])
    zero_shot = zero_shot_checkpoint(f"open_clip/{config}", categories, weights=weights)
    for key in ("head.weight", "head.bias"):
        torch.testing.assert_close(model.state_dict()[key], zero_shot["model"][key])
    assert not any(name.startswith(("transformer", "token_embedding")) for name in model.state_dict())


def test_linear_training_from_the_zero_shot_head_exports(linear_teacher, clip_files, tmp_path, tiny_data):
    from spml.export.cli import main as export_cli

    config, weights, _ = clip_files
    ckpt = load_checkpoint(linear_teacher)
    assert ckpt["config"]["arch"] == f"open_clip/{config}" and ckpt["config"]["mode"] == "linear"
    assert ckpt["preprocess"]["resize_mode"] == "shortest" and ckpt["preprocess"]["image_size"] == 32
    # the image tower is frozen: its weights are the CLIP file's; only the head moved from the zero-shot start
    clip_state = torch.load(weights, weights_only=True)
    visual = {k: v for k, v in ckpt["model"].items() if k.startswith("visual.")}
    assert visual and all(torch.equal(v, clip_state[k]) for k, v in visual.items())
    start = zero_shot_checkpoint(f"open_clip/{config}", ckpt["categories"], weights=weights)["model"]["head.weight"]
    assert not torch.equal(ckpt["model"]["head.weight"], start)
    # the checkpoint carries its open_clip config: it loads without the config file
    moved = tmp_path / "teacher.pt"
    moved.write_bytes(linear_teacher.read_bytes())
    config.rename(config.with_suffix(".moved"))
    try:
        model = model_from_checkpoint(load_checkpoint(moved))
        run(export_cli, [moved, "--out", tmp_path / "teacher.onnx"])  # validates onnxruntime vs torch at 1e-4
    finally:
        config.with_suffix(".moved").rename(config)
    session = ort.InferenceSession(str(tmp_path / "teacher.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(session.run(None, {"images": x})[0], expected, atol=1e-4)


def test_pretrained_takes_an_optional_tag():
    from spml.train.cli import main as train_cli

    seen = {}

    def capture(args):
        ctx = train_cli.make_context("spml-train", list(args))
        seen[tuple(args)] = ctx.params["pretrained"]

    for args, expected in ((["--pretrained"], True), (["--pretrained", "openai", "--epochs", "1"], "openai"),
                           (["--pretrained", "--epochs", "1"], True), (["--no-pretrained"], False), ([], None),
                           (["--epochs", "1", "--no-pretrained"], False)):
        capture(args)
        assert seen[tuple(args)] == expected, args


def test_bad_clip_training_inputs(clip_files, tiny_data):
    from spml.train.cli import main as train_cli

    config, weights, _ = clip_files
    base = ["--ann", tiny_data["sp"], "--epochs", 1]
    cases = [
        (["--arch", "open_clip/ViT-B-3", "--no-pretrained"], "did you mean"),
        (["--arch", f"open_clip/{config}", "--weights", weights, "--image-size", 64], "built for 32px"),
        (["--arch", "resnet18", "--pretrained", "openai"], "tags are for open_clip/ archs"),
        (["--arch", "resnet18", "--no-pretrained", "--prompts", weights], "prompt templates are for open_clip/"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(train_cli, [str(a) for a in base + args])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output
    with pytest.raises(SpmlError, match="not a whole CLIP state dict"):
        visual_only = {k: v for k, v in torch.load(weights, weights_only=True).items() if k.startswith("visual.")}
        path = weights.with_name("visual.pt")
        torch.save(visual_only, path)
        create_model(f"open_clip/{config}", 2, weights=path, class_names=["a", "b"])


def test_list_archs_names_open_clips_models_and_the_config_form(monkeypatch):
    """Every model of open_clip.list_models() as open_clip/NAME, after torchvision's; the config-file form last.
    Without open_clip, a line saying how to get its models instead of the names."""
    import sys

    from spml.train.cli import main as train_cli

    lines = run(train_cli, ["--list-archs"]).splitlines()
    listed = [line for line in lines if line.startswith("open_clip/") and " " not in line]
    assert listed == ["open_clip/" + name for name in open_clip.list_models()]
    assert "resnet18" in lines and lines.index("resnet18") < lines.index(listed[0])
    assert lines[-1].startswith("open_clip/CONFIG.json ")
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip raises ImportError
    lines = run(train_cli, ["--list-archs"]).splitlines()
    assert not [line for line in lines if line.startswith("open_clip/") and " " not in line]
    assert "pip install 'spml[clip]'" in lines[-2] and lines[-1].startswith("open_clip/CONFIG.json ")
