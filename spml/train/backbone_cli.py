"""`spml-data backbone`: pretrain spml's stand-in for ImageNet weights (spml.train.pretrain) and print its path.

Pretraining is training, so the command's code lives in the train stage; spml-data, which must import no stage
above data (tests/test_layering.py), runs it as a program: `python -m spml.train.backbone_cli`, the two meeting
through a process and a file, as the stages do."""

from __future__ import annotations

import click

from spml.cli_util import command, version


@command()
@version
@click.option("--arch", default="cnn4", show_default=True, help="Backbone to pretrain.")
@click.option("--image-size", default=32, show_default=True, type=click.IntRange(8), help="Input size it is trained at.")
@click.option("--seed", default=0, show_default=True, help="Seed of the source data and of the training.")
def main(arch, image_size, seed):
    """Pretrain a backbone on the built-in source task (other shapes than the built-in categories), the stand-in
    for ImageNet weights here; cached in spml's cache folder. Prints its path, for spml-train --weights."""
    from spml.train.pretrain import builtin_backbone

    path = builtin_backbone(arch, image_size, seed, log=lambda s: click.echo(s, err=True))
    click.echo(path)


if __name__ == "__main__":
    main(prog_name="spml-data backbone")
