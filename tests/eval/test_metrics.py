import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from spml.eval.metrics import average_precision, label_quality, mean_average_precision


@pytest.mark.parametrize("seed", range(30))
def test_average_precision_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    targets = rng.random(n) < 0.3
    targets[0] = True
    # half the cases have heavy ties: scikit-learn counts a run of equal scores as one threshold
    scores = rng.integers(0, 4, n) / 3 if seed % 2 else rng.random(n)
    assert average_precision(scores, targets) == pytest.approx(average_precision_score(targets, scores), abs=1e-12)


def test_mean_average_precision_skips_classes_without_positives():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 4))
    targets = rng.random((50, 4)) < 0.4
    targets[:, 2] = False  # no positive: skipped, not counted as AP 0
    expected = np.mean([average_precision_score(targets[:, j], scores[:, j]) for j in (0, 1, 3)]) * 100
    assert mean_average_precision(scores, targets) == pytest.approx(expected, abs=1e-9)


def test_label_quality_by_hand():
    predicted = np.array([[1, 1, 0], [0, 1, 1]], bool)
    truth = np.array([[1, 0, 0], [0, 1, 0]], bool)
    q = label_quality(predicted, truth)
    assert q["precision"] == pytest.approx(2 / 4)
    assert q["recall"] == pytest.approx(2 / 2)
    assert q["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert q["positives_per_image"] == pytest.approx(2.0)
