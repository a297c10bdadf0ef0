"""Multi-label losses for single-positive, full and pseudo labels.

Every loss takes logits (B, L) and targets (B, L) in [0, 1]: for single-positive data 1 marks the observed
positive and 0 an unobserved label; for full or pseudo labels 0 is a negative. `known` (B, L, bool), where given,
marks the entries with a label at all (an ignore band's unknowns are False) and the others add nothing.
`negatives` (B, L, bool), where given, marks observed negatives (a person's "no", each image's
`neg_category_ids`): every loss takes them as known negatives, -log(1 - p), and keeps its own rule for the
unobserved entries; None (the default) is none observed, and every loss is then exactly what it was. An entry
that is both an observed positive and an observed negative counts as positive (spml.data writes them disjoint).
As in the reference codebases, a loss is the mean over the batch's B x L entries.

References (read, not copied): Cole et al. 2021, github.com/elijahcole/single-positive-multi-label, losses.py
(`loss_an`, `loss_an_ls`, `loss_bce_ls`, `loss_wan`, `loss_epr`); Zhou et al. 2022,
github.com/Correr-Zhou/SPML-AckTheUnknown, losses.py (EM).

One deliberate difference, everywhere: the references take -log(p + 1e-5) and -log(1 - p + 1e-5) of probabilities;
spml takes exact log-sigmoids of the logits. The values agree to ~1e-5 / p, but the reference's gradient vanishes
where its eps dominates: for an observed positive at logit -15 the reference's d loss / d logit is about -0.03,
spml's -1.0, so a confidently wrong positive keeps being corrected (tests/train/test_losses.py shows both).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spml.train.loss_registry import LOSSES as REGISTRY


def _mean(loss_matrix: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor:
    if known is None:
        return loss_matrix.mean()
    return (loss_matrix * known).sum() / known.sum().clamp_min(1)


def observed_negatives(negatives, observed: torch.Tensor) -> torch.Tensor:
    """The (B, L) bool mask of observed negatives (all False for None), an observed positive excepted."""
    if negatives is None:
        return torch.zeros_like(observed)
    return negatives.to(device=observed.device, dtype=torch.bool) & ~observed


# bce, an, an-ls: `negatives` changes nothing. Their targets are 0 wherever no positive is observed, so an observed
# negative is already -log(1 - p) (an-ls: smoothed, as every label, observed positives included, is smoothed).
def bce(logits, targets, known=None, ls_coef: float = 0.0, *, negatives=None):  # 0: no smoothing (bce, an)
    """Binary cross-entropy on every (known) entry. With label smoothing (bce-ls, an-ls) the target is
    y(1 - e) + (1 - y)e, e = ls_coef: positives trained towards 1 - e and negatives towards e, as the
    reference's (1-e)(-log p) + e(-log(1-p)) on positives and its mirror on negatives. Soft targets (a teacher's
    probabilities) are mapped by the same line, y(1 - 2e) + e. `negatives` is not read: the targets say it."""
    if ls_coef:
        targets = targets * (1 - ls_coef) + (1 - targets) * ls_coef
    return _mean(F.binary_cross_entropy_with_logits(logits, targets, reduction="none"), known)


def assume_negative(logits, targets, known=None, ls_coef: float = 0.0, *, negatives=None):
    """AN: single-positive labels with every unobserved label taken as a negative (Cole et al. 2021). An observed
    negative is a negative like the unobserved ones: nothing changes."""
    return bce(logits, targets, known, ls_coef)


def weak_assume_negative(logits, targets, known=None, *, negatives=None):
    """WAN: AN with the negative terms of the unobserved labels down-weighted by 1/(L-1). An observed negative is
    certain, not assumed: it keeps weight 1, -log(1 - p), like an observed positive's -log p. Without observed
    negatives this is exactly the reference's WAN."""
    num_classes = logits.shape[1]
    observed = targets > 0.5
    certain = observed | observed_negatives(negatives, observed)
    weight = torch.where(certain, 1.0, 1.0 / max(num_classes - 1, 1))
    return _mean(weight * F.binary_cross_entropy_with_logits(logits, targets, reduction="none"), known)


def entropy_maximization(logits, targets, known=None, *, alpha: float, negatives=None):
    """EM (Zhou et al. 2022): -log p on observed positives, -alpha * H(p) on unobserved labels, which pushes
    their predictions towards 0.5 instead of 0, so unobserved positives are not learnt as negatives. An observed
    negative: -log(1 - p)."""
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    entropy = -(p * log_p + (1 - p) * log_not_p)
    observed = targets > 0.5
    negative = observed_negatives(negatives, observed)
    return _mean(torch.where(observed, -log_p, torch.where(negative, -log_not_p, -alpha * entropy)), known)


def expected_positive_regularization(logits, targets, known=None, *, expected_positives: float, negatives=None):
    """EPR (Cole et al. 2021, `loss_epr`): -log p on the observed positives, -log(1 - p) on the observed
    negatives, zero elsewhere, averaged over the B x L (known) entries like every other loss; plus
    ((1/B sum_b sum_j p_bj) - k)^2 / L^2, the square of the batch mean of the expected positives per image (not
    the mean of per-image squares). The regulariser counts every entry, known or not: k is a number of positives
    per image."""
    num_classes = logits.shape[1]
    observed = targets > 0.5
    negative = observed_negatives(negatives, observed)
    zero = torch.zeros_like(logits)
    positive_term = _mean(torch.where(observed, -F.logsigmoid(logits),
                                      torch.where(negative, -F.logsigmoid(-logits), zero)), known)
    reg = (torch.sigmoid(logits).sum(dim=1).mean() - expected_positives) ** 2 / num_classes ** 2
    return positive_term + reg


LOSSES = {name: spec.description for name, spec in REGISTRY.items() if not spec.stateful}


def compute_loss(name: str, logits, targets, known=None, *, negatives=None, **hparams):
    """Loss `name` of spml.train.loss_registry, with its registered defaults for the hyperparameters not given;
    `negatives`: the observed negatives (B, L, bool) or None."""
    spec = REGISTRY.get(name)
    if spec is None or spec.stateful:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    return spec.implementation()(logits, targets, known, negatives=negatives, **spec.arguments(hparams))
