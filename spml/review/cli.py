"""spml-review: select questions from a labels file, simulate answers, merge answers into a COCO file."""

from __future__ import annotations

import click

from spml.cli_util import group, several, version

STRATEGY_NAMES = ("random", "uncertainty", "weighted")  # spml.review.strategies.STRATEGIES, without importing numpy


@group()
@version
def main():
    """Targeted review: a person answers the few questions (is there a CATEGORY in this image?) that matter.

    \b
      spml-review select labels.json --budget 500 --out review/         # questions.csv, label-studio.{json,xml}
      spml-review merge sp.json review/questions.csv --out sp2.json     # after a person filled `answer`
      spml-review simulate review/questions.csv --truth instances_train.json --out answers.csv
      spml-review calibrate labels.json --answers review/ --out calibrated.json  # Platt scaling on the answers
      spml-review push review/ --label-studio http://localhost:8080 --token T      # a Label Studio project
      spml-review pull --label-studio http://localhost:8080 --token T --project 1 --out answers.json
    """


@main.command("select")
@version
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--budget", type=click.IntRange(1), required=True, help="Answers to ask for (with --unit image, every "
              "question of each chosen image counts).")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for questions.csv, label-studio.json, label-studio.xml and selection.json.")
@click.option("--strategy", type=click.Choice(STRATEGY_NAMES), default="uncertainty", show_default=True,
              help="random: the baseline; uncertainty: nearest the labeling threshold tau; weighted: sampled with "
                   "chances growing near tau, weights recorded (docs/review/index.md).")
@click.option("--unit", type=click.Choice(["pair", "image"]), default="pair", show_default=True,
              help="pair: one (image, category) question at a time; image: every unknown category of each chosen image.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random draws (random keys, ties).")
@click.option("--image-url", default=None, show_default="Label Studio's local-files serving of the image's path",
              help="Prefix of each task's image address in label-studio.json (the file name is appended).")
@click.option("--model", type=click.Path(dir_okay=False), default=None, show_default="read LABELS' scores",
              help="The exported teacher (spml-export): score LABELS' images with it, as spml-label --soft would; "
                   "LABELS is then the observed labels (single positives, or spml-review merge's file).")
@click.option("--tau", type=click.FloatRange(0, 1, max_open=True), default=None,
              show_default="required with --model; a labels file records its own",
              help="With --model: the labeling threshold the teacher's labels will use (uncertainty ranks by it).")
@click.option("--images", type=click.Path(file_okay=False), default=None, show_default="recorded in LABELS, else its folder",
              help="The images folder (scored with --model, shown in Label Studio's tasks).")
def select_cmd(labels, *, budget, out, strategy, unit, seed, image_url, model, tau, images):
    """Choose the questions to ask from LABELS, an spml-label --soft labels file, or with --model from the
    teacher's scores of LABELS' images (LABELS then holds what a person said).

    Never asks a pair that is known: annotations that are not `pseudo`, and each image's neg_category_ids.
    """
    from spml.review.select import select_questions, select_with_model, write_selection

    if model is None and tau is not None:
        raise click.UsageError("--tau goes with --model: a labels file records the threshold it was labeled at")
    if model is not None and tau is None:
        raise click.UsageError("--model needs --tau, the threshold the teacher's labels will use")
    if model is None:
        selection = select_questions(labels, budget=budget, strategy=strategy, unit=unit, seed=seed, images=images)
    else:
        selection = _select_with_model(labels, model, out=out, tau=tau, budget=budget, strategy=strategy, unit=unit,
                                       seed=seed, images=images)
    paths = write_selection(out, selection, labels=labels, strategy=strategy, unit=unit, budget=budget, seed=seed,
                            url_prefix=image_url, model=model)
    stats = selection.stats
    click.echo(f"wrote {paths['questions.csv']}: {stats['questions']} questions on {stats['images_asked']} images "
               f"({strategy}, unit {unit}) of {stats['unknown_pairs']} unknown pairs; {stats['known_pairs']} known "
               f"pairs not asked")
    click.echo(f"wrote {paths['label-studio.json']} and {paths['label-studio.xml']} (Label Studio tasks and config), "
               f"{paths['selection.json']}")


def _select_with_model(labels, model, *, out, **options):
    """select_with_model with its scratch labels file in a folder of its own inside --out, removed after."""
    import tempfile
    from pathlib import Path

    from spml.review.select import select_with_model

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise click.UsageError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.UsageError(f"--out {out}: cannot make the folder ({e.strerror})") from None
    with tempfile.TemporaryDirectory(dir=out, prefix=".scores-") as scratch:
        return select_with_model(labels, model, scratch=scratch, log=lambda m: click.echo(m, err=True), **options)


@main.command("merge")
@version
@click.argument("observed", type=click.Path(dir_okay=False))
@click.argument("answers", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The merged COCO file.")
def merge_cmd(observed, answers, out):
    """Merge ANSWERS (questions CSVs with `answer` filled, Label Studio JSON or JSON_MIN exports) into OBSERVED.

    Yes: an annotation with source `verified`; no: the category in the image's neg_category_ids. A later answer
    wins; OBSERVED's own labels are never lost.
    """
    from spml.review.merge import merge_answers

    s = merge_answers(observed, answers, out)
    click.echo(f"wrote {out}: {s.answers} answers, {s.positives_added} verified positives and {s.negatives_added} "
               f"verified negatives added, {s.pseudo_confirmed} pseudo positives confirmed, {s.pseudo_removed} removed")
    click.echo(f"{s.conflicts} conflicts (a pair answered both ways; the later answer kept)"
               + (f"; {s.contradicting_observed} answers contradict {observed}'s labels (its labels kept)"
                  if s.contradicting_observed else ""))


@main.command("simulate")
@version
@click.argument("questions", type=click.Path(dir_okay=False))
@click.option("--truth", type=click.Path(dir_okay=False), required=True, help="A fully labeled COCO file of the images.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The questions CSV with `answer` filled.")
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Probability that each answer is flipped (a careless person).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the flips.")
def simulate_cmd(questions, *, truth, out, error_rate, seed):
    """Answer QUESTIONS (a questions.csv) from --truth, as a person would with the given error rate."""
    from spml.review.simulate import simulate_answers

    s = simulate_answers(questions, truth, out, error_rate=error_rate, seed=seed)
    click.echo(f"wrote {out}: {s['questions']} answers, {s['yes']} yes and {s['no']} no ({s['flipped']} flipped)")


@main.command("calibrate")
@version
@click.argument("labels", type=click.Path(dir_okay=False))
@several("--answers", type=click.Path(file_okay=False), required=True,
         help="A folder spml-review select --out wrote, its questions.csv answered (or an answers.csv beside it); "
              "repeat or separate by commas for several.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The calibrated soft labels file.")
@click.option("--tau", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5, show_default=True,
              help="The labeling threshold of the calibrated probabilities (chances a person says yes).")
def calibrate_cmd(labels, *, answers, out, tau):
    """Calibrate LABELS, an spml-label --soft file, on a person's answers: per category, a logistic fit of the
    answer on the teacher's logit (Platt scaling; `weighted` answers by 1 / their sampling weight) maps every
    probability to the chance a person would say yes (docs/review/index.md).

    OUT has LABELS' images and observed labels, the calibrated probabilities, the pseudo labels at --tau and the
    maps in info.calibration. Fit it on answers to questions drawn at random (or `weighted`): answers chosen by
    uncertainty cover one band of scores only.
    """
    from spml.review.calibrate import calibrate_labels

    s = calibrate_labels(labels, answers, out, tau=tau)
    click.echo(f"wrote {out}: {s.images} images calibrated on {s.answers} answers ({s.yes} yes, {s.answers - s.yes} "
               f"no); {s.own_fits} of {len(s.maps)} categories fitted on their own answers, the others on all pooled; "
               f"{s.pseudo_positives} pseudo positives at tau {tau:g}")


def _server_options(f):
    f = click.option("--token", envvar="LABEL_STUDIO_API_KEY", required=True, show_envvar=True,
                     help="The Label Studio account's access token (Account & Settings).")(f)
    return click.option("--label-studio", "url", envvar="LABEL_STUDIO_URL", required=True, show_envvar=True,
                        help="The Label Studio server's address, e.g. http://localhost:8080.")(f)


@main.command("push")
@version
@click.argument("folder", type=click.Path(file_okay=False))
@_server_options
@click.option("--project", "title", default=None, show_default="spml review: FOLDER's name",
              help="The new project's title.")
@click.option("--document-root", envvar="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", default="/", show_default=True,
              show_envvar=True, help="The server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT: the tasks' local-files "
                                     "addresses are relative to it.")
@click.option("--upload", is_flag=True, default=False, show_default=True,
              help="Upload the images to the server (each once) instead of its local-files serving: for a server "
                   "that does not see the images' folder.")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              show_default="the files behind the tasks' local-files addresses",
              help="With --upload: the folder the tasks' file names are relative to.")
def push_cmd(folder, *, url, token, title, document_root, upload, images):
    """Create a Label Studio project from FOLDER (what spml-review select --out wrote): its labeling config, its
    tasks with the teacher's predictions, and a local-files storage that lets the server show the images, or with
    --upload the images themselves.

    For local files, start the server where the images are, with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT above them (docs/review/index.md).
    """
    from spml.review.label_studio import push

    if images is not None and not upload:
        raise click.UsageError("--images goes with --upload (local files are found from the tasks' addresses)")
    p = push(folder, url=url, token=token, title=title, document_root=document_root, upload=upload, images=images)
    click.echo(f"created project {p.project_id} {p.title!r}: {p.tasks} tasks with "
               f"the teacher's predictions" + (f", images served from {p.storage_path}" if p.storage_path else "")
               + (f", {p.uploaded} images uploaded" if p.uploaded else ""))
    click.echo(f"answer them at {url.rstrip('/')}/projects/{p.project_id}, then: spml-review pull --label-studio "
               f"{url} --token TOKEN --project {p.project_id} --out answers.json")


@main.command("pull")
@version
@_server_options
@click.option("--project", "project_id", type=click.IntRange(1), required=True,
              help="The project's id (push prints it; it is in the project's address).")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="The Label Studio JSON export, for spml-review merge.")
def pull_cmd(url, token, project_id, out):
    """Export the answers of a Label Studio project (JSON) for spml-review merge."""
    from spml.review.label_studio import pull

    p = pull(url=url, token=token, project_id=project_id, out=out)
    click.echo(f"wrote {out}: {p.tasks} tasks, {p.answered} answered")


if __name__ == "__main__":
    main()
