"""spml-export: the click command over `export_onnx` and `validate_onnx`."""

from __future__ import annotations

from pathlib import Path

import click

from spml.cli_util import command


def _old_precision(value: str) -> list[str]:
    """--precision fp32|fp16|int8, the old spelling: fp32 is no quantization."""
    return ["--quantize", "none" if value == "fp32" else value]


@command(deprecated={"--precision": _old_precision})
@click.version_option(package_name="spml", message="%(prog)s %(version)s")
@click.argument("checkpoints", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None, show_default="CHECKPOINT with the .onnx suffix",
              help="The ONNX file to write (required for an ensemble).")
@click.option("--opset", type=click.IntRange(13, 21), default=17, show_default=True, help="ONNX opset to export to.")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Largest onnxruntime-vs-torch difference allowed (fp32).")
@click.option("--quantize", type=click.Choice(["none", "fp16", "int8"]), default="none", show_default=True,
              help="Also write a quantized model beside the fp32 one: int8, static quantization for CPUs (calibrated "
                   "on training images); fp16, for GPUs. (Was --precision.)")
@click.option("--calibration-ann", type=click.Path(dir_okay=False), default=None,
              show_default="the training set recorded in the checkpoint", help="int8: images to calibrate on.")
@click.option("--calibration-images", type=click.Path(file_okay=False), default=None,
              show_default="recorded in --calibration-ann, else its folder", help="Images folder of --calibration-ann.")
@click.option("--calibration-count", type=click.IntRange(1), default=256, show_default=True, help="int8: images sampled.")
@click.option("--zero-shot", "zero_shot", metavar="open_clip/NAME", default=None, show_default="none: export CHECKPOINT",
              help="Write a zero-shot teacher instead of exporting a checkpoint: the open_clip model NAME (or a model "
                   "config .json)'s image tower and a head made from its text tower and --categories; no training.")
@click.option("--pretrained", metavar="TAG", default=None, show_default="none: --weights, or random weights", help="--zero-shot: open_clip's pretrained weights (its tag).")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, show_default="none",
              help="--zero-shot: a whole CLIP state dict (both towers) instead of --pretrained.")
@click.option("--categories", type=click.Path(dir_okay=False), default=None, show_default="none: required with --zero-shot",
              help="--zero-shot: the categories, a COCO file's (their ids kept) or a .txt of names, one a line.")
@click.option("--prompts", type=click.Path(dir_okay=False), default=None,
              show_default="a photo of a {}. and five more of OpenAI's",
              help="--zero-shot: prompt templates, one a line, {} standing for the category's name.")
@click.option("--calibrate", type=click.Path(dir_okay=False), default=None, show_default="none: the raw zero-shot logits",
              help="--zero-shot: single positives (COCO) to fit a per-class bias and a temperature on, so that the "
                   "probabilities are multi-label ones (the candidates' held-out figures are printed).")
@click.option("--calibrate-images", type=click.Path(file_okay=False), default=None,
              show_default="recorded in --calibrate, else its folder", help="Images folder of --calibrate.")
def main(checkpoints, *, out, opset, atol, quantize, calibration_ann, calibration_images, calibration_count,
         zero_shot, pretrained, weights, categories, prompts, calibrate, calibrate_images):
    """Export CHECKPOINT (default teacher.pt) to ONNX with its categories, input size and normalisation in the
    metadata, then check it: onnx.checker, and onnxruntime against torch on random inputs at two batch sizes.
    Several checkpoints make one ensemble model: the mean of their probabilities, scored in one run.

    \b
      spml-export teacher.pt                       # -> teacher.onnx
      spml-export em_s0.pt em_s1.pt em_s2.pt --out ensemble.onnx
      spml-export --zero-shot open_clip/ViT-B-32 --pretrained openai --categories cats.txt --out zs.onnx
    """
    from spml.errors import SpmlError

    zero_shot_options = {"--pretrained": pretrained, "--weights": weights, "--categories": categories,
                         "--prompts": prompts, "--calibrate": calibrate, "--calibrate-images": calibrate_images}
    if zero_shot is None:
        given = [flag for flag, value in zero_shot_options.items() if value is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)}: only with --zero-shot open_clip/NAME")
    else:
        if checkpoints:
            raise click.UsageError("--zero-shot makes its teacher from open_clip: give no checkpoint")
        if categories is None or out is None:
            raise click.UsageError("--zero-shot needs --categories CATS and --out FILE.onnx")
        from spml.train.zero_shot import zero_shot_teacher

        checkpoints = (zero_shot_teacher(zero_shot, pretrained=pretrained, weights=weights, categories=categories,
                                         prompts=prompts, calibrate=calibrate, calibrate_images=calibrate_images,
                                         log=click.echo),)
    checkpoints = checkpoints or ("teacher.pt",)
    for path in checkpoints:
        if not isinstance(path, dict) and is_onnx(path):
            raise SpmlError(f"{path} is an ONNX model; spml-export takes the checkpoint (.pt) it came from") from None
    if len(checkpoints) > 1 and out is None:
        raise click.UsageError("an ensemble of several checkpoints needs --out")
    checkpoint = checkpoints[0] if len(checkpoints) == 1 else list(checkpoints)
    from spml.export.onnx_export import export_onnx, validate_onnx

    suffix = ".onnx" if quantize == "none" else f".{quantize}.onnx"
    out = Path(out) if out else Path(checkpoints[0]).with_suffix(suffix)
    fp32 = out if quantize == "none" else out.with_name(out.name.replace(suffix, "") + ".onnx")
    fp32, info = export_onnx(checkpoint, fp32, opset)
    diff = validate_onnx(fp32, checkpoint, atol=atol)
    click.echo(f"wrote {fp32} ({fp32.stat().st_size / 1e6:.1f} MB, "
               + (f"an ensemble of {len(checkpoints)} " if len(checkpoints) > 1 else "") + f"{info.arch} at {info.image_size}px, "
               f"{len(info.categories)} categories); onnxruntime vs torch max abs difference {diff:.2e}")
    if quantize != "none":
        from spml.export.quantize import calibration_batches, convert_fp16, max_difference, quantize_int8

        batches = list(calibration_batches(info, calibration_ann, calibration_images,
                                           calibration_count if quantize == "int8" else 16))
        if quantize == "int8":
            quantize_int8(fp32, out, batches)
        else:
            convert_fp16(fp32, out)
        click.echo(f"wrote {out} ({quantize}, {out.stat().st_size / 1e6:.1f} MB); largest probability difference "
                   f"from fp32 on {len(batches[0])} training images {max_difference(fp32, out, batches[0]):.3f} "
                   f"(compare test mAP with spml-eval)")
    click.echo(f"next: spml-label {out} --tau 0.65 --out labels.json")


def is_onnx(path: str) -> bool:
    """An ONNX model (by its name, or a protobuf whose first field is ir_version) rather than a checkpoint."""
    if path.lower().endswith(".onnx"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(1) == b"\x08"  # field 1 (ir_version), varint: how every ONNX file begins
    except OSError:
        return False


if __name__ == "__main__":
    main()
