"""Multi-label metrics in numpy (no torch, no scikit-learn at run time)."""

from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Area under the precision-recall curve as scikit-learn's `average_precision_score` defines it:
    sum over distinct score thresholds of (R_k - R_{k-1}) * P_k, tied scores forming one threshold.
    NaN when there is no positive."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    num_pos = targets.sum()
    if num_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], targets[order]
    # last index of each run of equal scores: a threshold counts every tied item at once
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall = tp / num_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_class_average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(L,) AP of each column, NaN for a class without positives."""
    return np.array([average_precision(scores[:, j], targets[:, j]) for j in range(scores.shape[1])])


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro mean of per-class AP over the classes with at least one positive, x100 (the papers' scale)."""
    ap = per_class_average_precision(scores, targets)
    if np.all(np.isnan(ap)):
        return float("nan")
    return float(100.0 * np.nanmean(ap))


def label_quality(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """Micro precision, recall and F1 of predicted positives against ground truth, and positives per image."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    tp = float(np.sum(predicted & truth))
    npred, ntrue = float(predicted.sum()), float(truth.sum())
    precision = tp / npred if npred else 0.0
    recall = tp / ntrue if ntrue else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = max(len(predicted), 1)
    return {
        "precision": precision, "recall": recall, "f1": f1,
        "positives_per_image": npred / n, "true_positives_per_image": ntrue / n,
    }
