"""spml-train: the click command over `spml.train.trainer.train`."""

from __future__ import annotations

import click

from click.core import ParameterSource

from spml.cli_util import command
from spml.errors import SpmlError
from spml.train.loss_names import ALL_LOSS_NAMES
from spml.train.loss_registry import help_table, parse_loss_args
from spml.train.options import model_options

# The one-loss flags of spml 0.x, each now a --loss-arg of its loss: --gr-q 0.1,1 is --loss-arg q=0.1,1.
RETIRED_LOSS_FLAGS = ("--alpha", "--beta", "--theta", "--warmup-epochs", "--delta-rel", "--gr-beta", "--gr-alpha",
                      "--gr-q", "--ls-coef", "--expected-positives")


def _as_loss_arg(flag: str):
    key = flag[2:].removeprefix("gr-").replace("-", "_")
    return lambda value: ["--loss-arg", f"{key}={value}"]


def _loss_args(ctx, param, pairs):
    """--loss-arg KEY=VALUE... -> {key: value}, checked against the loss's hyperparameters (--loss is eager, so
    it is known here wherever it stands on the line)."""
    try:
        return parse_loss_args(ctx.params.get("loss"), pairs)
    except SpmlError as e:
        raise click.UsageError(str(e), ctx) from None


def _list_archs(ctx, param, value):
    if not value or ctx.resilient_parsing:
        return
    from spml.train.clip_models import listed_clip_archs
    from spml.train.model import available_archs

    click.echo("\n".join(available_archs() + listed_clip_archs()))
    ctx.exit()


@command(deprecated={flag: _as_loss_arg(flag) for flag in RETIRED_LOSS_FLAGS}, epilog=help_table())
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
@click.option("--list-archs", is_flag=True, expose_value=False, is_eager=True, callback=_list_archs,
              help="List every --arch name (torchvision's, spml's, open_clip's) and exit.")
@click.option("--ann", type=click.Path(dir_okay=False), default=None, show_default="the built-in dataset",
              help="Training labels (COCO): single positives, full labels or a labels.json of spml-label, whose "
                   "teacher's recipe fills every option left unset.")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              show_default="the one recorded in --ann, else the folder of --ann", help="Images folder.")
@click.option("--val-ann", type=click.Path(dir_okay=False), default=None, show_default="none: the last epoch is kept",
              help="Fully labelled validation set; the best epoch by its mAP is kept.")
@click.option("--val-images", type=click.Path(file_okay=False), default=None,
              show_default="recorded in --val-ann, else its folder", help="Images folder of --val-ann.")
@click.option("--loss", type=click.Choice(ALL_LOSS_NAMES), default=None, is_eager=True,
              show_default="em when every image has exactly one positive, else bce",
              help="Training loss (the losses are listed below).")
@click.option("--loss-arg", "loss_args", multiple=True, metavar="KEY=VALUE", callback=_loss_args,
              show_default="the loss's, listed below",
              help="A hyperparameter of --loss (repeat the option for several; a tuple's values comma-separated: "
                   "--loss gr --loss-arg q=0.1,1). Without --loss, em's.")
@model_options
@click.option("--prompts", type=click.Path(dir_okay=False), default=None,
              show_default="a photo of a {}. and five more of OpenAI's",
              help="open_clip/ archs: prompt templates for the zero-shot head the training starts from, one a line, "
                   "{} standing for the category's name.")
@click.option("--init", type=click.Path(dir_okay=False), default=None, show_default="none",
              help="Start from an spml checkpoint of the same arch and categories (a student from its teacher).")
@click.option("--mode", type=click.Choice(["end-to-end", "linear", "linear-init"]), default="end-to-end", show_default=True,
              help="linear: freeze the backbone, train the head on features cached on disk (fast on a CPU); "
                   "linear-init: that first, then end to end.")
@click.option("--linear-epochs", type=click.IntRange(1), default=25, show_default=True,
              help="linear-init: epochs of the linear phase.")
@click.option("--soft-targets", is_flag=True, show_default=True,
              help="Fit the teacher's probabilities of a labels file written with spml-label --soft.")
@click.option("--soft-temperature", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="--soft-targets: fit sigmoid(logit(p) / T) of the teacher's probabilities p; T < 1 sharpens them.")
@click.option("--answer-weights", type=click.Path(dir_okay=False), default=None, show_default="none",
              help="A selection.json of spml-review select --strategy weighted: each answered pair's loss weighted by "
                   "1 / its sampling weight, which undoes the selection (losses em, an, wan, bce, an-ls, epr).")
@click.option("--augment", type=click.Choice(["none", "flip", "strong"]), default=None, show_default="flip",
              help="Training noise per image: flip (horizontal); strong: RandomResizedCrop, flip and TrivialAugmentWide, "
                   "plus mixup/cutmix of the batches for bce losses (a noisy student).")
@click.option("--mix-prob", type=click.FloatRange(0, 1), default=None, show_default="1 with --augment strong, else 0",
              help="Share of the batches mixed by mixup or cutmix (bce losses; targets mixed as label probabilities).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Dropout on the classifier head's input while training (any arch).")
@click.option("--drop-path", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Stochastic depth rate, for archs that have it (timm models, torchvision's convnext, efficientnet, swin); 0: the arch's own default.")
@click.option("--workers", type=click.IntRange(0), default=None, show_default="0 on CPU, 8 on CUDA",
              help="DataLoader workers.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="Autocast of the forward pass (weights, losses, validation stay fp32). auto: bf16 on GPUs that "
                   "have it, fp16 with loss scaling on older ones, fp32 on the CPU.")
@click.option("--compile", "compile", is_flag=True, show_default=True,
              help="torch.compile the model (minutes of compiling, then faster steps on GPUs); falls back to eager with a warning.")
@click.option("--freeze-bn", is_flag=True, show_default=True,
              help="BatchNorm keeps its running statistics and trains only its scale and shift (fine-tuning with few images per step).")
@click.option("--nproc", type=click.IntRange(1), default=1, show_default=True,
              help="Processes training together, one per GPU: starts torchrun. The same as "
                   "torchrun --nproc_per_node=N $(which spml-train) ...; the learning rate is not rescaled.")
@click.option("--out", type=click.Path(dir_okay=False), default="teacher.pt", show_default=True,
              help="Checkpoint of the best epoch. <out>.last.pt holds the latest epoch for --resume while the run "
                   "goes, and is removed when it completes (unless --keep-last).")
@click.option("--resume", is_flag=True, show_default=True, help="Continue an interrupted run from <out>.last.pt.")
@click.option("--keep-last", is_flag=True, show_default=True,
              help="Keep <out>.last.pt (the latest epoch with the optimizer state, ~3x the checkpoint) after the run.")
@click.option("--allow-outside", is_flag=True, show_default=True,
              help="Open image file_names that point outside the images folder.")
@click.option("--max-failed", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of a set's images that may be unreadable: skipped, said, listed in <out>.failures.jsonl; more is an error.")
@click.option("--strict", is_flag=True, show_default=True, help="Any image that cannot be read is an error.")
@click.pass_context
def main(ctx, **options):
    """Train a multi-label classifier.

    \b
    A teacher on single positive labels (loss em), then a student on its pseudo labels (loss bce); the student
    inherits the teacher's recipe from labels.json for every option not given:
      spml-train                                   # built-in dataset -> teacher.pt
      spml-train --ann sp.json --images imgs/ --val-ann val.json --arch resnet50 --pretrained
      spml-train --ann labels.json --loss bce --out student.pt
      spml-train --ann voc_sp.json --val-ann voc_val.json --preset voc --loss em-apl --pretrained
      spml-train --ann sp.json --nproc 4 --batch-size 32      # 4 GPUs, 8 images each per step
    """
    import os

    if options["nproc"] > 1 and "WORLD_SIZE" not in os.environ:
        import sys

        from spml.train.distributed import torchrun_command, without_nproc

        # exec, not a child: SIGTERM to this pid reaches torchrun, which passes it to every rank
        command = torchrun_command(options["nproc"], without_nproc(sys.argv[1:]))
        os.execv(command[0], command)
    from spml.data.provenance import builtin_test_set, is_labels_file, read_info
    from spml.errors import sigterm_as_interrupt
    from spml.files import remove_temps
    from spml.train.builtin import builtin_config
    from spml.train.recipe import inherit_recipe
    from spml.train.trainer import TrainConfig, last_path, linear_phase_path, train

    explicit = {name for name in options if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    config = inherit_recipe(TrainConfig(**options), explicit, log=click.echo)
    config = builtin_config(config, log=click.echo)  # no --ann: the built-in dataset, made on first use
    sigterm_as_interrupt()  # the last finished epoch stays in <out>.last.pt for --resume
    try:
        out = train(config, log=click.echo)
    except KeyboardInterrupt:
        remove_temps(options["out"])
        for path in (options["out"], linear_phase_path(options["out"])):
            remove_temps(last_path(path))
        remove_temps(linear_phase_path(options["out"]))
        raise
    if os.environ.get("RANK", "0") != "0":
        return
    if config.ann is not None and is_labels_file(read_info(config.ann)):  # a student: evaluate it
        test = builtin_test_set(config.ann)
        click.echo(f"next: spml-eval {out}" + ("" if test else " --ann TEST.json"))
    else:
        click.echo(f"next: spml-export {out}")


if __name__ == "__main__":  # torchrun --module spml.train.cli
    main()
