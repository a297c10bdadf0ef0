"""`spml-data vlm`: train the built-in vision-language model (spml.train.vlm) once and print its config and
weights, for `--arch open_clip/CONFIG --weights WEIGHTS` and `spml-export --zero-shot open_clip/CONFIG --weights
WEIGHTS`. Run by spml-data as a program, as `spml-data backbone` is (spml/data imports no stage above it)."""

from __future__ import annotations

import click

from spml.cli_util import command, version


@command()
@version
@click.option("--seed", default=0, show_default=True, help="Seed of the captioned scenes and of the training.")
def main(seed):
    """Train the built-in CLIP (a few million parameters, contrastively, on captioned generated scenes disjoint from
    the built-in dataset's images; minutes of CPU, once: it is cached in spml's cache folder). Prints the model
    config and the weights: CONFIG WEIGHTS, on one line."""
    from spml.train.clip_models import open_clip_module
    from spml.train.vlm import builtin_vlm

    open_clip_module()  # a one-line error before minutes of drawing when open_clip is not installed

    config, weights = builtin_vlm(seed, log=lambda s: click.echo(s, err=True))
    click.echo(f"{config} {weights}")


if __name__ == "__main__":
    main(prog_name="spml-data vlm")
