"""Long jobs: a killed run resumes to the same file; shards merge into the file a single run writes."""

import json

import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO

from spml.label import job
from spml.label.cli import main as label_cli
from spml.label.labeler import PseudoLabeler


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def label(args):
    if args[0] != "merge":
        args = [*args, "--chunk-size", "8"]
    return CliRunner().invoke(label_cli, [str(a) for a in args])


def test_killed_run_resumes_to_the_identical_file(tiny_onnx, tmp_path, small_chunks, monkeypatch, interrupt):
    common = ["--model", tiny_onnx, "--tau", "0.5", "--batch-size", "4"]
    assert label([*common, "--out", tmp_path / "whole.json"]).exit_code == 0

    real, calls = PseudoLabeler.scores, []
    interrupt(PseudoLabeler, "scores", 3)  # on the third chunk
    out = tmp_path / "labels.json"
    result = label([*common, "--out", out])
    assert result.exit_code != 0 and not out.exists()
    assert len(list(job.state_dir(out).glob("chunk_*.npz"))) == 2  # two chunks finished and kept

    monkeypatch.setattr(PseudoLabeler, "scores", lambda self, *a, **kw: (calls.append(1), real(self, *a, **kw))[1])
    result = label([*common, "--out", out])
    assert result.exit_code == 0, result.output
    assert "resuming: 2 of" in result.output
    assert out.read_bytes() == (tmp_path / "whole.json").read_bytes()
    assert not job.state_dir(out).exists()


def test_shards_merge_into_the_single_run_file(tiny_onnx, tmp_path, small_chunks):
    common = ["--model", tiny_onnx, "--tau", "0.4"]
    assert label([*common, "--out", tmp_path / "whole.json"]).exit_code == 0
    parts = []
    for i in range(3):
        parts.append(tmp_path / f"part{i}.json")
        assert label([*common, "--shard", f"{i}/3", "--out", parts[-1]]).exit_code == 0
    shard_images = [len(json.loads(p.read_text())["images"]) for p in parts]
    assert all(n > 0 for n in shard_images)
    result = label(["merge", parts[2], parts[0], parts[1], "--out", tmp_path / "merged.json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "merged.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    COCO(str(tmp_path / "merged.json"))


@pytest.mark.parametrize("shard", ["3/2", "0/0", "x", "-1/2"])
def test_bad_shard(tiny_onnx, tmp_path, shard):
    result = label(["--model", tiny_onnx, "--tau", "0.5", "--shard", shard, "--out", tmp_path / "l.json"])
    assert result.exit_code == 1 and "--shard" in result.output and "Traceback" not in result.output


def test_merge_refuses_incomplete_or_foreign_parts(tiny_onnx, tmp_path, small_chunks):
    for i in range(2):
        label(["--model", tiny_onnx, "--tau", "0.5", "--shard", f"{i}/2", "--out", tmp_path / f"p{i}.json"])
    result = label(["merge", tmp_path / "p0.json", "--out", tmp_path / "m.json"])
    assert result.exit_code == 1 and "exactly once" in result.output
    label(["--model", tiny_onnx, "--tau", "0.7", "--shard", "1/2", "--out", tmp_path / "q1.json"])
    result = label(["merge", tmp_path / "p0.json", tmp_path / "q1.json", "--out", tmp_path / "m.json"])
    assert result.exit_code == 1 and "tau" in result.output
    assert not (tmp_path / "m.json").exists()
