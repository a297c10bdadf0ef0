"""The labeling stage as one library call: `label(LabelConfig(...)) -> LabelResult`, what spml-label runs.

    from spml.label import LabelConfig, label
    result = label(LabelConfig(model="teacher.onnx", taus=(0.65,), out="labels.json"))

`label` opens the model and the images, scores them as a resumable job (spml.label.job; locally or on Ray) and
hands the scores to `label_scores`, which holds the policy every labels file is written under: too many failed
images, per-category thresholds (--class-prior), one file per (format, τ). A caller that already holds scores
(the sweep scores its teacher once and labels many ways) calls `label_scores` itself, so there is one way to
label. Importing this module is cheap (no numpy, no onnxruntime): the command's --help reads its defaults here.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from spml.data.protocol import COCO_EXPECTED_POSITIVES
from spml.errors import SpmlError

RAY_SETTINGS = ("ray_address", "ray_actors", "ray_cpus_per_actor", "ray_gpus_per_actor")


@dataclass
class LabelConfig:
    """Everything spml-label takes, with the command's defaults (the command reads them from here)."""

    out: str  # the labels file (COCO JSON); the other formats go beside it
    taus: tuple[float, ...]  # one labels file per τ: positive where the teacher's probability is above it
    model: str = "teacher.onnx"
    ann: str | None = None  # a COCO file or an image list; None: the training set recorded in the model
    images: str | None = None
    tau_low: float | None = None  # ignore band: at or below it confident negatives, up to τ unknown
    class_prior: str | None = None  # 'auto' or a JSON file {category: rate}: per-category thresholds
    expected_positives: float = COCO_EXPECTED_POSITIVES  # class_prior 'auto': positives per image
    soft: bool = False  # also write the teacher's probabilities per image
    formats: tuple[str, ...] = ("coco",)  # coco, fiftyone, csv, parquet
    csv_scores: bool = False
    batch_size: int = 32
    provider: str = "auto"
    threads: int | None = None  # decoding threads; None: the CPU count, at most 8
    keep_observed: bool = True
    shard: str | None = None  # 'I/N'
    chunk_size: int = 1024  # images per resume chunk
    strict: bool = False  # any image that cannot be labeled is an error
    max_failed: float = 0.1  # warn above this share of failed images
    allow_outside: bool = False
    engine: str = "local"  # or 'ray'
    ray_address: str | None = None
    ray_actors: int | None = None  # None: as many as the cluster's CPUs (GPUs) hold
    ray_cpus_per_actor: float = 1.0
    ray_gpus_per_actor: float = 0.0
    tta: str = "none"  # none, flip, flip-crop
    progress: bool = True  # a progress bar on stderr

    def __post_init__(self):
        # a library caller may give one τ or 'coco,csv', as the command accepts them
        if isinstance(self.taus, (int, float)):
            self.taus = (float(self.taus),)
        if isinstance(self.formats, str):
            self.formats = tuple(f for f in self.formats.split(","))
        self.taus, self.formats = tuple(self.taus), tuple(self.formats)


DEFAULTS = {f.name: f.default for f in dataclasses.fields(LabelConfig) if f.default is not dataclasses.MISSING}


@dataclass
class LabelResult:
    """What `label` wrote. `paths` and `counts` are in the order the files were written (τ by τ, the formats in
    the order asked); a COCO file's counts are write_labels' summary (images, annotations, positives_per_image,
    failed, failures_file), another format's {"images": n}."""

    paths: dict[tuple[str, float], Path] = field(default_factory=dict)
    counts: dict[tuple[str, float], dict] = field(default_factory=dict)
    images: int = 0  # the images asked for (a shard's own)
    failures: dict[int, str] = field(default_factory=dict)  # dataset row -> why it could not be labeled
    seconds: float = 0.0  # scoring time of this run (0 when every chunk was resumed)


class TooManyFailures(SpmlError):
    """Nothing useful can be written: every image failed, or one did under --strict."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def label(config: LabelConfig, *, log: Callable[[str], None] = _stderr,
          warn: Callable[[str], None] | None = None) -> LabelResult:
    """Label `config.ann` / `config.images` with `config.model` and write every (format, τ) file.

    Killed, the same call resumes from the chunk files kept beside `config.out`; interrupted (KeyboardInterrupt),
    it leaves no half-written output. `log` gets the progress lines, `warn` (default `log`) the warning that more
    than `max_failed` of the images failed. Bad input raises SpmlError before any work."""
    from spml.data.provenance import teacher_recipe
    from spml.files import remove_temps, sha256_of
    from spml.label.inputs import load_inputs
    from spml.label.job import finish, parse_shard, resumable_scores, shard_rows, state_dir
    from spml.label.labeler import PseudoLabeler
    from spml.label.writers import planned_paths, remove_partial

    formats = check_config(config)
    part = parse_shard(config.shard)
    paths = planned_paths(config.out, formats, config.taus)
    on_ray = config.engine == "ray"
    if on_ray:
        from spml.label.ray_engine import import_ray

        import_ray()  # before any work: without Ray, one line saying how to install it
    # with Ray the actors run the model; the driver's session only reads the model's metadata
    labeler = PseudoLabeler(config.model, "cpu" if on_ray else config.provider, config.batch_size, config.threads,
                            allow_outside=config.allow_outside, tta=config.tta)
    dataset, what = load_inputs(config.ann, config.images, labeler)
    labeler.check_categories(dataset)  # before any work, so a mismatch leaves nothing behind
    rows = shard_rows(len(dataset), part)
    log(f"labeling {len(rows)} images of {what}" + (f" (shard {config.shard})" if config.shard else "")
        + f" with {config.model} on " + ("Ray" if on_ray else labeler.provider))
    sha = sha256_of(config.model)
    recipe = teacher_recipe(labeler.info, config.model)
    out = Path(config.out)
    engine = _ray_engine(config, labeler, dataset, log) if on_ray else None
    try:
        scores = resumable_scores(labeler, dataset, out, rows, model_sha256=sha, chunk_images=config.chunk_size,
                                  progress=config.progress, log=log, engine=engine)
        try:
            result = label_scores(config, dataset, scores, rows=rows, model_sha256=sha,
                                  extra_info={"teacher": recipe} if recipe else None, warn=warn or log)
        except TooManyFailures:
            finish(out)  # nothing is written: the chunks hold only failures
            raise
    except KeyboardInterrupt:
        remove_partial(paths.values())
        remove_temps(state_dir(out))
        raise
    finish(out)
    return result


def label_scores(config: LabelConfig, dataset, scores, *, rows: range | None = None, model_sha256: str | None = None,
                 extra_info: dict | None = None, warn: Callable[[str], None] = _stderr) -> LabelResult:
    """Write the labels of `scores` (the teacher's, over `rows` of `dataset`) as `config` asks: the failure policy
    (TooManyFailures, or a warning above `max_failed`), the per-category thresholds of `class_prior`, then one
    file per (format, τ). `config.model` is the model recorded in the files; `extra_info` goes into each COCO
    file's info (label() records the teacher's training recipe there, which a student inherits)."""
    from spml.files import sha256_of
    from spml.label.writers import planned_paths, write_labels, write_other

    formats = check_config(config)
    rows = range(len(dataset)) if rows is None else rows
    paths = planned_paths(config.out, formats, config.taus)
    check_failures(scores, dataset, rows, strict=config.strict, max_failed=config.max_failed, warn=warn)
    per_class = (class_thresholds(config.class_prior, dataset, scores, config.expected_positives, rows=rows)
                 if config.class_prior else None)
    sha = model_sha256 or sha256_of(config.model)
    result = LabelResult(images=len(rows), failures=dict(scores.failures), seconds=scores.seconds)
    for t in config.taus:
        tau = t if per_class is None else per_class
        if "coco" in formats:
            path = paths["coco", t]
            result.counts["coco", t] = write_labels(
                path, dataset, scores, tau, model_path=config.model, keep_observed=config.keep_observed,
                model_sha256=sha, rows=rows, shard=config.shard, tau_low=config.tau_low, soft=config.soft,
                extra_info=extra_info, tta=config.tta)
            result.paths["coco", t] = path
        info = {"tau": t, "keep_observed": config.keep_observed, "model": str(Path(config.model).resolve()),
                "model_sha256": sha}
        for fmt in (f for f in formats if f != "coco"):
            count = write_other(fmt, paths[fmt, t], dataset, scores, tau=tau, keep_observed=config.keep_observed,
                                rows=rows, info=info, csv_scores=config.csv_scores)
            result.counts[fmt, t] = {"images": count}
            result.paths[fmt, t] = paths[fmt, t]
    return result


def check_config(config: LabelConfig) -> list[str]:
    """SpmlError for settings that cannot go together, before any work; the formats, checked and deduplicated."""
    from spml.data.formats import parse_formats

    if not config.taus:
        raise SpmlError("no --tau given: a labels file needs at least one threshold") from None
    if not config.out:
        raise SpmlError("no --out given: where the labels file goes") from None
    if config.engine not in ("local", "ray"):
        raise SpmlError(f"--engine {config.engine!r}: expected local or ray") from None
    given = [f"--{name.replace('_', '-')}" for name in RAY_SETTINGS if getattr(config, name) != DEFAULTS[name]]
    if config.engine == "local" and given:
        raise SpmlError(f"{', '.join(given)}: only with --engine ray") from None
    if config.tau_low is not None and config.tau_low >= min(config.taus):
        raise SpmlError(f"--tau-low {config.tau_low} must be below --tau {min(config.taus)}") from None
    return parse_formats(",".join(config.formats))


def check_failures(scores, dataset, rows: range, *, strict: bool, max_failed: float, warn) -> None:
    """TooManyFailures when every image failed, or any did under `strict`; a warning above `max_failed`."""
    failed = len([r for r in scores.failures if r in rows])
    if failed and (strict or failed >= len(rows)):
        what = (f"none of the {len(rows)} images could be labeled" if failed >= len(rows)
                else f"{failed} of {len(rows)} images could not be labeled (--strict)")
        raise TooManyFailures(f"{what} (images folder {dataset.images_dir}); first: {first_reasons(scores, dataset)}")
    if failed > max_failed * len(rows):
        warn(f"WARNING: {failed} of {len(rows)} images ({100 * failed / len(rows):.0f}%) could not be labeled, "
             f"more than --max-failed {max_failed:g}; first: {first_reasons(scores, dataset)}")


def first_reasons(scores, dataset, count: int = 3) -> str:
    """The first few failures, each naming the file that was tried."""
    items = sorted(scores.failures.items())[:count]
    more = len(scores.failures) - len(items)
    return "; ".join(f"{dataset.file_name(row)}: {reason}" for row, reason in items) + (
        f" (and {more} more)" if more > 0 else "")


def class_thresholds(class_prior: str, dataset, scores, expected_positives: float, *, rows=None):
    """Per-category thresholds from --class-prior (a JSON file of rates by name or id, or 'auto')."""
    import json

    import numpy as np

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


def _ray_engine(config: LabelConfig, labeler, dataset, log):
    from spml.label import ray_engine  # looked up at call time: tests stand in for it

    return ray_engine.ray_engine(labeler, dataset, config.model, provider=config.provider, address=config.ray_address,
                                 actors=config.ray_actors, cpus_per_actor=config.ray_cpus_per_actor,
                                 gpus_per_actor=config.ray_gpus_per_actor, threads=config.threads,
                                 allow_outside=config.allow_outside, log=log)
