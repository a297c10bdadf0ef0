"""timm backbones (--arch timm/<name>): train, export, label and evaluate through the CLI; the model's own
preprocessing from timm's config in the checkpoint and the ONNX metadata; --weights, --pretrained, bad names."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

timm = pytest.importorskip("timm")

from spml.errors import SpmlError  # noqa: E402
from spml.train.model import create_model, head_name, load_checkpoint, model_from_checkpoint  # noqa: E402

# timm's test_convnext: 0.2M parameters, and a config unlike torchvision's (mean/std 0.5, bicubic), so a
# preprocessing that silently fell back to ImageNet's would show
ARCH = "timm/test_convnext"


def run(cli, args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def timm_teacher(tiny_data, tmp_path_factory):
    from spml.export.cli import main as export_cli
    from spml.train.cli import main as train_cli

    out = tmp_path_factory.mktemp("timm") / "teacher.pt"
    run(train_cli, ["--ann", tiny_data["sp"], "--val-ann", tiny_data["val"], "--arch", ARCH, "--no-pretrained",
                    "--image-size", 32, "--epochs", 1, "--batch-size", 16, "--out", out])
    run(export_cli, [out])  # validates onnxruntime against torch (validate_onnx) before it exits 0
    return out


def test_preprocessing_comes_from_timm_config(timm_teacher):
    config = timm.data.resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg("test_convnext").to_dict())
    ckpt = load_checkpoint(timm_teacher)
    pre = ckpt["preprocess"]
    assert pre["image_size"] == 32  # --image-size wins over the config's 160
    np.testing.assert_allclose(pre["mean"], config["mean"])
    np.testing.assert_allclose(pre["std"], config["std"])
    assert pre["interpolation"] == config["interpolation"] == "bicubic"
    assert pre["mean"] != [0.485, 0.456, 0.406]

    import onnx

    from spml.data.artifacts import ModelInfo

    proto = onnx.load(str(timm_teacher.with_suffix(".onnx")))
    info = ModelInfo.from_props({p.key: p.value for p in proto.metadata_props})
    assert info.arch == ARCH and info.image_size == 32
    assert (info.mean, info.std, info.interpolation) == (pre["mean"], pre["std"], "bicubic")


def test_timm_model_exports_labels_and_evaluates(timm_teacher, tiny_data, tmp_path):
    from PIL import Image

    from spml.data.coco import load_coco
    from spml.eval.cli import main as eval_cli
    from spml.label.cli import main as label_cli
    from spml.label.labeler import PseudoLabeler

    onnx_path = timm_teacher.with_suffix(".onnx")
    labels = tmp_path / "labels.json"
    run(label_cli, ["--model", onnx_path, "--ann", tiny_data["sp"], "--tau", 0.5, "--out", labels])
    written = json.loads(labels.read_text())
    assert len(written["images"]) == len(load_coco(tiny_data["sp"]))

    # the labeler's input, rebuilt by hand from timm's config (PIL bicubic, (x/255 - mean)/std), through torch
    config = timm.data.resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg("test_convnext").to_dict())
    test = load_coco(tiny_data["test"])
    x = []
    for name in test.file_names[:6]:
        with Image.open(test.images_dir / name) as img:
            img.draft("RGB", (32, 32))  # spml decodes JPEGs at reduced scale (load_image)
            arr = np.asarray(img.convert("RGB").resize((32, 32), Image.BICUBIC), np.float32) / 255.0
        x.append(((arr - np.array(config["mean"])) / np.array(config["std"])).transpose(2, 0, 1))
    net = model_from_checkpoint(load_checkpoint(timm_teacher))
    with torch.inference_mode():
        expected = torch.sigmoid(net(torch.from_numpy(np.stack(x).astype(np.float32)))).numpy()
    got = PseudoLabeler(onnx_path).scores(test.subset(np.arange(6))).values
    np.testing.assert_allclose(got, expected, atol=1e-4)

    reports = {}
    for model in (onnx_path, timm_teacher):
        out = tmp_path / f"{model.suffix[1:]}.json"
        run(eval_cli, [model, "--ann", tiny_data["test"], "--out", out])
        reports[model.suffix] = json.loads(out.read_text())
    assert reports[".onnx"]["num_images"] == len(test)
    assert abs(reports[".onnx"]["map"] - reports[".pt"]["map"]) < 1e-3  # onnxruntime and torch paths agree


def test_linear_mode_trains_only_the_timm_head(tiny_data, tmp_path):
    from spml.data.coco import load_coco
    from spml.train.trainer import TrainConfig, train

    out = train(TrainConfig(ann=str(tiny_data["sp"]), arch=ARCH, image_size=32, mode="linear", epochs=2,
                            batch_size=16, pretrained=False, out=str(tmp_path / "linear.pt"), progress=False),
                log=lambda s: None)
    trained = load_checkpoint(out)["model"]
    torch.manual_seed(0)  # the trainer's seed before it builds the model
    start = create_model(ARCH, load_coco(tiny_data["sp"]).num_classes, image_size=32).state_dict()
    changed = {k for k in start if not torch.equal(start[k], trained[k])}
    assert changed == {"head.fc.weight", "head.fc.bias"}


def test_linear_mode_features_are_timm_pre_logits():
    from spml.train.features import head_of

    torch.manual_seed(0)
    model = create_model(ARCH, 5).eval()
    head, name = head_of(model)
    assert name == "head.fc" and head is model.get_classifier()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
        parent = model.get_submodule("head")
        parent.fc = torch.nn.Identity()
        got = model(x)
        parent.fc = head
    torch.testing.assert_close(got, expected)


def test_weights_loads_a_timm_state_dict_and_drops_its_head(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=1000)
    path = tmp_path / "test_resnet.pth"
    torch.save(source.state_dict(), path)
    model = create_model("timm/test_resnet", 7, weights=path)
    assert model.fc.out_features == 7
    own, theirs = model.state_dict(), source.state_dict()
    torch.testing.assert_close(own["conv1.0.weight"], theirs["conv1.0.weight"])
    assert sum(1 for k in theirs if not k.startswith("fc.") and torch.equal(own[k], theirs[k])) == len(theirs) - 2
    # a file sized for the same classes keeps its head too
    same = timm.create_model("test_resnet", num_classes=7)
    torch.save({"state_dict": same.state_dict()}, tmp_path / "seven.pth")
    torch.testing.assert_close(create_model("timm/test_resnet", 7, weights=tmp_path / "seven.pth").fc.weight, same.fc.weight)
    torch.save(timm.create_model("test_efficientnet").state_dict(), tmp_path / "other.pth")
    with pytest.raises(SpmlError, match="not a state dict of timm/test_resnet"):
        create_model("timm/test_resnet", 7, weights=tmp_path / "other.pth")


def test_pretrained_uses_timm_cache_and_fails_clearly_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub
    from safetensors.torch import save_file

    from spml.train.model import pretrained_weights_cached

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1: no network, no retries
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    assert not pretrained_weights_cached("timm/test_resnet")
    with pytest.raises(SpmlError, match="cannot get timm's pretrained weights for timm/test_resnet"):
        create_model("timm/test_resnet", 3, pretrained=True)

    # the weights in the Hugging Face cache layout, as a download leaves them
    torch.manual_seed(2)
    published = timm.create_model("test_resnet", num_classes=1000)
    hub_id = timm.models.get_pretrained_cfg("test_resnet").hf_hub_id
    repo = tmp_path / "hub" / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(published.state_dict(), repo / "snapshots" / "abc123" / "model.safetensors")
    assert pretrained_weights_cached("timm/test_resnet")
    model = create_model("timm/test_resnet", 3, pretrained=True)
    assert model.fc.out_features == 3
    torch.testing.assert_close(model.conv1[0].weight, published.conv1[0].weight)


def test_bad_timm_names_and_missing_timm(monkeypatch, tiny_data, tmp_path):
    from spml.train.cli import main as train_cli

    result = CliRunner().invoke(train_cli, ["--ann", str(tiny_data["sp"]), "--arch", "timm/convnxt_tiny",
                                            "--out", str(tmp_path / "t.pt")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "did you mean timm/convnext_tiny" in result.output and len(result.output.strip().splitlines()) == 1
    with pytest.raises(SpmlError, match="resnet18.a1_in1k"):
        create_model("timm/resnet18.no_such_tag", 3)
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed: `import timm` raises ImportError
    with pytest.raises(SpmlError, match=r"pip install 'spml\[timm\]'"):
        create_model(ARCH, 3)
    assert not (tmp_path / "t.pt").exists()


def test_nothing_imports_timm_unless_asked():
    code = ("import sys, spml.train.trainer, spml.train.features, spml.export.onnx_export, spml.eval.evaluate; "
            "assert 'timm' not in sys.modules, 'timm imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_head_name_of_timm_models():
    for arch, head in (("timm/test_resnet", "fc"), ("timm/test_efficientnet", "classifier"), ("timm/test_vit", "head")):
        model = create_model(arch, 4, image_size=32).eval()
        assert head_name(model) == head
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
