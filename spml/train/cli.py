"""spml-train: the click command over `spml.train.trainer.train`."""

from __future__ import annotations

import click

from spml.train.losses import LOSSES
from spml.train.presets import LR_SCHEDULES, PRESETS
from spml.train.stateful_losses import STATEFUL_LOSSES


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ann", type=click.Path(dir_okay=False), default=None,
              help="Training labels (COCO): single positives, full labels or a labels.json. Default: the built-in dataset.")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              help="Images folder. Default: the one recorded in --ann, else the folder of --ann.")
@click.option("--val-ann", type=click.Path(dir_okay=False), default=None,
              help="Fully labelled validation set; the best epoch by its mAP is kept. Default: none (last epoch).")
@click.option("--val-images", type=click.Path(file_okay=False), default=None, help="Images folder of --val-ann.")
@click.option("--loss", type=click.Choice([*LOSSES, *STATEFUL_LOSSES]), default=None,
              help="Default: em when every image has exactly one positive, else bce.")
@click.option("--arch", default=None, help="Any torchvision classifier. Default: resnet50 (built-in dataset: resnet18).")
@click.option("--pretrained/--no-pretrained", default=None,
              help="Start from torchvision's ImageNet weights (downloaded once). Default: only if already cached.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Start from a local state dict of --arch (ImageNet weights from elsewhere).")
@click.option("--init", type=click.Path(dir_okay=False), default=None,
              help="Start from an spml checkpoint of the same arch and categories (a student from its teacher).")
@click.option("--mode", type=click.Choice(["end-to-end", "linear", "linear-init"]), default="end-to-end", show_default=True,
              help="linear: freeze the backbone, train the head on features cached on disk (fast on a CPU); "
                   "linear-init: that first, then end to end.")
@click.option("--linear-epochs", type=click.IntRange(1), default=25, show_default=True,
              help="linear-init: epochs of the linear phase.")
@click.option("--soft-targets", is_flag=True, help="Fit the teacher's probabilities of a labels file written with spml-label --soft.")
@click.option("--image-size", type=int, default=None, help="Square input size. Default: 448 (built-in dataset: 64).")
@click.option("--epochs", type=int, default=None, help="Default: 10 (built-in dataset: 8); --mode linear: 25.")
@click.option("--batch-size", type=int, default=None, help="Default: 8 (built-in dataset: 32).")
@click.option("--lr", type=float, default=None, help="Adam learning rate. Default: 1e-5 with ImageNet weights, 1e-3 from scratch.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="The reference code's settings for this dataset (alpha, beta, theta, warm-up, expected positives, "
                   "batch size, fine-tuning lr, constant lr; for ll-*: batch 16, head lr x10). Options given "
                   "explicitly win. Default: none.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=None,
              help="Per-step learning-rate schedule. Default: cosine (--preset: constant, as the references).")
@click.option("--head-lr-mult", type=float, default=None,
              help="End to end: the head's lr as a multiple of --lr. Default: 1 (--preset with ll-*: 10).")
@click.option("--ls-coef", type=float, default=None,
              help="an-ls, bce-ls: label smoothing e; positives trained towards 1-e, negatives towards e. Default: 0.1.")
@click.option("--alpha", type=float, default=None, help="em, em-apl: weight of the entropy term. Default: 0.1 (COCO).")
@click.option("--expected-positives", type=float, default=None,
              help="epr, role: expected positives per image. Default: 2.9 (COCO).")
@click.option("--beta", type=float, default=None, help="em-apl: weight of the pseudo negatives. Default: 0.9 (COCO).")
@click.option("--theta", type=float, default=None, help="em-apl: final share of unobserved labels made negatives. Default: 0.9.")
@click.option("--warmup-epochs", type=click.IntRange(1), default=None, help="em-apl: epochs before pseudo labelling. Default: 5.")
@click.option("--delta-rel", type=float, default=None, help="ll-r/ll-ct/ll-cp: per-epoch growth of the large-loss share. Default: 0.002.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(0), default=None, help="DataLoader workers. Default: 0 on CPU, 8 on CUDA.")
@click.option("--out", type=click.Path(dir_okay=False), default="teacher.pt", show_default=True,
              help="Checkpoint of the best epoch; <out>.last.pt holds the latest epoch for --resume.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from <out>.last.pt.")
@click.option("--allow-outside", is_flag=True, help="Open image file_names that point outside the images folder.")
def main(**options):
    """Train a multi-label classifier.

    \b
    A teacher on single positive labels (loss em), then a student on its pseudo labels (loss bce):
      spml-train                                   # built-in dataset -> teacher.pt
      spml-train --ann sp.json --images imgs/ --val-ann val.json --arch resnet50 --pretrained
      spml-train --ann labels.json --loss bce --out student.pt
      spml-train --ann voc_sp.json --val-ann voc_val.json --preset voc --loss em-apl --pretrained
    """
    from spml.errors import sigterm_as_interrupt
    from spml.files import remove_temps
    from spml.train.trainer import TrainConfig, last_path, linear_phase_path, train

    sigterm_as_interrupt()  # the last finished epoch stays in <out>.last.pt for --resume
    try:
        out = train(TrainConfig(**options), log=click.echo)
    except KeyboardInterrupt:
        remove_temps(options["out"])
        for path in (options["out"], linear_phase_path(options["out"])):
            remove_temps(last_path(path))
        remove_temps(linear_phase_path(options["out"]))
        raise
    click.echo(f"next: spml-export {out}")
