"""The table that ends `make demo`, read from the eval reports it wrote (no number typed by hand). Given several
demo folders (one per seed), it writes the per-seed table with the orderings the demo must show."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spml.cli_util import command

ROWS = [("AN teacher", "an_teacher"), ("EM teacher", "teacher"), ("student", "student"), ("full labels", "full")]
EM_OVER_AN = 1.5  # the demo's claim: EM beats AN by more than machine-to-machine noise


def demo_maps(directory: str | Path) -> dict[str, float]:
    d = Path(directory)
    return {name: json.loads((d / f"eval_{name}.json").read_text())["map"] for _, name in ROWS}


def orderings(maps: dict[str, float]) -> dict[str, bool]:
    return {f"EM > AN + {EM_OVER_AN:g}": maps["teacher"] > maps["an_teacher"] + EM_OVER_AN,
            "student > EM": maps["student"] > maps["teacher"],
            "full > student": maps["full"] > maps["student"]}


def seeds_markdown(directories: list[str]) -> str:
    lines = ["| seed folder | " + " | ".join(t for t, _ in ROWS) + " | EM - AN | student - EM | orderings hold |",
             "|---" * (len(ROWS) + 4) + "|"]
    for d in directories:
        maps = demo_maps(d)
        ok = all(orderings(maps).values())
        lines.append(f"| {Path(d).name} | " + " | ".join(f"{maps[n]:.2f}" for _, n in ROWS)
                     + f" | {maps['teacher'] - maps['an_teacher']:+.2f} | {maps['student'] - maps['teacher']:+.2f} | "
                     + ("yes" if ok else "no") + " |")
    return "\n".join(lines) + "\n"


@command()
@click.argument("directories", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--tau", type=float, default=None, help="The labeler's tau, for the table's caption.")
@click.option("--seconds", type=int, default=None, help="The pipeline's wall time, printed under the table.")
def main(directories, tau, seconds):
    if len(directories) > 1:
        click.echo(seeds_markdown(list(directories)), nl=False)
        return
    d = Path(directories[0])
    maps = demo_maps(d)
    click.echo("\n| model | test mAP |\n|---|---|")
    for title, name in ROWS:
        if name == "student":
            title = "student (soft labels" + (f", tau {tau:g}" if tau is not None else "") + ", from the teacher)"
        click.echo(f"| {title} | {maps[name]:.2f} |")
    labels = json.loads((d / "eval_labels.json").read_text())
    click.echo("\npseudo labels" + (f" (tau {tau:g})" if tau is not None else "") + " vs ground truth: precision "
               f"{labels['precision']:.3f}, recall {labels['recall']:.3f}, F1 {labels['f1']:.3f}, "
               f"{labels['positives_per_image']:.2f} positives per image (truth {labels['true_positives_per_image']:.2f})")
    click.echo("orderings: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in orderings(maps).items()))
    if seconds is not None:
        click.echo(f"pipeline time: {seconds // 60} min {seconds % 60} s")


if __name__ == "__main__":
    main()
