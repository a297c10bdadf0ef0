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


class MeanProbability(nn.Module):
    """An ensemble as one model: the mean of its members' probabilities, so the labeler scores all of them in
    one onnxruntime run and writes their average as the teacher's."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, images):
        return torch.stack([torch.sigmoid(m(images)) for m in self.members]).mean(0)


def _members(checkpoints) -> tuple[list[dict], nn.Module]:
    """The checkpoints (one path, or several for an ensemble) and the probability model they make; the members
    of an ensemble must share categories and preprocessing, since one input feeds them all."""
    paths = _as_list(checkpoints)
    ckpts = [p if isinstance(p, dict) else load_checkpoint(p) for p in paths]
    first = ckpts[0]
    for path, ckpt in zip(paths[1:], ckpts[1:]):
        if [c["id"] for c in ckpt["categories"]] != [c["id"] for c in first["categories"]]:
            raise SpmlError(f"{path}: other categories than {paths[0]}; an ensemble's members must share them") from None
        if ckpt["preprocess"] != first["preprocess"]:
            raise SpmlError(f"{path}: preprocessing {ckpt['preprocess']} differs from {paths[0]}'s "
                            f"{first['preprocess']}; an ensemble's members must share it") from None
    if len(ckpts) == 1:
        return ckpts, WithSigmoid(model_from_checkpoint(first)).eval()
    return ckpts, MeanProbability([model_from_checkpoint(c) for c in ckpts]).eval()


def _as_list(checkpoints) -> list:
    """One checkpoint (a path, or a checkpoint dict made in memory: a zero-shot teacher) or several."""
    return [checkpoints] if isinstance(checkpoints, (str, os.PathLike, dict)) else list(checkpoints)


def _source(path) -> dict:
    if isinstance(path, dict):
        return {"checkpoint": None, "checkpoint_sha256": None}  # made in memory: no file to point to
    return {"checkpoint": str(Path(path).resolve()), "checkpoint_sha256": sha256_of(path)}


def export_onnx(checkpoint, out: str | os.PathLike, opset: int = DEFAULT_OPSET) -> tuple[Path, ModelInfo]:
    """Write `out` (atomically) from an spml checkpoint, with the checkpoint's metadata in metadata_props.
    `checkpoint` may be a list of checkpoints: an ensemble, the mean of their probabilities, described by the
    first one's metadata (its recipe is what a student inherits) plus the list of members."""
    import onnx

    ckpts, model = _members(checkpoint)
    paths = _as_list(checkpoint)
    info = ModelInfo.from_checkpoint(ckpts[0])
    info.extra.update(**_source(paths[0]), opset=opset)
    if len(paths) > 1:
        info.extra["ensemble"] = [{**_source(p), "best_metric": c.get("best_metric")} for p, c in zip(paths, ckpts)]
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


def validate_onnx(onnx_path: str | os.PathLike, checkpoint, batch_sizes=(1, 3), atol: float = 1e-4,
                  *, seed: int = 0) -> float:
    """onnx.checker on the file, then onnxruntime against torch (the checkpoint, or each member of an ensemble
    run separately and averaged) on random inputs at each batch size. Returns the largest absolute difference;
    SpmlError above `atol`."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(onnx_path), full_check=True)
    ckpts, _ = _members(checkpoint)
    ckpt = ckpts[0]
    members = [WithSigmoid(model_from_checkpoint(c)).eval() for c in ckpts]

    def model(x):
        return torch.stack([m(x) for m in members]).mean(0)

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
