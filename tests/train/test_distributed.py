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
# "The same model to float tolerance", measured where it is meaningful: the predictions (max |p1 - p2| on fixed
# inputs) and the share of weights off by more than 1e-5. Sums run in another order on 2 ranks; where Adam
# divides an element's near-zero gradient by its near-zero norm that noise can flip the step's sign, so a few
# single weights move by up to an lr step; bounding every element would test Adam's eps, not the trainer.
SAME_PREDICTIONS, FEW_WEIGHTS = 1e-3, 1e-2


def args(data, out, *extra):
    return ["--ann", str(data["sp"]), "--arch", "resnet18", "--image-size", "32", "--no-pretrained", "--seed", "2",
            "--device", "cpu", "--out", str(out), "--keep-last", *map(str, extra)]


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


def ranks(argv, n=2):
    """n ranks started as torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT), without torchrun's own
    interpreter: the output of rank 0."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(ENV, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(n), LOCAL_WORLD_SIZE=str(n))
    procs = [subprocess.Popen([sys.executable, "-m", "spml.train.cli", *argv], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(n)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outs)
    return outs[0]


def weights(path):
    return torch.load(path, weights_only=True)


def difference(a, b) -> tuple[float, float]:
    """(max |p_a - p_b| over 16 fixed random 32 px images x categories, share of weights differing by > 1e-5)."""
    from spml.train.model import model_from_checkpoint

    assert set(a["model"]) == set(b["model"])
    floats = [k for k, v in a["model"].items() if v.is_floating_point()]
    off = sum(int(((a["model"][k] - b["model"][k]).abs() > 1e-5).sum()) for k in floats)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pa, pb = (torch.sigmoid(model_from_checkpoint(c)(x)) for c in (a, b))
    return float((pa - pb).abs().max()), off / sum(a["model"][k].numel() for k in floats)


def assert_same_model(a, b, exact=False):
    if exact:
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), key
        return
    predictions, share_off = difference(a, b)
    assert predictions < SAME_PREDICTIONS and share_off < FEW_WEIGHTS, (predictions, share_off)


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


EM = ["--loss", "em", "--epochs", "3", "--freeze-bn", "--batch-size", "13"]  # last batch of 1: rank 1 gets a stand-in


@pytest.fixture(scope="module")
def ddp_em(tiny_data, tmp_path_factory):
    """2 ranks started the user's way, `spml-train --nproc 2`, with validation: (checkpoint, output)."""
    out = tmp_path_factory.mktemp("ddp") / "two.pt"
    text = run([sys.executable, "-m", "spml.train.cli", "--nproc", "2",
                *args(tiny_data, out, *EM, "--val-ann", tiny_data["val"])])
    return out, text


@pytest.mark.distributed
def test_two_ranks_train_what_one_process_does_em(ddp_em, tiny_data, tmp_path):
    out, text = ddp_em
    assert "2 processes" in text
    one_process(args(tiny_data, tmp_path / "one.pt", *EM, "--val-ann", tiny_data["val"]))
    a, b = weights(last_path(tmp_path / "one.pt")), weights(last_path(out))
    assert b["config"]["nproc"] == 2 and a["config"]["nproc"] == 1
    assert_same_model(a, b)
    for x, y in zip(a["history"], b["history"]):  # validation on 2 ranks' shares gives one process's mAP
        assert abs(x["train_loss"] - y["train_loss"]) < 1e-4 and abs(x["val_map"] - y["val_map"]) < 0.1


@pytest.mark.distributed
def test_two_ranks_train_what_one_process_does_em_apl(tiny_data, tmp_path):
    common = ["--loss", "em-apl", "--epochs", "2", "--freeze-bn", "--batch-size", "15", "--loss-arg", "warmup_epochs=1"]  # 8 + 7
    one_process(args(tiny_data, tmp_path / "one.pt", *common))
    ranks(args(tiny_data, tmp_path / "two.pt", *common))
    a, b = weights(last_path(tmp_path / "one.pt")), weights(last_path(tmp_path / "two.pt"))
    assert_same_model(a, b)
    # the pseudo negatives were chosen from both ranks' scores, as one process chooses them from all
    assert a["loss_state"]["pseudo"].any()
    assert torch.equal(a["loss_state"]["pseudo"], b["loss_state"]["pseudo"])
    torch.testing.assert_close(a["loss_state"]["scores"], b["loss_state"]["scores"], rtol=1e-3, atol=1e-4)


@pytest.mark.distributed
def test_batchnorm_is_per_process_on_the_cpu_and_says_so(tiny_data, tmp_path):
    common = ["--epochs", "1", "--batch-size", "16"]
    one_process(args(tiny_data, tmp_path / "one.pt", *common))
    text = ranks(args(tiny_data, tmp_path / "two.pt", *common))
    assert "BatchNorm normalises its own share" in text
    predictions, share_off = difference(weights(tmp_path / "one.pt"), weights(tmp_path / "two.pt"))
    # so the bounds above can fail: this is what a real difference between 1 and 2 processes looks like
    assert predictions > 10 * SAME_PREDICTIONS and share_off > 10 * FEW_WEIGHTS, (predictions, share_off)


@pytest.mark.distributed
def test_sigterm_to_torchrun_then_resume_gives_the_uninterrupted_checkpoint(ddp_em, tiny_data, tmp_path):
    from spml.export.onnx_export import export_onnx
    from spml.train.model import load_checkpoint

    whole, _ = ddp_em
    part = tmp_path / "part.pt"
    argv = args(tiny_data, part, *EM, "--val-ann", tiny_data["val"])
    proc = subprocess.Popen(torchrun(argv), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not last_path(part).exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # to torchrun, which passes it to both ranks
    assert proc.wait(120) != 0
    assert weights(last_path(part))["epoch"] < 2, "finished before the signal landed"
    assert not list(tmp_path.glob(".*.tmp"))
    assert "resuming after epoch" in ranks([*argv, "--resume"])

    a, b = weights(last_path(whole)), weights(last_path(part))
    assert_same_model(a, b, exact=True)
    assert [h["val_map"] for h in a["history"]] == [h["val_map"] for h in b["history"]]
    assert_same_model(weights(whole), weights(part), exact=True)

    # the DDP checkpoint is like any other: it loads (weights_only) and exports
    ckpt = load_checkpoint(whole)
    assert ckpt["config"]["nproc"] == 2 and not any(k.startswith("module.") for k in ckpt["model"])
    onnx_path, _ = export_onnx(whole, tmp_path / "whole.onnx")
    assert onnx_path.stat().st_size > 0


@pytest.mark.gpu
@pytest.mark.distributed
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("nproc", [1, 2])
def test_nccl_ranks_train_what_one_process_does(nproc, tiny_data, tmp_path):
    if torch.cuda.device_count() < nproc:
        pytest.skip(f"needs {nproc} GPUs")
    # BatchNorm as it is: SyncBatchNorm (NCCL) keeps it exact; fp32 so that only the summation order differs
    common = ["--device", "cuda", "--epochs", "2", "--batch-size", "13", "--precision", "fp32", "--workers", "2"]
    one_process(args(tiny_data, tmp_path / "one.pt", *common))
    text = run(torchrun(args(tiny_data, tmp_path / "ddp.pt", *common), nproc))
    assert "DDP over" in text and "SyncBatchNorm" in text
    a, b = weights(last_path(tmp_path / "one.pt")), weights(last_path(tmp_path / "ddp.pt"))
    assert_same_model(a, b)

