"""A teacher's probabilities calibrated on a person's answers: what the answers teach about the pairs nobody asked.

An EM teacher holds the scores of unobserved pairs near 0.5 by design, so its soft labels say "maybe" where the
truth is mostly "no" (issue 20: three answers in four were no). Answers to questions drawn at random are an
unbiased sample of the unknown pairs: per category, a logistic fit of the answer on the teacher's logit (Platt
scaling) maps every unknown pair's score to the chance a person would say yes. Answers drawn by the `weighted`
strategy are weighted by the inverse of their sampling weight (Horvitz-Thompson), which undoes the selection;
answers chosen deterministically (`uncertainty`) cover one band of scores only, and a fit on them extrapolates.
"""

from __future__ import annotations

import numpy as np

# a category's own fit needs this many answers of each kind; with fewer, the fit of all categories pooled
MIN_ANSWERS_EACH = 5
RIDGE = 1e-3  # keeps the fit finite when yes and no are separable


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def platt_fit(p: np.ndarray, yes: np.ndarray, weights: np.ndarray | None = None, iterations: int = 100) -> tuple[float, float]:
    """(a, b) of P(yes) = sigmoid(a logit(p) + b), weighted maximum likelihood by Newton's method (IRLS)."""
    x = np.stack([logit(p), np.ones(len(p))], axis=1)
    y = np.asarray(yes, dtype=np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    theta = np.zeros(2)
    for _ in range(iterations):
        q = 1.0 / (1.0 + np.exp(-(x @ theta)))
        gradient = x.T @ (w * (q - y)) + RIDGE * theta
        hessian = (x * (w * q * (1 - q))[:, None]).T @ x + RIDGE * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def calibration_maps(p: np.ndarray, columns: np.ndarray, yes: np.ndarray, num_classes: int, *,
                     weights: np.ndarray | None = None) -> np.ndarray:
    """(num_classes, 2) Platt parameters, one row per category: its own fit where it has MIN_ANSWERS_EACH yes and
    no answers, else the pooled fit. `p`, `columns`, `yes`: each answer's teacher score, category column, answer."""
    yes = np.asarray(yes, dtype=bool)
    if not len(yes) or yes.all() or not yes.any():
        raise ValueError("calibration needs answers of both kinds (yes and no)")
    pooled = platt_fit(p, yes, weights)
    maps = np.tile(pooled, (num_classes, 1))
    for j in range(num_classes):
        mine = columns == j
        if yes[mine].sum() >= MIN_ANSWERS_EACH and (~yes[mine]).sum() >= MIN_ANSWERS_EACH:
            maps[j] = platt_fit(p[mine], yes[mine], None if weights is None else weights[mine])
    return maps


def calibrate(scores: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """(N, L) probabilities through each category's map; NaN (a failed image) stays NaN."""
    z = maps[:, 0] * logit(scores) + maps[:, 1]
    out = 1.0 / (1.0 + np.exp(-z))
    return np.where(np.isnan(scores), np.nan, out).astype(np.float32)
