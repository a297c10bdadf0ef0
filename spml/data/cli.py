"""spml-data: the built-in dataset, the single-positive protocol and labels in other formats."""

from __future__ import annotations

import click

from spml.cli_util import group


@group()
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
def main():
    """Datasets for spml.

    \b
      spml-data demo --out data/                 # the built-in dataset
      spml-data demo --dataset scenes --out d2/  # the second one: textured stuff in scene types
      spml-data demo --where                     # where spml-train and spml-eval find it by default
      spml-data single-positive data/instances_train.json --out data/sp.json
      spml-data backbone                         # a pretrained stand-in: spml-train --weights $(spml-data backbone)
      spml-data vlm                              # a small CLIP: spml-export --zero-shot open_clip/CONFIG --weights W
      spml-data convert labels.json --format fiftyone --out labels.fiftyone/
      spml-data from-openimages human-imagelabels.csv --images train/ --out sp.json
    """


@main.command(deprecated={1: "--out"})  # the old spelling: spml-data demo DIR
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
@click.option("--out", "directory", type=click.Path(file_okay=False), default=None,
              show_default="none: give it, or --where", help="Folder to write the dataset to.")
@click.option("--where", is_flag=True, show_default=True,
              help="Print where the built-in dataset that spml-train and spml-eval use by default lives, and exit.")
@click.option("--seed", default=0, show_default=True, help="Seed of the generator.")
@click.option("--num-train", default=1600, show_default=True, type=click.IntRange(5),
              help="Images of the official train split (80% train, 20% val).")
@click.option("--num-test", default=800, show_default=True, type=click.IntRange(1), help="Test images.")
@click.option("--dataset", type=click.Choice(["shapes", "scenes"]), default="shapes", show_default=True,
              help="shapes: 10 flat-coloured shapes, pairs that co-occur; scenes: 24 textured categories in 6 "
                   "scene types (spml/data/scenes.py).")
def demo(*, directory, where, seed, num_train, num_test, dataset):
    """Write a built-in dataset to --out: JPEG images and instances_{train,val,test}.json (full labels,
    bboxes, gappy category ids). With --where, show the copy in spml's cache instead."""
    if where:
        from spml.files import cache_dir

        root = cache_dir() / ("demo" if dataset == "shapes" else "scenes")
        maker = "spml-train" if dataset == "shapes" else "spml.data.scenes.builtin_scenes()"
        for split in ("train", "val", "test"):
            path = root / f"instances_{split}.json"
            click.echo(f"{split}: {path}" + ("" if path.exists() else f" (created on first use by {maker})"))
        click.echo(f"images: {root / 'images'}  (set SPML_CACHE to move it)")
        return
    if directory is None:
        raise click.UsageError("Missing option '--out' (or --where to show the built-in copy).")
    if dataset == "scenes":
        from spml.data.scenes import ScenesConfig, make_scenes

        paths = make_scenes(directory, ScenesConfig(num_train=num_train, num_test=num_test, seed=seed))
    else:
        from spml.data.demo import DemoConfig, make_demo

        paths = make_demo(directory, DemoConfig(num_train=num_train, num_test=num_test, seed=seed))
    for split, path in paths.items():
        click.echo(f"{split}: {path}")
    click.echo(f"next: spml-data single-positive {paths['train']} --out {paths['train'].with_name('sp_train.json')}")


def _run_train_program(ctx, module: str, args) -> None:
    """Training is the train stage's work, which spml/data must not import: its command runs as a program of its
    own (its options and --help its own); progress goes straight to stderr, what it prints through our stdout.
    The child gets SIGTERM too when we do, so a stopped command stops its training."""
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
    try:
        out, _ = child.communicate()
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(out, nl=False)
    ctx.exit(child.returncode if child.returncode >= 0 else 128 - child.returncode)  # killed by signal N: 128 + N


@main.command(add_help_option=False, context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def backbone(ctx, args):
    """Pretrain a backbone on the built-in source task (other shapes than the built-in categories), the stand-in
    for ImageNet weights here; cached in spml's cache folder. Prints its path, for spml-train --weights."""
    _run_train_program(ctx, "spml.train.backbone_cli", args)


@main.command(add_help_option=False, context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def vlm(ctx, args):
    """Train the built-in vision-language model (a small CLIP, on captioned generated scenes), the stand-in for a
    pretrained CLIP here; cached. Prints CONFIG WEIGHTS, for --arch open_clip/CONFIG --weights WEIGHTS."""
    _run_train_program(ctx, "spml.train.vlm_cli", args)


@main.command("single-positive")
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
@click.argument("instances", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Single-positive COCO file to write.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random choice of the kept positive.")
@click.option("--images", type=click.Path(file_okay=False), default=None, show_default="recorded in INSTANCES, else its folder",
              help="Images folder; recorded in the output.")
def single_positive_cmd(instances, out, seed, images):
    """Keep one positive label per image of INSTANCES, chosen uniformly at random (Cole et al. 2021); images
    without a positive are dropped."""
    from spml.data.coco import load_coco
    from spml.data.protocol import single_positive
    from spml.files import write_json

    dataset = load_coco(instances, images)
    coco, dropped = single_positive(dataset, seed)
    from spml.data.provenance import relative_to_file

    coco["info"]["images_dir_relative"] = relative_to_file(dataset.images_dir, out)  # moves with the dataset
    write_json(out, coco)
    click.echo(f"wrote {out}: {len(coco['images'])} images, one positive each"
               + (f"; {dropped} images without a positive dropped" if dropped else ""))


@main.command(deprecated={"--to": "--format", 2: "--out"})  # the old spelling: LABELS OUT --to FMT
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["fiftyone", "csv", "parquet"]), required=True,
              help="fiftyone: a FiftyOne image-classification dataset folder (images referenced in place); csv: "
                   "file_name,labels (space-separated names); parquet: one row per image (needs pyarrow). (Was --to.)")
@click.option("--out", type=click.Path(), required=True, help="The file (csv, parquet) or folder (fiftyone) to write.")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              show_default="recorded in LABELS, else its folder", help="Images folder.")
@click.option("--csv-scores", is_flag=True, show_default=True, help="--format csv: add a scores column aligned with labels.")
def convert(labels, *, fmt, out, images, csv_scores):
    """Write a labels file (spml-label's, or any COCO file) in another format, the same positives, scores and
    sources.

    \b
      spml-data convert labels.json --format fiftyone --out labels.fiftyone/
      spml-data convert labels.json --format csv --out labels.csv --csv-scores
    """
    from spml.data.coco import load_coco
    from spml.data.formats import LabelRows, write_format

    dataset = load_coco(labels, images)
    count = write_format(fmt, out, LabelRows.from_labels(dataset), csv_scores)
    click.echo(f"wrote {out}: {fmt}, {count} images")


@main.command("from-openimages")
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--images", required=True, type=click.Path(file_okay=False),
              help="Images folder, with each image as ImageID.jpg; recorded in the output.")
@click.option("--classes", type=click.Path(dir_okay=False), default=None, show_default="LabelNames as names",
              help="Open Images' class descriptions (LabelName,DisplayName): the categories' names and order.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="COCO file to write.")
def from_openimages_cmd(labels, images, classes, out):
    """Read Open Images' human-verified image-level labels (LABELS: ImageID,Source,LabelName,Confidence; 1 =
    verified present, 0 = verified absent) into a COCO file: present labels as annotations (source verified),
    absent ones in each image's neg_category_ids, everything else unobserved. Images not under --images are left
    out. Train a teacher on it with a single-positive loss, e.g. spml-train --loss em: every loss takes the
    verified negatives as known negatives.

    \b
      spml-data from-openimages oidv7-train-annotations-human-imagelabels.csv --images train/ \\
          --classes oidv7-class-descriptions.csv --out verified.json
    """
    from spml.data.openimages import from_openimages

    s = from_openimages(labels, images, out, classes)
    click.echo(f"wrote {out}: {s['images']} images, {s['categories']} categories, {s['positives']} verified "
               f"positives, {s['negatives']} verified negatives"
               + (f"; {s['missing_images']} images not in {images} left out" if s["missing_images"] else "")
               + (f"; {s['conflicts']} pairs answered both ways (the later row kept)" if s["conflicts"] else ""))


if __name__ == "__main__":
    main()
