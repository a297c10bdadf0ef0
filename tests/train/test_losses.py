"""Each loss against the reference code's formula written out here in numpy float64 (Cole et al.'s losses.py:
a B x L loss matrix, summed and divided by B * L, plus a regulariser), never through spml's own code.

The references take -log(x + 1e-5); spml takes exact log-sigmoids. The reference functions below take that eps
as an argument: with eps = 0 they must agree with spml to float precision, and the last tests show how large the
difference is with the reference's eps."""

import numpy as np
import pytest
import torch

from spml.train.losses import compute_loss

RNG = np.random.default_rng(0)
B, L = 6, 5
LOGITS = RNG.normal(0, 2, (B, L))
TARGETS = np.zeros((B, L))
TARGETS[np.arange(B), RNG.integers(0, L, B)] = 1.0  # one observed positive per image


def neg_log(x, eps):
    return -np.log(x + eps)


def sigmoid(s):
    return 1 / (1 + np.exp(-s))


def ref_an(s, y, eps=0.0):
    p = sigmoid(s)
    return np.where(y == 1, neg_log(p, eps), neg_log(1 - p, eps)).sum() / y.size


def ref_an_ls(s, y, ls_coef=0.1, eps=0.0):  # loss_an_ls / loss_bce_ls
    p = sigmoid(s)
    pos = (1 - ls_coef) * neg_log(p, eps) + ls_coef * neg_log(1 - p, eps)
    neg = (1 - ls_coef) * neg_log(1 - p, eps) + ls_coef * neg_log(p, eps)
    return np.where(y == 1, pos, neg).sum() / y.size


def ref_wan(s, y, eps=0.0):
    p = sigmoid(s)
    return np.where(y == 1, neg_log(p, eps), neg_log(1 - p, eps) / (y.shape[1] - 1)).sum() / y.size


def ref_epr(s, y, k, eps=0.0):
    p = sigmoid(s)
    main = np.where(y == 1, neg_log(p, eps), 0.0).sum() / y.size
    reg = (p.sum(axis=1).mean(axis=0) - k) ** 2 / y.shape[1] ** 2
    return main + reg


def ref_em(s, y, alpha, eps=0.0):  # Zhou et al. loss_EM
    p = sigmoid(s)
    entropy = -(p * np.log(p + eps) + (1 - p) * np.log(1 - p + eps))
    return np.where(y == 1, neg_log(p, eps), -alpha * entropy).sum() / y.size


def ours(name, logits=LOGITS, targets=TARGETS, **kw):
    return compute_loss(name, torch.tensor(logits), torch.tensor(targets), **kw).item()  # float64 in, float64 out


def test_assume_negative_and_bce():
    assert ours("an") == pytest.approx(ref_an(LOGITS, TARGETS), rel=1e-12)
    assert ours("bce") == pytest.approx(ref_an(LOGITS, TARGETS), rel=1e-12)


@pytest.mark.parametrize("ls_coef", [0.1, 0.3])
def test_label_smoothing_targets_one_minus_e_and_e(ls_coef):
    want = ref_an_ls(LOGITS, TARGETS, ls_coef)
    assert ours("an-ls", ls_coef=ls_coef) == pytest.approx(want, rel=1e-12)
    assert ours("bce-ls", ls_coef=ls_coef) == pytest.approx(want, rel=1e-12)
    # the minimum sits at p = 1 - e for a positive and p = e for a negative (not spml's earlier 1 - e/2 and e/2)
    logits = torch.tensor([[np.log((1 - ls_coef) / ls_coef), np.log(ls_coef / (1 - ls_coef))]], requires_grad=True)
    compute_loss("an-ls", logits, torch.tensor([[1.0, 0.0]]), ls_coef=ls_coef).backward()
    assert logits.grad.abs().max().item() < 1e-7


def test_weak_assume_negative():
    assert ours("wan") == pytest.approx(ref_wan(LOGITS, TARGETS), rel=1e-12)


@pytest.mark.parametrize("k", [1.0, 2.9])
def test_expected_positive_regularization(k):
    assert ours("epr", expected_positives=k) == pytest.approx(ref_epr(LOGITS, TARGETS, k), rel=1e-12)


def test_epr_by_hand_on_two_images():
    # written out: positives -log p at (0, 0) and (1, 2), summed over B x L = 6; (mean_b sum_j p_bj - k)^2 / L^2
    s = np.array([[0.0, 2.0, -1.0], [1.5, -0.5, 0.3]])
    y = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    p = sigmoid(s)
    want = (-np.log(p[0, 0]) - np.log(p[1, 2])) / 6 + ((p[0].sum() + p[1].sum()) / 2 - 2.0) ** 2 / 9
    assert ours("epr", s, y, expected_positives=2.0) == pytest.approx(want, rel=1e-12)


def test_entropy_maximization():
    assert ours("em", alpha=0.2) == pytest.approx(ref_em(LOGITS, TARGETS, 0.2), rel=1e-12)


def test_entropy_maximization_pushes_unobserved_towards_half():
    logits = torch.tensor([[3.0, -3.0]], requires_grad=True)
    compute_loss("em", logits, torch.tensor([[0.0, 0.0]])).backward()
    assert logits.grad[0, 0] > 0 and logits.grad[0, 1] < 0  # gradient descent moves both towards 0 (p = 0.5)


def test_known_mask_excludes_entries():
    known = RNG.random((B, L)) > 0.3
    got = compute_loss("bce", torch.tensor(LOGITS), torch.tensor(TARGETS), torch.tensor(known)).item()
    p = sigmoid(LOGITS)
    terms = np.where(TARGETS == 1, -np.log(p), -np.log(1 - p))
    assert got == pytest.approx(terms[known].mean(), rel=1e-12)


def test_reference_eps_changes_values_little_at_moderate_logits():
    for name, ref in (("an", ref_an), ("wan", ref_wan)):
        diff = abs(ours(name) - ref(LOGITS, TARGETS, eps=1e-5))
        assert 0 < diff < 1e-4, name


def test_logsigmoid_keeps_the_gradient_where_the_references_eps_kills_it():
    # an observed positive at logit -15: d/ds -log(sigmoid(s) + 1e-5) = -p(1-p) / (p + 1e-5)
    s = -15.0
    p = sigmoid(s)
    ref_grad = -p * (1 - p) / (p + 1e-5)
    assert ref_grad == pytest.approx(-0.0297, abs=5e-4)
    logits = torch.tensor([[s]], dtype=torch.float64, requires_grad=True)
    compute_loss("an", logits, torch.tensor([[1.0]], dtype=torch.float64)).backward()
    assert logits.grad.item() == pytest.approx(-(1 - p), rel=1e-12)  # -1.0: exact log-sigmoid
    assert abs(logits.grad.item()) > 30 * abs(ref_grad)
