"""Reduced-precision copies of an exported model: int8 (static quantization, calibrated on training images) for
CPUs with VNNI, fp16 for GPUs. Both keep float32 inputs and outputs and the spml metadata."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from spml.data.artifacts import ONNX_INPUT, ModelInfo
from spml.errors import SpmlError
from spml.files import atomic_write


def _copy_metadata(source, target) -> None:
    del target.metadata_props[:]
    for p in source.metadata_props:
        target.metadata_props.add(key=p.key, value=p.value)


def calibration_batches(info: ModelInfo, ann: str | None, images: str | None, count: int, *, batch_size: int = 16,
                        seed: int = 0):
    """Batches of `count` preprocessed images sampled from the training set recorded in the model (or `ann`)."""
    from spml.data.coco import load_coco
    from spml.data.images import ImageError, image_path, load_image

    ann = ann or info.train_ann
    if not ann:
        raise SpmlError("int8 needs calibration images: the model records no training set; pass --calibration-ann") from None
    dataset = load_coco(ann, images if images else (info.train_images if ann == info.train_ann else None))
    rows = np.random.default_rng(seed).permutation(len(dataset))
    pre = info.preprocess
    batch = []
    used = 0
    for row in rows:
        try:
            path = image_path(dataset.images_dir, dataset.images[row]["file_name"])
            batch.append(pre.resize(load_image(path, pre.size)))
        except ImageError:
            continue
        used += 1
        if len(batch) == batch_size or used == count:
            yield pre.normalize(np.stack(batch))
            batch = []
        if used == count:
            return
    if batch:
        yield pre.normalize(np.stack(batch))


def quantize_int8(fp32_path: str | os.PathLike, out: str | os.PathLike, calibration) -> Path:
    """Static QDQ quantization (per-channel int8 weights, uint8 activations) calibrated on `calibration`
    (an iterable of float32 NCHW batches)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {ONNX_INPUT: batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        proto = onnx.load(str(quantized))
    _copy_metadata(onnx.load(str(fp32_path)), proto)
    with atomic_write(out, "wb") as f:
        f.write(proto.SerializeToString())
    return Path(out)


def _topological_sort(graph) -> None:
    """Reorder graph.node so every node comes after the producers of its inputs (ONNX requires it)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise SpmlError("fp16 conversion produced a graph with a cycle") from None
        for n in ready:
            available.update(n.output)
        ordered.extend(ready)
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)


def convert_fp16(fp32_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """fp16 weights and arithmetic with float32 inputs and outputs (for CUDA/TensorRT)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = onnx.load(str(fp32_path))
    proto = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    _topological_sort(proto.graph)  # the converter appends its input casts at the end of the node list
    _copy_metadata(source, proto)
    with atomic_write(out, "wb") as f:
        f.write(proto.SerializeToString())
    return Path(out)


def max_difference(reference_path: str | os.PathLike, other_path: str | os.PathLike, batch: np.ndarray) -> float:
    """Largest absolute difference between two models' probabilities on a batch of real images."""
    import onnxruntime as ort

    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {ONNX_INPUT: batch})[0]
               for p in (reference_path, other_path)]
    return float(np.max(np.abs(outputs[0] - outputs[1])))
