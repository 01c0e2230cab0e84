"""The head trainer's regularisers: view-group batches, the view-consistency penalty, weight averaging,
domain balancing."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from melcnn.classifier import Checkpoint, HeadConfig  # noqa: E402
from melcnn.config import FeatureConfig  # noqa: E402
from melcnn.training.evaluate import roc_auc  # noqa: E402
from melcnn.training.train import (  # noqa: E402
    TrainConfig,
    _batches,
    _domain_weights,
    _mix,
    _view_group_members,
    _view_variance,
    fit_head,
)

HEAD = HeadConfig(n_channels=4, n_rows=2, freq_bands=2, hidden=(32, 16, 8))


def _groups(n_groups: int, views: int, chunks: int) -> np.ndarray:
    """(clip, group) per chunk: ``n_groups`` base clips with ``views`` views each, ``chunks`` chunks per clip."""
    clip = np.repeat(np.arange(n_groups * (views + 1)), chunks)
    return np.stack([clip, clip // (views + 1)], axis=1)


def test_group_batches_cover_every_chunk_once_and_keep_groups_whole() -> None:
    groups = _groups(n_groups=37, views=2, chunks=3)
    batches = _batches(len(groups), 20, np.random.default_rng(0), _view_group_members(groups))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(groups)))
    where = {int(i): b for b, idx in enumerate(batches) for i in idx}
    for g in range(37):
        assert len({where[int(i)] for i in np.flatnonzero(groups[:, 1] == g)}) == 1
    assert all(len(b) >= 20 for b in batches[:-1])


def test_view_variance_is_the_mean_within_group_variance_of_clip_means() -> None:
    groups = np.array([[0, 0], [0, 0], [1, 0], [2, 1], [3, 1], [3, 1], [4, 2]])
    p = np.array([0.2, 0.4, 0.9, 0.1, 0.5, 0.7, 0.8])
    # group 0: clip means 0.3, 0.9 -> var 0.09; group 1: 0.1, 0.6 -> 0.0625; group 2 has one clip: left out
    got = float(_view_variance(torch.tensor(p), groups))
    assert got == pytest.approx((0.09 + 0.0625) / 2)


def _nuisance_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features whose channel (input 1) gives the label away on base clips but not on their views."""
    rng = np.random.default_rng(seed)
    groups = _groups(n_groups=240, views=2, chunks=2)
    label = (groups[:, 1] % 2).astype(np.int64)
    is_view = groups[:, 0] % 3 != 0
    evidence = np.where(label == 1, 1.0, -1.0) * 0.6 + rng.normal(0, 1.0, len(label))
    channel = np.where(is_view, rng.choice([-3.0, 3.0], len(label)), np.where(label == 1, 3.0, -3.0))
    x = np.exp(rng.normal(0, 0.3, (len(label), HEAD.n_channels, HEAD.n_rows))).astype(np.float32)
    x[:, 0, 0] = np.exp(evidence)
    x[:, 1, 0] = np.exp(channel + rng.normal(0, 0.1, len(label)))
    return x, label, groups


def _score_spread(weights: dict[str, np.ndarray], x: np.ndarray, groups: np.ndarray) -> float:
    ck = Checkpoint("t", "v2", "0", FeatureConfig(), HEAD, weights)
    return float(_view_variance(torch.tensor(ck.fake_scores(x).astype(np.float64)), groups))


def test_consistency_penalty_makes_scores_agree_across_views() -> None:
    x, y, groups = _nuisance_data(0)
    xd, yd, gd = _nuisance_data(1)
    spreads = {}
    for weight in (0.0, 20.0):
        cfg = TrainConfig(epochs=15, batch_size=64, seed=0, consistency=weight, patience=100)
        weights, _, history = fit_head(x, y, xd, yd, dev_files=gd[:, 0], train_groups=groups, head=HEAD, cfg=cfg)
        assert len(history) == 15
        spreads[weight] = _score_spread(weights, xd, gd)
    assert spreads[20.0] < 0.5 * spreads[0.0]


def test_weight_averaging_runs_every_epoch_and_averages() -> None:
    x, y, groups = _nuisance_data(0)
    xd, yd, gd = _nuisance_data(1)
    cfg = TrainConfig(epochs=6, batch_size=64, seed=0, average_from=3, patience=1)
    weights, calibration, history = fit_head(x, y, xd, yd, dev_files=gd[:, 0], head=HEAD, cfg=cfg)
    assert len(history) == 6  # no early stopping
    assert calibration["best_epoch"] == "average of epochs 3-6"
    last, _, _ = fit_head(
        x, y, xd, yd, dev_files=gd[:, 0], head=HEAD, cfg=TrainConfig(**{**cfg.__dict__, "average_from": 6})
    )
    assert not np.allclose(weights["net.1.weight"], last["net.1.weight"])
    # BatchNorm statistics were re-estimated for the averaged weights, so its dev scores are finite and vary
    scores = Checkpoint("t", "v2", "0", FeatureConfig(), HEAD, weights, calibration=calibration).fake_scores(xd)
    assert np.isfinite(scores).all() and scores.std() > 0.01


def test_domain_weights_give_each_domain_of_a_class_an_equal_share() -> None:
    domains = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 3, 3])
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    w = _domain_weights(domains, labels)
    assert w.mean() == pytest.approx(1.0)
    totals = {d: w[domains == d].sum() for d in range(4)}
    assert totals[0] == pytest.approx(totals[1]) and totals[2] == pytest.approx(totals[3])
    assert totals[0] + totals[1] == pytest.approx(totals[2] + totals[3])  # the classes count alike


def _dominant_domain_data(seed: int, n: int, nuisance: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bona fide domains 0 (big) and 1 (small), spoof domains 2 (big) and 3 (small). Input 0 carries weak
    evidence everywhere; input 1 (a channel cue) gives the label away in the big domains and the opposite
    in the small ones (``nuisance="shortcut"``), or is noise (``"random"``: a new source's channel)."""
    rng = np.random.default_rng(seed)
    big = rng.random(n) < 0.85
    label = rng.integers(0, 2, n)
    domain = np.where(label == 0, np.where(big, 0, 1), np.where(big, 2, 3))
    evidence = np.where(label == 1, 1.0, -1.0) * 0.8 + rng.normal(0, 1.0, n)
    sign = np.where(label == 1, 1.0, -1.0) * np.where(big, 1.0, -1.0)
    cue = 2.0 * sign if nuisance == "shortcut" else rng.choice([-2.0, 2.0], n)
    x = np.exp(rng.normal(0, 0.3, (n, HEAD.n_channels, HEAD.n_rows))).astype(np.float32)
    x[:, 0, 0] = np.exp(evidence)
    x[:, 1, 0] = np.exp(cue + rng.normal(0, 0.1, n))
    return x, label, domain


def test_balancing_domains_keeps_a_big_domain_s_shortcut_from_deciding() -> None:
    x, y, domain = _dominant_domain_data(0, 4000, "shortcut")
    xt, yt, _ = _dominant_domain_data(1, 2000, "random")
    auc = {}
    for balance in (False, True):
        cfg = TrainConfig(epochs=8, batch_size=128, seed=0, balance_domains=balance)
        weights, _, _ = fit_head(x, y, None, None, train_domains=domain, head=HEAD, cfg=cfg)
        auc[balance] = roc_auc(Checkpoint("t", "v2", "0", FeatureConfig(), HEAD, weights).logits(xt), yt)
    assert auc[True] > auc[False] + 0.05, auc
    with pytest.raises(ValueError, match="train_domains"):
        fit_head(x, y, None, None, head=HEAD, cfg=TrainConfig(epochs=1, balance_domains=True))


def test_mixup_mixes_inputs_targets_and_weights_with_one_weight_per_row() -> None:
    import torch

    rng = np.random.default_rng(0)
    n = 64
    y = torch.from_numpy(rng.integers(0, 2, n).astype(np.float32))
    w = torch.from_numpy(rng.uniform(0.5, 2.0, n).astype(np.float32))
    x = torch.from_numpy(rng.normal(0, 1, (n, 5)).astype(np.float32))
    x[:, 0], x[:, 1] = y, w  # so each mixed row says which weight its target and loss weight got
    xm, ym, wm = _mix(x, y, w, np.random.default_rng(1), 0.4)
    assert torch.allclose(xm[:, 0], ym, atol=1e-6) and torch.allclose(xm[:, 1], wm, atol=1e-6)
    assert ((ym > 0) & (ym < 1)).any() and ym.min() >= 0 and ym.max() <= 1  # soft targets between the labels
    assert not torch.allclose(xm, x)
    _, _, none_w = _mix(x, y, None, np.random.default_rng(1), 0.4)
    assert none_w is None


def test_mixup_trains_a_head_that_still_separates_the_classes() -> None:
    x, y, domain = _dominant_domain_data(0, 2000, "random")
    xt, yt, _ = _dominant_domain_data(1, 1000, "random")
    cfg = TrainConfig(epochs=6, batch_size=128, seed=0, balance_domains=True, mixup=0.4)
    weights, _, history = fit_head(x, y, None, None, train_domains=domain, head=HEAD, cfg=cfg)
    assert len(history) == 6
    assert roc_auc(Checkpoint("t", "v2", "0", FeatureConfig(), HEAD, weights).logits(xt), yt) > 0.65
    groups = _groups(len(y) // 4, 1, 2)  # a clip and one view, two chunks each
    assert len(groups) == len(y)
    with pytest.raises(ValueError, match="do not combine"):
        fit_head(x, y, None, None, train_groups=groups, head=HEAD, cfg=TrainConfig(epochs=1, consistency=1, mixup=0.4))
