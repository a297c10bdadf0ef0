"""The training options spml-train and spml-sweep share (spml-sweep hands them to every model it trains): one
definition each, applied by both commands with @model_options. Torch-free, for a fast --help."""

from __future__ import annotations

import click

from spml.train.loss_names import LR_SCHEDULE_NAMES, PRESET_NAMES

DEFAULT_WEIGHTS = "\0default"  # --pretrained given without a tag


def _pretrained(ctx, param, value):
    """--pretrained alone -> True; --pretrained TAG -> "TAG" (open_clip's tags); --no-pretrained -> False."""
    if value == DEFAULT_WEIGHTS:
        return True
    if value is None and ctx.params.get("pretrained") is False:  # --no-pretrained, processed first
        return False
    return value


def _no_pretrained(ctx, param, value):
    if value:
        ctx.params["pretrained"] = False


MODEL_OPTIONS = (
    click.option("--arch", default=None, show_default="resnet50; built-in dataset: cnn4",
                 help="Any torchvision classifier (spml-train --list-archs), spml's small cnn4, timm/<name> for "
                      "any timm model (pip install 'spml[timm]'), or open_clip/<name> (or open_clip/<config.json>) "
                      "for a CLIP's image tower with its zero-shot head (pip install 'spml[clip]')."),
    click.option("--pretrained", is_flag=False, flag_value=DEFAULT_WEIGHTS, default=None, metavar="[TAG]",
                 callback=_pretrained, show_default="only if already cached",
                 help="Start from torchvision's ImageNet weights, or timm's for timm/ archs (downloaded once); "
                      "open_clip/ archs: open_clip's pretrained TAG (--pretrained openai)."),
    click.option("--no-pretrained", is_flag=True, expose_value=False, callback=_no_pretrained,
                 help="Start from no pretrained weights."),
    click.option("--weights", type=click.Path(dir_okay=False), default=None, show_default="none",
                 help="Start from a local state dict of --arch (ImageNet weights from elsewhere, or "
                      "$(spml-data backbone); for timm/ archs a timm state dict, its head dropped if sized for "
                      "other classes)."),
    click.option("--image-size", type=int, default=None,
                 show_default="448, a timm model's own input size; built-in dataset: 32", help="Square input size."),
    click.option("--epochs", type=int, default=None, show_default="10; built-in dataset: 8; --mode linear: 25",
                 help="Training epochs."),
    click.option("--batch-size", type=int, default=None, show_default="8; built-in dataset: 32",
                 help="Images per optimizer step, over all processes: with --nproc N each takes 1/N of it."),
    click.option("--lr", type=float, default=None,
                 show_default="1e-5 with ImageNet weights, 1e-3 from scratch; built-in dataset: 3e-4 from its "
                              "source-task backbone",
                 help="Adam learning rate (not rescaled with --nproc)."),
    click.option("--preset", type=click.Choice(PRESET_NAMES), default=None, show_default="none",
                 help="The reference code's settings for this dataset and loss: the loss's hyperparameters and the "
                      "reference loop's batch size, fine-tuning lr, head lr multiple and constant lr schedule "
                      "(docs/losses.md). Options given explicitly win."),
    click.option("--lr-schedule", type=click.Choice(LR_SCHEDULE_NAMES), default=None,
                 show_default="cosine; --preset: constant", help="Per-step learning-rate schedule."),
    click.option("--head-lr-mult", type=float, default=None, show_default="1; --preset with ll-*, gr: 10",
                 help="End to end: the head's lr as a multiple of --lr."),
    click.option("--seed", type=int, default=0, show_default=True,
                 help="Seed of the initialisation, shuffling and augmentation."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                 help="auto: CUDA when available."),
)


def model_options(command):
    """Apply MODEL_OPTIONS, in their order in --help."""
    for option in reversed(MODEL_OPTIONS):
        command = option(command)
    return command
