"""--engine ray against --engine local: the same labels files, through failures, dead actors and a killed driver.
Ray runs locally here (one session for the module, 2 CPUs)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from spml.label import job
from spml.label.cli import main as label_cli


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    for attempt in range(3):  # Ray's raylet gives its agents 15 s to start, too little on a busy 2-core machine
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception:
            if attempt == 2:
                raise
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def with_failures(tiny_data, tmp_path_factory):
    """The tiny training set plus a corrupt and a missing image, in the middle of the list."""
    from spml.data.coco import load_coco

    source = load_coco(tiny_data["sp"])
    root = tmp_path_factory.mktemp("ray_data")
    shutil.copytree(source.images_dir, root / "images", ignore=shutil.ignore_patterns("*.json"))
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg at all")
    raw = dict(source.raw)
    bad = [{"id": 900001, "file_name": "broken.jpg", "width": 32, "height": 32},
           {"id": 900002, "file_name": "missing.jpg", "width": 32, "height": 32}]
    raw["images"] = raw["images"][:13] + bad[:1] + raw["images"][13:27] + bad[1:] + raw["images"][27:]
    raw["info"] = {**raw.get("info", {}), "images_dir": "images"}
    ann = root / "sp.json"
    ann.write_text(json.dumps(raw))
    return ann


def label(*args):
    result = CliRunner().invoke(label_cli, [str(a) for a in args])
    return result


def common(tiny_onnx, ann):
    return ["--model", tiny_onnx, "--ann", ann, "--tau", "0.45", "--tau", "0.6", "--batch-size", "4",
            "--chunk-size", "8", "--threads", "1"]


def same_files(a: Path, b: Path):
    """Two runs' outputs: every τ's labels file equal in all but the creation time, failures lists equal."""
    for tau in ("0.45", "0.6"):
        x, y = (json.loads(p.with_name(f"{p.stem}.tau{tau}.json").read_text()) for p in (a, b))
        x["info"].pop("date_created"), y["info"].pop("date_created")
        assert x == y
        fx, fy = (p.with_name(f"{p.stem}.tau{tau}.failures.jsonl").read_text() for p in (a, b))
        assert fx == fy and len(fx.splitlines()) == 2


@pytest.fixture(scope="module")
def local_labels(tiny_onnx, with_failures, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "labels.json"
    result = label(*common(tiny_onnx, with_failures), "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_ray_gives_the_local_labels(ray_session, tiny_onnx, with_failures, local_labels, tmp_path):
    out = tmp_path / "labels.json"
    result = label(*common(tiny_onnx, with_failures), "--engine", "ray", "--ray-actors", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 failed" in result.output
    same_files(local_labels, out)
    assert not job.state_dir(out).exists()


class DiesOnce:
    """Mixed into the scorer: the first actor to score a chunk past the first exits its process, once."""

    flag = ""

    def __call__(self, batch):
        if batch["row"][0] > 0 and not os.path.exists(self.flag):
            open(self.flag, "w").close()
            os._exit(1)
        return super().__call__(batch)


def test_a_dead_actor_is_replaced_and_the_labels_are_the_same(ray_session, tiny_onnx, with_failures, local_labels,
                                                              tmp_path, monkeypatch):
    from spml.label import ray_engine

    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    dying = type("DyingScorer", (DiesOnce, ray_engine.ChunkScorer), {"flag": str(tmp_path / "died")})
    monkeypatch.setattr(ray_engine, "ChunkScorer", dying)
    out = tmp_path / "labels.json"
    result = label(*common(tiny_onnx, with_failures), "--engine", "ray", "--ray-actors", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "died").exists()  # an actor did die
    same_files(local_labels, out)


def test_a_killed_driver_resumes(ray_session, tiny_onnx, with_failures, local_labels, tmp_path, monkeypatch):
    from spml.label import ray_engine

    real = ray_engine.ray_engine

    def interrupted_after_two_chunks(*args, **kwargs):
        score = real(*args, **kwargs)

        def wrapped(parts, bar):
            for k, item in enumerate(score(parts, bar)):
                if k == 2:
                    raise KeyboardInterrupt  # Ctrl-C, or SIGTERM (spml turns it into the same)
                yield item
        return wrapped

    monkeypatch.setattr(ray_engine, "ray_engine", interrupted_after_two_chunks)
    out = tmp_path / "labels.json"
    args = [*common(tiny_onnx, with_failures), "--engine", "ray", "--ray-actors", "2", "--out", out]
    result = label(*args)
    assert result.exit_code != 0 and not out.with_name("labels.tau0.45.json").exists()
    assert len(list(job.state_dir(out).glob("chunk_*.npz"))) == 2
    monkeypatch.setattr(ray_engine, "ray_engine", real)
    result = label(*args)
    assert result.exit_code == 0, result.output
    assert "resuming: 2 of" in result.output
    same_files(local_labels, out)


def test_without_ray_one_clear_line(tiny_onnx, tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"  # `import ray` raises ImportError, as where it is not installed
            "from spml.label.cli import main\n"
            f"main(['--model', {str(tiny_onnx)!r}, '--tau', '0.5', '--engine', 'ray', '--out', {str(tmp_path / 'l.json')!r}])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'spml[ray]'" in lines[0], proc.stderr


def test_ray_options_need_the_ray_engine(tiny_onnx, tmp_path):
    result = label("--model", tiny_onnx, "--tau", "0.5", "--ray-actors", "2", "--out", tmp_path / "l.json")
    assert result.exit_code == 2 and "--engine ray" in result.output
