"""spml.label.label(LabelConfig): the library call the command runs; the command's vocabulary around it."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from spml.errors import SpmlError
from spml.label import LabelConfig, label
from spml.label.cli import main as label_cli


def invoke(*args):
    return CliRunner().invoke(label_cli, [str(a) for a in args])


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_command_and_the_library_write_the_same_files(tiny_onnx, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    (tmp_path / "cli").mkdir()
    (tmp_path / "lib").mkdir()
    result = invoke(tiny_onnx, "--ann", tiny_data["sp"], "--tau", "0.4,0.6", "--tau-low", "0.2", "--soft",
                    "--format", "coco,csv", "--format", "fiftyone", "--csv-scores", "--out", tmp_path / "cli" / "l.json")
    assert result.exit_code == 0, result.output
    got = label(LabelConfig(model=str(tiny_onnx), ann=str(tiny_data["sp"]), taus=(0.4, 0.6), tau_low=0.2, soft=True,
                            formats=("coco", "csv", "fiftyone"), csv_scores=True, out=str(tmp_path / "lib" / "l.json"),
                            progress=False), log=lambda m: None)
    cli, lib = files_of(tmp_path / "cli"), files_of(tmp_path / "lib")
    assert sorted(cli) == sorted(lib) == ["l.tau0.4.csv", "l.tau0.4.fiftyone/labels.json", "l.tau0.4.json",
                                          "l.tau0.6.csv", "l.tau0.6.fiftyone/labels.json", "l.tau0.6.json"]
    for name in cli:
        assert cli[name] == lib[name], name
    # the result names every file and what it holds, in the order written
    assert list(got.paths) == [("coco", 0.4), ("csv", 0.4), ("fiftyone", 0.4), ("coco", 0.6), ("csv", 0.6),
                               ("fiftyone", 0.6)]
    for t in (0.4, 0.6):
        written = json.loads(got.paths["coco", t].read_text())
        assert got.counts["coco", t]["annotations"] == len(written["annotations"])
        assert got.counts["coco", t]["images"] == len(written["images"]) == got.images == 32
        assert got.counts["csv", t]["images"] == len(got.paths["csv", t].read_text().splitlines()) - 1
    assert got.failures == {} and not (tmp_path / "lib" / "l.json.partial").exists()


def test_one_tau_and_formats_as_one_string(tiny_onnx, tiny_data, tmp_path):
    got = label(LabelConfig(model=str(tiny_onnx), ann=str(tiny_data["sp"]), taus=0.5, formats="coco,csv",
                            out=str(tmp_path / "l.json"), progress=False), log=lambda m: None)
    assert got.paths == {("coco", 0.5): tmp_path / "l.json", ("csv", 0.5): tmp_path / "l.csv"}


def test_comma_separated_and_repeated_taus_are_one_thing(tiny_onnx, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("spml.label.api.label", lambda config, **kw: seen.append(config) or _empty())
    for args in (["--tau", "0.4,0.6"], ["--tau", "0.4", "--tau-high", "0.6"], ["--tau", "0.4,0.6", "--format", "coco,csv"],
                 ["--tau", "0.4", "--tau", "0.6", "--format", "coco", "--format", "csv"]):
        assert invoke(tiny_onnx, *args, "--out", tmp_path / "l.json").exit_code == 0
    assert [c.taus for c in seen] == [(0.4, 0.6)] * 4
    assert [c.formats for c in seen] == [("coco",), ("coco",), ("coco", "csv"), ("coco", "csv")]
    assert invoke(tiny_onnx, "--tau", "0.4,,0.6", "--out", tmp_path / "l.json").exit_code == 2


def _empty():
    from spml.label.api import LabelResult

    return LabelResult()


def test_the_old_ray_spellings_still_work_with_one_line_each(tiny_onnx, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("spml.label.api.label", lambda config, **kw: seen.append(config) or _empty())
    new = invoke("--engine", "ray", "--ray-actors", "3", "--ray-cpus-per-actor", "2", "--ray-gpus-per-actor", "0.5",
                 tiny_onnx, "--tau", "0.5", "--out", tmp_path / "l.json")
    # the retired flags take their value before the positional model, as the new ones do
    old = invoke("--engine", "ray", "--workers", "3", "--cpus-per-worker=2", "--gpus-per-worker", "0.5",
                 tiny_onnx, "--tau", "0.5", "--out", tmp_path / "l.json")
    assert new.exit_code == old.exit_code == 0, old.output
    assert seen[0] == seen[1]
    assert (seen[0].ray_actors, seen[0].ray_cpus_per_actor, seen[0].ray_gpus_per_actor) == (3, 2.0, 0.5)
    assert seen[0].model == str(tiny_onnx)
    warned = [line for line in old.stderr.splitlines() if line.startswith("deprecated:")]
    assert warned == ["deprecated: --workers will be removed in the next release; use --ray-actors",
                      "deprecated: --cpus-per-worker will be removed in the next release; use --ray-cpus-per-actor",
                      "deprecated: --gpus-per-worker will be removed in the next release; use --ray-gpus-per-actor"]
    assert "deprecated" not in new.stderr and "DEPRECATED" not in invoke("--help").output


def test_ray_settings_without_the_ray_engine(tiny_onnx, tmp_path):
    result = invoke(tiny_onnx, "--tau", "0.5", "--workers", "2", "--out", tmp_path / "l.json")
    assert result.exit_code == 2 and "--ray-actors: only with --engine ray" in result.output
    with pytest.raises(SpmlError, match="--ray-gpus-per-actor: only with --engine ray"):
        label(LabelConfig(model=str(tiny_onnx), taus=(0.5,), out=str(tmp_path / "l.json"), ray_gpus_per_actor=1))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("settings, message", [
    ({"taus": ()}, "no --tau given"),
    ({"tau_low": 0.5}, "--tau-low 0.5 must be below --tau 0.5"),
    ({"formats": ("coco", "yolo")}, "expected one or more of coco,fiftyone,csv,parquet"),
    ({"engine": "spark"}, "--engine 'spark': expected local or ray"),
])
def test_settings_that_cannot_work_are_errors_before_any_work(tiny_onnx, tmp_path, settings, message):
    config = LabelConfig(**{"model": str(tiny_onnx), "taus": (0.5,), "out": str(tmp_path / "l.json"), **settings})
    with pytest.raises(SpmlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        label(config, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_the_class_prior_default_is_written_once():
    from spml.data.protocol import COCO_EXPECTED_POSITIVES
    from spml.label.api import DEFAULTS

    assert COCO_EXPECTED_POSITIVES == 2.9  # Cole et al. 2021's COCO value
    assert DEFAULTS["expected_positives"] is COCO_EXPECTED_POSITIVES
    shown = invoke("--help").output
    assert "--expected-positives FLOAT" in shown and "[default: 2.9]" in " ".join(shown.split())


def test_importing_the_labeling_api_loads_neither_torch_nor_numpy():
    code = ("import sys; import spml.label; from spml.label import LabelConfig, label; import spml.label.cli\n"
            "print(sorted(m for m in ('torch', 'numpy', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
