"""Export a checkpoint to ONNX (`export_onnx`) and check the file against torch (`validate_onnx`)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spml.data.artifacts import ONNX_INPUT, ONNX_OUTPUT, ModelInfo
from spml.errors import SpmlError
from spml.files import atomic_write, sha256_of
from spml.train.model import load_checkpoint, model_from_checkpoint

DEFAULT_OPSET = 17


class WithSigmoid(nn.Module):
    """The exported graph outputs probabilities, so the labeler thresholds them directly."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images):
        return torch.sigmoid(self.model(images))


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, opset: int = DEFAULT_OPSET) -> tuple[Path, ModelInfo]:
    """Write `out` (atomically) from an spml checkpoint, with the checkpoint's metadata in metadata_props."""
    import onnx

    ckpt = load_checkpoint(checkpoint)
    model = WithSigmoid(model_from_checkpoint(ckpt)).eval()
    info = ModelInfo.from_checkpoint(ckpt)
    info.extra.update(checkpoint=str(Path(checkpoint).resolve()), checkpoint_sha256=sha256_of(checkpoint), opset=opset)
    size = info.image_size
    example = torch.zeros(2, 3, size, size)
    out = Path(out)
    with atomic_write(out, "wb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # the TorchScript exporter: no onnxscript needed at run time and a plain, widely loadable graph
        torch.onnx.export(model, (example,), f, input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                          dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    proto = onnx.load(str(out))
    del proto.metadata_props[:]
    for key, value in info.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "spml"
    with atomic_write(out, "wb") as f:
        f.write(proto.SerializeToString())
    return out, info


def validate_onnx(onnx_path: str | os.PathLike, checkpoint: str | os.PathLike, batch_sizes=(1, 3), atol: float = 1e-4,
                  seed: int = 0) -> float:
    """onnx.checker on the file, then onnxruntime against torch on random inputs at each batch size.
    Returns the largest absolute difference; SpmlError above `atol`."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(onnx_path), full_check=True)
    ckpt = load_checkpoint(checkpoint)
    model = WithSigmoid(model_from_checkpoint(ckpt)).eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    size = ckpt["preprocess"]["image_size"]
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in batch_sizes:
        x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        got = session.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0]
        if got.shape != expected.shape:
            raise SpmlError(f"{onnx_path}: output shape {got.shape} at batch {n}, torch gives {expected.shape}") from None
        worst = max(worst, float(np.max(np.abs(got - expected))))
    if worst > atol:
        raise SpmlError(f"{onnx_path}: onnxruntime differs from torch by {worst:.2e} (limit {atol:.0e})") from None
    return worst
