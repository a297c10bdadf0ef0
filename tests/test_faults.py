"""Issue 5 faults: SIGTERM/SIGINT in the middle of spml-label and spml-train keep what was done."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch


def wait_for(predicate, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"finished before the signal: {proc.stdout.read()}")
        time.sleep(0.05)
    pytest.fail("timed out")


def spml(*args):
    return [sys.executable, "-c", "import sys; from spml.{0}.cli import main; main(sys.argv[1:])".format(args[0]), *map(str, args[1:])]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_label_killed_then_resumed(sig, tiny_data, tiny_onnx, tmp_path):
    raw = json.loads(tiny_data["sp"].read_text())
    n = len(raw["images"])
    copies = 10  # 50 chunks of 8: the signal lands mid-run, and the whole run stays a few seconds
    raw["images"] = [dict(im, id=k * 1000 + im["id"]) for k in range(copies) for im in raw["images"]]
    raw["annotations"] = [dict(a, id=k * 1000 + a["id"], image_id=k * 1000 + a["image_id"]) for k in range(copies)
                          for a in raw["annotations"]]
    (tmp_path / "big.json").write_text(json.dumps(raw))
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    common = ["--model", tiny_onnx, "--ann", tmp_path / "big.json", "--tau", "0.5", "--batch-size", "4", "--chunk-size", "8",
              "--threads", "1"]
    subprocess.run(spml("label", *common, "--out", tmp_path / "whole.json"), check=True, env=env, capture_output=True)

    out = tmp_path / "labels.json"
    out.write_text("old")
    # as from a terminal: a shell that starts a job in the background (CI runners, nohup) hands it SIGINT
    # ignored, and a job rightly keeps that
    proc = subprocess.Popen(spml("label", *common, "--out", out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    partial = tmp_path / "labels.json.partial"
    wait_for(lambda: len(list(partial.glob("chunk_*.npz"))) >= 2, proc)
    proc.send_signal(sig)
    assert proc.wait(60) != 0
    assert "Traceback" not in proc.stdout.read()
    assert out.read_text() == "old"  # the old file or a complete new one, never half of one
    done = len(list(partial.glob("chunk_*.npz")))
    assert 2 <= done < copies * n // 8
    assert not list(tmp_path.rglob("*.tmp"))

    result = subprocess.run(spml("label", *common, "--out", out), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"resuming: {done} of" in result.stderr
    assert out.read_bytes() == (tmp_path / "whole.json").read_bytes()


@pytest.mark.slow
def test_train_killed_then_resumed_exactly(tiny_data, tmp_path):
    common = ["--ann", tiny_data["sp"], "--arch", "resnet18", "--image-size", "32", "--epochs", "3", "--batch-size", "8",
              "--no-pretrained", "--seed", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(spml("train", *common, "--out", tmp_path / "whole.pt"), check=True, env=env, capture_output=True)

    out = tmp_path / "t.pt"
    proc = subprocess.Popen(spml("train", *common, "--out", out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = tmp_path / "t.last.pt"
    wait_for(last.exists, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) != 0
    assert "Traceback" not in proc.stdout.read()
    epoch = torch.load(last, weights_only=True)["epoch"]
    assert epoch < 2

    result = subprocess.run(spml("train", *common, "--out", out, "--resume"), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resuming after epoch {epoch + 1}" in result.stdout
    resumed = torch.load(out, weights_only=True)["model"]
    whole = torch.load(tmp_path / "whole.pt", weights_only=True)["model"]
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=0, atol=0)
