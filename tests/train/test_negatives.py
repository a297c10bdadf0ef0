"""Observed negatives (a person's "no": each image's neg_category_ids) in every teacher loss, against values written
out by hand in numpy float64: -log(1 - p) on an observed negative, each loss's own rule on the unobserved entries.
Without negatives (None, or an all-False mask) every loss is exactly what it was."""

import math

import numpy as np
import pytest
import torch

from spml.train.loss_registry import LOSSES
from spml.train.losses import compute_loss
from spml.train.stateful_losses import create_stateful_loss

LOGITS = np.array([[0.0, 2.0, -1.0, 0.7], [1.5, -0.5, 0.3, 3.0], [-2.0, 1.2, 0.4, -0.3]])
TARGETS = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]])
# observed negatives; (0, 0) is also an observed positive: the positive wins
NEGATIVES = np.array([[True, True, False, False], [False, False, False, True], [True, False, False, False]])
B, L = LOGITS.shape
P = 1 / (1 + np.exp(-LOGITS))
POS = TARGETS == 1
NEG = NEGATIVES & ~POS
UNOBS = ~POS & ~NEG


def t(x, **kw):
    return torch.tensor(np.asarray(x), **kw)


def entropy(p):
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def three_way(on_positive, on_negative, on_unobserved):
    return np.where(POS, on_positive, np.where(NEG, on_negative, on_unobserved))


def stateless(name, negatives=NEGATIVES, **kw):
    neg = None if negatives is None else t(negatives)
    return compute_loss(name, t(LOGITS), t(TARGETS), None, negatives=neg, **kw).item()


def stateful(loss, negatives=NEGATIVES, epoch=0, rows=(0, 1, 2), logits=LOGITS):
    neg = None if negatives is None else t(negatives)
    return loss(t(logits), t(TARGETS), None, t(list(rows)), epoch, negatives=neg)


# --- nothing changes without observed negatives ------------------------------------------------------------------

@pytest.mark.parametrize("name", list(LOSSES))
def test_without_negatives_every_loss_is_unchanged(name):
    no_negatives = np.zeros_like(NEGATIVES)
    if LOSSES[name].stateful:
        values = []
        for negatives in (None, no_negatives):
            loss = create_stateful_loss(name, 4, L, 3, **({"theta": 1.0, "warmup_epochs": 1} if name == "em-apl" else {}))
            values.append([stateful(loss, negatives, epoch=e).item() for e in (0, 1, 2)])
        assert values[0] == values[1]
    else:
        assert stateless(name, None) == stateless(name, no_negatives)


# --- the stateless losses -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["an", "bce", "an-ls", "bce-ls"])
def test_an_and_bce_are_unchanged_by_negatives(name):
    # their targets are 0 wherever no positive is observed: an observed negative is a negative already
    assert stateless(name) == stateless(name, None)
    if name in ("an", "bce"):
        assert stateless(name) == pytest.approx(np.where(POS, -np.log(P), -np.log(1 - P)).mean(), rel=1e-12)


def test_wan_gives_an_observed_negative_weight_one():
    want = three_way(-np.log(P), -np.log(1 - P), -np.log(1 - P) / (L - 1)).mean()
    assert stateless("wan") == pytest.approx(want, rel=1e-7)  # wan's weights are float32, as before
    assert stateless("wan") != pytest.approx(stateless("wan", None), rel=1e-6)


@pytest.mark.parametrize("alpha", [0.1, 0.3])
def test_em_takes_an_observed_negative_as_negative(alpha):
    want = three_way(-np.log(P), -np.log(1 - P), -alpha * entropy(P)).mean()
    assert stateless("em", alpha=alpha) == pytest.approx(want, rel=1e-12)


def test_em_gradient_on_an_observed_negative_is_p():
    logits = t(LOGITS, requires_grad=True)
    compute_loss("em", logits, t(TARGETS), None, negatives=t(NEGATIVES), alpha=0.1).backward()
    # d(-log(1 - p))/ds = p, over the B x L mean
    np.testing.assert_allclose(logits.grad.numpy()[NEG], P[NEG] / (B * L), rtol=1e-12)


def test_epr_takes_an_observed_negative_as_negative():
    k = 1.5
    first = three_way(-np.log(P), -np.log(1 - P), 0.0).mean()
    reg = (P.sum(axis=1).mean() - k) ** 2 / L ** 2
    assert stateless("epr", expected_positives=k) == pytest.approx(first + reg, rel=1e-12)


def test_a_known_mask_still_drops_observed_negatives():
    known = np.ones_like(NEGATIVES)
    known[0, 1] = False  # an observed negative
    value = compute_loss("em", t(LOGITS), t(TARGETS), t(known), negatives=t(NEGATIVES), alpha=0.1).item()
    per_entry = three_way(-np.log(P), -np.log(1 - P), -0.1 * entropy(P))
    assert value == pytest.approx(per_entry[known].mean(), rel=1e-12)


# --- ROLE ---------------------------------------------------------------------------------------------------------

EST = np.array([[0.7, -0.4, 1.1, 0.0], [0.2, 0.9, -1.3, 0.5], [-0.6, 0.3, 0.8, -1.0]])


def test_role_mirrors_an_observed_positive_on_both_sides():
    k = 1.5
    loss = create_stateful_loss("role", 3, L, 2, expected_positives=k)
    with torch.no_grad():
        loss.estimate_logits.copy_(t(EST, dtype=torch.float32))
        loss.initialised[:] = True  # keep the estimates set here
    logits = t(LOGITS, requires_grad=True)
    value = loss(logits, t(TARGETS), None, t([0, 1, 2]), 0, negatives=t(NEGATIVES))
    value.backward()
    e = 1 / (1 + np.exp(-EST.astype(np.float32).astype(np.float64)))
    cls = three_way(-np.log(P), -np.log(1 - P), 0.0) - (e * np.log(P) + (1 - e) * np.log(1 - P))
    est = three_way(-np.log(e), -np.log(1 - e), 0.0) - (P * np.log(e) + (1 - P) * np.log(1 - e))
    reg = lambda x: (x.sum(axis=1).mean() - k) ** 2 / L ** 2  # noqa: E731
    assert value.item() == pytest.approx((0.5 * (cls + est)).mean() + 0.5 * (reg(P) + reg(e)), rel=1e-6)
    # the estimator side: d/d est_logit of 0.5 [-log(1-e) + BCE(e; p)] / (B L) + the regulariser's
    want = 0.5 * (np.where(NEG, e, 0.0) + np.where(POS, -(1 - e), 0.0) + (e - P)) / (B * L) \
        + (e.sum(axis=1).mean() - k) / L ** 2 / B * e * (1 - e)
    np.testing.assert_allclose(loss.estimate_logits.grad.numpy(), want, rtol=1e-5, atol=1e-9)


def test_role_starts_an_observed_negatives_estimate_low():
    loss = create_stateful_loss("role", 3, L, 2)
    before = loss.estimate_logits.detach().clone()
    stateful(loss)
    start = loss.estimate_logits.detach()
    assert torch.allclose(start[torch.from_numpy(NEG)], torch.tensor(math.log(0.005 / 0.995)))
    assert torch.allclose(start[torch.from_numpy(POS)], torch.tensor(math.log(0.995 / 0.005)))
    assert torch.equal(start[torch.from_numpy(UNOBS)], before[torch.from_numpy(UNOBS)])


# --- EM + APL -----------------------------------------------------------------------------------------------------

def test_em_apl_value_and_a_negative_is_never_a_pseudo_label():
    alpha, beta = 0.1, 0.9
    loss = create_stateful_loss("em-apl", 3, L, 3, alpha=alpha, beta=beta, theta=1.0, warmup_epochs=1)
    q = 0.2
    with torch.no_grad():  # two pseudo negatives from an earlier round: (1, 1) unobserved, (1, 3) now observed no
        loss.pseudo[1, 1] = loss.pseudo[1, 3] = True
        loss.soft_targets[1, 1] = loss.soft_targets[1, 3] = q
    value = stateful(loss).item()
    pseudo = np.zeros_like(NEG)
    pseudo[1, 1] = True
    unobserved = np.where(pseudo, -beta * (q * np.log(P) + (1 - q) * np.log(1 - P)), -alpha * entropy(P))
    assert value == pytest.approx(three_way(-np.log(P), -np.log(1 - P), unobserved).mean(), rel=1e-6)


def test_em_apl_pseudo_labels_only_unobserved_entries_and_counts_only_them():
    # negatives at the lowest scores: were they unobserved, they would be the first pseudo negatives
    loss = create_stateful_loss("em-apl", 3, L, 3, alpha=0.1, beta=0.9, theta=1.0, warmup_epochs=1)
    logits = np.where(NEG, -9.0, LOGITS)
    stateful(loss, logits=logits)
    loss.end_epoch(0)
    # per class: floor(theta * U_j / rounds), rounds = 3 - 1; U_j the class's unobserved entries (negatives not counted)
    unobserved = UNOBS
    per_round = np.floor(1.0 * unobserved.sum(axis=0) / 2 + 1e-9).astype(int)
    want = np.zeros_like(NEG)
    for j in range(L):
        rows = np.flatnonzero(unobserved[:, j])
        lowest = rows[np.argsort(logits[rows, j], kind="stable")][:per_round[j]]
        want[lowest, j] = True
    assert per_round.tolist() == [0, 0, 1, 1]  # counting class 0's negative, (2, 0), would make it 1: and pick it
    assert np.array_equal(loss.pseudo.numpy(), want)
    assert not (loss.pseudo.numpy() & NEG).any()


# --- LL-R / LL-Ct / LL-Cp -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ll-r", "ll-ct", "ll-cp"])
def test_large_loss_never_rejects_or_corrects_an_observed_negative(name):
    # the negatives get the largest logits, so the largest losses as negatives: they would be picked first
    logits = np.where(NEG, 5.0, LOGITS)
    p = 1 / (1 + np.exp(-logits))
    delta = 0.2
    loss = create_stateful_loss(name, 3, L, 3, delta_rel=delta)
    value = stateful(loss, epoch=1, logits=logits).item()
    as_negative = -np.log(1 - p)
    rate = delta  # epoch 1: delta_rel x 1 (growing) or delta_rel (fixed) alike
    k = math.ceil(B * L * rate - 1e-9)
    ranked = np.where(UNOBS, as_negative, -np.inf).ravel()
    picked = np.zeros(B * L, bool)
    picked[np.argsort(-ranked, kind="stable")[:k]] = True
    picked = picked.reshape(B, L)
    picked_value = 0.0 if name == "ll-r" else -np.log(p)
    want = np.where(POS, -np.log(p), np.where(picked, picked_value, as_negative)).mean()
    assert value == pytest.approx(want, rel=1e-6)
    assert np.array_equal(loss.last_selected.numpy(), picked) and not (picked & NEG).any()
    if name == "ll-cp":
        assert np.array_equal(loss.corrected.numpy(), picked)


# --- GR -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("epoch", [0, 2])
def test_gr_takes_an_observed_negative_as_negative(epoch):
    loss = create_stateful_loss("gr", 3, L, 3)
    w, b, mu, sigma = loss.schedule(epoch)
    q2, q3 = loss.q
    logits = t(LOGITS, requires_grad=True)
    value = loss(logits, t(TARGETS), None, t([0, 1, 2]), epoch, negatives=t(NEGATIVES))
    value.backward()
    k = 1 / (1 + np.exp(-(w * P + b)))
    v = np.exp(-0.5 * ((P - mu) / sigma) ** 2)
    unobserved = v * (k * (1 - P ** q2) / q2 + (1 - k) * (1 - (1 - P) ** q3) / q3)
    assert value.item() == pytest.approx(three_way(-np.log(P), -np.log(1 - P), unobserved).mean(), rel=1e-6)  # float32 inside
    np.testing.assert_allclose(logits.grad.numpy()[NEG], P[NEG] / (B * L), rtol=1e-5)
