"""Detection metrics: EER, minDCF, ROC AUC, DET curve points, and rates at a threshold.

Convention: a higher score means more likely FAKE (spoof); label 1 = spoof, 0 = bona fide.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: minDCF cost model (ASVspoof 2019 style for a countermeasure alone): prior of spoof, miss and false-alarm costs
DCF_P_SPOOF = 0.05
DCF_C_MISS = 1.0  # cost of a missed spoof (spoof accepted as bona fide)
DCF_C_FA = 10.0  # cost of a false alarm (bona fide rejected as spoof)


def _rates(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds and, for each, the bona fide false-reject rate and the spoof miss rate.

    At threshold t, a trial is called spoof when score >= t.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("need both bona fide (0) and spoof (1) trials")
    order = np.argsort(scores, kind="mergesort")
    s, lab = scores[order], labels[order]
    n_spoof, n_bona = lab.sum(), (~lab).sum()
    # thresholds at each distinct score, plus one above the maximum
    thresholds = np.concatenate([np.unique(s), [np.inf]])
    idx = np.searchsorted(s, thresholds, side="left")  # trials below threshold
    spoof_below = np.concatenate([[0], np.cumsum(lab)])[idx]
    bona_below = np.concatenate([[0], np.cumsum(~lab)])[idx]
    miss = spoof_below / n_spoof  # spoofs scored below t: accepted as bona fide
    false_reject = 1.0 - bona_below / n_bona  # bona fide scored >= t: rejected
    return thresholds, false_reject, miss


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where it occurs. Returns ``(eer in [0, 1], threshold)``."""
    thresholds, fr, miss = _rates(scores, labels)
    i = int(np.argmin(np.abs(fr - miss)))
    # interpolate between the neighbouring operating points for a less jumpy figure
    j = i + 1 if i + 1 < len(fr) and (fr[i] - miss[i]) * (fr[i + 1] - miss[i + 1]) <= 0 else i
    if j != i:
        d_i, d_j = fr[i] - miss[i], fr[j] - miss[j]
        w = d_i / (d_i - d_j) if d_i != d_j else 0.0
        value = fr[i] + w * (fr[j] - fr[i])
    else:
        value = (fr[i] + miss[i]) / 2
    t = thresholds[i] if np.isfinite(thresholds[i]) else float(np.max(scores))
    return float(value), float(t)


def min_dcf(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    p_spoof: float = DCF_P_SPOOF,
    c_miss: float = DCF_C_MISS,
    c_fa: float = DCF_C_FA,
) -> float:
    """Normalised minimum detection cost over all thresholds (1.0 = no better than a fixed decision)."""
    _, fr, miss = _rates(scores, labels)
    dcf = p_spoof * c_miss * miss + (1 - p_spoof) * c_fa * fr
    return float(dcf.min() / min(p_spoof * c_miss, (1 - p_spoof) * c_fa))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (probability that a spoof scores above a bona fide trial; ties count half)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    ranks = _average_ranks(scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def det_points(scores: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """False-reject (bona fide) and miss (spoof) rates over thresholds, for a DET plot."""
    t, fr, miss = _rates(scores, labels)
    return {"threshold": t.tolist(), "bonafide_false_reject": fr.tolist(), "spoof_miss": miss.tolist()}


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, bona fide false-reject rate and spoof miss rate when score >= threshold means FAKE."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    pred = scores >= threshold
    out = {"accuracy": float((pred == labels).mean())}
    out["bonafide_false_reject_rate"] = float(pred[~labels].mean()) if (~labels).any() else float("nan")
    out["spoof_miss_rate"] = float((~pred[labels]).mean()) if labels.any() else float("nan")
    return out


def summary(scores: np.ndarray, labels: np.ndarray, *, threshold: float = 0.5) -> dict[str, Any]:
    """EER, minDCF, AUC and the rates at ``threshold``, in one dict (percentages as fractions)."""
    value, t = eer(scores, labels)
    return {
        "n_bonafide": int((np.asarray(labels) == 0).sum()),
        "n_spoof": int((np.asarray(labels) == 1).sum()),
        "eer": value,
        "eer_threshold": t,
        "min_dcf": min_dcf(scores, labels),
        "roc_auc": roc_auc(scores, labels),
        **rates_at(scores, labels, threshold),
    }
