"""Multi-label losses for single-positive, full and pseudo labels.

Every loss takes logits (B, L) and targets (B, L) in [0, 1]: for single-positive data 1 marks the observed
positive and 0 an unobserved label; for full or pseudo labels 0 is a negative. `known` (B, L, bool), where given,
marks the entries with a label at all (an ignore band's unknowns are False) and the others add nothing.
As in the reference codebases, a loss is the mean over the batch's B x L entries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _mean(loss_matrix: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor:
    if known is None:
        return loss_matrix.mean()
    return (loss_matrix * known).sum() / known.sum().clamp_min(1)


def bce(logits, targets, known=None, smoothing: float = 0.0):
    """Binary cross-entropy on every (known) entry; `smoothing` e maps targets to y(1-e) + e/2 (bce-ls)."""
    if smoothing:
        targets = targets * (1 - smoothing) + smoothing / 2
    return _mean(F.binary_cross_entropy_with_logits(logits, targets, reduction="none"), known)


def assume_negative(logits, targets, known=None, smoothing: float = 0.0):
    """AN: single-positive labels with every unobserved label taken as a negative (Cole et al. 2021)."""
    return bce(logits, targets, known, smoothing)


def weak_assume_negative(logits, targets, known=None):
    """WAN: AN with the negative terms down-weighted by 1/(L-1)."""
    num_classes = logits.shape[1]
    weight = torch.where(targets > 0.5, 1.0, 1.0 / max(num_classes - 1, 1))
    return _mean(weight * F.binary_cross_entropy_with_logits(logits, targets, reduction="none"), known)


def entropy_maximization(logits, targets, known=None, alpha: float = 0.1):
    """EM (Zhou et al. 2022): -log p on observed positives, -alpha * H(p) on unobserved labels, which pushes
    their predictions towards 0.5 instead of 0, so unobserved positives are not learnt as negatives."""
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    entropy = -(p * log_p + (1 - p) * log_not_p)
    observed = targets > 0.5
    return _mean(torch.where(observed, -log_p, -alpha * entropy), known)


def expected_positive_regularization(logits, targets, known=None, expected_positives: float = 2.9):
    """EPR (Cole et al. 2021): -log p on observed positives plus ((sum_j p_j - k) / L)^2 per image."""
    num_classes = logits.shape[1]
    observed = targets > 0.5
    positive_term = torch.where(observed, -F.logsigmoid(logits), torch.zeros_like(logits))
    positive_term = positive_term.sum() / observed.sum().clamp_min(1)
    reg = ((torch.sigmoid(logits).sum(dim=1) - expected_positives) / num_classes) ** 2
    return positive_term + reg.mean()


LOSSES = {
    "an": "assume negative: unobserved labels are negatives",
    "an-ls": "assume negative with label smoothing (0.1)",
    "wan": "weak assume negative: negatives weighted 1/(L-1)",
    "epr": "expected positive regularisation",
    "em": "entropy maximisation on unobserved labels (Zhou et al. 2022)",
    "bce": "binary cross-entropy on full or pseudo labels",
    "bce-ls": "binary cross-entropy with label smoothing (0.1), the seed paper's student",
}


def compute_loss(name: str, logits, targets, known=None, *, alpha: float = 0.1, smoothing: float = 0.1,
                 expected_positives: float = 2.9):
    if name == "an":
        return assume_negative(logits, targets, known)
    if name == "an-ls":
        return assume_negative(logits, targets, known, smoothing)
    if name == "wan":
        return weak_assume_negative(logits, targets, known)
    if name == "epr":
        return expected_positive_regularization(logits, targets, known, expected_positives)
    if name == "em":
        return entropy_maximization(logits, targets, known, alpha)
    if name == "bce":
        return bce(logits, targets, known)
    if name == "bce-ls":
        return bce(logits, targets, known, smoothing)
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
