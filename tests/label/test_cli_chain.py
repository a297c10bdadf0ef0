"""spml-label as users type it: positional model, mix-ups, failures that must not look like success."""

import json
import shutil

from click.testing import CliRunner

from spml.export.cli import main as export_cli
from spml.label.cli import main as label_cli


def invoke(cli, args, **env):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env or None)


def test_the_model_positionally_as_in_export_and_eval(tiny_onnx, tmp_path):
    result = invoke(label_cli, [tiny_onnx, "--tau", "0.5", "--out", tmp_path / "a.json"])
    assert result.exit_code == 0, result.output
    result = invoke(label_cli, ["--tau", "0.5", tiny_onnx, "--out", tmp_path / "b.json"])  # anywhere among the options
    assert result.exit_code == 0, result.output
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["annotations"] == b["annotations"] and a["info"]["model"] == str(tiny_onnx.resolve())
    result = invoke(label_cli, [tiny_onnx, "--model", tiny_onnx, "--tau", "0.5", "--out", tmp_path / "c.json"])
    assert result.exit_code == 2 and "given twice" in result.output
    # merge is still the subcommand, and shards take the model positionally too
    for i in range(2):
        assert invoke(label_cli, [tiny_onnx, "--tau", "0.5", "--shard", f"{i}/2", "--out", tmp_path / f"p{i}.json"]).exit_code == 0
    result = invoke(label_cli, ["merge", tmp_path / "p0.json", tmp_path / "p1.json", "--out", tmp_path / "m.json"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m.json").read_text())["annotations"] == a["annotations"]


def test_a_checkpoint_given_to_the_labeler(tiny_teacher, tmp_path):
    for args in (["--model", tiny_teacher], [tiny_teacher]):
        result = invoke(label_cli, [*args, "--tau", "0.5", "--out", tmp_path / "l.json"])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"{tiny_teacher} is a checkpoint: export it first with spml-export {tiny_teacher}" in result.output
    renamed = tmp_path / "teacher.model"  # found by its content too
    shutil.copy(tiny_teacher, renamed)
    assert "is a checkpoint" in invoke(label_cli, [renamed, "--tau", "0.5", "--out", tmp_path / "l.json"]).output


def test_an_onnx_model_given_to_the_exporter(tiny_onnx, tmp_path):
    result = invoke(export_cli, [tiny_onnx])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{tiny_onnx} is an ONNX model; spml-export takes the checkpoint (.pt) it came from" in result.output
    renamed = tmp_path / "teacher.pt"
    shutil.copy(tiny_onnx, renamed)
    assert "is an ONNX model" in invoke(export_cli, [renamed]).output


def test_a_wrong_images_folder_is_an_error_and_writes_nothing(tiny_onnx, tiny_data, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    out = tmp_path / "labels.json"
    result = invoke(label_cli, [tiny_onnx, "--ann", tiny_data["sp"], "--images", wrong, "--tau", "0.5", "--out", out])
    assert result.exit_code == 1, result.output
    first = json.loads(tiny_data["sp"].read_text())["images"][0]["file_name"]
    assert "none of the" in result.output and f"missing file: {wrong / first}" in result.output
    assert "next:" not in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong"]  # no labels, no failures list, no .partial


def test_many_failures_warn_loudly(tiny_onnx, tiny_data, tmp_path):
    images = tmp_path / "imgs"
    shutil.copytree(tiny_data["sp"].parent / "images", images / "images")
    files = sorted((images / "images" / "train").iterdir())
    for f in files[: len(files) // 2]:
        f.unlink()
    args = [tiny_onnx, "--ann", tiny_data["sp"], "--images", images, "--tau", "0.5", "--out", tmp_path / "l.json"]
    result = invoke(label_cli, args)
    assert result.exit_code == 0, result.output
    assert "WARNING:" in result.output and "more than --max-failed 0.1" in result.output
    assert (tmp_path / "l.json").exists()
    assert "WARNING" not in invoke(label_cli, [*args, "--max-failed", "0.9"]).output


def test_categories_that_differ_are_found_before_any_work(tiny_onnx, tiny_data, tmp_path):
    raw = json.loads(tiny_data["sp"].read_text())
    raw["categories"][0]["name"] = "dodecahedron"
    (tmp_path / "other.json").write_text(json.dumps(raw))
    out = tmp_path / "x.json"
    result = invoke(label_cli, [tiny_onnx, "--ann", tmp_path / "other.json", "--images", tiny_data["sp"].parent,
                                "--tau", "0.5", "--out", out])
    assert result.exit_code == 1 and "categories differ" in result.output
    assert f"only in model {tiny_onnx}: 1:circle" in result.output and "only in the data: 1:dodecahedron" in result.output
    assert "labeling" not in result.output  # no progress bar was started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json"]  # no x.json.partial/


def test_redirected_progress_is_plain_lines(tiny_onnx, tmp_path):
    result = invoke(label_cli, [tiny_onnx, "--tau", "0.5", "--out", tmp_path / "l.json"], SPML_PROGRESS_SECONDS="0")
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("labeling: ")]
    assert lines and "img/s" in lines[-1] and "(100%)" in lines[-1]


def test_labels_record_the_teacher_recipe_and_a_relative_images_folder(tiny_onnx, tiny_data, tmp_path):
    from spml.data.cli import main as data_cli

    data = tmp_path / "data"
    shutil.copytree(tiny_data["sp"].parent, data)
    assert invoke(data_cli, ["single-positive", data / "instances_train.json", "--out", data / "sp.json"]).exit_code == 0
    result = invoke(label_cli, [tiny_onnx, "--ann", data / "sp.json", "--tau", "0.5", "--out", data / "labels.json"])
    assert result.exit_code == 0, result.output
    info = json.loads((data / "labels.json").read_text())["info"]
    assert info["images_dir"] == str(data.resolve()) and info["images_dir_relative"] == "."
    teacher = info["teacher"]
    assert (teacher["arch"], teacher["image_size"], teacher["epochs"], teacher["batch_size"]) == ("resnet18", 32, 1, 16)
    assert teacher["val_ann"] == str(tiny_data["val"]) and teacher["pretrained"] is False and teacher["lr"] == 1e-3

    from spml.data.coco import load_coco

    moved = tmp_path / "moved"
    data.rename(moved)  # the recorded absolute folder is gone; the relative one still holds
    assert load_coco(moved / "labels.json").images_dir.resolve() == moved.resolve()
    assert load_coco(moved / "sp.json").images_dir.resolve() == moved.resolve()


def test_error_details_are_cut_at_a_word_boundary():
    from spml.train.model import first_words

    text = "Weights only load failed. " + "This file can still be loaded with torch.load from a trusted source. " * 3
    cut = first_words(text, 60)
    assert cut.endswith(" ...") and text.startswith(cut[:-4]) and text[len(cut) - 4] == " "
    assert first_words("short\nsecond line") == "short"
