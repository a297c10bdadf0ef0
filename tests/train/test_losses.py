"""Each loss against values computed by hand from its paper's formula (math, not torch)."""

import math

import pytest
import torch

from spml.train.losses import compute_loss

LOGITS = [[0.0, 2.0, -1.0], [1.5, -0.5, 0.3]]
TARGETS = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def sig(x):
    return 1 / (1 + math.exp(-x))


def entries():
    for row_s, row_y in zip(LOGITS, TARGETS):
        for s, y in zip(row_s, row_y):
            yield sig(s), y


def loss(name, **kw):
    return compute_loss(name, torch.tensor(LOGITS), torch.tensor(TARGETS), **kw).item()


def test_assume_negative():
    expected = sum(-(y * math.log(p) + (1 - y) * math.log(1 - p)) for p, y in entries()) / 6
    assert loss("an") == pytest.approx(expected, rel=1e-6)
    assert loss("bce") == pytest.approx(expected, rel=1e-6)


def test_label_smoothing():
    e = 0.1
    expected = sum(-((y * (1 - e) + e / 2) * math.log(p) + (1 - (y * (1 - e) + e / 2)) * math.log(1 - p)) for p, y in entries()) / 6
    assert loss("bce-ls") == pytest.approx(expected, rel=1e-6)
    assert loss("an-ls") == pytest.approx(expected, rel=1e-6)


def test_weak_assume_negative():
    expected = sum(-math.log(p) if y else -math.log(1 - p) / 2 for p, y in entries()) / 6  # L - 1 = 2
    assert loss("wan") == pytest.approx(expected, rel=1e-6)


def test_entropy_maximization():
    alpha = 0.1
    total = 0.0
    for p, y in entries():
        if y:
            total += -math.log(p)
        else:
            h = -(p * math.log(p) + (1 - p) * math.log(1 - p))
            total += -alpha * h
    assert loss("em", alpha=alpha) == pytest.approx(total / 6, rel=1e-6)


def test_entropy_maximization_pushes_unobserved_towards_half():
    logits = torch.tensor([[3.0, -3.0]], requires_grad=True)
    compute_loss("em", logits, torch.tensor([[0.0, 0.0]])).backward()
    assert logits.grad[0, 0] > 0 and logits.grad[0, 1] < 0  # gradient descent moves both towards 0 (p = 0.5)


def test_expected_positive_regularization():
    k = 2.0
    pos = [-math.log(p) for p, y in entries() if y]
    reg = [((sum(sig(s) for s in row) - k) / 3) ** 2 for row in LOGITS]
    assert loss("epr", expected_positives=k) == pytest.approx(sum(pos) / len(pos) + sum(reg) / 2, rel=1e-6)


def test_known_mask_excludes_entries():
    known = torch.tensor([[True, False, True], [True, True, False]])
    got = compute_loss("bce", torch.tensor(LOGITS), torch.tensor(TARGETS), known).item()
    flat = list(entries())
    keep = [flat[i] for i, k in enumerate(known.flatten().tolist()) if k]
    expected = sum(-(y * math.log(p) + (1 - y) * math.log(1 - p)) for p, y in keep) / len(keep)
    assert got == pytest.approx(expected, rel=1e-6)
