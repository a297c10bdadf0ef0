"""spml-train: the click command over `spml.train.trainer.train`."""

from __future__ import annotations

import click

from spml.train.losses import LOSSES
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
@click.option("--batch-size", type=int, default=None,
              help="Images per optimizer step, over all processes: with --nproc N each takes 1/N of it. "
                   "Default: 8 (built-in dataset: 32).")
@click.option("--lr", type=float, default=None, help="Adam learning rate. Default: 1e-5 with ImageNet weights, 1e-3 from scratch.")
@click.option("--alpha", type=float, default=0.1, show_default=True, help="em: weight of the entropy term.")
@click.option("--expected-positives", type=float, default=2.9, show_default=True, help="epr, role: expected positives per image.")
@click.option("--beta", type=float, default=None, help="em-apl: weight of the pseudo negatives. Default: 0.9 (COCO).")
@click.option("--theta", type=float, default=None, help="em-apl: final share of unobserved labels made negatives. Default: 0.9.")
@click.option("--warmup-epochs", type=click.IntRange(1), default=None, help="em-apl: epochs before pseudo labelling. Default: 5.")
@click.option("--delta-rel", type=float, default=None, help="ll-r/ll-ct/ll-cp: per-epoch growth of the large-loss share. Default: 0.002.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(0), default=None, help="DataLoader workers. Default: 0 on CPU, 8 on CUDA.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="Autocast of the forward pass (weights, losses, validation stay fp32). auto: bf16 on GPUs that "
                   "have it, fp16 with loss scaling on older ones, fp32 on the CPU.")
@click.option("--compile", "compile", is_flag=True,
              help="torch.compile the model (minutes of compiling, then faster steps on GPUs); falls back to eager with a warning.")
@click.option("--freeze-bn", is_flag=True,
              help="BatchNorm keeps its running statistics and trains only its scale and shift (fine-tuning with few images per step).")
@click.option("--nproc", type=click.IntRange(1), default=1, show_default=True,
              help="Processes training together, one per GPU: starts torchrun. The same as "
                   "torchrun --nproc_per_node=N $(which spml-train) ...; the learning rate is not rescaled.")
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
      spml-train --ann sp.json --nproc 4 --batch-size 32      # 4 GPUs, 8 images each per step
    """
    import os

    if options["nproc"] > 1 and "WORLD_SIZE" not in os.environ:
        import sys

        from spml.train.distributed import torchrun_command, without_nproc

        # exec, not a child: SIGTERM to this pid reaches torchrun, which passes it to every rank
        command = torchrun_command(options["nproc"], without_nproc(sys.argv[1:]))
        os.execv(command[0], command)
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
    if os.environ.get("RANK", "0") == "0":
        click.echo(f"next: spml-export {out}")


if __name__ == "__main__":  # torchrun --module spml.train.cli
    main()
