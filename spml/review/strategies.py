"""How `spml-review select` ranks the questions it could ask: one named function per strategy and unit.

Every function returns priority keys, larger first; the selector keeps the largest within the budget and breaks
equal keys by a seeded random draw, never by file order. A pair is (image, category) with the teacher's
probability `p` and the labeling threshold `tau` of that category, read from the labels file.

Why not "nearest 0.5": an EM teacher's entropy term holds the scores of unobserved pairs near 0.5 by design, so
closeness to 0.5 measures what the loss did, not what the teacher does not know (issue 20 measured it: questions
chosen that way made the retrained teacher worse than asking nothing). What decides a pseudo label is the threshold
tau the labeler applied: a pair just above tau is a pseudo positive that is nearly a negative and the other way
round, so an answer there is the one most likely to flip a written label. `uncertainty` therefore ranks by
closeness to the labels file's tau (one per category where the labeler used per-category thresholds).

Answers chosen by the model are not missing at random; trained on as if they were, they bias a teacher. `weighted`
keeps every unknown pair's chance above zero and records the weight it sampled with, so a trainer can undo the
selection (Horvitz-Thompson weighting), and `random` is the baseline every other strategy is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# `weighted`: the smallest sampling weight a pair can have, so that a confident pair can still be drawn
WEIGHT_FLOOR = 0.05


def closeness_to_tau(p: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """1 at tau, falling linearly to 0 at the farther end of [0, 1]: how near a pseudo label is to flipping."""
    span = np.maximum(tau, 1.0 - tau)
    return 1.0 - np.abs(p - tau) / np.where(span > 0, span, 1.0)


def random_pairs(p: np.ndarray, tau: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Uniform over the unknown pairs: the largest B of independent uniform keys are a uniform sample of B."""
    return u


def uncertainty_pairs(p: np.ndarray, tau: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The pairs whose probability is nearest the labeling threshold tau (not 0.5: see the module's docstring)."""
    return -np.abs(p - tau)


def sampling_weights(p: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """`weighted`'s weight of each pair: its closeness to tau, never below WEIGHT_FLOOR."""
    return np.maximum(closeness_to_tau(p, tau), WEIGHT_FLOOR)


def weighted_pairs(p: np.ndarray, tau: np.ndarray, u: np.ndarray) -> np.ndarray:
    """A sample without replacement with chances proportional to `sampling_weights` (Efraimidis and Spirakis'
    keys u^(1/w), as logarithms): near-tau pairs are asked more often, every unknown pair sometimes."""
    return np.log(np.maximum(u, np.finfo(np.float64).tiny)) / sampling_weights(p, tau)


def random_image(p: np.ndarray, tau: np.ndarray, u: float) -> float:
    """Uniform over images with an unknown pair, whatever their number of unknown pairs."""
    return u


def uncertainty_image(p: np.ndarray, tau: np.ndarray, u: float) -> float:
    """An image ranks by its most uncertain unknown pair (nearest tau)."""
    return float(np.max(-np.abs(p - tau)))


def weighted_image(p: np.ndarray, tau: np.ndarray, u: float) -> float:
    """Images sampled with chances proportional to the mean weight of their unknown pairs."""
    return float(np.log(max(u, np.finfo(np.float64).tiny)) / np.mean(sampling_weights(p, tau)))


@dataclass(frozen=True)
class Strategy:
    """A strategy's two rankings: of pairs (`--unit pair`) and of images (`--unit image`)."""

    name: str
    pairs: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    image: Callable[[np.ndarray, np.ndarray, float], float]
    weights: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # recorded per question, to undo the choice


STRATEGIES = {
    "random": Strategy("random", random_pairs, random_image),
    "uncertainty": Strategy("uncertainty", uncertainty_pairs, uncertainty_image),
    "weighted": Strategy("weighted", weighted_pairs, weighted_image, sampling_weights),
}
