"""Several processes, one model: torchrun + DistributedDataParallel (NCCL on GPUs, gloo on CPUs).

The set-up follows torchvision references' `init_distributed_mode`: torchrun sets RANK, WORLD_SIZE and
LOCAL_RANK, each process takes its GPU and joins the group. What is ours is how the data is split, chosen so
that N processes train the same model as one process with the same global batch:

- every rank draws the same permutation as the single-process DataLoader (same generator, same draws), cuts it
  into the same global batches, and takes its contiguous share of each (`EpochBatches`). torch's
  DistributedSampler is not used: it interleaves ranks over the whole epoch and pads with repeated images, so
  neither the batches nor the epoch would be those of one process;
- a share's loss is weighted by its size (`share_weight`), so DDP's mean of the ranks' gradients is the gradient
  of the global batch's mean even when the last batch does not split evenly;
- per-image state of the stateful losses is merged at the end of each epoch (`sync_rows`), and ROLE's label
  estimates, which are not inside the DDP model, get their gradients averaged by hand (`average_grads`).

Where N processes differ from one by design (each is a per-batch quantity taken over the rank's share):
BatchNorm without SyncBatchNorm (the CPU: torch has it on GPUs only; --freeze-bn is exact), ROLE's regulariser
on the batch mean of the predicted positives, LL-*'s top-k of the batch's largest losses, and, with unknown
labels, the mean over the share's own known entries.
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: bool = False  # a process group exists (under torchrun, even with one process)

    @property
    def enabled(self) -> bool:
        return self.group

    @property
    def main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str) -> Dist:
    """Join torchrun's process group (a no-op outside torchrun). NCCL for CUDA, gloo for the CPU."""
    if not under_torchrun():
        return Dist()
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(local)  # "cuda" means this rank's GPU from here on
        # validation and checkpointing run between collectives; a slow one must not time the others out
        dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=datetime.timedelta(hours=2))
    return Dist(rank, world, local, True)


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def share(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous share of n items; shares differ by at most one."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def share_weight(global_len: int, d: Dist) -> float:
    """Factor on a rank's mean loss so that DDP's average over ranks is the global batch's mean: n_r * W / n.
    Exactly 1.0 in a single process."""
    start, stop = share(global_len, d.rank, d.world_size)
    return (stop - start) * d.world_size / global_len


class EpochBatches(torch.utils.data.Sampler):
    """This rank's share of each global batch of an epoch, in the order a single-process
    DataLoader(shuffle=True, generator=Generator().manual_seed(seed_of(epoch))) gives: that loader draws one
    int64 from the generator (its workers' base seed) and then takes randperm(n). `set_epoch` picks the
    epoch, so one DataLoader (with persistent workers) serves the whole run.

    A rank whose share of a (last, small) batch is empty gets the batch's first image as a stand-in, so every
    rank still runs the step's collectives; the trainer gives it weight 0 (share_weight) and keeps it out of
    the per-image state."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, d: Dist = Dist(), *, seed_of=lambda epoch: epoch):
        self.n, self.batch_size, self.shuffle, self.d, self.seed_of = n, batch_size, shuffle, d, seed_of
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed_of(self.epoch))
            torch.empty((), dtype=torch.int64).random_(generator=g)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        return [order[i:i + self.batch_size] for i in range(0, self.n, self.batch_size)]

    def __iter__(self):
        for batch in self.global_batches():
            start, stop = share(len(batch), self.d.rank, self.d.world_size)
            yield batch[start:stop] if stop > start else batch[:1]

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def own_rows(self) -> torch.Tensor:
        """The images this rank trains on in this epoch (stand-ins excluded)."""
        rows = []
        for batch in self.global_batches():
            start, stop = share(len(batch), self.d.rank, self.d.world_size)
            rows += batch[start:stop]
        return torch.tensor(rows, dtype=torch.long)


def average_grads(params, d: Dist) -> None:
    """Average the gradients of parameters outside the DDP model (ROLE's label estimates) over ranks, as DDP
    does for the model's."""
    if not d.enabled:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= d.world_size


def _gather_padded(t: torch.Tensor, d: Dist) -> list[torch.Tensor]:
    """all_gather of tensors whose first dimension differs between ranks."""
    size = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(size) for _ in range(d.world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(d.world_size)]
    dist.all_gather(parts, padded)
    return [part[: int(s.item())] for part, s in zip(parts, sizes)]


@torch.no_grad()
def sync_rows(module: torch.nn.Module, rows: torch.Tensor, num_images: int, d: Dist) -> None:
    """Give every rank the per-image state (buffers of shape (num_images, ...)) of the rows each rank trained
    on this epoch; each image is trained by exactly one rank per epoch, so the merge has no conflicts."""
    if not d.enabled:
        return
    for name, buf in module.named_buffers():
        if buf.dim() == 0 or buf.shape[0] != num_images:
            continue
        idx = rows.to(buf.device).long()
        all_rows = _gather_padded(idx, d)
        # bool buffers travel as uint8: not every backend reduces or gathers bool
        values = buf[idx].to(torch.uint8) if buf.dtype == torch.bool else buf[idx]
        for r, v in zip(all_rows, _gather_padded(values, d)):
            buf[r] = v.to(buf.dtype)


def gather_rows(scores: torch.Tensor, d: Dist) -> torch.Tensor:
    """The ranks' consecutive shares (share()) of a result concatenated in rank order."""
    if not d.enabled:
        return scores
    return torch.cat(_gather_padded(scores, d))


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """`spml-train --nproc N ARGS` as torchrun on this machine: python -m torch.distributed.run, so it is the
    torch of this environment."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "--module", "spml.train.cli", *args]


def without_nproc(argv: list[str]) -> list[str]:
    """argv less its --nproc option (both `--nproc N` and `--nproc=N`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out
