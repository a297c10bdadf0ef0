"""spml-label: the click command over PseudoLabeler (and `spml-label merge` for shards)."""

from __future__ import annotations

from pathlib import Path

import click

from spml.cli_util import SpmlGroup

from spml.label.providers import PROVIDERS


class ModelFirst(SpmlGroup):
    """spml-label takes the model positionally, as spml-export and spml-eval do (`spml-label teacher.onnx --tau
    0.65 ...`), or as --model; a first positional that names a subcommand (`merge`) is that subcommand."""

    def parse_args(self, ctx, args):
        takes_value = {name for p in self.params if isinstance(p, click.Option) and not p.is_flag and not p.count
                       for name in p.opts + p.secondary_opts}
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


class RequiredToLabel(click.Option):
    """Required when labeling, not for `spml-label merge`: checked in main, marked required in --help."""

    def get_help_extra(self, ctx):
        extra = super().get_help_extra(ctx)
        extra["required"] = "required"
        return extra


@click.group(cls=ModelFirst, invoke_without_command=True, subcommand_metavar="[MODEL] | merge PARTS... --out OUT")
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
@click.option("--model", type=click.Path(dir_okay=False), default="teacher.onnx", show_default=True,
              help="The exported teacher (spml-export); may also be given first, without --model.")
@click.option("--ann", type=click.Path(dir_okay=False), default=None, show_default="the training set recorded in the model",
              help="The images to label: a COCO file, whose positives are the observed labels, or an image list by "
                   "its extension: .txt (a path a line), .jsonl or .csv (file_name, optional id and labels).")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              show_default="recorded in --ann or the model, else --ann's folder",
              help="Images folder. Alone (no --ann): label every image under it, recursively. With --ann: the folder "
                   "its paths are relative to.")
@click.option("--tau", "--tau-high", "tau", cls=RequiredToLabel, type=click.FloatRange(0, 1, max_open=True), multiple=True,
              help="A label is positive when the teacher's probability is above it. Repeat for several files in one "
                   "pass (OUT.tau0.55.json, ...). Two names, one option: --tau-high reads better beside --tau-low.")
@click.option("--tau-low", type=click.FloatRange(0, 1, max_open=True), default=None, show_default="no ignore band",
              help="Ignore band: labels at or below it are confident negatives, those between it and --tau unknown "
                   "(neg_category_ids / not_exhaustive_category_ids on each image; the student masks the unknowns).")
@click.option("--class-prior", default=None, show_default="off, one --tau for all",
              help="Per-category thresholds making each category's pseudo-positive rate match a prior: a JSON file "
                   "{category name or id: rate}, or 'auto' (estimated from the single positives and --expected-positives). "
                   "Replaces --tau's value (give --tau all the same).")
@click.option("--expected-positives", type=float, default=2.9, show_default=True,
              help="--class-prior auto: positives per image expected (COCO 2.9).")
@click.option("--soft", is_flag=True, show_default=True, help="Also write the teacher's probabilities per image (spml_scores) for a soft student.")
@click.option("--out", cls=RequiredToLabel, type=click.Path(dir_okay=False), default=None,
              help="Labels file (COCO JSON) to write; other formats go beside it (labels.csv, labels.parquet, "
                   "labels.fiftyone/).")
@click.option("--format", "formats", default="coco", show_default=True,
              help="Output formats, comma-separated, all from the same scores in one pass: coco, fiftyone (FiftyOne's "
                   "image-classification dataset), csv (file_name,labels), parquet (needs pyarrow).")
@click.option("--csv-scores", is_flag=True, show_default=True, help="--format csv: add a scores column aligned with labels.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Images per inference call.")
@click.option("--provider", type=click.Choice(["auto", *PROVIDERS]), default="auto", show_default=True,
              help="auto: CUDA where a GPU really works, else the CPU.")
@click.option("--threads", type=click.IntRange(1), default=None, show_default="CPU count, at most 8", help="Decoding threads.")
@click.option("--keep-observed/--no-keep-observed", default=True, show_default=True,
              help="Keep the observed positives of --ann as positives whatever the teacher says.")
@click.option("--shard", default=None, show_default="the whole dataset", help="I/N: label the I-th of N contiguous parts (join them with `spml-label merge`).")
@click.option("--chunk-size", type=click.IntRange(1), default=1024, show_default=True,
              help="Images per resume chunk: the most work a kill can lose.")
@click.option("--strict", is_flag=True, show_default=True,
              help="Any image that cannot be labeled is an error (exit 1, nothing written).")
@click.option("--max-failed", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Warn loudly when more than this share of the images cannot be labeled (all failing is an error).")
@click.option("--allow-outside", is_flag=True, show_default=True,
              help="Open image file_names that point outside the images folder.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process. ray: a pool of Ray actors, on this machine or a cluster (pip install 'spml[ray]').")
@click.option("--ray-address", default=None, show_default="start a local Ray instance",
              help="--engine ray: the Ray cluster to join; 'auto' is the one `ray start` runs on this machine.")
@click.option("--workers", type=click.IntRange(1), default=None, show_default="as many as the cluster's CPUs/GPUs hold",
              help="--engine ray: actors, each holding one model session.")
@click.option("--cpus-per-worker", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="--engine ray: CPUs each actor reserves (its decoding and model threads).")
@click.option("--gpus-per-worker", type=click.FloatRange(0), default=0.0, show_default=True,
              help="--engine ray: GPUs each actor reserves (fractions share one); with a GPU it runs on CUDA (or --provider).")
@click.option("--tta", type=click.Choice(["none", "flip", "flip-crop"]), default="none", show_default=True,
              help="Test-time augmentation: the mean probability of each image's views (flip: and its mirror image; "
                   "flip-crop: also the central 87.5% and its mirror), scored in the same run (2x or 4x the model's work).")
@click.pass_context
def main(ctx, model, ann, images, tau, tau_low, class_prior, expected_positives, soft, out, formats, csv_scores, batch_size,
         provider, threads, keep_observed, shard, chunk_size, strict, max_failed, allow_outside, engine, ray_address,
         workers, cpus_per_worker, gpus_per_worker, tta):
    """Label the images of a COCO dataset, an image list or a folder with a teacher: pseudo multi-labels as COCO
    JSON that pycocotools and trainers load, and with --format for FiftyOne, CSV and Parquet. Killed, the same
    command resumes where it stopped; --engine ray spreads the work over a Ray cluster.

    \b
      spml-label --tau 0.65 --out labels.json      # teacher.onnx on the images it was trained on
      spml-label teacher.onnx --ann sp.json --images imgs/ --tau 0.55 --tau 0.75 --out labels.json
      spml-label teacher.onnx --images photos/ --tau 0.65 --format coco,fiftyone,csv --out labels.json
      spml-label --tau 0.65 --shard 0/2 --out part0.json   # ... then: spml-label merge part0.json part1.json --out labels.json
    """
    if ctx.invoked_subcommand is not None:
        return
    if not tau:
        raise click.UsageError("Missing option '--tau'.")
    if out is None:
        raise click.UsageError("Missing option '--out'.")
    from spml.data.formats import parse_formats
    from spml.data.provenance import teacher_recipe
    from spml.errors import SpmlError, sigterm_as_interrupt
    from spml.files import remove_temps, sha256_of
    from spml.label.inputs import load_inputs
    from spml.label.job import finish, parse_shard, resumable_scores, shard_rows, state_dir
    from spml.label.labeler import PseudoLabeler, write_labels
    from spml.label.outputs import planned_paths, remove_partial, write_other

    sigterm_as_interrupt()
    part = parse_shard(shard)
    formats = parse_formats(formats)
    paths = planned_paths(out, formats, tau)
    ray_only = [f"--{n.replace('_', '-')}" for n in ("ray_address", "workers", "cpus_per_worker", "gpus_per_worker")
                if ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT]
    if engine == "local" and ray_only:
        raise click.UsageError(f"{', '.join(ray_only)}: only with --engine ray")
    if engine == "ray":
        from spml.label.ray_engine import import_ray

        import_ray()  # before any work: without Ray, one line saying how to install it
    # with Ray the actors run the model; the driver's session only reads the model's metadata
    labeler = PseudoLabeler(model, "cpu" if engine == "ray" else provider, batch_size, threads, allow_outside, tta)
    dataset, what = load_inputs(ann, images, labeler)
    labeler.check_categories(dataset)  # before any work, so a mismatch leaves nothing behind
    if tau_low is not None and tau_low >= min(tau):
        raise SpmlError(f"--tau-low {tau_low} must be below --tau {min(tau)}") from None
    rows = shard_rows(len(dataset), part)
    click.echo(f"labeling {len(rows)} images of {what}" + (f" (shard {shard})" if shard else "")
               + f" with {model} on " + ("Ray" if engine == "ray" else labeler.provider), err=True)
    sha = sha256_of(model)
    recipe = teacher_recipe(labeler.info, model)
    extra_info = {"teacher": recipe} if recipe else None  # what a student trained on these labels inherits
    out = Path(out)
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    score = None
    if engine == "ray":
        from spml.label.ray_engine import ray_engine

        score = ray_engine(labeler, dataset, model, provider, ray_address, workers, cpus_per_worker, gpus_per_worker,
                           threads, allow_outside, log=log)
    try:
        scores = resumable_scores(labeler, dataset, out, rows, sha, chunk_size, progress=True, log=log, engine=score)
        failed = len(scores.failures)
        if failed and (strict or failed >= len(rows)):
            finish(out)  # nothing is written: the chunks hold only failures
            what = (f"none of the {len(rows)} images could be labeled" if failed >= len(rows)
                    else f"{failed} of {len(rows)} images could not be labeled (--strict)")
            raise SpmlError(f"{what} (images folder {dataset.images_dir}); first: {first_reasons(scores, dataset)}") from None
        if failed > max_failed * len(rows):
            click.secho(f"WARNING: {failed} of {len(rows)} images ({100 * failed / len(rows):.0f}%) could not be labeled, "
                        f"more than --max-failed {max_failed:g}; first: {first_reasons(scores, dataset)}",
                        err=True, fg="red", bold=True)
        per_class = class_thresholds(class_prior, dataset, scores, expected_positives, rows) if class_prior else None
        for t in tau:
            t_value = t if per_class is None else per_class
            if "coco" in formats:
                path = paths["coco", t]
                summary = write_labels(path, dataset, scores, t_value, keep_observed, model, sha, rows, shard, tau_low,
                                       soft, extra_info=extra_info, tta=tta)
                click.echo(f"wrote {path}: tau {t:g}, {summary['images']} images, {summary['positives_per_image']:.2f} "
                           f"positives per image, {summary['failed']} failed"
                           + (f" (listed in {summary['failures_file']})" if summary["failures_file"] else ""))
            info = {"tau": t, "keep_observed": keep_observed, "model": str(Path(model).resolve()), "model_sha256": sha}
            for fmt in (f for f in formats if f != "coco"):
                count = write_other(fmt, paths[fmt, t], dataset, scores, t_value, keep_observed, rows, info, csv_scores)
                click.echo(f"wrote {paths[fmt, t]}: {fmt}, tau {t:g}, {count} images")
    except KeyboardInterrupt:
        remove_partial(paths.values())
        remove_temps(state_dir(out))
        raise
    finish(out)
    if scores.seconds:
        click.echo(f"{len(rows)} images in {scores.seconds:.1f}s ({len(rows) / scores.seconds:.0f} img/s)")
    if "coco" in formats:
        click.echo(f"next: spml-train --ann {paths['coco', tau[0]]} --loss bce --out student.pt")


def first_reasons(scores, dataset, count: int = 3) -> str:
    """The first few failures, each naming the file that was tried."""
    items = sorted(scores.failures.items())[:count]
    more = len(scores.failures) - len(items)
    return "; ".join(f"{dataset.file_name(row)}: {reason}" for row, reason in items) + (
        f" (and {more} more)" if more > 0 else "")


def class_thresholds(class_prior: str, dataset, scores, expected_positives: float, rows=None):
    """Per-category thresholds from --class-prior (a JSON file of rates by name or id, or 'auto')."""
    import json

    import numpy as np

    from spml.errors import SpmlError
    from spml.label.labeler import observed_priors, prior_thresholds

    if class_prior == "auto":
        priors = observed_priors(dataset, expected_positives)
    else:
        try:
            given = json.loads(Path(class_prior).read_text())
            by_key = {str(k): float(v) for k, v in given.items()}
        except (OSError, ValueError, AttributeError, TypeError, RecursionError, MemoryError) as e:
            raise SpmlError(f"--class-prior {class_prior}: expected 'auto' or a JSON file {{category: rate}} ({e})") from None
        priors = np.array([by_key.get(str(c["name"]), by_key.get(str(c["id"]), np.nan)) for c in dataset.categories])
        if np.isnan(priors).any():
            missing = [c["name"] for c, p in zip(dataset.categories, priors) if np.isnan(p)]
            raise SpmlError(f"--class-prior {class_prior}: no rate for {', '.join(missing[:5])}") from None
    return prior_thresholds(scores, priors, rows)


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
