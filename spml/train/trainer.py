"""The trainer: one `train_one_epoch`, one `evaluate`, one `train`. Teachers (single-positive losses) and
students (bce on pseudo labels) are trained by the same code; only the loss and the labels file differ."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from spml.data.coco import CocoDataset, load_coco, same_categories
from spml.data.images import ImageError, Preprocess
from spml.errors import SpmlError
from spml.files import atomic_write
from spml.train.augment import AUGMENTS, draw_seed, mix_batch
from spml.train.data import FailurePolicy, ImageLabels, failures_path, readable_sets
from spml.train.distributed import (Dist, EpochBatches, average_grads, cleanup, gather_rows, init_distributed, share,
                                    share_weight, sync_rows, under_torchrun)
from spml.train.features import head_of, linear_features
from spml.train.precision import CompiledOrEager, autocast, grad_scaler, resolve_precision, set_up_cuda
from spml.train.losses import LOSSES, compute_loss
from spml.train.presets import apply_preset, fill_defaults, fine_tune_lr
from spml.train.loss_registry import own_arguments
from spml.train.stateful_losses import STATEFUL_LOSSES, StatefulLoss, create_stateful_loss
from spml.train.model import (FORMAT_VERSION, check_arch, create_model, load_checkpoint, model_preprocess,
                              pretrained_weights_cached)
from spml.train.timm_models import is_timm
from spml.train.clip_models import clip_record, is_clip, read_prompts


ALL_LOSSES = {**LOSSES, **STATEFUL_LOSSES}


@dataclass
class TrainConfig:
    ann: str | None = None  # training labels: single positives, full or pseudo labels; None: the built-in dataset (spml.train.builtin)
    images: str | None = None  # images folder; None = recorded in the annotations file, else its folder
    val_ann: str | None = None  # full labels for choosing the best epoch; None = keep the last epoch
    val_images: str | None = None
    loss: str | None = None  # None: em when every image has exactly one positive, else bce
    arch: str | None = None  # any torchvision classifier or timm/<name>; None: resnet50 (built-in dataset: cnn4)
    pretrained: bool | str | None = None  # None: torchvision's ImageNet weights when already in torch's cache; open_clip/: a tag
    weights: str | None = None  # a local state dict of `arch` (ImageNet weights from elsewhere)
    prompts: str | None = None  # open_clip/ archs: a file of prompt templates for the zero-shot head; None: spml's ensemble
    init: str | None = None  # start from an spml checkpoint of the same arch and categories (student from teacher)
    # an spml-review selection.json of the `weighted` strategy: each answered pair's loss weighted by 1 / the weight
    # it was sampled with (normalised to mean 1 over the answers), which undoes the selection (inverse probability)
    answer_weights: str | None = None
    mode: str = "end-to-end"  # end-to-end | linear (frozen backbone, cached features) | linear-init (linear, then end-to-end)
    linear_epochs: int = 25  # linear-init: epochs of the linear phase (Cole et al.: 25)
    soft_targets: bool = False  # fit the teacher's probabilities of an `spml-label --soft` file, not its 0/1 labels
    image_size: int | None = None  # None: 448 as in the papers, a timm model's own (built-in dataset: 32)
    epochs: int | None = None  # None: 10 (built-in dataset: 8); --mode linear: 25
    batch_size: int | None = None  # None: 8 as in the papers (built-in dataset: 32)
    lr: float | None = None  # None: 1e-5 fine-tuning pretrained weights, 1e-3 from scratch or for a linear head
    weight_decay: float = 0.0
    preset: str | None = None  # coco | voc | nus | cub: the reference code's settings for it (spml.train.presets)
    lr_schedule: str | None = None  # cosine | constant (the references'); None: cosine, --preset: constant
    head_lr_mult: float | None = None  # the head's lr = this x lr, end to end; None: 1, --preset with ll-*: 10
    loss_args: dict = field(default_factory=dict)  # the loss's hyperparameters (spml.train.loss_registry): the ones
    # given; resolved, every one (the registry's defaults, --preset's values); with loss None, em's (bce has none)
    flip: bool = True  # random horizontal flips (what --augment flip does; kept for older recipes)
    augment: str | None = None  # none | flip | strong (crop, TrivialAugment, mixup/cutmix); None: flip, or none if not flip
    mix_prob: float | None = None  # share of the batches mixed (mixup or cutmix); None: 1 with --augment strong, else 0
    dropout: float = 0.0  # dropout on the head's input, in training (any arch: a hook, the weights' names unchanged)
    drop_path: float = 0.0  # stochastic depth, where the arch has it (timm: drop_path_rate; torchvision: stochastic_depth_prob); 0: the arch's default
    soft_temperature: float = 1.0  # --soft-targets: the teacher's probabilities sharpened, sigmoid(logit / T); T < 1 sharpens
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    workers: int | None = None  # DataLoader workers; None: 0 on the CPU (decoding would steal the cores), else 8
    precision: str = "auto"  # auto | fp32 | bf16 | fp16: autocast of the forward pass; auto: bf16/fp16 on GPUs, fp32 on CPU
    compile: bool = False  # torch.compile the model (falls back to eager, with a warning, where it cannot)
    freeze_bn: bool = False  # BatchNorm uses its running statistics and trains only its scale and shift
    nproc: int = 1  # processes (one per GPU) training together under torchrun; recorded from the run
    out: str = "teacher.pt"
    resume: bool = False  # continue from <out>.last.pt
    keep_last: bool = False  # keep <out>.last.pt (optimizer state, ~3x the checkpoint) after the run completes
    allow_outside: bool = False  # open image file_names that point outside the images folder
    max_failed: float = 0.1  # share of the images that may be unreadable (skipped, listed in <out>.failures.jsonl)
    strict: bool = False  # any unreadable image is an error
    progress: bool = True


PAPER_DEFAULTS = {"arch": "resnet50", "image_size": 448, "epochs": 10, "batch_size": 8}
MODES = ("end-to-end", "linear", "linear-init")  # Cole et al.'s training settings
LINEAR_EPOCHS = 25  # Cole et al.'s linear setting: cheap epochs on cached features


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fill what the user left unset; the result is stored in the checkpoint. Pure: no file is made or read
    beyond caches' existence (the built-in dataset and its backbone are spml.train.builtin's work, before this)."""
    cfg = dataclasses.replace(config)
    if cfg.ann is None:
        raise SpmlError("no training labels: give --ann (or fill in the built-in dataset with "
                        "spml.train.builtin.builtin_config)") from None
    apply_preset(cfg)  # before spml's defaults: an explicit option wins over the preset, the preset over ours
    fill_defaults(cfg)
    if cfg.mode not in MODES:
        raise SpmlError(f"unknown mode {cfg.mode!r}; valid: {', '.join(MODES)}") from None
    if cfg.mode == "linear" and cfg.epochs is None:
        cfg.epochs = LINEAR_EPOCHS
    if cfg.image_size is None and is_timm(cfg.arch):
        from spml.train.timm_models import timm_input_size

        cfg.image_size = timm_input_size(cfg.arch)  # the size the timm model was trained at, not the papers' 448
    if cfg.image_size is None and is_clip(cfg.arch):
        from spml.train.clip_models import clip_input_size

        cfg.image_size = clip_input_size(cfg.arch)  # the size its image tower is built for, on any data
    for key, value in PAPER_DEFAULTS.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, value)
    if cfg.prompts is not None and not is_clip(cfg.arch):
        raise SpmlError(f"--prompts: prompt templates are for open_clip/ archs, not {cfg.arch}") from None
    check_arch(cfg.arch)
    if cfg.pretrained is None:
        cfg.pretrained = cfg.weights is None and pretrained_weights_cached(cfg.arch)
    if cfg.lr is None:
        cfg.lr = fine_tune_lr(cfg, 1e-5) if (cfg.pretrained or cfg.weights) and cfg.mode != "linear" else 1e-3
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif cfg.device == "cuda" and not torch.cuda.is_available():
        raise SpmlError("--device cuda: no CUDA device is available") from None
    if cfg.workers is None:
        cfg.workers = 0 if cfg.device == "cpu" else min(8, os.cpu_count() or 1)
    if cfg.augment is None:
        cfg.augment = "flip" if cfg.flip else "none"
    if cfg.augment not in AUGMENTS:
        raise SpmlError(f"unknown augmentation {cfg.augment!r}; valid: {', '.join(AUGMENTS)}") from None
    cfg.flip = cfg.augment != "none"
    if cfg.mix_prob is None:
        cfg.mix_prob = 1.0 if cfg.augment == "strong" else 0.0
    for key, low, high in (("mix_prob", 0, 1), ("dropout", 0, 1), ("drop_path", 0, 1)):
        if not low <= getattr(cfg, key) <= high or (key != "mix_prob" and getattr(cfg, key) == 1):
            raise SpmlError(f"--{key.replace('_', '-')} must be in [0, 1), got {getattr(cfg, key)}") from None
    if cfg.soft_temperature <= 0:
        raise SpmlError(f"--soft-temperature must be positive, got {cfg.soft_temperature}") from None
    for key in ("image_size", "epochs", "batch_size", "linear_epochs"):
        if getattr(cfg, key) <= 0:
            raise SpmlError(f"--{key.replace('_', '-')} must be positive, got {getattr(cfg, key)}") from None
    if cfg.lr <= 0:
        raise SpmlError(f"--lr must be positive, got {cfg.lr}") from None
    return cfg


def clip_head_start(cfg: TrainConfig, categories: list[dict]) -> dict:
    """create_model's arguments for an open_clip/ arch's zero-shot head: the category names and the templates."""
    if not is_clip(cfg.arch):
        return {}
    return {"class_names": [str(c.get("name", c["id"])) for c in categories], "prompts": read_prompts(cfg.prompts)}


def sharpen(probs: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T): T < 1 pushes the teacher's probabilities towards 0 and 1, T > 1 softens them;
    observed positives (1) stay 1."""
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    out = 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature))
    out[probs >= 1] = 1.0
    return out.astype(np.float32)


def add_head_dropout(model: torch.nn.Module, p: float) -> None:
    """Dropout on the input of the classifier head, in training mode only: a forward pre-hook, so the state
    dict's names (and --init, --weights, export) are those of the arch without it."""
    head = head_of(model)[0]

    def drop(module, args):
        return (torch.nn.functional.dropout(args[0], p, module.training),) + tuple(args[1:])

    head.register_forward_pre_hook(drop)


def choose_loss(dataset: CocoDataset, requested: str | None, soft_targets: bool = False) -> tuple[str, str]:
    """The loss and why: em for single-positive data (the seed's teacher), bce for full or pseudo labels."""
    if requested is not None:
        if requested not in ALL_LOSSES:
            raise SpmlError(f"unknown loss {requested!r}; valid: {', '.join(ALL_LOSSES)}") from None
        return requested, "as requested"
    if soft_targets:  # even where the thresholded labels happen to be one per image
        return "bce", "fitting the teacher's probabilities (--soft-targets)"
    per_image = dataset.positives.sum(axis=1)
    if np.all(per_image == 1):
        return "em", "every image has exactly one observed positive"
    if dataset.verified is not None and not (dataset.positives & ~dataset.observed).any():  # no "pseudo" annotation
        return "em", "partial labels: observed and verified positives (spml-review merge), the rest unobserved"
    return "bce", "images have full or pseudo labels (not exactly one positive each)"


def last_path(out: str | os.PathLike) -> Path:
    """Where the latest epoch's full training state lives, beside the best checkpoint: teacher.pt -> teacher.last.pt"""
    out = Path(out)
    return out.with_name(out.stem + ".last" + (out.suffix or ".pt"))


def make_loader(dataset, cfg: TrainConfig, shuffle: bool, d: Dist = Dist()) -> DataLoader:
    """One loader for the whole run (workers persist across epochs); `loader.batch_sampler.set_epoch(e)` gives
    epoch e's order, that of DataLoader(shuffle=True, generator=Generator().manual_seed(seed * 1000 + e)).
    Under DDP each rank gets its share of every global batch of --batch-size images."""
    base = dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset
    workers = cfg.workers if isinstance(base, ImageLabels) else 0  # cached features need no decoding
    if workers:
        base.share_pixels()  # one pixel cache for all the workers, not one each
    batches = EpochBatches(len(dataset), cfg.batch_size, shuffle, d, seed_of=lambda epoch: cfg.seed * 1000 + epoch)
    keep = {"persistent_workers": True, "prefetch_factor": 4} if workers else {}
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=cfg.device == "cuda",
                      generator=torch.Generator().manual_seed(cfg.seed), **keep)


def freeze_batchnorm(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def make_stateful_loss(cfg: TrainConfig, num_images: int, num_classes: int) -> StatefulLoss | None:
    """ROLE, EM+APL and LL-* keep per-image state, GR follows the epochs: built here, saved in .last.pt, restored on --resume."""
    if cfg.loss not in STATEFUL_LOSSES:
        return None
    try:
        return create_stateful_loss(cfg.loss, num_images, num_classes, cfg.epochs,
                                    **own_arguments(cfg.loss, cfg.loss_args)).to(cfg.device)
    except ValueError as e:
        raise SpmlError(f"--loss {cfg.loss}: {e}") from None


def make_optimizer(model, trainable, cfg: TrainConfig, stateful: StatefulLoss | None, *, log=print):
    """Adam over the trained parameters: the head at head_lr_mult x lr when training end to end (LargeLossMatters
    gives it 10x), ROLE's label estimates at their own lr_mult (10x, Cole et al.)."""
    groups = [{"params": list(trainable.parameters())}]
    if cfg.head_lr_mult != 1 and trainable is model:
        head = {id(p) for p in head_of(model)[0].parameters()}
        groups = [{"params": [p for p in model.parameters() if id(p) not in head]},
                  {"params": [p for p in model.parameters() if id(p) in head], "lr": cfg.lr * cfg.head_lr_mult}]
    elif cfg.head_lr_mult != 1:
        log(f"--mode {cfg.mode}: only the head trains, at --lr; --head-lr-mult does not apply")
    if stateful is not None and stateful.extra_lr_params():
        groups.append({"params": stateful.extra_lr_params(), "lr": cfg.lr * stateful.lr_mult, "weight_decay": 0.0})
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer, cfg: TrainConfig, steps: int):
    """Per step: cosine from lr to 0 over the run (spml's default), or constant (the reference loops)."""
    if cfg.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def train_one_epoch(model, loader, optimizer, scheduler, *, cfg: TrainConfig, epoch: int,
                    stateful: StatefulLoss | None = None, scaler=None, d: Dist = Dist()) -> float:
    """One epoch; the mean training loss over all ranks' images. Under autocast only the forward pass runs
    in bf16/fp16: the logits are cast to fp32 before the loss, stateful or not."""
    from spml.progress import tqdm

    model.train()
    if cfg.freeze_bn:
        freeze_batchnorm(model)
    n = len(loader.dataset)
    total = torch.zeros((), dtype=torch.float64, device=cfg.device)
    count = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not cfg.progress, mininterval=1.0,
               leave=False)
    for step, (x, targets, known, rows, negatives) in enumerate(bar):
        weight = share_weight(min(cfg.batch_size, n - step * cfg.batch_size), d)  # 1.0 in one process
        layout = torch.channels_last if cfg.device == "cuda" and x.dim() == 4 else torch.preserve_format
        x = x.to(cfg.device, non_blocking=True, memory_format=layout)
        targets, known = targets.to(cfg.device, non_blocking=True), known.to(cfg.device, non_blocking=True)
        if mixes(cfg, stateful) and draw_seed(cfg.seed, "mix?", epoch, step) % 1000 < cfg.mix_prob * 1000:
            x, targets, known = mix_batch(x, targets, known, draw_seed(cfg.seed, "mix", epoch, step, d.rank))
        with autocast(cfg.precision, cfg.device):
            logits = model(x)
        logits = logits.float()
        if weight == 0:  # a stand-in image (this rank's share of a small last batch is empty): no loss, no state
            loss = logits.sum() * 0.0
        elif stateful is not None:
            loss = stateful(logits, targets, known, rows.to(cfg.device), epoch, negatives=negatives.to(cfg.device))
        else:  # bce and an ignore `negatives` (their targets are 0 there already); mixup runs only with bce
            loss = compute_loss(cfg.loss, logits, targets, known, negatives=negatives.to(cfg.device),
                                **own_arguments(cfg.loss, cfg.loss_args))
        optimizer.zero_grad(set_to_none=True)
        scaled = loss * weight if weight != 1.0 else loss
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        if stateful is not None:
            average_grads(stateful.extra_lr_params(), d)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        if weight:
            total += loss.detach() * len(x)  # on the device: no host sync per step
            count += len(x)
        if cfg.progress and step % 10 == 0:
            bar.set_postfix(loss=f"{total.item() / max(count, 1):.4f}", refresh=False)
    if d.enabled:
        sums = torch.stack([total, torch.tensor(float(count), dtype=torch.float64, device=cfg.device)])
        torch.distributed.all_reduce(sums)
        total, count = sums[0], int(sums[1].item())
    return total.item() / max(count, 1)


def mixes(cfg: TrainConfig, stateful) -> bool:
    """Mixup/cutmix's targets are label probabilities: for the bce losses (students), not for the single-positive
    losses, whose targets mark the observed positive."""
    return cfg.mix_prob > 0 and stateful is None and cfg.loss in ("bce", "bce-ls")


@torch.inference_mode()
def evaluate(model, loader, device: str) -> np.ndarray:
    """Probabilities (N, L) for every image of the loader, in order: no image is dropped."""
    model.eval()
    out = []
    for x, *_ in loader:
        out.append(torch.sigmoid(model(x.to(device, non_blocking=True)).float()).cpu().numpy())
    return np.concatenate(out)


def evaluate_shared(model, loader, num_classes: int, cfg: TrainConfig, *, d: Dist) -> np.ndarray:
    """evaluate() over this rank's share of the validation set (loader = make_val_loader), all ranks'
    scores gathered in order; fp32, eval mode, so the scores are those of one process."""
    mine = evaluate(model, loader, cfg.device) if len(loader.dataset) else np.zeros((0, num_classes), np.float32)
    if not d.enabled:
        return mine
    return gather_rows(torch.from_numpy(mine).to(cfg.device), d).cpu().numpy()


def make_val_loader(dataset, cfg: TrainConfig, d: Dist) -> DataLoader:
    start, stop = share(len(dataset), d.rank, d.world_size)
    part = dataset if not d.enabled else torch.utils.data.Subset(dataset, range(start, stop))
    return make_loader(part, cfg, False)


def _checkpoint(cfg: TrainConfig, state: RunState, data: Data, epoch: int) -> dict:
    train_set, val_set = data.train_set, data.val_set
    return {
        "loss_state": ({k: v.detach().cpu() for k, v in state.stateful.state_dict().items()}
                       if state.stateful is not None else None),
        "format_version": FORMAT_VERSION,
        "model": {k: v.detach().cpu().contiguous() for k, v in state.model.state_dict().items()},  # NCHW if channels_last
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "epoch": epoch,
        "best_metric": state.best_metric,
        "config": dataclasses.asdict(cfg),
        "categories": [{"id": int(c["id"]), "name": str(c.get("name", c["id"]))} for c in train_set.categories],
        "preprocess": data.preprocess.to_dict(),
        "data": {
            "train_ann": str(train_set.path), "train_images": str(train_set.images_dir.resolve()),
            "val_ann": str(val_set.path) if val_set else None,
            "val_images": str(val_set.images_dir.resolve()) if val_set else None,
        },
        "history": state.history,
        **({"open_clip": clip_record(cfg.arch, cfg.pretrained, read_prompts(cfg.prompts))} if is_clip(cfg.arch) else {}),
    }


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def linear_phase_path(out: str | os.PathLike) -> Path:
    """linear-init's first phase, beside the final checkpoint: teacher.pt -> teacher.linear.pt"""
    out = Path(out)
    return out.with_name(out.stem + ".linear" + (out.suffix or ".pt"))


def train(config: TrainConfig, log=print) -> Path:
    """Train a model and write the best epoch's checkpoint to `config.out` (and the last epoch's full state to
    <out>.last.pt, for --resume). Returns the checkpoint's path.

    --mode linear trains only the head, on features of the frozen backbone cached on disk; linear-init trains
    the head that way first (<out>.linear.pt), then the whole network from it."""
    if config.mode != "end-to-end" and under_torchrun():
        raise SpmlError(f"--mode {config.mode} trains a head on cached features in one process: run it without "
                        "torchrun/--nproc (then --init its checkpoint for end-to-end training on several)") from None
    if config.mode == "linear-init":
        log(f"linear-init: {config.linear_epochs} epochs of the head on cached features, then end to end")
        # the first phase's .last.pt stays until the whole run completes, so --resume can tell the phase is done
        first = dataclasses.replace(config, mode="linear", epochs=config.linear_epochs, lr=None,
                                    out=str(linear_phase_path(config.out)), keep_last=True)
        first_out = _train(first, log)
        out = _train(dataclasses.replace(config, init=str(first_out)), log)
        if not config.keep_last:
            last_path(first_out).unlink(missing_ok=True)
        failures_path(first_out).unlink(missing_ok=True)  # the same images as <out>.failures.jsonl lists
        return out
    return _train(config, log)


def set_up_processes(cfg: TrainConfig, log):
    """Precision and processes, settled here rather than in resolve_config (which must not join a process
    group): (Dist, the log function of this rank: only rank 0 logs)."""
    cfg.precision = resolve_precision(cfg.precision, cfg.device)
    d = init_distributed(cfg.device)
    if cfg.nproc not in (1, d.world_size):
        raise SpmlError(f"--nproc {cfg.nproc}, but torchrun started {d.world_size} processes") from None
    if cfg.nproc > 1 and not d.enabled:
        raise SpmlError(f"nproc={cfg.nproc}: start through torchrun (or spml-train --nproc {cfg.nproc})") from None
    if d.enabled and cfg.device == "cuda" and d.local_rank >= torch.cuda.device_count():
        raise SpmlError(f"{d.world_size} processes per node, but only {torch.cuda.device_count()} GPUs") from None
    cfg.nproc = d.world_size
    if not d.main:
        cfg.progress, log = False, (lambda s: None)
    return d, log


def set_up_batchnorm(model, cfg: TrainConfig, d: Dist, log):
    """Under DDP each process's BatchNorm would see only its share of the batch (4 images of the papers' 8 on
    two GPUs), so N processes would train another model than one. SyncBatchNorm normalises over the global
    batch and keeps them the same; torch has it on GPUs only, so on the CPU the difference is said."""
    if not d.enabled or cfg.freeze_bn or not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    if cfg.device == "cuda":
        log("BatchNorm synchronised over the processes (SyncBatchNorm): statistics of the global batch")
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if d.world_size == 1:
        return model
    log("note: on the CPU each process's BatchNorm normalises its own share of the batch (torch's SyncBatchNorm "
        "needs GPUs); --freeze-bn makes N processes train exactly what one does")
    return model


def _train(config: TrainConfig, log=print) -> Path:
    """One phase: torchvision's references/classification main(), in stages."""
    cfg = resolve_config(config)
    d, log = set_up_processes(cfg, log)
    data = build_data(cfg, log, d)
    model = build_model(cfg, data, d, log)
    trainable = model
    if cfg.mode == "linear":
        trainable, data.fit, data.eval = linear_features(model, cfg, data.train, data.val, log=log)
    state = make_state(cfg, model, trainable, data, log=log)
    restore(cfg, state, data, log)
    log_start(cfg, data, d, log)
    fit(cfg, state, data, d, log=log)
    log(f"wrote {cfg.out}" + (f" (best val mAP {state.best_metric:.2f})" if state.best_metric is not None else ""))
    cleanup(d)
    return Path(cfg.out)


@dataclass
class Data:
    """The run's data: the COCO files (bad images already dropped), their image datasets, and what the network
    is fed (`fit`, `eval`: the images, or in linear mode the backbone's cached features)."""
    train_set: CocoDataset
    val_set: CocoDataset | None
    train: ImageLabels
    val: ImageLabels | None
    preprocess: Preprocess
    fit: torch.utils.data.Dataset | None = None
    eval: torch.utils.data.Dataset | None = None

    def __post_init__(self):
        self.fit = self.train if self.fit is None else self.fit
        self.eval = self.val if self.eval is None else self.eval


def build_data(cfg: TrainConfig, log=print, d: Dist = Dist()) -> Data:
    """The training and validation sets, their loss and targets; images that cannot be read are dropped or
    refused by the failure policy (--max-failed, --strict)."""
    train_set = load_coco(cfg.ann, cfg.images)
    cfg.loss, why = choose_loss(train_set, cfg.loss, cfg.soft_targets)
    log(f"loss: {cfg.loss} ({why})")
    if not train_set.positives.any() and cfg.loss != "bce":
        raise SpmlError(f"{cfg.ann}: no positive labels to learn from") from None
    val_set = load_coco(cfg.val_ann, cfg.val_images) if cfg.val_ann else None
    val_cols = same_categories(train_set.categories, val_set, f"training set {cfg.ann}") if val_set else None
    policy = FailurePolicy(cfg.max_failed, cfg.strict, cfg.allow_outside)
    train_set, val_set = readable_sets(train_set, val_set, policy, failures_path(cfg.out) if d.main else None, log=log)
    preprocess = model_preprocess(cfg.arch, cfg.image_size, pretrained=cfg.pretrained)
    unknown = train_set.unknown_mask()
    if unknown is not None:
        log(f"ignoring {int(unknown.sum())} labels marked unknown (not_exhaustive_category_ids)")
    known = None if unknown is None else ~unknown
    if cfg.answer_weights:
        weights = answer_weight_matrix(cfg, train_set)
        log(f"answers weighted by 1 / their sampling weight ({cfg.answer_weights}): from {weights.min():.3g} to "
            f"{weights.max():.3g}")
        known = weights if known is None else weights * known
    train = ImageLabels(train_set, training_targets(cfg, train_set, log), known,
                        preprocess, seed=cfg.seed, allow_outside=cfg.allow_outside, augment=cfg.augment,
                        negatives=train_set.negatives)
    val = (ImageLabels(val_set, val_set.positives[:, val_cols], None, preprocess, allow_outside=cfg.allow_outside)
           if val_set else None)
    return Data(train_set, val_set, train, val, preprocess)


WEIGHTED_LOSSES = ("em", "an", "wan", "bce", "an-ls", "epr")  # their entries are averaged by losses._mean(., known)


def answer_weight_matrix(cfg: TrainConfig, train_set: CocoDataset) -> np.ndarray:
    """(N, L) float32 loss weights: 1, and for each pair of the selection file's questions 1 / its sampling weight,
    scaled so that the answered pairs' weights average 1 (their share of the loss is unchanged, only spread back
    over the scores the selection under-sampled). The losses' known mask carries them (a weighted mean)."""
    from spml.data.json_stream import load_json

    if cfg.loss not in WEIGHTED_LOSSES or cfg.mix_prob:
        raise SpmlError(f"--answer-weights: only with the losses {', '.join(WEIGHTED_LOSSES)} and no mixing "
                        f"(loss {cfg.loss})") from None
    selection = load_json(cfg.answer_weights, "selection")
    chosen = selection.get("questions_chosen") if isinstance(selection, dict) else None
    if not isinstance(chosen, list) or not chosen or not all(isinstance(q, dict) and isinstance(q.get("weight"), (int, float))
                                                             and q["weight"] > 0 for q in chosen):
        raise SpmlError(f"{cfg.answer_weights}: not a selection.json of spml-review select --strategy weighted (each "
                        f"question with its positive sampling weight)") from None
    row, column = {i: n for n, i in enumerate(train_set.image_ids)}, train_set.column_of()
    inverse = np.array([1.0 / q["weight"] for q in chosen])
    inverse /= inverse.mean()
    weights = np.ones((len(train_set), len(train_set.categories)), dtype=np.float32)
    for q, w in zip(chosen, inverse):
        if q.get("image_id") in row and q.get("category_id") in column:  # an image dropped as unreadable: no weight
            weights[row[q["image_id"]], column[q["category_id"]]] = w
    return weights


def training_targets(cfg: TrainConfig, train_set: CocoDataset, log=print) -> np.ndarray:
    """The labels as 0/1, or with --soft-targets the teacher's probabilities (sharpened at --soft-temperature)."""
    if not cfg.soft_targets:
        return train_set.positives.astype(np.float32)
    targets = train_set.soft_targets()
    if targets is None:
        raise SpmlError(f"{cfg.ann}: --soft-targets needs a labels file written with spml-label --soft") from None
    if cfg.soft_temperature != 1:
        targets = sharpen(targets, cfg.soft_temperature)
    log("targets: the teacher's probabilities (observed positives at 1)"
        + (f", sharpened at temperature {cfg.soft_temperature:g}" if cfg.soft_temperature != 1 else ""))
    return targets


def build_model(cfg: TrainConfig, data: Data, d: Dist, log=print) -> torch.nn.Module:
    """The network on its device: the arch's start (ImageNet, --weights, or seeded random), --init's weights,
    the head's dropout, BatchNorm synchronised across processes."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.arch, data.train_set.num_classes, cfg.pretrained, cfg.weights, image_size=cfg.image_size,
                         drop_path=cfg.drop_path, **clip_head_start(cfg, data.train_set.categories)).to(cfg.device)
    if cfg.init:
        init = load_checkpoint(cfg.init)
        if init["config"]["arch"] != cfg.arch:
            raise SpmlError(f"--init {cfg.init}: a {init['config']['arch']} checkpoint, training {cfg.arch}") from None
        same_categories(init["categories"], data.train_set, f"--init {cfg.init}")
        model.load_state_dict(init["model"])
    if cfg.dropout:
        add_head_dropout(model, cfg.dropout)
    if cfg.augment != "flip" or cfg.mix_prob or cfg.dropout or cfg.drop_path:
        log(f"noise: --augment {cfg.augment}"
            + (f", mixup/cutmix on {cfg.mix_prob:.0%} of the batches" if mixes(cfg, stateful=None) else
               " (no mixing: the loss is not bce)" if cfg.mix_prob else "")
            + (f", dropout {cfg.dropout:g} on the head's input" if cfg.dropout else "")
            + (f", stochastic depth {cfg.drop_path:g}" if cfg.drop_path else ""))
    model = set_up_batchnorm(model, cfg, d, log)
    return set_up_cuda(model) if cfg.device == "cuda" else model


@dataclass
class RunState:
    """What training changes, epoch by epoch, and <out>.last.pt keeps for --resume."""
    model: torch.nn.Module
    trainable: torch.nn.Module  # the model, or in linear mode its head
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: object | None  # fp16's GradScaler
    stateful: StatefulLoss | None
    start_epoch: int = 0
    best_metric: float | None = None
    history: list = dataclasses.field(default_factory=list)


def make_state(cfg: TrainConfig, model, trainable, data: Data, *, log=print) -> RunState:
    stateful = make_stateful_loss(cfg, len(data.train_set), data.train_set.num_classes)
    optimizer = make_optimizer(model, trainable, cfg, stateful, log=log)
    steps_per_epoch = -(-len(data.fit) // cfg.batch_size)
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * steps_per_epoch)
    return RunState(model, trainable, optimizer, scheduler, grad_scaler(cfg.precision, cfg.device), stateful)


def restore(cfg: TrainConfig, state: RunState, data: Data, log=print) -> None:
    """--resume: the state of <out>.last.pt, the latest finished epoch, in place."""
    path = last_path(cfg.out)
    if not cfg.resume:
        return
    if not path.exists():
        log(f"nothing to resume: no {path} (a completed run removes it unless --keep-last); training afresh")
        return
    saved = load_checkpoint(path)
    if saved["config"]["arch"] != cfg.arch or len(saved["categories"]) != data.train_set.num_classes:
        raise SpmlError(f"{path}: was trained with other settings; remove it or change --out") from None
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    if state.stateful is not None:
        state.stateful.load_state_dict(saved["loss_state"])
    if state.scaler is not None and saved.get("scaler"):
        state.scaler.load_state_dict(saved["scaler"])
    state.start_epoch, state.best_metric, state.history = saved["epoch"] + 1, saved["best_metric"], saved["history"]
    log(f"resuming after epoch {state.start_epoch} of {cfg.epochs} from {path}")


def log_start(cfg: TrainConfig, data: Data, d: Dist, log=print) -> None:
    start = (f"from {cfg.init}" if cfg.init else f"open_clip's {cfg.pretrained}" if isinstance(cfg.pretrained, str)
             else "ImageNet weights" if cfg.pretrained else cfg.weights or "from scratch")
    if is_clip(cfg.arch) and not cfg.init:
        start += ", the zero-shot head"
    log(f"training {cfg.arch}{' head' if cfg.mode == 'linear' else ''} ({start}) at {cfg.image_size}px on "
        f"{len(data.train_set)} images, {data.train_set.num_classes} categories, {cfg.epochs} epochs, "
        f"batch {cfg.batch_size}, lr {cfg.lr:g} ({cfg.lr_schedule}"
        + (f", head x{cfg.head_lr_mult:g}" if cfg.head_lr_mult != 1 and cfg.mode != "linear" else "")
        + (f", preset {cfg.preset}" if cfg.preset else "") + f"), device {cfg.device}, {cfg.precision}"
        + (f", DDP over {d.world_size} process{'es' if d.world_size > 1 else ''} (~{cfg.batch_size / d.world_size:g} "
           "images each per step)" if d.enabled else "")
        + (f"; validation on {len(data.val_set)} images" if data.val_set else "; no validation set: the last epoch is kept"))


def fit(cfg: TrainConfig, state: RunState, data: Data, d: Dist, *, log=print) -> None:
    """Epochs from state.start_epoch on; rank 0 keeps the best epoch in <out> and the latest in <out>.last.pt."""
    net = wrapped(state.trainable, cfg, d, log)
    train_loader = make_loader(data.fit, cfg, True, d)
    val_loader = make_val_loader(data.eval, cfg, d) if data.eval is not None else None
    for epoch in range(state.start_epoch, cfg.epochs):
        started = time.time()
        torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout etc. replay exactly after a resume
        data.train.epoch = epoch
        train_loader.batch_sampler.set_epoch(epoch)
        try:
            loss = train_one_epoch(net, train_loader, state.optimizer, state.scheduler, cfg=cfg, epoch=epoch, stateful=state.stateful,
                                   scaler=state.scaler, d=d)
            if state.stateful is not None:
                # each image was trained by one rank: everyone gets its state before the loss reads it
                sync_rows(state.stateful, train_loader.batch_sampler.own_rows(), len(data.train_set), d)
                state.stateful.end_epoch(epoch)
            val_map = validate(state.trainable, val_loader, data, cfg, d=d)
        except ImageError as e:
            raise SpmlError(f"cannot read image {e}") from None
        if d.main:  # rank 0 writes the checkpoints and logs
            end_epoch(cfg, state, data, epoch, loss=loss, val_map=val_map, seconds=time.time() - started, log=log)
    if not cfg.keep_last:  # the run is complete: the resume state (optimizer included) is dead weight
        last_path(cfg.out).unlink(missing_ok=True)


def wrapped(trainable, cfg: TrainConfig, d: Dist, log=print):
    """What the training step calls: DDP and/or compiled around the trainable module."""
    net = trainable
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(trainable, device_ids=[d.local_rank] if cfg.device == "cuda" else None)
    return CompiledOrEager(net, log) if cfg.compile else net


def validate(model, loader, data: Data, cfg: TrainConfig, *, d: Dist) -> float | None:
    """The validation mAP (on rank 0; None on the others and without a validation set)."""
    if loader is None:
        return None
    from spml.eval.metrics import mean_average_precision

    scores = evaluate_shared(model, loader, data.train_set.num_classes, cfg, d=d)
    return mean_average_precision(scores, data.val.targets.numpy()) if d.main else None


def end_epoch(cfg: TrainConfig, state: RunState, data: Data, epoch: int, *, loss: float, val_map: float | None,
              seconds: float, log=print) -> None:
    """The epoch in the history, in <out> when it is the best so far, and in <out>.last.pt."""
    state.history.append({"epoch": epoch, "train_loss": loss, "val_map": val_map, "seconds": seconds})
    improved = val_map is None or state.best_metric is None or val_map > state.best_metric
    if improved:
        state.best_metric = val_map
        best = _checkpoint(cfg, state, data, epoch)
        best["optimizer"] = best["scheduler"] = best["loss_state"] = None  # for inference; .last.pt resumes
        save_checkpoint(best, cfg.out)
    last = _checkpoint(cfg, state, data, epoch)
    last["scaler"] = state.scaler.state_dict() if state.scaler is not None else None  # fp16's loss scale, to resume exactly
    save_checkpoint(last, last_path(cfg.out))
    log(f"epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f}" + (f", val mAP {val_map:.2f}" if val_map is not None else "")
        + (" (best, saved)" if improved else "") + f", {seconds:.0f}s")
