import numpy as np
import pytest

from melcnn.training.evaluate import eer, min_dcf, rates_at, roc_auc, summary


def test_perfect_and_inverted_scores():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert eer(scores, labels)[0] == pytest.approx(0.0)
    assert roc_auc(scores, labels) == pytest.approx(1.0)
    assert min_dcf(scores, labels) == pytest.approx(0.0)
    assert eer(-scores, labels)[0] == pytest.approx(1.0)
    assert roc_auc(-scores, labels) == pytest.approx(0.0)


def test_gaussian_eer_matches_theory(rng):
    # two unit Gaussians 2 sigma apart: EER = Phi(-1) = 15.87 %
    labels = np.r_[np.zeros(20000), np.ones(20000)].astype(int)
    scores = rng.normal(labels * 2.0, 1.0)
    value, t = eer(scores, labels)
    assert value == pytest.approx(0.1587, abs=0.006)
    assert t == pytest.approx(1.0, abs=0.05)
    assert roc_auc(scores, labels) == pytest.approx(0.921, abs=0.005)  # Phi(2 / sqrt 2)
    # minDCF by brute force over every threshold (P(spoof) 0.05, C_miss 1, C_fa 10, normalised)
    thresholds = np.r_[np.sort(scores), np.inf]
    miss = np.array([(scores[labels == 1] < t).mean() for t in thresholds[::50]])
    fa = np.array([(scores[labels == 0] >= t).mean() for t in thresholds[::50]])
    brute = (0.05 * miss + 0.95 * 10 * fa).min() / min(0.05, 0.95 * 10)
    assert min_dcf(scores, labels) == pytest.approx(brute, abs=0.02)


def test_rates_at_threshold():
    labels = np.array([0, 0, 1, 1])
    r = rates_at(np.array([0.2, 0.6, 0.4, 0.9]), labels, 0.5)
    assert r == {"accuracy": 0.5, "bonafide_false_reject_rate": 0.5, "spoof_miss_rate": 0.5}
    s = summary(np.array([0.2, 0.6, 0.4, 0.9]), labels)
    assert s["n_bonafide"] == 2 and s["n_spoof"] == 2


def test_one_class_is_an_error():
    with pytest.raises(ValueError, match="both"):
        eer(np.array([0.1, 0.2]), np.array([1, 1]))
