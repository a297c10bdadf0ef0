"""GR loss (Chen et al. 2024) against the public code's formulas written out in numpy float64 (losses.py
`GR_loss`, models.py `KFunction` / `VFunction`, train.py's schedules): values, gradients, the schedules over
the epochs, the known mask, and the CLI's options reaching the checkpoint."""

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from spml.train.loss_registry import LOSSES
from spml.train.stateful_losses import GeneralizedRobustLoss, create_stateful_loss

BETA, ALPHA, Q = (0.0, 2.0, -2.0, -2.0), (0.5, 2.0, 0.8, 0.5), (0.01, 1.0)


def ref_schedule(epoch_1based, num_epochs, beta=BETA, alpha=ALPHA, linear_init=0):
    """train.py's per-epoch values, as written there (1-based epochs)."""
    n = linear_init
    w0, wt, b0, bt = beta
    w = w0 + (wt - w0) * max(epoch_1based - n - 1, 0) / (num_epochs - n)
    b = b0 + (bt - b0) * max(epoch_1based - n - 1, 0) / (num_epochs - n)
    mu0, s0, mut, st = alpha
    mu = mu0 + (mut - mu0) * max(epoch_1based - n, 0) / (num_epochs - n)
    sigma = s0 + (st - s0) * max(epoch_1based - n, 0) / (num_epochs - n)
    return w, b, mu, sigma


def ref_gr(s, y, w, b, mu, sigma, q2, q3, eps=0.0):
    """GR_loss in numpy float64: -log p on observed positives; V (K L1 + (1 - K) L2) elsewhere, with
    K = 1/(1 + exp(-(w p + b))), V = exp(-0.5 ((p - mu)/sigma)^2), L1 = (1 - p^q2)/q2, L2 = (1 - (1-p)^q3)/q3;
    mean over every entry. Also d loss / d logit, K and V held constant (detached in the reference)."""
    s, y = np.asarray(s, np.float64), np.asarray(y, np.float64)
    p = 1 / (1 + np.exp(-s))
    k = 1 / (1 + np.exp(-(w * p + b)))
    v = np.exp(-0.5 * ((p - mu) / sigma) ** 2)
    l1 = (1 - p ** q2) / q2
    l2 = (1 - (1 - p) ** q3) / q3
    loss = np.where(y == 1, -np.log(p + eps), v * (k * l1 + (1 - k) * l2))
    # dp/ds = p (1 - p): d(-log p)/ds = -(1 - p), dL1/ds = -p^q2 (1 - p), dL2/ds = (1 - p)^q3 p
    grad = np.where(y == 1, -(1 - p), v * (k * -(p ** q2) * (1 - p) + (1 - k) * (1 - p) ** q3 * p))
    return loss.mean(), grad / y.size


def random_batch(seed, b=8, c=6, scale=2.0):
    gen = np.random.default_rng(seed)
    s = gen.normal(0, scale, (b, c))
    y = np.zeros((b, c))
    y[np.arange(b), gen.integers(0, c, b)] = 1.0
    return s, y


def test_defaults_are_the_public_codes_and_reach_the_loss():
    assert LOSSES["gr"].defaults() == {"beta": BETA, "alpha": ALPHA, "q": Q}  # config.py's, typed here
    loss = create_stateful_loss("gr", 4, 3, 2)  # nothing given: the registry's defaults, the only ones there are
    assert (loss.beta, loss.alpha, loss.q) == (BETA, ALPHA, Q)


@pytest.mark.parametrize("epochs", [8, 3])
def test_schedule_matches_train_py(epochs):
    loss = create_stateful_loss("gr", 4, 3, epochs)
    for epoch in range(epochs):
        assert loss.schedule(epoch) == pytest.approx(ref_schedule(epoch + 1, epochs), abs=1e-12)
    w, b, mu, sigma = loss.schedule(0)
    assert (w, b) == (0.0, -2.0) and mu == pytest.approx(0.5 + 0.3 / epochs)  # k starts at (w0, b0), v one step on
    assert loss.schedule(epochs - 1)[2:] == pytest.approx((0.8, 0.5))  # v ends at (muT, sigmaT) ...
    assert loss.schedule(epochs - 1)[0] == pytest.approx(2.0 * (epochs - 1) / epochs)  # ... k one step short


@pytest.mark.parametrize("epoch", [0, 3, 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_value_and_gradient_match_the_reference_formula(epoch, seed):
    s, y = random_batch(seed)
    loss = create_stateful_loss("gr", 8, 6, 8)
    logits = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    # the module computes in float32 (the trainer's logits are fp32); compare at float32 precision
    logits32 = logits.float().detach().requires_grad_(True)
    value = loss(logits32, torch.tensor(y), None, torch.arange(8), epoch)
    value.backward()
    want, grad = ref_gr(s, y, *ref_schedule(epoch + 1, 8), *Q)
    assert value.item() == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(logits32.grad.numpy(), grad, rtol=1e-4, atol=1e-8)


def test_other_hyperparameters_and_the_reference_eps():
    s, y = random_batch(2, b=5, c=4)
    beta, alpha, q = (1.0, 3.0, -1.0, 0.5), (0.3, 1.0, 0.6, 0.2), (0.5, 0.7)
    loss = create_stateful_loss("gr", 5, 4, 4, beta=beta, alpha=alpha, q=q)
    value = loss(torch.tensor(s).float(), torch.tensor(y).float(), None, torch.arange(5), 2).item()
    want, _ = ref_gr(s, y, *ref_schedule(3, 4, beta, alpha), *q)
    assert value == pytest.approx(want, rel=1e-5)
    # the reference's -log(p + 1e-7) differs from the exact log-sigmoid by ~1e-7 / p only
    with_eps, _ = ref_gr(s, y, *ref_schedule(3, 4, beta, alpha), *q, eps=1e-7)
    assert value == pytest.approx(with_eps, rel=1e-5)


def test_small_q2_is_cross_entropy_on_the_pseudo_positive_and_q3_one_is_mae():
    # the limits the paper builds on: L1(p; q -> 0) = -log p, L2(p; 1) = p
    s = torch.tensor([[-3.0, 0.5, 2.0]])
    y = torch.tensor([[0.0, 0.0, 0.0]])
    p = torch.sigmoid(s)
    k_only = create_stateful_loss("gr", 1, 3, 1, beta=(0.0, 0.0, 50.0, 50.0), alpha=(0.0, 1e6, 0.0, 1e6),
                                  q=(1e-6, 1.0))  # k = 1, v = 1
    assert k_only(s, y, None, torch.arange(1), 0).item() == pytest.approx((-torch.log(p)).mean().item(), rel=1e-5)
    negative_only = create_stateful_loss("gr", 1, 3, 1, beta=(0.0, 0.0, -50.0, -50.0), alpha=(0.0, 1e6, 0.0, 1e6))
    assert negative_only(s, y, None, torch.arange(1), 0).item() == pytest.approx(p.mean().item(), rel=1e-5)


def test_exact_where_the_probability_underflows():
    # an unobserved entry at logit -120: p = 1e-52 is 0 in float32, but p^q2 = exp(q2 log p) is still finite
    s = torch.tensor([[-120.0, 0.0]], requires_grad=True)
    y = torch.tensor([[0.0, 1.0]])
    value = create_stateful_loss("gr", 1, 2, 1)(s, y, None, torch.arange(1), 0)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()
    p = 1 / (1 + math.exp(120.0))
    k = 1 / (1 + math.exp(2.0 - 0.0 * p))
    v = math.exp(-0.5 * ((p - (0.5 + 0.3)) / (2 - 1.5)) ** 2)
    l1 = -math.expm1(0.01 * math.log(p)) / 0.01
    want = (v * (k * l1 + (1 - k) * p) + math.log(2)) / 2
    assert value.item() == pytest.approx(want, rel=1e-5)


def test_known_mask_drops_entries():
    s, y = random_batch(3, b=4, c=5)
    known = np.ones_like(y, dtype=bool)
    known[0, :2] = known[3, 4] = False
    known[y == 1] = True
    loss = create_stateful_loss("gr", 4, 5, 2)
    value = loss(torch.tensor(s).float(), torch.tensor(y).float(), torch.tensor(known), torch.arange(4), 1).item()
    w, b, mu, sigma = ref_schedule(2, 2)
    p = 1 / (1 + np.exp(-s))
    k, v = 1 / (1 + np.exp(-(w * p + b))), np.exp(-0.5 * ((p - mu) / sigma) ** 2)
    entries = np.where(y == 1, -np.log(p), v * (k * (1 - p ** 0.01) / 0.01 + (1 - k) * p))
    assert value == pytest.approx(entries[known].mean(), rel=1e-5)


def test_bad_hyperparameters():
    good = dict(beta=BETA, alpha=ALPHA, q=Q)
    with pytest.raises(ValueError, match="4 values"):
        GeneralizedRobustLoss(4, 3, 2, **{**good, "beta": (0, 1)})
    with pytest.raises(ValueError, match="positive"):
        GeneralizedRobustLoss(4, 3, 2, **{**good, "q": (0.0, 1.0)})
    with pytest.raises(ValueError, match="sigma"):
        GeneralizedRobustLoss(4, 3, 2, **{**good, "alpha": (0.5, 0.0, 0.8, 0.5)})


def test_cli_options_parse_and_reject(tmp_path):
    from spml.train.cli import main

    for args in (["--gr-beta", "-1,2"], ["--loss-arg", "beta=-1,2"]):
        result = CliRunner().invoke(main, ["--loss", "gr", *args, "--out", str(tmp_path / "m.pt")])
        assert result.exit_code == 2 and "beta: expected 4 comma-separated numbers" in result.output
        assert "Traceback" not in result.output


def test_trains_and_records_its_hyperparameters(tiny_data, tmp_path):
    from spml.train.cli import main

    out = tmp_path / "gr.pt"
    result = CliRunner().invoke(main, [
        "--ann", str(tiny_data["sp"]), "--loss", "gr", "--arch", "resnet18", "--no-pretrained", "--image-size", "32",
        "--epochs", "1", "--batch-size", "16", "--loss-arg", "alpha=0.4,1.5,0.7,0.6", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["config"]["loss"] == "gr"
    assert ckpt["config"]["loss_args"] == {"alpha": (0.4, 1.5, 0.7, 0.6), "beta": BETA, "q": Q}  # the defaults, filled
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len(ckpt["history"]) == 1


def test_preset_takes_the_reference_loop():
    from spml.train.presets import preset_values

    values = preset_values("coco", "gr")
    assert (values["batch_size"], values["fine_tune_lr"], values["head_lr_mult"], values["lr_schedule"]) == \
        (8, 1e-5, 10.0, "constant")


@pytest.mark.slow
def test_resume_continues_the_schedule(tiny_data, tmp_path, interrupt):
    # GR keeps no per-image state, only the epoch: a run resumed after its first epoch must train the second
    # at the second epoch's (w, b, mu, sigma) and end where the whole run ends
    from spml.train import trainer
    from spml.train.trainer import TrainConfig, last_path, train

    def run(out, **kw):
        cfg = TrainConfig(ann=str(tiny_data["sp"]), loss="gr", arch="resnet18", image_size=32, epochs=2, batch_size=16,
                          pretrained=False, out=str(out), progress=False, keep_last=True, seed=2, **kw)
        return train(cfg, log=lambda s: None)

    whole = run(tmp_path / "whole.pt")
    restore = interrupt(trainer, "train_one_epoch", 2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "part.pt")
    restore()
    part = run(tmp_path / "part.pt", resume=True)
    a, b = torch.load(last_path(whole), weights_only=True), torch.load(last_path(part), weights_only=True)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
