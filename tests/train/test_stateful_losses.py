"""Stateful losses (ROLE, EM+APL, LL-R/Ct/Cp) against values computed by hand from the papers' formulas (math,
not torch), plus the state they keep: which entries are picked, pseudo labelled or corrected, and what survives
a state_dict round trip."""

import io
import math

import numpy as np
import pytest
import torch

from spml.errors import SpmlError
from spml.train.loss_registry import LOSSES
from spml.train.losses import compute_loss
from spml.train.stateful_losses import STATEFUL_LOSSES, StatefulLoss, create_stateful_loss

LOGITS = [[0.0, 2.0, -1.0], [1.5, -0.5, 0.3]]
TARGETS = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def sig(x):
    return 1 / (1 + math.exp(-x))


def bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def entropy(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def t(x, **kw):
    return torch.tensor(x, **kw)


# --- factory ---------------------------------------------------------------------------------------------------

def test_names_defaults_and_factory():
    assert set(STATEFUL_LOSSES) == {"role", "em-apl", "ll-r", "ll-ct", "ll-cp", "gr"}
    for name in STATEFUL_LOSSES:
        loss = create_stateful_loss(name, 4, 3, 2)
        assert isinstance(loss, StatefulLoss) and isinstance(loss, torch.nn.Module)
    assert create_stateful_loss("em-apl", 4, 3, 2, alpha=0.2, beta=None).beta == LOSSES["em-apl"].defaults()["beta"]
    with pytest.raises(ValueError, match="unknown stateful loss"):
        create_stateful_loss("an", 4, 3, 2)
    with pytest.raises(SpmlError, match="unknown --loss-arg alpha; valid: delta_rel=0.002"):
        create_stateful_loss("ll-r", 4, 3, 2, alpha=0.1)
    with pytest.raises(ValueError, match="rows"):
        create_stateful_loss("ll-r", 4, 3, 2)(t(LOGITS), t(TARGETS), None, t([0, 4]), 0)


def test_the_registry_defaults_reach_every_loss():
    # built with nothing given, each loss runs on the registry's values: no other default exists to drift from it
    logits, targets = t(LOGITS, dtype=torch.float64), t(TARGETS, dtype=torch.float64)
    for name, spec in LOSSES.items():
        if spec.stateful:
            loss = create_stateful_loss(name, 4, 3, 2)
            for h in spec.hparams:
                assert getattr(loss, h.name) == h.default, (name, h.name)
            for key, value in spec.fixed.items():  # which LL variant, and its schedule
                assert getattr(loss, key) == value, (name, key)
            continue
        plain = compute_loss(name, logits, targets).item()
        assert plain == compute_loss(name, logits, targets, **spec.defaults()).item(), name
        for h in spec.hparams:  # and the value matters: another one changes the loss
            assert compute_loss(name, logits, targets, **{h.name: h.default / 2}).item() != plain, (name, h.name)
    assert [create_stateful_loss(n, 4, 3, 2).schedule for n in ("ll-r", "ll-ct", "ll-cp")] == ["growing", "growing", "fixed"]


# --- ROLE ------------------------------------------------------------------------------------------------------

ROLE_ROWS = [2, 0]
ROLE_EST = [[0.7, -0.4, 1.1], [0.2, 0.9, -1.3]]  # estimate logits of rows 2 and 0


def role_setup(k=1.5):
    loss = create_stateful_loss("role", 4, 3, 2, expected_positives=k)
    with torch.no_grad():
        for row, values in zip(ROLE_ROWS, ROLE_EST):
            loss.estimate_logits[row] = t(values)
        loss.initialised[ROLE_ROWS] = True  # keep the estimates set here (no first-batch init of positives)
    return loss


def ref_role(preds, est, obs, k, eps=0.0):
    """Cole et al.'s loss_role in numpy float64: every entry gets both cross terms, observed ones also -log p and
    -log e; mean over B x L; 0.5 * (R(p) + R(e)), R(x) = (mean_b sum_j x_bj - k)^2 / L^2."""
    preds, est, obs = (np.asarray(a, dtype=np.float64) for a in (preds, est, obs))
    nl = lambda x: -np.log(x + eps)  # noqa: E731
    B, L = obs.shape
    pos_1 = np.where(obs == 1, nl(preds), 0.0)
    cross_1 = est * nl(preds) + (1 - est) * nl(1 - preds)
    pos_2 = np.where(obs == 1, nl(est), 0.0)
    cross_2 = preds * nl(est) + (1 - preds) * nl(1 - est)
    reg = lambda x: (x.sum(axis=1).mean(axis=0) - k) ** 2 / L ** 2  # noqa: E731
    return (0.5 * (pos_1 + pos_2) + 0.5 * (cross_1 + cross_2)).sum() / (B * L) + 0.5 * (reg(preds) + reg(est))


def test_role_value_matches_the_reference_formula():
    k = 1.5
    loss = role_setup(k)
    value = loss(t(LOGITS, dtype=torch.float64), t(TARGETS), None, t(ROLE_ROWS), 0).item()
    preds, est = 1 / (1 + np.exp(-np.array(LOGITS))), 1 / (1 + np.exp(-np.array(ROLE_EST)))
    assert value == pytest.approx(ref_role(preds, est, TARGETS, k), rel=1e-6)
    # the reference's eps moves the value by ~1e-5 here
    assert abs(value - ref_role(preds, est, TARGETS, k, eps=1e-5)) < 1e-4


def test_role_gradients_by_hand():
    k, B, L = 1.5, 2, 3
    loss = role_setup(k)
    logits = t(LOGITS, requires_grad=True)
    loss(logits, t(TARGETS), None, t(ROLE_ROWS), 0).backward()
    p = [[sig(s) for s in row] for row in LOGITS]
    e = [[sig(v) for v in row] for row in ROLE_EST]
    sp, se = sum(map(sum, p)) / B, sum(map(sum, e)) / B
    # each side fits the other's detached value; observed entries add -0.5 log p / -0.5 log e on their own side
    for b in range(B):
        for j in range(L):
            pb, eb, y = p[b][j], e[b][j], TARGETS[b][j]
            want_p = 0.5 * ((pb - eb) - y * (1 - pb)) / (B * L) + (sp - k) / L ** 2 / B * pb * (1 - pb)
            want_e = 0.5 * ((eb - pb) - y * (1 - eb)) / (B * L) + (se - k) / L ** 2 / B * eb * (1 - eb)
            assert logits.grad[b, j].item() == pytest.approx(want_p, rel=1e-5, abs=1e-9)
            assert loss.estimate_logits.grad[ROLE_ROWS[b], j].item() == pytest.approx(want_e, rel=1e-5, abs=1e-9)
    assert torch.all(loss.estimate_logits.grad[[1, 3]] == 0)  # rows not in the batch


def test_role_known_mask_drops_entries():
    k, B, L = 1.5, 2, 3
    known = [[True, False, True], [True, True, False]]
    loss = role_setup(k)
    value = loss(t(LOGITS), t(TARGETS), t(known), t(ROLE_ROWS), 0).item()
    p = [[sig(s) for s in row] for row in LOGITS]
    e = [[sig(v) for v in row] for row in ROLE_EST]
    terms = []
    for b in range(B):
        for j in range(L):
            if known[b][j]:
                y = TARGETS[b][j]
                terms.append(0.5 * (-y * math.log(p[b][j]) - y * math.log(e[b][j]))
                             + 0.5 * (bce(p[b][j], e[b][j]) + bce(e[b][j], p[b][j])))
    sp, se = sum(map(sum, p)) / B, sum(map(sum, e)) / B
    reg = 0.5 * ((sp - k) ** 2 + (se - k) ** 2) / L ** 2
    assert value == pytest.approx(sum(terms) / len(terms) + reg, rel=1e-6)


def test_role_positives_start_at_0995_and_stay_trainable():
    loss = create_stateful_loss("role", 4, 3, 2)
    params = loss.extra_lr_params()
    assert len(params) == 1 and params[0] is loss.estimate_logits
    assert params[0].shape == (4, 3) and params[0].requires_grad and loss.lr_mult == 10.0
    assert any(p is loss.estimate_logits for p in loss.parameters())
    q = math.log(0.6 / 0.4)  # reference init: uniform in [-logit(0.6), logit(0.6)]
    assert loss.estimate_logits.abs().max().item() <= q + 1e-6

    logits, targets, rows = t(LOGITS), t(TARGETS), t(ROLE_ROWS)
    before = loss.estimate_logits.detach().clone()
    loss(logits, targets, None, rows, 0).backward()
    observed = targets > 0.5
    est = loss.estimates(rows)
    assert est[observed].tolist() == pytest.approx([0.995, 0.995], rel=1e-6)  # set at the rows' first batch
    assert torch.equal(loss.estimate_logits.detach()[rows][~observed], before[rows][~observed])
    assert torch.all(loss.estimate_logits.grad[rows][observed] != 0)  # trainable, like every other estimate

    opt = torch.optim.SGD(params, lr=100.0)
    opt.step()
    moved = loss.estimates(rows)
    assert not torch.equal(moved[observed], est[observed])
    loss(logits, targets, None, rows, 1)  # a later batch does not reset them
    assert torch.equal(loss.estimates(rows), moved)


def test_role_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = create_stateful_loss("role", 5, 3, 2, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = create_stateful_loss("role", 5, 3, 2, seed=1)
    c = create_stateful_loss("role", 5, 3, 2, seed=2)
    assert torch.equal(a.estimate_logits, b.estimate_logits)
    assert not torch.equal(a.estimate_logits, c.estimate_logits)


def round_trip(loss, name, *shape, **kw):
    buf = io.BytesIO()
    torch.save(loss.state_dict(), buf)
    buf.seek(0)
    fresh = create_stateful_loss(name, *shape, **kw)
    fresh.load_state_dict(torch.load(buf, weights_only=True))  # as checkpoints are loaded
    return fresh


def test_role_state_dict_round_trip():
    loss = create_stateful_loss("role", 4, 3, 2, seed=0)
    opt = torch.optim.Adam(loss.extra_lr_params(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        loss(t(LOGITS), t(TARGETS), None, t(ROLE_ROWS), 0).backward()
        opt.step()
    fresh = round_trip(loss, "role", 4, 3, 2, seed=7)
    assert torch.equal(fresh.estimate_logits, loss.estimate_logits)
    args = (t(LOGITS), t(TARGETS), None, t(ROLE_ROWS), 1)
    assert fresh(*args).item() == loss(*args).item()


# --- EM + APL --------------------------------------------------------------------------------------------------

def test_em_apl_value_before_pseudo_labels_is_em():
    alpha = 0.1
    loss = create_stateful_loss("em-apl", 4, 3, 10, alpha=alpha)
    value = loss(t(LOGITS), t(TARGETS), None, t([3, 1]), 0).item()
    total = sum(-math.log(sig(s)) if y else -alpha * entropy(sig(s))
                for rs, ry in zip(LOGITS, TARGETS) for s, y in zip(rs, ry))
    assert value == pytest.approx(total / 6, rel=1e-6)
    # the batch's probabilities are recorded against its rows
    assert loss.scores[3].tolist() == pytest.approx([sig(s) for s in LOGITS[0]], rel=1e-6)
    assert loss.scores[1].tolist() == pytest.approx([sig(s) for s in LOGITS[1]], rel=1e-6)
    assert torch.isnan(loss.scores[[0, 2]]).all()


# 6 images, 2 classes. Class 0 observed in row 0, class 1 in row 1; (5, 1) is unknown.
APL_LOGITS = [[-5.0, -0.5], [-1.0, -6.0], [-3.0, 1.0], [0.5, -2.5], [-2.0, 0.0], [2.0, -9.0]]
APL_TARGETS = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
APL_KNOWN = [[True, True]] * 5 + [[True, False]]


def apl_setup(beta=0.9):
    loss = create_stateful_loss("em-apl", 6, 2, 4, warmup_epochs=2, theta=0.9, beta=beta)
    loss(t(APL_LOGITS[:3]), t(APL_TARGETS[:3]), t(APL_KNOWN[:3]), t([0, 1, 2]), 0)
    loss(t(APL_LOGITS[3:]), t(APL_TARGETS[3:]), t(APL_KNOWN[3:]), t([3, 4, 5]), 0)
    return loss


def pseudo_set(loss):
    return {(r, c) for r, c in loss.pseudo.nonzero().tolist()}


def test_em_apl_marks_lowest_unobserved_per_class_after_warmup():
    loss = apl_setup()
    # 4 epochs, warm-up 2: rounds after 0-based epochs 1 and 2 (epochs - warmup = 2 rounds); none after the last
    loss.end_epoch(0)
    assert pseudo_set(loss) == set()  # still warming up
    # unobserved known entries: class 0 -> 5 (rows 1-5), class 1 -> 4 (rows 0, 2, 3, 4); per round floor(0.9 U / 2)
    assert math.floor(0.9 * 5 / 2) == 2 and math.floor(0.9 * 4 / 2) == 1
    loss.end_epoch(1)
    # class 0 ascending among unobserved: row 2 (-3), row 4 (-2), row 1 (-1), row 3 (0.5), row 5 (2); the
    # observed row 0 (-5) is lower but never picked. Class 1: row 3 (-2.5), row 0 (-0.5), ...; unknown row 5 skipped
    assert pseudo_set(loss) == {(2, 0), (4, 0), (3, 1)}
    for r, c in pseudo_set(loss):
        assert loss.soft_targets[r, c].item() == pytest.approx(sig(APL_LOGITS[r][c]), rel=1e-6)
    loss.end_epoch(2)
    assert pseudo_set(loss) == {(2, 0), (4, 0), (3, 1), (1, 0), (3, 0), (0, 1)}
    loss.end_epoch(3)  # the last epoch: nothing trains on a further round
    assert len(pseudo_set(loss)) == 6


def test_em_apl_share_grows_linearly_to_theta():
    torch.manual_seed(0)
    n, num_classes, epochs, warmup, theta = 40, 3, 10, 5, 0.9
    loss = create_stateful_loss("em-apl", n, num_classes, epochs, warmup_epochs=warmup, theta=theta)
    logits = torch.randn(n, num_classes)
    targets = torch.zeros(n, num_classes)
    targets[torch.arange(n), torch.arange(n) % num_classes] = 1.0
    loss(logits, targets, None, torch.arange(n), 0)
    per_class_unobs = [n - sum(1 for i in range(n) if i % num_classes == c) for c in range(num_classes)]  # 26, 27, 27
    rounds = epochs - warmup
    for epoch in range(epochs):
        loss.end_epoch(epoch)
        done = min(max(epoch - (warmup - 1) + 1, 0), rounds)  # rounds after epochs 4..8
        for c in range(num_classes):
            want = done * math.floor(theta * per_class_unobs[c] / rounds)
            marked = loss.pseudo[:, c].nonzero().flatten().tolist()
            assert len(marked) == want, (epoch, c)
            # exactly the lowest-scoring unobserved entries of the class
            cand = sorted((sig(logits[i, c].item()), i) for i in range(n) if i % num_classes != c)
            assert sorted(marked) == sorted(i for _, i in cand[:want])
    assert all(loss.pseudo[:, c].sum() / per_class_unobs[c] <= theta for c in range(num_classes))


def test_em_apl_value_with_pseudo_negatives():
    alpha, beta = 0.1, 0.9
    loss = apl_setup(beta)
    loss.end_epoch(1)  # pseudo negatives: (2, 0), (4, 0), (3, 1)
    new = [[0.4, -1.2], [1.0, 0.6]]  # a later batch of rows 2 and 3
    value = loss(t(new), t([[0.0, 0.0], [0.0, 0.0]]), None, t([2, 3]), 2).item()
    q20, q31 = sig(APL_LOGITS[2][0]), sig(APL_LOGITS[3][1])  # soft targets: scores when labelled
    total = (beta * bce(sig(0.4), q20) - alpha * entropy(sig(-1.2))
             - alpha * entropy(sig(1.0)) + beta * bce(sig(0.6), q31))
    assert value == pytest.approx(total / 4, rel=1e-6)


def test_em_apl_state_dict_round_trip():
    loss = apl_setup()
    loss.end_epoch(1)
    fresh = round_trip(loss, "em-apl", 6, 2, 4, warmup_epochs=2)
    for name in ("scores", "observed", "known_mask", "pseudo", "soft_targets"):
        assert torch.equal(getattr(fresh, name).nan_to_num(-1), getattr(loss, name).nan_to_num(-1)), name
    loss.end_epoch(2)
    fresh.end_epoch(2)
    assert pseudo_set(fresh) == pseudo_set(loss)


# --- Large loss ------------------------------------------------------------------------------------------------

# 2 images, 5 classes. Observed: (0, 0) with the largest loss of all, and (1, 2). For unobserved entries the AN
# loss softplus(s) grows with the logit, so they rank: (0,1) 3.0 > (1,3) 2.5 > (0,4) 2.0 > (0,3) 0.5 > (1,0) 0.1 ...
LL_LOGITS = [[-8.0, 3.0, -1.0, 0.5, 2.0], [0.1, -2.0, 4.0, 2.5, -3.0]]
LL_TARGETS = [[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]]


def an_terms(logits=LL_LOGITS, targets=LL_TARGETS):
    return {(b, j): bce(sig(s), y) for b, (rs, ry) in enumerate(zip(logits, targets)) for j, (s, y) in enumerate(zip(rs, ry))}


def picked(loss):
    return {tuple(x) for x in loss.last_selected.nonzero().tolist()}


def ll(name, **kw):
    return create_stateful_loss(name, 10, 5, 10, **kw)


def test_ll_epoch_zero_is_assume_negative():
    want = sum(an_terms().values()) / 10
    for name in ("ll-r", "ll-ct", "ll-cp"):
        loss = ll(name, delta_rel=0.5)
        assert loss(t(LL_LOGITS), t(LL_TARGETS), None, t([0, 1]), 0).item() == pytest.approx(want, rel=1e-6)
        assert picked(loss) == set()
    assert not ll("ll-cp").corrected.any()


@pytest.mark.parametrize("epoch, want", [(1, {(0, 1)}), (2, {(0, 1), (1, 3)}), (3, {(0, 1), (1, 3), (0, 4)})])
def test_ll_picks_top_share_of_unobserved(epoch, want):
    # delta_rel 0.1, rate 0.1 * epoch of the batch's B x L = 10 entries: k = ceil(10 * rate) = epoch
    for name in ("ll-r", "ll-ct"):
        loss = ll(name, delta_rel=0.1)
        loss(t(LL_LOGITS), t(LL_TARGETS), None, t([0, 1]), epoch)
        assert picked(loss) == want


def test_ll_r_and_ll_ct_values_by_hand():
    terms = an_terms()
    rejected = {(0, 1), (1, 3)}  # epoch 2, delta_rel 0.1: k = 2
    value_r = ll("ll-r", delta_rel=0.1)(t(LL_LOGITS), t(LL_TARGETS), None, t([0, 1]), 2).item()
    assert value_r == pytest.approx(sum(v for key, v in terms.items() if key not in rejected) / 10, rel=1e-6)
    value_ct = ll("ll-ct", delta_rel=0.1)(t(LL_LOGITS), t(LL_TARGETS), None, t([0, 1]), 2).item()
    corrected = sum(-math.log(sig(LL_LOGITS[b][j])) for b, j in rejected)
    assert value_ct == pytest.approx((sum(v for key, v in terms.items() if key not in rejected) + corrected) / 10,
                                     rel=1e-6)


def test_ll_known_mask():
    known = [[True, False, True, True, True], [True] * 5]
    loss = ll("ll-r", delta_rel=0.1)
    value = loss(t(LL_LOGITS), t(LL_TARGETS), t(known), t([0, 1]), 2).item()
    # (0, 1) is unknown: not picked and adds nothing; k = ceil(9 * 0.2) = 2
    assert picked(loss) == {(1, 3), (0, 4)}
    terms = an_terms()
    keep = [v for key, v in terms.items() if key not in {(0, 1), (1, 3), (0, 4)}]
    assert value == pytest.approx(sum(keep) / 9, rel=1e-6)


def test_ll_never_touches_observed_positives():
    # every unobserved entry is picked (delta_rel 1), the observed ones keep -log p although (0, 0) has the largest loss
    for name in ("ll-r", "ll-ct", "ll-cp"):
        loss = ll(name, delta_rel=1.0)
        value = loss(t(LL_LOGITS), t(LL_TARGETS), None, t([0, 1]), 1).item()
        assert picked(loss) == {(b, j) for b in range(2) for j in range(5) if not LL_TARGETS[b][j]}
        observed = -math.log(sig(-8.0)) - math.log(sig(4.0))
        if name == "ll-r":
            assert value == pytest.approx(observed / 10, rel=1e-6)
        else:
            flipped = sum(-math.log(sig(s)) for rs, ry in zip(LL_LOGITS, LL_TARGETS) for s, y in zip(rs, ry) if not y)
            assert value == pytest.approx((observed + flipped) / 10, rel=1e-6)
        if name == "ll-cp":
            assert not loss.corrected[[7, 2]][t(LL_TARGETS) > 0.5].any()


def test_ll_cp_corrects_permanently():
    loss = ll("ll-cp", delta_rel=0.2)  # fixed schedule: k = ceil(10 * 0.2) = 2 in every epoch from 1
    rows = t([7, 2])
    loss(t(LL_LOGITS), t(LL_TARGETS), None, rows, 1)
    assert picked(loss) == {(0, 1), (1, 3)}
    assert {tuple(x) for x in loss.corrected.nonzero().tolist()} == {(7, 1), (2, 3)}

    # a later epoch, the same images in the other order; the corrected entries now have low scores
    later = [[0.2, -1.0, 4.0, -4.0, 1.0], [-3.0, -4.0, 0.0, 1.5, -0.5]]  # image 2, then image 7
    targets = [LL_TARGETS[1], LL_TARGETS[0]]
    value = loss(t(later), t(targets), None, t([2, 7]), 2).item()
    # corrected entries: image 2 class 3 -> (0, 3), image 7 class 1 -> (1, 1), trained as positives;
    # picked now among the rest: (1, 3) 1.5 and (0, 4) 1.0 -- image 2's class 2 (4.0) is its observed positive
    assert picked(loss) == {(1, 3), (0, 4)}
    total = 0.0
    for b in range(2):
        for j in range(5):
            s = later[b][j]
            positive = targets[b][j] or (b, j) in {(0, 3), (1, 1), (1, 3), (0, 4)}
            total += -math.log(sig(s)) if positive else -math.log(1 - sig(s))
    assert value == pytest.approx(total / 10, rel=1e-6)
    assert {tuple(x) for x in loss.corrected.nonzero().tolist()} == {(7, 1), (2, 3), (7, 3), (2, 4)}

    # persists through epoch-0 calls too and through a state_dict round trip
    fresh = round_trip(loss, "ll-cp", 10, 5, 10, delta_rel=0.2)
    assert torch.equal(fresh.corrected, loss.corrected)
    v = fresh(t(later), t(targets), None, t([2, 7]), 0).item()
    total = sum(-math.log(sig(later[b][j])) if targets[b][j] or (b, j) in {(0, 3), (1, 1), (1, 3), (0, 4)}
                else -math.log(1 - sig(later[b][j])) for b in range(2) for j in range(5))
    assert v == pytest.approx(total / 10, rel=1e-6)


def test_ll_schedules():
    assert [ll("ll-r", delta_rel=0.002).rate(e) for e in range(3)] == pytest.approx([0, 0.002, 0.004])
    assert [ll("ll-cp", delta_rel=0.002).rate(e) for e in range(3)] == pytest.approx([0, 0.002, 0.002])
    assert [ll("ll-cp", delta_rel=0.002, schedule="growing").rate(e) for e in range(3)] == pytest.approx([0, 0.002, 0.004])
    # default delta_rel 0.002 at epoch 3, batch 16 x 5: k = ceil(80 * 0.006) = 1
    loss = ll("ll-r")
    logits = torch.randn(16, 5)
    assert loss.delta_rel == 0.002
    loss(logits, torch.zeros(16, 5), None, torch.arange(10).repeat(2)[:16], 3)
    assert int(loss.last_selected.sum()) == math.ceil(80 * 0.006)


def ref_large_loss(s, y, rate, mode):
    """LargeLossMatters' compute_batch_loss in numpy float64 (AN loss, k = ceil(B L rate), threshold = the k-th
    largest unobserved loss; entries below it keep their loss, the others are rejected or corrected), and the
    entries it records as permanent corrections (strictly above the threshold)."""
    s, y = np.asarray(s, dtype=np.float64), np.asarray(y, dtype=np.float64)
    p = 1 / (1 + np.exp(-s))
    loss = np.where(y == 1, -np.log(p), -np.log(1 - p))
    corrected = -np.log(p)  # bce against not(y) on unobserved entries
    unobserved_loss = (y == 0) * loss
    k = math.ceil(y.size * rate)
    threshold = np.sort(unobserved_loss.flatten())[::-1][k - 1]
    other = corrected if mode in ("LL-Ct", "LL-Cp") else 0.0
    final = np.where(unobserved_loss < threshold, loss, other)
    recorded = {tuple(x) for x in np.argwhere(unobserved_loss > threshold)}
    return final.sum() / y.size, recorded


@pytest.mark.parametrize("name, mode, epoch", [("ll-r", "LL-R", 3), ("ll-ct", "LL-Ct", 3), ("ll-cp", "LL-Cp", 5)])
def test_ll_matches_the_reference_on_random_inputs(name, mode, epoch):
    gen = np.random.default_rng(1)
    s = gen.normal(0, 2, (8, 6))
    y = np.zeros((8, 6))
    y[np.arange(8), gen.integers(0, 6, 8)] = 1.0
    loss = create_stateful_loss(name, 8, 6, 10, delta_rel=0.05)
    value = loss(t(s), t(y), None, torch.arange(8), epoch).item()
    rate = 0.05 if name == "ll-cp" else 0.05 * epoch  # ll-cp: the paper's fixed share
    want, recorded = ref_large_loss(s, y, rate, mode)
    assert value == pytest.approx(want, rel=1e-6)
    k = math.ceil(48 * rate)
    assert int(loss.last_selected.sum()) == k and len(recorded) == k - 1  # no ties: the reference records k - 1
    if name == "ll-cp":  # spml records all k it corrected, the reference's k - 1 plus the k-th
        assert recorded < {tuple(x) for x in loss.corrected.nonzero().tolist()}
        assert int(loss.corrected.sum()) == k


def test_role_first_batch_init_equals_init_at_construction():
    # Adam over batches that reach each row at a different step: setting the observed positives at a row's first
    # batch ends where setting all of them up front (as the reference's LabelEstimator does) ends
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=gen)
    targets = torch.zeros(4, 3)
    targets[[0, 1, 2, 3], [2, 0, 1, 2]] = 1.0
    lazy, eager = (create_stateful_loss("role", 4, 3, 2, seed=5) for _ in range(2))
    with torch.no_grad():
        eager.estimate_logits[targets > 0.5] = math.log(0.995 / 0.005)
        eager.initialised[:] = True
    for loss in (lazy, eager):
        opt = torch.optim.Adam(loss.extra_lr_params(), lr=0.05)
        for rows in ([0, 1], [2, 3], [0, 2], [1, 3]):
            opt.zero_grad()
            loss(logits[rows], targets[rows], None, t(rows), 0).backward()
            opt.step()
    torch.testing.assert_close(lazy.estimate_logits, eager.estimate_logits, rtol=0, atol=1e-7)
