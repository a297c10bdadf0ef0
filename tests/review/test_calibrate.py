"""spml.review.calibrate: Platt scaling on a person's answers, checked against sklearn's logistic regression, and
the importance weights of the `weighted` strategy undoing its selection."""

import numpy as np
import pytest

from spml.review.calibrate import calibrate, calibration_maps, logit, platt_fit


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_platt_fit_is_sklearns_logistic_regression_on_the_logit():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 2000)
    yes = rng.random(2000) < sigmoid(1.7 * logit(p) - 1.2)
    weights = rng.uniform(0.5, 2.0, 2000)
    a, b = platt_fit(p, yes, weights)
    reference = LogisticRegression(C=1e6, tol=1e-10, max_iter=1000).fit(logit(p)[:, None], yes, sample_weight=weights)
    assert (a, b) == pytest.approx((reference.coef_[0, 0], reference.intercept_[0]), abs=2e-3)


def test_importance_weights_undo_a_selection_that_favours_one_band_of_scores():
    """Answers drawn with chances proportional to w (here: near 0.75 more often), fitted with weights 1 / w, find
    the population's map; fitted unweighted they find another. The truth is not Platt-shaped, so selection matters."""
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.99, 200_000)
    truth = np.where(p > 0.6, 0.9, 0.1 * p)  # P(yes | p): a step, no logistic curve through it
    yes = rng.random(len(p)) < truth
    w = np.maximum(1 - np.abs(p - 0.75) / 0.1, 0.02)  # strategies.WEIGHT_FLOOR's idea, a narrower band
    chosen = rng.choice(len(p), size=20_000, replace=False, p=w / w.sum())
    everyone = platt_fit(p, yes)
    weighted = platt_fit(p[chosen], yes[chosen], 1 / w[chosen])
    unweighted = platt_fit(p[chosen], yes[chosen])
    assert np.abs(np.subtract(weighted, everyone)).max() < 0.2  # (2.12, -1.32) against (2.27, -1.27)
    assert np.abs(np.subtract(unweighted, everyone)).max() > 0.5  # (2.48, -0.64)


def test_a_category_without_enough_answers_takes_the_pooled_fit():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.95, 600)
    columns = np.r_[np.zeros(300, int), np.ones(297, int), np.full(3, 2)]  # category 2: three answers only
    yes = rng.random(600) < sigmoid(np.where(columns == 0, 2.0, 0.5) * logit(p) - 1.0)
    maps = calibration_maps(p, columns, yes, 3)
    assert maps[0] == pytest.approx(platt_fit(p[:300], yes[:300]))
    assert maps[1] == pytest.approx(platt_fit(p[300:597], yes[300:597]))
    assert maps[2] == pytest.approx(platt_fit(p, yes))
    scores = np.array([[0.2, 0.5, np.nan], [0.9, 0.1, 0.7]])
    expected = sigmoid(maps[:, 0] * logit(np.nan_to_num(scores, nan=0.5)) + maps[:, 1])
    got = calibrate(scores, maps)
    assert np.isnan(got[0, 2]) and np.allclose(np.nan_to_num(got, nan=0), np.where(np.isnan(scores), 0, expected), atol=1e-6)


def test_answers_of_one_kind_cannot_calibrate():
    with pytest.raises(ValueError, match="both kinds"):
        calibration_maps(np.array([0.2, 0.4]), np.array([0, 1]), np.array([False, False]), 2)
