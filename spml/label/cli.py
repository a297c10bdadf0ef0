"""spml-label: the click command over PseudoLabeler (and `spml-label merge` for shards)."""

from __future__ import annotations

from pathlib import Path

import click

from spml.label.providers import PROVIDERS


def tau_out_path(out: Path, tau: float, several: bool) -> Path:
    return out.with_name(f"{out.stem}.tau{tau:g}{out.suffix or '.json'}") if several else out


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", type=click.Path(dir_okay=False), default="teacher.onnx", show_default=True,
              help="The exported teacher (spml-export).")
@click.option("--ann", type=click.Path(dir_okay=False), default=None,
              help="COCO file of the images to label, whose positives are the observed labels. "
                   "Default: the training annotations recorded in the model.")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              help="Images folder. Default: recorded in the model (with --ann unset) or in --ann, else --ann's folder.")
@click.option("--tau", "--tau-high", "tau", type=click.FloatRange(0, 1, max_open=True), multiple=True,
              help="Threshold: a label is positive when the teacher's probability is above it. Repeat for several "
                   "files in one pass (OUT.tau0.55.json, ...). --tau-high is the same option, for the ignore band.")
@click.option("--tau-low", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Ignore band: labels at or below it are confident negatives, those between it and --tau unknown "
                   "(neg_category_ids / not_exhaustive_category_ids on each image; the student masks the unknowns).")
@click.option("--class-prior", default=None,
              help="Per-category thresholds making each category's pseudo-positive rate match a prior: a JSON file "
                   "{category name or id: rate}, or 'auto' (estimated from the single positives and --expected-positives). "
                   "Replaces --tau's value (give --tau all the same).")
@click.option("--expected-positives", type=float, default=2.9, show_default=True,
              help="--class-prior auto: positives per image expected (COCO 2.9).")
@click.option("--soft", is_flag=True, help="Also write the teacher's probabilities per image (spml_scores) for a soft student.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Labels file (COCO JSON) to write.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--provider", type=click.Choice(["auto", *PROVIDERS]), default="auto", show_default=True,
              help="auto: CUDA where a GPU really works, else the CPU.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Decoding threads. Default: CPU count (at most 8).")
@click.option("--keep-observed/--no-keep-observed", default=True, show_default=True,
              help="Keep the observed positives of --ann as positives whatever the teacher says.")
@click.option("--shard", default=None, help="I/N: label the I-th of N contiguous parts (join them with `spml-label merge`).")
@click.option("--chunk-size", type=click.IntRange(1), default=1024, show_default=True,
              help="Images per resume chunk: the most work a kill can lose.")
@click.option("--strict", is_flag=True, help="Any image that cannot be labeled is an error (exit 1, nothing written).")
@click.option("--allow-outside", is_flag=True, help="Open image file_names that point outside the images folder.")
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
@click.pass_context
def main(ctx, model, ann, images, tau, tau_low, class_prior, expected_positives, soft, out, batch_size, provider, threads, keep_observed, shard, chunk_size, strict, allow_outside,
         engine, ray_address, workers, cpus_per_worker, gpus_per_worker):
    """Label the images of a COCO dataset with a teacher: pseudo multi-labels as COCO JSON that pycocotools,
    FiftyOne and other trainers load. Killed, the same command resumes where it stopped.

    \b
      spml-label --tau 0.65 --out labels.json      # teacher.onnx on the images it was trained on
      spml-label --model teacher.onnx --ann sp.json --images imgs/ --tau 0.55 --tau 0.75 --out labels.json
      spml-label --tau 0.65 --shard 0/2 --out part0.json   # ... then: spml-label merge part0.json part1.json --out labels.json
    """
    if ctx.invoked_subcommand is not None:
        return
    if not tau:
        raise click.UsageError("Missing option '--tau'.")
    if out is None:
        raise click.UsageError("Missing option '--out'.")
    from spml.data.coco import load_coco
    from spml.errors import SpmlError, sigterm_as_interrupt
    from spml.files import remove_temps, sha256_of
    from spml.label.job import finish, parse_shard, resumable_scores, shard_rows, state_dir
    from spml.label.labeler import PseudoLabeler, write_labels

    sigterm_as_interrupt()
    part = parse_shard(shard)
    ray_only = [f"--{n.replace('_', '-')}" for n in ("ray_address", "workers", "cpus_per_worker", "gpus_per_worker")
                if ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT]
    if engine == "local" and ray_only:
        raise click.UsageError(f"{', '.join(ray_only)}: only with --engine ray")
    if engine == "ray":
        from spml.label.ray_engine import import_ray

        import_ray()  # before any work: without Ray, one line saying how to install it
    # with Ray the actors run the model; the driver's session only reads the model's metadata
    labeler = PseudoLabeler(model, "cpu" if engine == "ray" else provider, batch_size, threads, allow_outside)
    if ann is None:
        ann = labeler.info.train_ann
        if not ann:
            raise SpmlError(f"{model} records no training annotations; pass --ann") from None
        images = images or labeler.info.train_images
    dataset = load_coco(ann, images)
    rows = shard_rows(len(dataset), part)
    click.echo(f"labeling {len(rows)} images of {ann}" + (f" (shard {shard})" if shard else "")
               + f" with {model} on " + ("Ray" if engine == "ray" else labeler.provider), err=True)
    sha = sha256_of(model)
    out = Path(out)
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    score = None
    if engine == "ray":
        from spml.label.ray_engine import ray_engine

        score = ray_engine(labeler, dataset, model, provider, ray_address, workers, cpus_per_worker, gpus_per_worker,
                           threads, allow_outside, log=log)
    try:
        scores = resumable_scores(labeler, dataset, out, rows, sha, chunk_size, progress=True, log=log, engine=score)
        if strict and scores.failures:
            row, reason = next(iter(sorted(scores.failures.items())))
            raise SpmlError(f"{len(scores.failures)} images could not be labeled (--strict), first: "
                            f"{dataset.images[row]['file_name']}: {reason}") from None
        if tau_low is not None and tau_low >= min(tau):
            raise SpmlError(f"--tau-low {tau_low} must be below --tau {min(tau)}") from None
        per_class = class_thresholds(class_prior, dataset, scores, expected_positives, rows) if class_prior else None
        for t in tau:
            path = tau_out_path(out, t, len(tau) > 1)
            summary = write_labels(path, dataset, scores, t if per_class is None else per_class, keep_observed, model, sha,
                                   rows, shard, tau_low, soft)
            click.echo(f"wrote {path}: tau {t:g}, {summary['images']} images, {summary['positives_per_image']:.2f} "
                       f"positives per image, {summary['failed']} failed"
                       + (f" (listed in {summary['failures_file']})" if summary["failures_file"] else ""))
    except KeyboardInterrupt:
        for t in tau:
            remove_temps(tau_out_path(out, t, len(tau) > 1))
        remove_temps(state_dir(out))
        raise
    finish(out)
    if scores.seconds:
        click.echo(f"{len(rows)} images in {scores.seconds:.1f}s ({len(rows) / scores.seconds:.0f} img/s)")
    click.echo(f"next: spml-train --ann {tau_out_path(out, tau[0], len(tau) > 1)} --loss bce --out student.pt")


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
        except (OSError, ValueError, AttributeError, TypeError) as e:
            raise SpmlError(f"--class-prior {class_prior}: expected 'auto' or a JSON file {{category: rate}} ({e})") from None
        priors = np.array([by_key.get(str(c["name"]), by_key.get(str(c["id"]), np.nan)) for c in dataset.categories])
        if np.isnan(priors).any():
            missing = [c["name"] for c, p in zip(dataset.categories, priors) if np.isnan(p)]
            raise SpmlError(f"--class-prior {class_prior}: no rate for {', '.join(missing[:5])}") from None
    return prior_thresholds(scores, priors, rows)


@main.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The joined labels file.")
def merge(parts, out):
    """Join the labels files written with --shard 0/N .. N-1/N into one, identical to a single run's."""
    from spml.label.job import merge_labels

    summary = merge_labels(list(parts), out)
    click.echo(f"wrote {out}: {summary['shards']} shards, {summary['images']} images, {summary['annotations']} "
               f"annotations, {summary['failed']} failed")


if __name__ == "__main__":
    main()
