"""torchrun/DDP on the CPU (gloo, 2 processes): the same model as one process with the same global batch, exact
resumption after SIGTERM, and a checkpoint like any other. The reference is always a plain single-process run of
the same command.

BatchNorm: under DDP each process normalises its own share of the batch. On GPUs the trainer uses SyncBatchNorm,
which keeps 1 vs N exact, but torch has no SyncBatchNorm on the CPU. So the equality tests train with
--freeze-bn (BatchNorm from its running statistics, exact on any device), and the resume test, which trains
with BatchNorm as it is, also checks that there the two do differ and that the trainer says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

from spml.train.cli import main
from spml.train.distributed import Dist, EpochBatches, share, without_nproc
from spml.train.trainer import last_path

ENV = dict(os.environ, OMP_NUM_THREADS="1")


def args(data, out, *extra):
    return ["--ann", str(data["sp"]), "--arch", "resnet18", "--image-size", "32", "--no-pretrained", "--seed", "2",
            "--device", "cpu", "--out", str(out), *map(str, extra)]


def one_process(argv):
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    return result.output


def torchrun(argv, nproc=2):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "--module", "spml.train.cli", *argv]


def run(command):
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def weights(path):
    return torch.load(path, weights_only=True)


def assert_same_model(a, b, **tol):
    assert set(a["model"]) == set(b["model"])
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], **tol, msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize("n,batch,world", [(40, 13, 2), (40, 15, 2), (41, 8, 3), (5, 8, 2), (7, 3, 4)])
def test_ranks_split_the_single_process_batches(n, batch, world):
    for epoch in range(3):
        g = torch.Generator().manual_seed(1000 + epoch)
        reference = [b.tolist() for b in DataLoader(range(n), batch_size=batch, shuffle=True, generator=g)]
        samplers = [EpochBatches(n, batch, True, Dist(r, world), seed_of=lambda e: 1000 + e) for r in range(world)]
        for s in samplers:
            s.set_epoch(epoch)
        assert samplers[0].global_batches() == reference
        per_rank = [list(s) for s in samplers]
        for step, whole in enumerate(reference):
            shares = [share(len(whole), r, world) for r in range(world)]
            joined = [i for r, (a, b) in enumerate(shares) if b > a for i in per_rank[r][step]]
            assert joined == whole  # contiguous shares, in rank order, make up the global batch
            for r, (a, b) in enumerate(shares):
                if b == a:
                    assert per_rank[r][step] == whole[:1]  # a stand-in, weighted 0 by the trainer
        owned = sorted(torch.cat([s.own_rows() for s in samplers]).tolist())
        assert owned == list(range(n))  # each image is trained by exactly one rank per epoch


def test_nproc_is_stripped_for_the_ranks():
    assert without_nproc(["--nproc", "2", "--ann", "a.json", "--nproc=3", "--epochs", "2"]) == ["--ann", "a.json", "--epochs", "2"]


@pytest.mark.parametrize("loss,extra", [("em", ["--batch-size", "13"]),  # last batch of 1: rank 1 gets a stand-in
                                        ("em-apl", ["--batch-size", "15", "--warmup-epochs", "1"])])  # 8 + 7 images
def test_two_ranks_train_what_one_process_does(loss, extra, tiny_data, tmp_path):
    common = ["--loss", loss, "--epochs", "2", "--freeze-bn", *extra]
    one_process(args(tiny_data, tmp_path / "one.pt", *common))
    out = run([sys.executable, "-m", "spml.train.cli", "--nproc", "2", *args(tiny_data, tmp_path / "two.pt", *common)])
    assert "2 processes" in out
    a, b = weights(last_path(tmp_path / "one.pt")), weights(last_path(tmp_path / "two.pt"))
    assert b["config"]["nproc"] == 2 and a["config"]["nproc"] == 1
    assert_same_model(a, b, rtol=1e-4, atol=1e-5)
    if loss == "em-apl":  # the pseudo negatives were chosen from both ranks' scores, as one process does
        assert a["loss_state"]["pseudo"].any()
        assert torch.equal(a["loss_state"]["pseudo"], b["loss_state"]["pseudo"])
        torch.testing.assert_close(a["loss_state"]["scores"], b["loss_state"]["scores"], rtol=1e-4, atol=1e-5)
    assert abs(a["history"][-1]["train_loss"] - b["history"][-1]["train_loss"]) < 1e-4


def test_sigterm_to_torchrun_then_resume_gives_the_uninterrupted_checkpoint(tiny_data, tmp_path):
    from spml.export.onnx_export import export_onnx
    from spml.train.model import load_checkpoint

    common = ["--epochs", "3", "--batch-size", "14", "--val-ann", str(tiny_data["val"])]
    whole_out = run(torchrun(args(tiny_data, tmp_path / "whole.pt", *common)))
    assert "BatchNorm normalises its own share" in whole_out

    part = tmp_path / "part.pt"
    proc = subprocess.Popen(torchrun(args(tiny_data, part, *common)), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 240
    while not last_path(part).exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # to torchrun, which passes it to both ranks
    assert proc.wait(120) != 0
    assert weights(last_path(part))["epoch"] < 2, "finished before the signal landed"
    assert not list(tmp_path.glob(".*.tmp"))
    resumed = run(torchrun(args(tiny_data, part, *common, "--resume")))
    assert "resuming after epoch" in resumed

    a, b = weights(last_path(tmp_path / "whole.pt")), weights(last_path(part))
    assert_same_model(a, b, rtol=0, atol=0)
    assert [h["val_map"] for h in a["history"]] == [h["val_map"] for h in b["history"]]
    assert_same_model(weights(tmp_path / "whole.pt"), weights(part), rtol=0, atol=0)

    # honest about BatchNorm: without --freeze-bn, 2 CPU processes do not train what one does
    one_process(args(tiny_data, tmp_path / "one.pt", *common))
    one = weights(last_path(tmp_path / "one.pt"))
    assert any(not torch.allclose(one["model"][k].float(), a["model"][k].float(), rtol=1e-3, atol=1e-4)
               for k in one["model"] if one["model"][k].is_floating_point())

    # the DDP checkpoint is like any other: it loads (weights_only) and exports
    ckpt = load_checkpoint(tmp_path / "whole.pt")
    assert ckpt["config"]["nproc"] == 2 and not any(k.startswith("module.") for k in ckpt["model"])
    onnx_path, _ = export_onnx(tmp_path / "whole.pt", tmp_path / "whole.onnx")
    assert onnx_path.stat().st_size > 0
