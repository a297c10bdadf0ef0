"""Single-positive losses that keep per-example state or follow a schedule over the epochs: ROLE, EM+APL, the
Large-Loss family and GR.

Conventions are those of `spml.train.losses`: logits (B, L); targets (B, L) with 1 = observed positive and
0 = unobserved; `known` (B, L, bool) or None, entries with False add nothing; `negatives` (B, L, bool) or None
(none), the observed negatives, which every loss here takes as known negatives, -log(1 - p), never pseudo labelled,
rejected or corrected; a loss is the mean over the batch's B x L (known) entries, as in the reference codebases. In addition every call gets `rows` (B,), the indices of the
batch's images in the training set, and `epoch` (0-based), and the trainer calls `end_epoch(epoch)` after each
epoch. All state lives in buffers or parameters, so `state_dict()` saves it and a resumed run continues exactly.

References (read, not copied; where we differ it is said at the place). Everywhere, as in spml.train.losses:
exact log-sigmoids of the logits where the references take -log(x + 1e-5) of probabilities.
- ROLE: Cole et al. 2021, github.com/elijahcole/single-positive-multi-label (losses.py `loss_role`,
  models.py `LabelEstimator`, train.py for lr_mult).
- EM+APL: Zhou et al. 2022, github.com/Correr-Zhou/SPML-AckTheUnknown (losses.py `loss_EM_APL`,
  main.py `aysmmetric_pseudo_labeling` and the per-dataset settings).
- LL-R / LL-Ct / LL-Cp: Kim et al. 2022, github.com/snucml/LargeLossMatters (losses.py `compute_batch_loss`,
  train.py for the schedule and the permanent correction, config.py and README.md for delta_rel).
- GR: Chen et al. 2024, github.com/yan4xi1/GRLoss (losses.py `GR_loss`, models.py `KFunction` / `VFunction`,
  train.py for the schedules, config.py for the defaults).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spml.train.loss_registry import LOSSES as REGISTRY

STATEFUL_LOSSES = {name: spec.description for name, spec in REGISTRY.items() if spec.stateful}


def _masked_mean(loss_matrix: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Mean over the known entries; with every entry known it is the reference's sum / (B * L)."""
    return (loss_matrix * known).sum() / known.sum().clamp_min(1)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class StatefulLoss(torch.nn.Module):
    """Base. Holds per-example state as buffers/parameters so state_dict() saves it and training resumes exactly.

    forward(logits, targets, known, rows, epoch, *, negatives=None) -> scalar loss
        logits (B, L) float; targets (B, L) float, 1 = observed positive, 0 = unobserved; known (B, L) bool or None;
        rows (B,) long: indices of these images in the training set (0..N-1); epoch: 0-based int;
        negatives (B, L) bool or None: observed negatives (an observed positive wins over them).
    end_epoch(epoch): called after each epoch's last step (EM+APL makes its pseudo negatives here).
    extra_lr_params(): parameters that need their own optimizer group, with lr = lr_mult x the model's lr.
    """

    lr_mult = 1.0  # learning-rate multiplier for extra_lr_params()

    def __init__(self, num_images: int, num_classes: int, epochs: int):
        super().__init__()
        if num_images <= 0 or num_classes <= 0 or epochs <= 0:
            raise ValueError(f"num_images, num_classes and epochs must be positive, got {num_images}, {num_classes}, {epochs}")
        self.num_images, self.num_classes, self.epochs = int(num_images), int(num_classes), int(epochs)

    def forward(self, logits, targets, known, rows, epoch, *, negatives=None) -> torch.Tensor:
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        pass

    def extra_lr_params(self) -> list:
        return []

    def _prepare(self, logits, targets, known, rows, *, negatives=None):
        """Float logits, observed-positive mask, known mask (all True when None), rows, and the observed-negative
        mask (all False when None; never where a positive is observed)."""
        if logits.dim() != 2 or logits.shape[1] != self.num_classes or targets.shape != logits.shape:
            raise ValueError(f"expected logits and targets of shape (B, {self.num_classes}), got "
                             f"{tuple(logits.shape)} and {tuple(targets.shape)}")
        rows = torch.as_tensor(rows).long()
        if rows.shape != (logits.shape[0],):
            raise ValueError(f"rows must have shape ({logits.shape[0]},), got {tuple(rows.shape)}")
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= self.num_images):
            raise ValueError(f"rows must lie in 0..{self.num_images - 1}, got {int(rows.min())}..{int(rows.max())}")
        logits = logits.float()
        observed = targets > 0.5
        known = torch.ones_like(observed) if known is None else known.to(device=logits.device, dtype=torch.bool)
        negative = torch.zeros_like(observed) if negatives is None else \
            negatives.to(device=logits.device, dtype=torch.bool) & ~observed
        return logits, observed, known, rows, negative


class RoleLoss(StatefulLoss):
    """ROLE (Cole et al. 2021): an N x L matrix of label estimates, stored as logits, trained jointly with the model.

    Per entry, as the reference losses.py `loss_role`, for every entry alike: 0.5 * (classifier terms + estimator
    terms). The classifier fits the detached estimates, -[e log p + (1-e) log(1-p)], plus -log p on observed
    positives; the estimator fits the detached predictions, -[p log e + (1-p) log(1-e)], plus -log e on observed
    positives. Mean over B x L, plus 0.5 * (R(p) + R(e)) with R(x) = (mean_b sum_j x_bj - k)^2 / L^2 (the square
    of the batch mean of the per-image sums, as spml.train.losses.epr).
    An observed negative mirrors an observed positive on both sides: the entry's term is
    0.5 * ([-log(1-p) - e log p - (1-e) log(1-p)] + [-log(1-e) - p log e - (1-p) log(1-e)]), and its estimate
    starts at logit(1 - 0.995) where an observed positive's starts at logit(0.995).

    Initialisation as the reference models.py `LabelEstimator`: unobserved logits uniform in [-q, q],
    q = logit(0.5 + init_width) (init_width's default is the reference's), drawn from a private generator
    seeded by `seed` (creating the loss does not move the global RNG); observed positives at logit(0.995), and
    trainable like every other estimate. The loss learns which entries are observed from the targets, so an image's positives are set to
    logit(0.995) at its first batch (`initialised` remembers which rows): the same as setting them at
    construction, since a row's estimates get no gradient, hence no update, before its first batch (their
    optimizer group has no weight decay). The estimates get lr_mult = 10 x the lr (reference train.py, P['lr_mult']).

    Differences from the reference: exact log-sigmoids of the logits, not -log(x + 1e-5) (see spml.train.losses);
    entries with known False add nothing to the mean (the reference has no unknown entries).
    """

    POSITIVE_INIT = 0.995  # reference models.py: init_logit_pos = inverse_sigmoid(0.995)

    def __init__(self, num_images, num_classes, epochs, *, expected_positives, lr_mult, init_width, seed):
        super().__init__(num_images, num_classes, epochs)
        if not 0 < init_width < 0.5:
            raise ValueError(f"init_width must be in (0, 0.5), got {init_width}")
        self.expected_positives = float(expected_positives)
        self.lr_mult = float(lr_mult)
        self.init_width, self.seed = float(init_width), int(seed)
        q = _logit(0.5 + init_width)
        generator = torch.Generator().manual_seed(int(seed))
        init = q * (2 * torch.rand(self.num_images, self.num_classes, generator=generator) - 1)
        self.estimate_logits = torch.nn.Parameter(init)
        self.register_buffer("initialised", torch.zeros(self.num_images, dtype=torch.bool))

    def extra_lr_params(self) -> list:
        return [self.estimate_logits]

    def _regulariser(self, x: torch.Tensor) -> torch.Tensor:
        return (x.sum(dim=1).mean() - self.expected_positives) ** 2 / self.num_classes ** 2

    @torch.no_grad()
    def _initialise_positives(self, rows, observed, negative=None) -> None:
        rows = rows.to(self.initialised.device)
        new = ~self.initialised[rows]
        if new.any():
            fresh = rows[new]
            positives = observed[new.to(observed.device)].to(self.estimate_logits.device)
            block = self.estimate_logits.data[fresh]
            block[positives] = _logit(self.POSITIVE_INIT)
            if negative is not None:
                block[negative[new.to(negative.device)].to(self.estimate_logits.device)] = _logit(1 - self.POSITIVE_INIT)
            self.estimate_logits.data[fresh] = block
            self.initialised[fresh] = True

    def estimates(self, rows) -> torch.Tensor:
        """The current label estimates of `rows`, in [0, 1]."""
        rows = torch.as_tensor(rows, device=self.estimate_logits.device).long()
        return torch.sigmoid(self.estimate_logits[rows]).detach()

    def forward(self, logits, targets, known, rows, epoch, *, negatives=None):
        logits, observed, known, rows, negative = self._prepare(logits, targets, known, rows, negatives=negatives)
        self._initialise_positives(rows, observed, negative)
        est_logits = self.estimate_logits[rows.to(self.estimate_logits.device)].to(logits.device)
        est, p = torch.sigmoid(est_logits), torch.sigmoid(logits)
        zero = torch.zeros_like(logits)
        # classifier side: targets are the detached estimates; estimator side: the detached predictions
        cls = torch.where(observed, -F.logsigmoid(logits), torch.where(negative, -F.logsigmoid(-logits), zero)) \
            + F.binary_cross_entropy_with_logits(logits, est.detach(), reduction="none")
        estimator = torch.where(observed, -F.logsigmoid(est_logits),
                                torch.where(negative, -F.logsigmoid(-est_logits), zero)) \
            + F.binary_cross_entropy_with_logits(est_logits, p.detach(), reduction="none")
        main = _masked_mean(0.5 * (cls + estimator), known)
        return main + 0.5 * (self._regulariser(p) + self._regulariser(est))


class EmAplLoss(StatefulLoss):
    """EM + asymmetric pseudo labelling (Zhou et al. 2022).

    Per entry (reference losses.py `loss_EM_APL`): -log p on observed positives; -alpha * H(p) on unobserved
    entries, H(p) = -[p log p + (1-p) log(1-p)]; beta * -[q log p + (1-q) log(1-p)] on pseudo negatives, whose soft
    target q is the entry's score when it was pseudo labelled. Mean over B x L. An observed negative: -log(1-p);
    it is never made a pseudo label and is not one of the U_i unobserved entries below (the `observed` buffer
    holds the observed labels, positive or negative).

    Pseudo labelling (reference main.py `aysmmetric_pseudo_labeling`): after each epoch from the warm-up's last
    (reference: after 1-based epoch >= warmup_epoch, i.e. 0-based epoch >= warmup_epochs - 1), for each class i
    the floor(theta * U_i / (epochs - warmup_epochs)) lowest-scoring unobserved entries that are not yet pseudo
    labelled become pseudo negatives, U_i being the class's number of unobserved entries; so the share grows
    linearly to theta by the last epoch. The reference's round after the last epoch trains nothing and is skipped.

    Differences from the reference: the scores ranked are the (detached) training-time probabilities recorded
    by forward() during the epoch (the reference runs an extra eval-mode pass over the training set; a trainer
    wanting that can call record_scores() from such a pass before end_epoch). Pseudo labels live in their own
    bool mask, not as -q in the label matrix, so an entry scored exactly 0 is still labelled. Unknown entries
    (known False) are never pseudo labelled and add nothing.
    Defaults and per-dataset values: reference main.py, in spml.train.loss_registry (neg_proportion is theta).
    """

    def __init__(self, num_images, num_classes, epochs, *, alpha, beta, theta, warmup_epochs):
        super().__init__(num_images, num_classes, epochs)
        if not 0 <= theta <= 1:
            raise ValueError(f"theta must be in [0, 1], got {theta}")
        if warmup_epochs < 1:
            raise ValueError(f"warmup_epochs must be at least 1, got {warmup_epochs}")
        self.alpha, self.beta, self.theta = float(alpha), float(beta), float(theta)
        self.warmup_epochs = int(warmup_epochs)
        shape = (self.num_images, self.num_classes)
        self.register_buffer("scores", torch.full(shape, float("nan")))  # NaN: row not seen yet
        self.register_buffer("observed", torch.zeros(shape, dtype=torch.bool))
        self.register_buffer("known_mask", torch.ones(shape, dtype=torch.bool))
        self.register_buffer("pseudo", torch.zeros(shape, dtype=torch.bool))
        self.register_buffer("soft_targets", torch.zeros(shape))

    @torch.no_grad()
    def record_scores(self, rows, probs, observed=None, known=None) -> None:
        """Remember the probabilities (and, when given, observed labels, positive or negative, and known mask) of
        `rows`: observed entries are never pseudo labelled."""
        rows = torch.as_tensor(rows, device=self.scores.device).long()
        self.scores[rows] = probs.detach().float().to(self.scores.device)
        if observed is not None:
            self.observed[rows] = observed.to(self.observed.device, torch.bool)
        if known is not None:
            self.known_mask[rows] = known.to(self.known_mask.device, torch.bool)

    def forward(self, logits, targets, known, rows, epoch, *, negatives=None):
        logits, observed, known, rows, negative = self._prepare(logits, targets, known, rows, negatives=negatives)
        state_rows = rows.to(self.pseudo.device)
        pseudo = self.pseudo[state_rows].to(logits.device) & ~observed & ~negative
        soft = self.soft_targets[state_rows].to(logits.device)
        log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
        p = torch.sigmoid(logits)
        entropy = -(p * log_p + (1 - p) * log_not_p)
        pseudo_term = -self.beta * (soft * log_p + (1 - soft) * log_not_p)
        unobserved = torch.where(pseudo, pseudo_term, -self.alpha * entropy)
        loss = torch.where(observed, -log_p, torch.where(negative, -log_not_p, unobserved))
        self.record_scores(rows, p, observed | negative, known)
        return _masked_mean(loss, known)

    def rounds(self) -> int:
        """How many pseudo-labelling rounds feed training: after 0-based epochs warmup-1 .. epochs-2."""
        return max(self.epochs - self.warmup_epochs, 0)

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> None:
        if epoch < self.warmup_epochs - 1 or epoch >= self.epochs - 1:
            return
        unobserved = ~torch.isnan(self.scores) & ~self.observed & self.known_mask
        per_round = torch.floor(self.theta * unobserved.sum(dim=0).double() / max(self.rounds(), 1) + 1e-9).long()
        candidates = unobserved & ~self.pseudo
        ranked = self.scores.masked_fill(~candidates, float("inf"))
        order = torch.argsort(ranked, dim=0, stable=True)  # ascending: lowest scores first, per class
        rank = torch.empty_like(order)
        positions = torch.arange(self.num_images, device=order.device).unsqueeze(1).expand_as(order)
        rank.scatter_(0, order, positions)
        selected = candidates & (rank < per_round.unsqueeze(0))
        self.pseudo |= selected
        self.soft_targets.copy_(torch.where(selected, self.scores, self.soft_targets))


class LargeLossLoss(StatefulLoss):
    """LL-R / LL-Ct / LL-Cp (Kim et al. 2022): assume negative (BCE, unobserved = 0), and from the second epoch
    the unobserved entries with the largest loss in each batch are rejected (weight 0, LL-R), corrected to
    positive for that step (LL-Ct) or corrected permanently (LL-Cp). Mean over B x L (reference losses.py).
    An observed negative: -log(1 - p), as an unobserved entry before any correction, but never rejected or
    corrected (it is not among the unobserved entries picked from; it still counts in n below).

    How many: k = ceil(n * rate) of the batch's n = B x L entries (as the reference; with a known mask, n = the
    known entries), picked among the unobserved (known, not yet corrected) entries. rate = delta_rel * epoch for
    LL-R and LL-Ct (reference train.py: the clean rate starts at 1 and loses delta_rel after every epoch; k uses
    1 - clean rate).

    LL-Cp, and what the public code runs: the paper's LL-Cp corrects a fixed share, delta_rel, of each batch and
    keeps those corrections. The repository's current losses.py and train.py test `P['mod_scheme'] is 'LL-Cp'`;
    for a string parsed from the command line `is` is False, so neither the fixed share nor the permanent record
    is ever taken and `--mod_scheme LL-Cp` runs exactly LL-Ct (spml's ll-ct). An earlier revision of the
    repository, which switched on a perm_mod flag instead, ran the fixed share with permanent corrections. spml's
    ll-cp does what the paper describes: schedule "fixed" (default) uses rate = delta_rel from epoch 1 on, and
    the corrections accumulate in an N x L bool buffer, trained with target 1 in later calls. schedule "growing"
    (rate = delta_rel * epoch, with permanent corrections) is neither the paper's nor any reference run's; it is
    kept only as an option.

    Differences from the reference: exactly k entries are picked (the reference modifies every entry whose loss
    ties the k-th, and with a zero threshold would touch observed positives); observed positives are never
    picked; LL-Cp records all k entries it corrects, where the reference corrects k in the loss but records as
    permanent only those strictly above the k-th loss (k - 1 of them when there are no ties).
    delta_rel: the reference has no usable default. Its README asks for --delta_rel in {0.1, ..., 0.5}, in percent
    (config.py divides by 100; its fallback 0 would leave plain AN). spml takes a fraction: its default (in
    spml.train.loss_registry) is the README's 0.2 (%). The README gives no value per dataset, so every --preset
    uses it too.
    """

    MODES = ("reject", "correct", "permanent")

    def __init__(self, num_images, num_classes, epochs, *, mode, delta_rel, schedule):
        super().__init__(num_images, num_classes, epochs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if schedule not in ("fixed", "growing"):
            raise ValueError(f"schedule must be 'fixed' or 'growing', got {schedule!r}")
        if not 0 <= delta_rel <= 1:
            raise ValueError(f"delta_rel must be in [0, 1], got {delta_rel}")
        self.mode, self.delta_rel, self.schedule = mode, float(delta_rel), schedule
        self.last_selected = None  # (B, L) bool: the entries rejected/corrected in the last call (not state)
        if mode == "permanent":
            self.register_buffer("corrected", torch.zeros(self.num_images, self.num_classes, dtype=torch.bool))

    def rate(self, epoch: int) -> float:
        if epoch < 1:
            return 0.0
        return min(1.0, self.delta_rel if self.schedule == "fixed" else self.delta_rel * epoch)

    def forward(self, logits, targets, known, rows, epoch, *, negatives=None):
        logits, observed, known, rows, negative = self._prepare(logits, targets, known, rows, negatives=negatives)
        unobserved = ~observed & known & ~negative
        targets = observed.float()
        if self.mode == "permanent":
            corrected = self.corrected[rows.to(self.corrected.device)].to(logits.device) & unobserved
            targets = torch.where(corrected, torch.ones_like(targets), targets)
            unobserved = unobserved & ~corrected
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        selected = torch.zeros_like(observed)
        rate = self.rate(epoch)
        if rate > 0:
            # the 1e-9 keeps float error in n * rate (e.g. 3.0000000000000004) from adding an entry
            k = min(math.ceil(int(known.sum()) * rate - 1e-9), int(unobserved.sum()))
            if k > 0:
                ranked = loss.detach().masked_fill(~unobserved, float("-inf")).flatten()
                selected.view(-1)[torch.topk(ranked, k).indices] = True
            if self.mode == "reject":
                loss = torch.where(selected, torch.zeros_like(loss), loss)
            else:
                positive = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
                loss = torch.where(selected, positive, loss)
            if self.mode == "permanent" and k > 0:
                with torch.no_grad():
                    state_rows = rows.to(self.corrected.device)
                    self.corrected[state_rows] = self.corrected[state_rows] | selected.to(self.corrected.device)
        self.last_selected = selected
        return _masked_mean(loss, known)


class GeneralizedRobustLoss(StatefulLoss):
    """GR loss (Chen et al., IJCAI 2024, "Boosting Single Positive Multi-label Classification with Generalized
    Robust Loss"), as its public code runs it (github.com/yan4xi1/GRLoss: losses.py `GR_loss`, models.py
    `KFunction` / `VFunction`, train.py, config.py).

    Per entry, p = sigmoid(logit): -log p on observed positives; -log(1 - p) on observed negatives; on unobserved
    entries
        v(p) * [k(p) * L1(p) + (1 - k(p)) * L2(p)],
        k(p) = sigmoid(w p + b)                      the soft pseudo label: how likely the entry is a positive,
        v(p) = exp(-(p - mu)^2 / (2 sigma^2))        a weight that fades out entries far from mu,
        L1(p) = (1 - p^q2) / q2                      the robust (GCE) loss of calling it positive (-log p as q2 -> 0),
        L2(p) = (1 - (1 - p)^q3) / q3                that of calling it negative (q3 = 1: p itself, MAE).
    k and v are computed from the detached p (the reference's preds.detach()): they weight, they are not trained.
    Mean over the B x L entries, as the reference.

    Schedules, per epoch, linear from the start values to the end values (train.py with linear_init = 0;
    e = 0-based epoch, T = epochs): w = w0 + (wT - w0) e / T and b likewise; mu = mu0 + (muT - mu0) (e + 1) / T
    and sigma likewise. The two differ by one epoch in the reference and are kept so: k starts at (w0, b0) in the
    first epoch and never quite reaches (wT, bT); v reaches (muT, sigmaT) in the last.

    Hyperparameters beta = (w0, wT, b0, bT), alpha = (mu0, sigma0, muT, sigmaT) and q = (q2, q3); their defaults
    (spml.train.loss_registry) are config.py's. The code reads no per-dataset values (its --beta/--alpha/--q2q3
    are argparse type=list, so a value given on the command line splits into characters and cannot run), so
    these defaults are what it runs on every dataset, COCO included. Its training loop: Adam, lr 1e-5, the
    head at 10 x the lr (lr_mult), batch 8, 8 epochs, constant lr; `spml-train --preset` sets those for gr.

    Differences from the reference: exact log-sigmoids of the logits where it takes -log(p + 1e-7), and
    L1, L2 from them (p^q = exp(q log p)), so they stay exact where p underflows; entries with known False
    add nothing to the mean. Not taken: the reference's optional learnt k (is_train, a per-class logistic
    regression, off by default) and its linear_init phase, during which the schedules wait (default 0 epochs);
    spml's --mode linear-init runs its own schedule in each phase.
    """

    def __init__(self, num_images, num_classes, epochs, *, beta, alpha, q):
        super().__init__(num_images, num_classes, epochs)
        self.beta = tuple(float(x) for x in beta)
        self.alpha = tuple(float(x) for x in alpha)
        self.q = tuple(float(x) for x in q)
        if len(self.beta) != 4 or len(self.alpha) != 4 or len(self.q) != 2:
            raise ValueError(f"beta and alpha take 4 values, q 2; got {len(self.beta)}, {len(self.alpha)}, "
                             f"{len(self.q)}")
        if not all(q > 0 for q in self.q):
            raise ValueError(f"q (q2, q3) must be positive, got {self.q}")
        if not (self.alpha[1] > 0 and self.alpha[3] > 0):
            raise ValueError(f"alpha's sigmas (2nd and 4th values) must be positive, got {self.alpha}")

    def schedule(self, epoch: int) -> tuple[float, float, float, float]:
        """(w, b, mu, sigma) of 0-based `epoch`."""
        (w0, wt, b0, bt), (mu0, s0, mut, st) = self.beta, self.alpha
        e, total = max(int(epoch), 0), self.epochs
        k_share, v_share = e / total, (e + 1) / total
        return (w0 + (wt - w0) * k_share, b0 + (bt - b0) * k_share,
                mu0 + (mut - mu0) * v_share, s0 + (st - s0) * v_share)

    def forward(self, logits, targets, known, rows, epoch, *, negatives=None):
        logits, observed, known, rows, negative = self._prepare(logits, targets, known, rows, negatives=negatives)
        w, b, mu, sigma = self.schedule(epoch)
        q2, q3 = self.q
        log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
        p = torch.sigmoid(logits).detach()
        k = torch.sigmoid(w * p + b)
        v = torch.exp(-0.5 * ((p - mu) / sigma) ** 2)
        as_positive = -torch.expm1(q2 * log_p) / q2  # (1 - p^q2) / q2
        as_negative = -torch.expm1(q3 * log_not_p) / q3  # (1 - (1 - p)^q3) / q3
        unobserved = v * (k * as_positive + (1 - k) * as_negative)
        loss = torch.where(observed, -log_p, torch.where(negative, -log_not_p, unobserved))
        return _masked_mean(loss, known)


def create_stateful_loss(name: str, num_images: int, num_classes: int, epochs: int, **hparams) -> StatefulLoss:
    """Stateful loss `name` of spml.train.loss_registry: its registered defaults overridden by `hparams` (None
    values keep the default)."""
    spec = REGISTRY.get(name)
    if spec is None or not spec.stateful:
        raise ValueError(f"unknown stateful loss {name!r}; valid: {', '.join(STATEFUL_LOSSES)}")
    return spec.implementation()(num_images, num_classes, epochs, **spec.fixed, **spec.arguments(hparams))
