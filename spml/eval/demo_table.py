"""The table that ends `make demo`, read from the eval reports it wrote (no number typed by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--tau", type=float, required=True)
@click.option("--seconds", type=int, default=None)
def main(directory, tau, seconds):
    d = Path(directory)
    load = lambda name: json.loads((d / f"eval_{name}.json").read_text())  # noqa: E731
    rows = [("AN teacher", "an_teacher"), ("EM teacher", "teacher"), (f"student (tau {tau:g})", "student"),
            ("full labels", "full")]
    click.echo("\n| model | test mAP |\n|---|---|")
    for title, name in rows:
        click.echo(f"| {title} | {load(name)['map']:.2f} |")
    labels = load("labels")
    click.echo(f"\npseudo labels (tau {tau:g}) vs ground truth: precision {labels['precision']:.3f}, "
               f"recall {labels['recall']:.3f}, F1 {labels['f1']:.3f}, {labels['positives_per_image']:.2f} positives "
               f"per image (truth {labels['true_positives_per_image']:.2f})")
    if seconds is not None:
        click.echo(f"pipeline time: {seconds // 60} min {seconds % 60} s")


if __name__ == "__main__":
    main()
