"""spml-export: the click command over `export_onnx` and `validate_onnx`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(dir_okay=False), default="teacher.pt")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Default: CHECKPOINT with .onnx suffix.")
@click.option("--opset", type=click.IntRange(13, 21), default=17, show_default=True)
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Largest onnxruntime-vs-torch difference allowed.")
def main(checkpoint, out, opset, atol):
    """Export CHECKPOINT (default teacher.pt) to ONNX with its categories, input size and normalisation in the
    metadata, then check it: onnx.checker, and onnxruntime against torch on random inputs at two batch sizes.

    \b
      spml-export teacher.pt                       # -> teacher.onnx
    """
    from spml.export.onnx_export import export_onnx, validate_onnx

    out = Path(out) if out else Path(checkpoint).with_suffix(".onnx")
    out, info = export_onnx(checkpoint, out, opset)
    diff = validate_onnx(out, checkpoint, atol=atol)
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {info.arch} at {info.image_size}px, "
               f"{len(info.categories)} categories); onnxruntime vs torch max abs difference {diff:.2e}")
    click.echo(f"next: spml-label --model {out} --tau 0.65 --out labels.json")
