"""spml-label: the click command over `spml.label.label` (and `spml-label merge` for shards)."""

from __future__ import annotations

import click

from spml.cli_util import SeveralOption, SpmlGroup, several
from spml.errors import SpmlError
from spml.label.api import DEFAULTS, RAY_SETTINGS
from spml.label.providers import PROVIDERS
from spml.label.tta import TTA_HELP, tta_views


def _tta(ctx, param, value):
    """--tta checked at the command line (a usage error, exit 2, like a bad choice)."""
    try:
        tta_views(value)
    except SpmlError:
        raise click.BadParameter(f"{value!r}; valid: {TTA_HELP}", ctx, param) from None
    return value


# the Ray options' names before the vocabulary (every Ray option is --ray-*; --workers is data-loading processes)
RAY_RENAMED = {"--workers": "--ray-actors", "--cpus-per-worker": "--ray-cpus-per-actor",
               "--gpus-per-worker": "--ray-gpus-per-actor"}


class ModelFirst(SpmlGroup):
    """spml-label takes the model positionally, as spml-export and spml-eval do (`spml-label teacher.onnx --tau
    0.65 ...`), or as --model; a first positional that names a subcommand (`merge`) is that subcommand."""

    def parse_args(self, ctx, args):
        takes_value = {name for p in self.params if isinstance(p, click.Option) and not p.is_flag and not p.count
                       for name in p.opts + p.secondary_opts} | set(self.renamed_flags)  # retired flags take a value
        args = list(args)
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":
                break
            if token.startswith("-") and len(token) > 1:
                i += 2 if token in takes_value else 1
                continue
            if token not in self.commands:
                if any(a == "--model" or a.startswith("--model=") for a in args):
                    raise click.UsageError(f"the model is given twice: {token} and --model", ctx)
                args[i:i + 1] = ["--model", token]
            break
        return super().parse_args(ctx, args)


class RequiredToLabel(SeveralOption):
    """Required when labeling, not for `spml-label merge`: checked in main, marked required in --help (and, as a
    SeveralOption, --tau shows the range of its values)."""

    def get_help_extra(self, ctx):
        extra = super().get_help_extra(ctx)
        extra["required"] = "required"
        return extra


@click.group(cls=ModelFirst, invoke_without_command=True, subcommand_metavar="[MODEL] | merge PARTS... --out OUT",
             deprecated=RAY_RENAMED)
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
@click.option("--model", type=click.Path(dir_okay=False), default=DEFAULTS["model"], show_default=True,
              help="The exported teacher (spml-export); may also be given first, without --model.")
@click.option("--ann", type=click.Path(dir_okay=False), default=None, show_default="the training set recorded in the model",
              help="The images to label: a COCO file, whose positives are the observed labels, or an image list by "
                   "its extension: .txt (a path a line), .jsonl or .csv (file_name, optional id and labels).")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              show_default="recorded in --ann or the model, else --ann's folder",
              help="Images folder. Alone (no --ann): label every image under it, recursively. With --ann: the folder "
                   "its paths are relative to.")
@several("--tau", "--tau-high", "tau", cls=RequiredToLabel, type=click.FloatRange(0, 1, max_open=True),
         help="A label is positive when the teacher's probability is above it. Give several (repeated or "
              "comma-separated) for one file each in one pass (OUT.tau0.55.json, ...). Two names, one option: "
              "--tau-high reads better beside --tau-low.")
@click.option("--tau-low", type=click.FloatRange(0, 1, max_open=True), default=DEFAULTS["tau_low"], show_default="no ignore band",
              help="Ignore band: labels at or below it are confident negatives, those between it and --tau unknown "
                   "(neg_category_ids / not_exhaustive_category_ids on each image; the student masks the unknowns).")
@click.option("--class-prior", default=DEFAULTS["class_prior"], show_default="off, one --tau for all",
              help="Per-category thresholds making each category's pseudo-positive rate match a prior: a JSON file "
                   "{category name or id: rate}, or 'auto' (estimated from the single positives and --expected-positives). "
                   "Replaces --tau's value (give --tau all the same).")
@click.option("--expected-positives", type=float, default=DEFAULTS["expected_positives"], show_default=True,
              help="--class-prior auto: positives per image expected (the default is COCO's).")
@click.option("--soft", is_flag=True, default=DEFAULTS["soft"], show_default=True,
              help="Also write the teacher's probabilities per image (spml_scores) for a soft student.")
@click.option("--out", cls=RequiredToLabel, type=click.Path(dir_okay=False), default=None,
              help="Labels file (COCO JSON) to write; other formats go beside it (labels.csv, labels.parquet, "
                   "labels.fiftyone/).")
@several("--format", "formats", default=DEFAULTS["formats"], show_default="coco",
         help="Output formats, repeated or comma-separated, all from the same scores in one pass: coco, fiftyone "
              "(FiftyOne's image-classification dataset), csv (file_name,labels), parquet (needs pyarrow).")
@click.option("--csv-scores", is_flag=True, default=DEFAULTS["csv_scores"], show_default=True,
              help="--format csv: add a scores column aligned with labels.")
@click.option("--batch-size", type=click.IntRange(1), default=DEFAULTS["batch_size"], show_default=True,
              help="Images per inference call.")
@click.option("--provider", type=click.Choice(["auto", *PROVIDERS]), default=DEFAULTS["provider"], show_default=True,
              help="auto: CUDA where a GPU really works, else the CPU.")
@click.option("--threads", type=click.IntRange(1), default=DEFAULTS["threads"], show_default="CPU count, at most 8",
              help="Decoding threads.")
@click.option("--keep-observed/--no-keep-observed", default=DEFAULTS["keep_observed"], show_default=True,
              help="Keep the observed positives of --ann as positives whatever the teacher says.")
@click.option("--shard", default=DEFAULTS["shard"], show_default="the whole dataset",
              help="I/N: label the I-th of N contiguous parts (join them with `spml-label merge`).")
@click.option("--chunk-size", type=click.IntRange(1), default=DEFAULTS["chunk_size"], show_default=True,
              help="Images per resume chunk: the most work a kill can lose.")
@click.option("--strict", is_flag=True, default=DEFAULTS["strict"], show_default=True,
              help="Any image that cannot be labeled is an error (exit 1, nothing written).")
@click.option("--max-failed", type=click.FloatRange(0, 1), default=DEFAULTS["max_failed"], show_default=True,
              help="Warn loudly when more than this share of the images cannot be labeled (all failing is an error).")
@click.option("--allow-outside", is_flag=True, default=DEFAULTS["allow_outside"], show_default=True,
              help="Open image file_names that point outside the images folder.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default=DEFAULTS["engine"], show_default=True,
              help="local: this process. ray: a pool of Ray actors, on this machine or a cluster (pip install 'spml[ray]').")
@click.option("--ray-address", default=DEFAULTS["ray_address"], show_default="start a local Ray instance",
              help="--engine ray: the Ray cluster to join; 'auto' is the one `ray start` runs on this machine.")
@click.option("--ray-actors", type=click.IntRange(1), default=DEFAULTS["ray_actors"],
              show_default="as many as the cluster's CPUs/GPUs hold",
              help="--engine ray: actors, each holding one model session (was --workers).")
@click.option("--ray-cpus-per-actor", type=click.FloatRange(0, min_open=True), default=DEFAULTS["ray_cpus_per_actor"],
              show_default=True, help="--engine ray: CPUs each actor reserves (its decoding and model threads).")
@click.option("--ray-gpus-per-actor", type=click.FloatRange(0), default=DEFAULTS["ray_gpus_per_actor"], show_default=True,
              help="--engine ray: GPUs each actor reserves (fractions share one); with a GPU it runs on CUDA (or --provider).")
@click.option("--tta", metavar="none|flip|flip-crop|tiles:N", default=DEFAULTS["tta"], show_default=True,
              callback=_tta,
              help="Test-time augmentation: the mean probability of each image's views (flip: and its mirror image; "
                   "flip-crop: also the central 87.5% and its mirror), scored in the same run (2x or 4x the model's "
                   "work); tiles:N, AEVLP's views: the whole image and an N x N grid of tiles, each category scored "
                   "the mean of the whole image's probability and the largest tile's (N x N + 1 times the work).")
@click.pass_context
def main(ctx, tau, formats, **options):
    """Label the images of a COCO dataset, an image list or a folder with a teacher: pseudo multi-labels as COCO
    JSON that pycocotools and trainers load, and with --format for FiftyOne, CSV and Parquet. Killed, the same
    command resumes where it stopped; --engine ray spreads the work over a Ray cluster.

    \b
      spml-label --tau 0.65 --out labels.json      # teacher.onnx on the images it was trained on
      spml-label teacher.onnx --ann sp.json --images imgs/ --tau 0.55,0.75 --out labels.json
      spml-label teacher.onnx --images photos/ --tau 0.65 --format coco,fiftyone,csv --out labels.json
      spml-label --tau 0.65 --shard 0/2 --out part0.json   # ... then: spml-label merge part0.json part1.json --out labels.json
    """
    if ctx.invoked_subcommand is not None:
        return
    if not tau:
        raise click.UsageError("Missing option '--tau'.")
    if options["out"] is None:
        raise click.UsageError("Missing option '--out'.")
    given = [f"--{n.replace('_', '-')}" for n in RAY_SETTINGS
             if ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT]
    if options["engine"] == "local" and given:
        raise click.UsageError(f"{', '.join(given)}: only with --engine ray")
    from spml.errors import sigterm_as_interrupt
    from spml.label.api import LabelConfig, label

    sigterm_as_interrupt()
    config = LabelConfig(taus=tau, formats=formats, **options)
    result = label(config, log=lambda m: click.echo(m, err=True),
                   warn=lambda m: click.secho(m, err=True, fg="red", bold=True))
    echo_result(result)


def echo_result(result) -> None:
    """One line per file written, the speed, and the next step of the card."""
    for (fmt, t), path in result.paths.items():
        counts = result.counts[fmt, t]
        if fmt == "coco":
            click.echo(f"wrote {path}: tau {t:g}, {counts['images']} images, {counts['positives_per_image']:.2f} "
                       f"positives per image, {counts['failed']} failed"
                       + (f" (listed in {counts['failures_file']})" if counts["failures_file"] else ""))
        else:
            click.echo(f"wrote {path}: {fmt}, tau {t:g}, {counts['images']} images")
    if result.seconds:
        click.echo(f"{result.images} images in {result.seconds:.1f}s ({result.images / result.seconds:.0f} img/s)")
    coco = [path for (fmt, _), path in result.paths.items() if fmt == "coco"]
    if coco:
        click.echo(f"next: spml-train --ann {coco[0]} --loss bce --out student.pt")


@main.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The joined labels file.")
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
def merge(parts, out):
    """Join the labels files written with --shard 0/N .. N-1/N into one, identical to a single run's."""
    from spml.label.job import merge_labels

    summary = merge_labels(list(parts), out)
    click.echo(f"wrote {out}: {summary['shards']} shards, {summary['images']} images, {summary['annotations']} "
               f"annotations, {summary['failed']} failed")


if __name__ == "__main__":
    main()
