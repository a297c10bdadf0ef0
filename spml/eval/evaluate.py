"""Reports for `spml-eval`: a model (.pt through torch, .onnx through onnxruntime) on a test set, or a labels
file against the ground truth of the same images."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from spml.data.coco import CocoDataset, load_coco, same_categories
from spml.errors import SpmlError
from spml.eval.metrics import label_quality, mean_average_precision, per_class_average_precision


def _ap_report(scores: np.ndarray, truth: np.ndarray, dataset: CocoDataset) -> dict:
    ap = per_class_average_precision(scores, truth)
    names = dataset.category_names
    return {
        "map": mean_average_precision(scores, truth),
        "ap": {names[j]: (None if math.isnan(a) else 100.0 * a) for j, a in enumerate(ap)},
        "classes_without_positives": [names[j] for j, a in enumerate(ap) if math.isnan(a)],
        "num_images": int(len(scores)),
    }


def model_scores(model: str | os.PathLike, dataset: CocoDataset, batch_size: int = 64, progress: bool = False) -> tuple[np.ndarray, list]:
    """(N, L) probabilities in the dataset's category order, and the rows that failed."""
    suffix = Path(model).suffix.lower()
    if suffix == ".onnx":
        from spml.label.labeler import PseudoLabeler

        scores = PseudoLabeler(model, batch_size=batch_size).scores(dataset, progress=progress, desc="evaluating")
        return scores.values, sorted(scores.failures)
    if suffix in (".pt", ".pth"):
        return _torch_scores(model, dataset, batch_size)
    raise SpmlError(f"{model}: expected a checkpoint (.pt) or an ONNX model (.onnx)") from None


def _torch_scores(model: str | os.PathLike, dataset: CocoDataset, batch_size: int) -> tuple[np.ndarray, list]:
    import torch

    from spml.data.images import ImageError, Preprocess, image_path, load_image
    from spml.train.model import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(model)
    columns = same_categories(ckpt["categories"], dataset, f"model {model}")
    preprocess = Preprocess.from_dict(ckpt["preprocess"])
    net = model_from_checkpoint(ckpt)
    values = np.full((len(dataset), dataset.num_classes), np.nan, dtype=np.float32)
    failed = []
    rows, batch = [], []

    def flush():
        with torch.inference_mode():
            probs = torch.sigmoid(net(torch.from_numpy(preprocess.normalize(np.stack(batch))))).numpy()
        for r, p in zip(rows, probs):
            values[r, columns] = p
        rows.clear()
        batch.clear()

    for n, im in enumerate(dataset.images):
        try:
            batch.append(preprocess.resize(load_image(image_path(dataset.images_dir, im["file_name"]), preprocess.size)))
            rows.append(n)
        except ImageError:
            failed.append(n)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return values, failed


def recorded_train_ann(model: str | os.PathLike) -> str | None:
    """The training annotations a model (.pt or .onnx) records."""
    if not Path(model).is_file():
        raise SpmlError(f"{model}: no such file") from None
    if Path(model).suffix.lower() == ".onnx":
        import onnx

        from spml.data.artifacts import ModelInfo

        try:
            props = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
            return ModelInfo.from_props(props).train_ann
        except Exception as e:  # not ONNX, or no spml metadata
            raise SpmlError(f"{model}: not an spml model ({type(e).__name__}); pass --ann") from None
    from spml.train.model import load_checkpoint

    return (load_checkpoint(model).get("data") or {}).get("train_ann")


def default_test_set(model: str | os.PathLike) -> Path:
    """--ann left out: the built-in test set for a model trained on the built-in data, else a clear error."""
    from spml.data.provenance import builtin_test_set

    train_ann = recorded_train_ann(model)
    test = builtin_test_set(train_ann)
    if test is None:
        raise SpmlError(f"{model} was trained on {train_ann or 'unrecorded data'}, not the built-in data: "
                        "pass --ann TEST.json (full labels)") from None
    return test


def evaluate_model(model: str | os.PathLike, ann: str | os.PathLike, images: str | os.PathLike | None = None,
                   batch_size: int = 64, *, progress: bool = False) -> dict:
    """mAP (0-100, over classes with a positive) and per-class AP of a model on a fully labelled set.
    Images that cannot be read are left out and counted."""
    dataset = load_coco(ann, images)
    scores, failed = model_scores(model, dataset, batch_size, progress)
    keep = np.ones(len(dataset), dtype=bool)
    keep[failed] = False
    if not keep.any():
        raise SpmlError(f"none of the {len(dataset)} images of {ann} could be read (in {dataset.images_dir})") from None
    report = _ap_report(scores[keep], dataset.positives[keep], dataset)
    report.update(model=str(model), annotations=str(ann), failed_images=len(failed))
    return report


def evaluate_labels(labels: str | os.PathLike, ann: str | os.PathLike) -> dict:
    """A labels file against ground truth: precision, recall, F1 of its positives, positives per image, and the
    mAP of its scores (a missing label scores 0). Images are matched by id."""
    predicted = load_coco(labels)
    truth = load_coco(ann)
    columns = same_categories(predicted.categories, truth, f"labels {labels}")
    row_of = {im["id"]: n for n, im in enumerate(truth.images)}
    missing = [im["id"] for im in predicted.images if im["id"] not in row_of]
    if missing:
        raise SpmlError(f"{labels}: {len(missing)} images are not in {ann} (first id {missing[0]})") from None
    rows = np.array([row_of[im["id"]] for im in predicted.images], dtype=np.int64)
    gt = truth.positives[rows][:, columns]
    scores = predicted.scores if predicted.scores is not None else predicted.positives.astype(np.float32)
    report = _ap_report(np.where(predicted.positives, scores, 0.0), gt, predicted)
    report.update(label_quality(predicted.positives, gt))
    report.update(labels=str(labels), annotations=str(ann))
    return report
