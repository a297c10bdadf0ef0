"""Issue 5: bad annotations, models and options through the real CLI; images that must not stop a job;
untrusted files. Every case: a clear line, the right exit code, no traceback, nothing written."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from spml.eval.cli import main as eval_cli
from spml.export.cli import main as export_cli
from spml.label.cli import main as label_cli
from spml.label.labeler import PseudoLabeler
from spml.train.cli import main as train_cli


def invoke(cli, args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def fails(cli, args, message, code=1):
    result = invoke(cli, args)
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and message in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], result.output  # usage errors add a usage line and a hint
    return result.output


def base_coco():
    return {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
            "categories": [{"id": 5, "name": "x"}, {"id": 9, "name": "y"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 5}]}


BAD_ANNOTATIONS = {
    "not JSON": ("{{{", "not a JSON file"),
    "not COCO": (json.dumps({"foo": []}), "not a COCO annotations file"),
    "duplicate image id": (json.dumps({**base_coco(), "images": [{"id": 1, "file_name": "a"}] * 2}), "duplicate image id"),
    "duplicate category id": (json.dumps({**base_coco(), "categories": [{"id": 5, "name": "x"}] * 2}), "duplicate category id"),
    "unknown image": (json.dumps({**base_coco(), "annotations": [{"id": 1, "image_id": 7, "category_id": 5}]}), "image 7"),
    "unknown category": (json.dumps({**base_coco(), "annotations": [{"id": 1, "image_id": 1, "category_id": 6}]}), "category 6"),
    "empty": (json.dumps({"images": [], "categories": [{"id": 1, "name": "x"}], "annotations": []}), "empty"),
    "deeply nested": ('{"info": ' + "[" * 200_000 + "]" * 200_000 + ', "images": [], "categories": []}',
                      "not a JSON file (nested too deeply"),
}


@pytest.mark.parametrize("case", list(BAD_ANNOTATIONS))
def test_bad_annotations(case, tmp_path, tiny_onnx):
    text, message = BAD_ANNOTATIONS[case]
    (tmp_path / "ann.json").write_text(text)
    (tmp_path / "labels.json").write_text("old")
    fails(train_cli, ["--ann", tmp_path / "ann.json", "--out", tmp_path / "t.pt"], message)
    fails(label_cli, ["--model", tiny_onnx, "--ann", tmp_path / "ann.json", "--tau", "0.5", "--out", tmp_path / "labels.json"], message)
    fails(eval_cli, [tiny_onnx, "--ann", tmp_path / "ann.json"], message)
    assert (tmp_path / "labels.json").read_text() == "old" and not (tmp_path / "t.pt").exists()


def test_several_observed_positives_are_legal(tiny_data, tmp_path):
    # full labels through the single-positive loss: the SPML losses take any set of observed positives
    result = invoke(train_cli, ["--ann", tiny_data["train"], "--loss", "em", "--arch", "resnet18", "--image-size", "32",
                                "--epochs", "1", "--no-pretrained", "--out", tmp_path / "t.pt"])
    assert result.exit_code == 0, result.output


def test_model_files_that_are_not_models(tmp_path, tiny_data, tiny_teacher):
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage" * 10)
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    fails(label_cli, ["--model", tmp_path / "junk.onnx", "--tau", "0.5", "--out", tmp_path / "l.json"], "onnxruntime cannot load")
    fails(export_cli, [tmp_path / "junk.pt"], "not an spml checkpoint")
    fails(eval_cli, [tmp_path / "junk.pt", "--ann", tiny_data["test"]], "not an spml checkpoint")
    fails(eval_cli, [tiny_data["test"].with_suffix(".txt"), "--ann", tiny_data["test"]], "expected a model")

    state = torch.load(tiny_teacher, map_location="cpu", weights_only=True)
    state["format_version"] = 99
    torch.save(state, tmp_path / "future.pt")
    fails(export_cli, [tmp_path / "future.pt"], "format version 99")


def test_onnx_without_spml_metadata_or_with_a_wrong_input_size(tmp_path, tiny_onnx):
    import onnx

    proto = onnx.load(str(tiny_onnx))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    fails(label_cli, ["--model", tmp_path / "plain.onnx", "--tau", "0.5", "--out", tmp_path / "l.json"], "not an spml model")

    proto = onnx.load(str(tiny_onnx))
    for p in proto.metadata_props:
        if p.key == "spml.image_size":
            p.value = "64"
    onnx.save(proto, str(tmp_path / "wrong.onnx"))
    fails(label_cli, ["--model", tmp_path / "wrong.onnx", "--tau", "0.5", "--out", tmp_path / "l.json"], "does not match")


def test_bad_options(tiny_onnx, tiny_data, tmp_path):
    fails(label_cli, ["--model", tiny_onnx, "--tau", "0.5", "--batch-size", "-4", "--out", tmp_path / "l.json"], "--batch-size", 2)
    fails(train_cli, ["--ann", tiny_data["sp"], "--batch-size", "-4", "--no-pretrained"], "--batch-size must be positive")
    out = fails(train_cli, ["--ann", tiny_data["sp"], "--loss", "magic"], "magic", 2)
    assert "em" in out and "bce" in out  # the valid ones are listed
    out = fails(train_cli, ["--ann", tiny_data["sp"], "--arch", "resnet5O", "--no-pretrained"], "unknown arch")
    assert "resnet50" in out
    fails(label_cli, ["--model", tiny_onnx, "--tau", "0.5", "--shard", "3/2", "--out", tmp_path / "l.json"], "--shard")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/spml-pwned",))


def test_a_pickle_that_runs_code_is_refused(tmp_path, tiny_data):
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format_version": 1, "model": RunsCode()}, f)
    torch.save({"model": RunsCode()}, tmp_path / "evil2.pt")
    for path in (tmp_path / "evil.pt", tmp_path / "evil2.pt"):
        fails(export_cli, [path], "not an spml checkpoint")
        fails(eval_cli, [path, "--ann", tiny_data["test"]], "not an spml checkpoint")
        fails(train_cli, ["--ann", tiny_data["sp"], "--arch", "resnet18", "--weights", path], "not a loadable weights file")
    assert not os.path.exists("/tmp/spml-pwned")


def make_odd_images(folder):
    """Every kind of image a real dataset holds; returns {file_name: decodes?}."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    rgb.save(folder / "ok.jpg")
    data = (folder / "ok.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "corrupt.jpg").write_bytes(data[:20] + bytes(rng.integers(0, 255, 500, dtype=np.uint8)))
    (folder / "zero.jpg").write_bytes(b"")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 400 Mpx in a few KB
    Image.fromarray(rng.integers(0, 65535, (30, 30), dtype=np.uint16)).save(folder / "sixteen.png")
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    rgb.convert("P").save(folder / "palette.png")
    rgb.convert("RGBA").save(folder / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb.save(folder / "rotated.jpg", exif=exif)
    (folder.parent / "outside.jpg").write_bytes(data)
    os.symlink(folder.parent / "outside.jpg", folder / "link.jpg")
    return {"ok.jpg": True, "truncated.jpg": False, "corrupt.jpg": False, "zero.jpg": False, "bomb.png": False,
            "sixteen.png": True, "cmyk.jpg": True, "palette.png": True, "alpha.png": True, "rotated.jpg": True,
            "missing.jpg": False, "link.jpg": False, "../outside.jpg": False}


def test_odd_images_do_not_stop_a_job(tiny_onnx, tiny_data, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    expected = make_odd_images(folder)
    cats = json.loads(tiny_data["sp"].read_text())["categories"]
    coco = {"images": [{"id": i + 1, "file_name": n} for i, n in enumerate(expected)], "categories": cats,
            "annotations": [{"id": 1, "image_id": 1, "category_id": cats[0]["id"]}]}
    (tmp_path / "odd.json").write_text(json.dumps(coco))
    out = tmp_path / "labels.json"
    result = invoke(label_cli, ["--model", tiny_onnx, "--ann", tmp_path / "odd.json", "--images", folder, "--tau", "0.5", "--out", out])
    assert result.exit_code == 0, result.output
    bad = [n for n, ok in expected.items() if not ok]
    assert f"{len(bad)} failed" in result.output
    failures = [json.loads(x) for x in (tmp_path / "labels.failures.jsonl").read_text().splitlines()]
    assert sorted(f["file_name"] for f in failures) == sorted(bad)
    reasons = {f["file_name"]: f["reason"] for f in failures}
    assert "too large" in reasons["bomb.png"] and "escapes" in reasons["link.jpg"] and "missing" in reasons["missing.jpg"]
    labeled = {im["file_name"] for im in json.loads(out.read_text())["images"]}
    assert labeled == {n for n, ok in expected.items() if ok}

    result = invoke(label_cli, ["--model", tiny_onnx, "--ann", tmp_path / "odd.json", "--images", folder, "--tau", "0.5",
                                "--out", tmp_path / "strict.json", "--strict"])
    assert result.exit_code == 1 and "--strict" in result.output and not (tmp_path / "strict.json").exists()

    result = invoke(label_cli, ["--model", tiny_onnx, "--ann", tmp_path / "odd.json", "--images", folder, "--tau", "0.5",
                                "--out", tmp_path / "allowed.json", "--allow-outside"])
    labeled = {im["file_name"] for im in json.loads((tmp_path / "allowed.json").read_text())["images"]}
    assert {"link.jpg", "../outside.jpg"} <= labeled


def test_sixteen_bit_and_rotated_look_like_their_8bit_upright_twins(tiny_onnx, tmp_path):
    rng = np.random.default_rng(1)
    gray8 = rng.integers(0, 255, (48, 64), dtype=np.uint8)
    Image.fromarray(gray8).convert("RGB").save(tmp_path / "twin.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    upright = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    upright.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "rot.png", exif=exif)
    labeler = PseudoLabeler(tiny_onnx, provider="cpu")
    pre = labeler.preprocess
    from spml.data.images import load_image

    def probs(name):
        return labeler.predict(pre.resize(load_image(tmp_path / name))[None])

    np.testing.assert_allclose(probs("g16.png"), probs("twin.png"), atol=1e-6)
    np.testing.assert_allclose(probs("rot.png"), probs("upright.png"), atol=1e-6)


def test_non_finite_model_output_is_reported_not_labeled(tiny_onnx, tiny_data, tmp_path, monkeypatch):
    real = PseudoLabeler.predict

    def nan_for_first(self, batch):
        p = real(self, batch)
        p[0, 0] = np.nan
        return p

    monkeypatch.setattr(PseudoLabeler, "predict", nan_for_first)
    result = invoke(label_cli, ["--model", tiny_onnx, "--tau", "0.5", "--batch-size", "100", "--out", tmp_path / "l.json"])
    assert result.exit_code == 0 and "1 failed" in result.output
    assert "not finite" in (tmp_path / "l.failures.jsonl").read_text()


def test_nothing_is_written_but_the_output_and_its_companions(tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    assert invoke(label_cli, ["--model", tiny_onnx, "--tau", "0.5", "--out", "l.json"]).exit_code == 0
    assert set(os.listdir(tmp_path)) - before == {"l.json"}


def test_full_disk_leaves_the_previous_file(tiny_onnx, tmp_path, monkeypatch):
    import errno

    import spml.files

    (tmp_path / "l.json").write_text("previous")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spml.files.os, "fsync", no_space)
    fails(label_cli, ["--model", tiny_onnx, "--tau", "0.5", "--out", tmp_path / "l.json"], "No space left on device")
    assert (tmp_path / "l.json").read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
