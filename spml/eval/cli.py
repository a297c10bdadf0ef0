"""spml-eval: the click command over `evaluate_model` and `evaluate_labels`."""

from __future__ import annotations

import click

from spml.cli_util import command


@command(deprecated={"--json": "--out"})
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--ann", type=click.Path(dir_okay=False), default=None,
              show_default="the built-in test set for a model trained on the built-in data; else required",
              help="Ground truth (COCO, full labels).")
@click.option("--images", type=click.Path(file_okay=False), default=None, show_default="recorded in --ann, else its folder",
              help="Images folder of --ann (models only).")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True, help="Images per inference call.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, show_default="no file: the report on stdout only",
              help="Write the report as JSON. (Was --json.)")
def main(target, *, ann, images, batch_size, out):
    """Evaluate TARGET against the ground truth in --ann.

    \b
    TARGET is a model (.pt or .onnx): mAP and per-class AP on the images of --ann;
    or a labels file (.json, from spml-label): precision, recall, F1 and positives per image of its labels.
      spml-eval student.pt                         # trained on the built-in data: its test set
      spml-eval student.pt --ann test.json --out report.json
      spml-eval labels.json --ann instances_train.json
    """
    from spml.errors import SpmlError
    from spml.eval.evaluate import default_test_set, evaluate_labels, evaluate_model
    from spml.files import write_json

    if ann is None:
        if target.lower().endswith(".json"):
            raise click.UsageError("Missing option '--ann': the ground truth of the labelled images.")
        ann = default_test_set(target)
        click.echo(f"--ann: {ann} (the built-in test set; {target} was trained on the built-in data)", err=True)
    if target.lower().endswith(".json"):
        report = evaluate_labels(target, ann)
    elif target.lower().endswith((".pt", ".pth", ".onnx")):
        report = evaluate_model(target, ann, images, batch_size, progress=True)
    else:
        raise SpmlError(f"{target}: expected a model (.pt, .onnx) or a labels file (.json)") from None
    width = max([len(k) for k in report["ap"]] + [8])
    for name, ap in report["ap"].items():
        click.echo(f"  {name:<{width}} {'-' if ap is None else f'{ap:6.2f}'}")
    line = f"mAP {report['map']:.2f} over {report['num_images']} images"
    if "precision" in report:
        line += (f"; precision {report['precision']:.3f}, recall {report['recall']:.3f}, F1 {report['f1']:.3f}, "
                 f"{report['positives_per_image']:.2f} positives per image (truth {report['true_positives_per_image']:.2f})")
    if report.get("classes_without_positives"):
        line += f"; no positives (skipped): {', '.join(report['classes_without_positives'])}"
    click.echo(line)
    if out:
        write_json(out, report)


if __name__ == "__main__":
    main()
