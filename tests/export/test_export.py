import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from spml.data.artifacts import ModelInfo
from spml.train.model import load_checkpoint, model_from_checkpoint


def test_onnx_matches_torch_at_several_batch_sizes(tiny_teacher, tiny_onnx):
    ckpt = load_checkpoint(tiny_teacher)
    model = model_from_checkpoint(ckpt)
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(123)
    for n in (1, 5):
        x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
        with torch.inference_mode():
            expected = torch.sigmoid(model(torch.from_numpy(x))).numpy()
        got = session.run(None, {"images": x})[0]
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_onnx_describes_itself(tiny_teacher, tiny_onnx, tiny_data):
    proto = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(proto)
    info = ModelInfo.from_props({p.key: p.value for p in proto.metadata_props})
    ckpt = torch.load(tiny_teacher, map_location="cpu", weights_only=True)
    assert info.categories == ckpt["categories"]
    assert [c["id"] for c in info.categories] == [1, 3, 4, 7, 9, 12, 15, 18, 22, 27]
    assert info.arch == "resnet18" and info.image_size == 32
    assert info.train_ann == str(tiny_data["sp"].resolve())


def test_checkpoint_has_the_fixed_schema(tiny_teacher):
    ckpt = torch.load(tiny_teacher, map_location="cpu", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "epoch", "best_metric", "config", "categories", "format_version"):
        assert key in ckpt
    last = torch.load(tiny_teacher.with_name("teacher.last.pt"), map_location="cpu", weights_only=True)
    assert last["optimizer"] is not None


def test_export_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    from spml.errors import SpmlError
    from spml.export.onnx_export import export_onnx

    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SpmlError, match="not an spml checkpoint"):
        export_onnx(tmp_path / "x.pt", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_int8_and_fp16_exports_keep_metadata_and_stay_close(tiny_teacher, tiny_data, tmp_path):
    from click.testing import CliRunner

    from spml.export.cli import main as export_cli
    from spml.label.labeler import PseudoLabeler

    # int8 in today's spelling, fp16 in the old one (--precision), which still works with one line of deprecation
    for quantize, flag in (("int8", "--quantize"), ("fp16", "--precision")):
        out = tmp_path / f"t.{quantize}.onnx"
        result = CliRunner().invoke(export_cli, [str(tiny_teacher), flag, quantize, "--out", str(out),
                                                 "--calibration-count", "16"])
        assert result.exit_code == 0, result.output
        said = [line for line in result.stderr.splitlines() if line.startswith("deprecated")]
        assert said == ([] if flag == "--quantize" else
                        ["deprecated: --precision will be removed in the next release; use --quantize fp16"])
        proto = onnx.load(str(out))
        onnx.checker.check_model(proto)
        info = ModelInfo.from_props({p.key: p.value for p in proto.metadata_props})
        assert info.image_size == 32 and len(info.categories) == 10
    fp32 = PseudoLabeler(tmp_path / "t.onnx", provider="cpu")
    int8 = PseudoLabeler(tmp_path / "t.int8.onnx", provider="cpu")
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    assert np.abs(fp32.predict(batch) - int8.predict(batch)).max() < 0.2
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(tmp_path / "t.int8.onnx")).graph.node)


def test_an_ensemble_is_the_mean_of_its_members_onnx(tiny_data, tiny_teacher, tiny_onnx, tmp_path):
    """spml-export a.pt b.pt --out ens.onnx against each member's own ONNX file run separately and averaged."""
    from click.testing import CliRunner

    from spml.export.cli import main as export_cli
    from spml.train.trainer import TrainConfig, train

    other = train(TrainConfig(ann=str(tiny_data["sp"]), arch="resnet18", image_size=32, epochs=1, batch_size=16,
                              pretrained=False, seed=5, out=str(tmp_path / "b.pt"), progress=False), log=lambda s: None)
    runner = CliRunner()
    assert runner.invoke(export_cli, [str(other)]).exit_code == 0
    result = runner.invoke(export_cli, [str(tiny_teacher), str(other), "--out", str(tmp_path / "ens.onnx")])
    assert result.exit_code == 0, result.output
    assert "an ensemble of 2" in result.output
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)

    def run(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]

    np.testing.assert_allclose(run(tmp_path / "ens.onnx"), (run(tiny_onnx) + run(tmp_path / "b.onnx")) / 2, atol=1e-5)
    meta = ModelInfo.from_props({p.key: p.value for p in onnx.load(str(tmp_path / "ens.onnx")).metadata_props})
    assert [m["checkpoint"] for m in meta.extra["ensemble"]] == [str(tiny_teacher.resolve()), str(other.resolve())]
    assert meta.categories == load_checkpoint(tiny_teacher)["categories"]

    wrong = load_checkpoint(other)
    wrong["preprocess"] = {**wrong["preprocess"], "image_size": 48}
    torch.save(wrong, tmp_path / "wrong.pt")
    bad = runner.invoke(export_cli, [str(tiny_teacher), str(tmp_path / "wrong.pt"), "--out", str(tmp_path / "x.onnx")])
    assert bad.exit_code == 1 and "must share it" in bad.output
    assert runner.invoke(export_cli, [str(tiny_teacher), str(other)]).exit_code == 2  # no --out


def test_the_old_precision_fp32_means_no_quantization(tmp_path):
    """--precision fp32 (retired) is --quantize none: parsed (the missing file is the error, exit 1), where
    --quantize fp32 is no choice (exit 2)."""
    from click.testing import CliRunner

    from spml.export.cli import main as export_cli

    old = CliRunner().invoke(export_cli, [str(tmp_path / "nope.pt"), "--precision", "fp32"])
    assert old.exit_code == 1 and "no such file" in old.output, old.output
    assert "use --quantize none" in old.stderr
    new = CliRunner().invoke(export_cli, [str(tmp_path / "nope.pt"), "--quantize", "fp32"])
    assert new.exit_code == 2 and "'none'" in new.output, new.output
