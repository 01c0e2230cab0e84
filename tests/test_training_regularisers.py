"""The head trainer's regularisers: view-group batches, the view-consistency penalty, weight averaging,
domain balancing, mixup, band dropout, the domain adversary, the partner ranking loss, label smoothing and
weight decay."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from melcnn.classifier import Checkpoint, HeadConfig, head_inputs  # noqa: E402
from melcnn.config import FeatureConfig  # noqa: E402
from melcnn.training.evaluate import roc_auc  # noqa: E402
from melcnn.training.train import (  # noqa: E402
    TrainConfig,
    _batches,
    _domain_weights,
    _drop_bands,
    _group_members,
    _mix,
    _partner_ranking,
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
    batches = _batches(len(groups), 20, np.random.default_rng(0), _group_members(groups[:, 1]))
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
    with pytest.raises(ValueError, match="does not combine"):
        fit_head(x, y, None, None, train_groups=groups, head=HEAD, cfg=TrainConfig(epochs=1, consistency=1, mixup=0.4))


def test_band_dropout_replaces_whole_frequency_bands_by_their_mean() -> None:
    head = HeadConfig(n_channels=5, n_rows=4, freq_bands=4, hidden=(8, 8, 8))
    rng = np.random.default_rng(0)
    pooled = np.ones((3000, 5, 4), dtype=np.float32) * np.exp(np.arange(4, dtype=np.float32))  # row r: log = r
    x = torch.from_numpy(head_inputs(pooled, head))  # the head's real input layout
    mean = torch.full((x.shape[1],), -7.0)
    out = _drop_bands(x, mean, head.freq_bands, 0.3, rng).numpy()
    kept = np.isclose(out, x.numpy(), atol=1e-5)
    dropped = out == -7.0
    assert (kept | dropped).all()
    for band in range(4):  # every input of a band in the row is dropped, or none is
        cols = np.flatnonzero(np.isclose(x[0].numpy(), band, atol=1e-5))
        assert len(cols) == 5
        assert (dropped[:, cols].all(axis=1) | kept[:, cols].all(axis=1)).all()
        assert 0.27 < dropped[:, cols[0]].mean() < 0.33
    assert torch.equal(_drop_bands(x, mean, 4, 0.0, rng), x)


def test_band_dropout_trains_a_head_that_still_separates_the_classes() -> None:
    x, y, domain = _dominant_domain_data(0, 2000, "random")
    xt, yt, _ = _dominant_domain_data(1, 1000, "random")
    cfg = TrainConfig(epochs=6, batch_size=128, seed=0, balance_domains=True, band_dropout=0.3)
    weights, _, history = fit_head(x, y, None, None, train_domains=domain, head=HEAD, cfg=cfg)
    assert len(history) == 6
    assert roc_auc(Checkpoint("t", "v2", "0", FeatureConfig(), HEAD, weights).logits(xt), yt) > 0.65


def _domain_cue_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two domains per class; input 1 (a channel cue) marks domain 0 of each class (+2 bona fide, -2 spoof)
    and is flat in domain 1, so the cue tells the class in one domain and the domain within each class."""
    rng = np.random.default_rng(seed)
    label, dom = rng.integers(0, 2, n), rng.integers(0, 2, n)
    cue = np.where(dom == 0, np.where(label == 0, 2.0, -2.0), 0.0)
    x = np.exp(rng.normal(0, 0.3, (n, HEAD.n_channels, HEAD.n_rows))).astype(np.float32)
    x[:, 0, 0] = np.exp(np.where(label == 1, 0.8, -0.8) + rng.normal(0, 1.0, n))
    x[:, 1, 0] = np.exp(cue + rng.normal(0, 0.2, n))
    return x, label, dom + 2 * label


def _hidden(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The head's last hidden layer (eval mode) for pooled features ``x``."""
    from melcnn.classifier import torch_head

    model = torch_head(HEAD)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    model.eval()
    with torch.no_grad():
        z = (torch.from_numpy(head_inputs(x, HEAD)) - model.feature_mean) / model.feature_std
        return model.net[:-1](z).numpy()


def test_domain_adversary_hides_the_domain_from_the_hidden_layer() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y, domain = _domain_cue_data(0, 4000)
    xt, yt, dt = _domain_cue_data(10, 2000)
    probe = {}
    for strength in (0.0, 3.0):
        cfg = TrainConfig(epochs=10, batch_size=128, seed=0, adversary=strength)
        weights, _, _ = fit_head(x, y, None, None, train_domains=domain, head=HEAD, cfg=cfg)
        h, ht = _hidden(weights, x), _hidden(weights, xt)
        accuracy = [  # how well a fresh linear probe tells the domain within each class
            LogisticRegression(max_iter=500).fit(h[y == c], domain[y == c]).score(ht[yt == c], dt[yt == c])
            for c in (0, 1)
        ]
        probe[strength] = float(np.mean(accuracy))
        scores = Checkpoint("t", "v2", "0", FeatureConfig(), HEAD, weights).logits(xt)
        assert roc_auc(scores, yt) > 0.75  # and it still tells the classes apart
    assert probe[3.0] < probe[0.0] - 0.05, probe
    with pytest.raises(ValueError, match="train_domains"):
        fit_head(x, y, None, None, head=HEAD, cfg=TrainConfig(epochs=1, adversary=1.0))
    with pytest.raises(ValueError, match="mixup"):
        fit_head(x, y, None, None, train_domains=domain, head=HEAD, cfg=TrainConfig(epochs=1, adversary=1, mixup=0.4))


def test_partner_ranking_is_softplus_of_each_spoofs_gap_to_its_utterances_bona_fide_mean() -> None:
    # (clip, view group, utterance) per chunk; utterance 0: bona fide clips 0 (2 chunks) and 1 (its view),
    # spoof clip 2; utterance 1: spoof clip 3 only (no bona fide partner in the batch: left out)
    groups = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [2, 2, 0], [2, 2, 0], [3, 3, 1]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    logits = torch.tensor([1.0, 3.0, -1.0, 0.0, 1.0, -5.0], requires_grad=True)
    bona_mean = (2.0 + -1.0) / 2  # the mean of the bona fide clips' mean logits
    expected = np.log1p(np.exp(bona_mean - 0.5))
    loss = _partner_ranking(logits, labels, groups)
    assert float(loss) == pytest.approx(expected)
    loss.backward()
    assert logits.grad[3] < 0 and logits.grad[0] > 0 and logits.grad[5] == 0  # spoof up, bona fide down
    # clip weights are the mean of their chunks' weights; with one paired spoof they change nothing
    weighted = _partner_ranking(logits, labels, groups, torch.tensor([1.0, 1.0, 1.0, 2.0, 4.0, 9.0]))
    assert float(weighted) == pytest.approx(expected)
    # an utterance without a bona fide clip gives no loss at all
    assert float(_partner_ranking(logits[5:], labels[5:], groups[5:])) == 0.0


def _paired_data(seed: int, n_pairs: int, n_single: int, channel_sd: float):
    """Utterances: ``n_pairs`` paired (a bona fide clip and its spoof partner, 2 chunks each, sharing the
    utterance's content and channel) and ``n_single`` unpaired (one clip alone). Input 0 carries the
    generator's weak evidence on top of the utterance's content; input 1 the channel, which on the unpaired
    clips gives the label away (bona fide +2, spoof -2) and on the pairs says nothing."""
    rng = np.random.default_rng(seed)
    rows = [
        (u, label, ch, content)
        for u, ch, content in zip(
            range(n_pairs), rng.normal(0, channel_sd, n_pairs), rng.normal(0, 1.0, n_pairs), strict=True
        )
        for label in (0, 1)
    ]
    for u in range(n_pairs, n_pairs + n_single):
        label = int(rng.integers(0, 2))
        rows.append((u, label, rng.normal(2.0 if label == 0 else -2.0, 0.5), rng.normal(0, 1.0)))
    x, y, groups = [], [], []
    for clip, (utt, label, ch, content) in enumerate(rows):
        for _ in range(2):
            f = np.exp(rng.normal(0, 0.3, (HEAD.n_channels, HEAD.n_rows))).astype(np.float32)
            f[0, 0] = np.exp(content + 0.8 * label + rng.normal(0, 0.3))
            f[1, 0] = np.exp(ch + rng.normal(0, 0.1))
            x.append(f)
            y.append(label)
            groups.append((clip, clip, utt))
    return np.array(x), np.array(y), np.array(groups)


@pytest.mark.parametrize("seed", [0, 1])
def test_partner_ranking_moves_the_head_from_the_channel_to_what_the_generator_changed(seed: int) -> None:
    """Trained where the channel gives the label away on unpaired clips, the head leans on it; the partner
    ranking loss, which the channel (equal within a pair) cannot lower, moves it to the evidence, and on
    new channels (pairs only, the channel unrelated to the class) it ranks better."""
    x, y, groups = _paired_data(0, n_pairs=150, n_single=150, channel_sd=1.0)
    xt, yt, _ = _paired_data(2, n_pairs=400, n_single=0, channel_sd=2.0)
    auc = {}
    for weight in (0.0, 3.0):
        cfg = TrainConfig(epochs=25, batch_size=64, seed=seed, pairing=weight, patience=100)
        weights, _, history = fit_head(x, y, None, None, train_groups=groups, head=HEAD, cfg=cfg)
        assert len(history) == 25
        auc[weight] = roc_auc(Checkpoint("t", "v2", "0", FeatureConfig(), HEAD, weights).fake_scores(xt), yt)
    assert auc[3.0] > auc[0.0] + 0.04, auc


def test_partner_ranking_needs_utterances_and_does_not_mix() -> None:
    x, y, groups = _paired_data(0, n_pairs=10, n_single=0, channel_sd=1.0)
    with pytest.raises(ValueError, match="utterance"):
        fit_head(x, y, None, None, train_groups=groups[:, :2], head=HEAD, cfg=TrainConfig(epochs=1, pairing=1))
    with pytest.raises(ValueError, match="mixup"):
        fit_head(x, y, None, None, train_groups=groups, head=HEAD, cfg=TrainConfig(epochs=1, pairing=1, mixup=0.4))


def _separable_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Features whose input 0 tells the class apart with a wide margin."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.exp(rng.normal(0, 0.3, (n, HEAD.n_channels, HEAD.n_rows))).astype(np.float32)
    x[:, 0, 0] = np.exp(np.where(y == 1, 2.0, -2.0) + rng.normal(0, 0.3, n))
    return x, y


def test_label_smoothing_caps_the_confidence_and_weight_decay_shrinks_the_weights() -> None:
    """Smoothed targets e/2 and 1-e/2 are matched by logits near +-log((1-e/2)/(e/2)), not by ever larger
    ones; a larger weight decay leaves smaller weights. Every head still separates the classes."""
    x, y = _separable_data(0, 512)
    xt, yt = _separable_data(1, 400)

    def fit(**kw: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
        cfg = TrainConfig(epochs=12, batch_size=64, lr=1e-2, seed=0, threads=1, **kw)
        weights, _, _ = fit_head(x, y, None, None, head=HEAD, cfg=cfg)
        return weights, Checkpoint("t", "v2", "0", FeatureConfig(), HEAD, weights).logits(xt)

    plain_w, plain = fit()
    _, smooth = fit(label_smoothing=0.4)
    cap = np.log((1 - 0.2) / 0.2)  # 1.39: the logit whose sigmoid is the smoothed target
    assert np.percentile(np.abs(smooth), 95) < 1.3 * cap < 2 * cap < np.median(np.abs(plain))
    assert roc_auc(smooth, yt) > 0.99 and roc_auc(plain, yt) > 0.99
    decayed_w, decayed = fit(weight_decay=5.0)

    def norm(w: dict[str, np.ndarray]) -> float:
        return sum(float(np.sum(v.astype(np.float64) ** 2)) for k, v in w.items() if k.endswith("weight"))

    assert norm(decayed_w) < 0.8 * norm(plain_w)
    assert roc_auc(decayed, yt) > 0.99
    with pytest.raises(ValueError, match="label_smoothing"):
        fit_head(x, y, None, None, head=HEAD, cfg=TrainConfig(epochs=1, label_smoothing=1.0))


def test_sharpness_aware_step_leaves_the_gradient_taken_at_the_moved_weights_and_restores_them() -> None:
    """SAM's second pass: the gradient it leaves is the batch's gradient at w + rho * g / |g| (computed here
    by hand), the weights come back unchanged, and BatchNorm's running statistics see only the first pass."""
    import torch

    from melcnn.training.train import _sharpness_aware_step

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    x, y = torch.randn(32, 5), (torch.rand(32) < 0.5).float()

    def loss() -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y)

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss().backward()
    g = [p.grad.clone() for p in model.parameters()]
    stats = [model[1].running_mean.clone(), model[1].running_var.clone()]
    rho = 0.05
    _sharpness_aware_step(model, loss, rho, opt)
    sam_grad = [p.grad.clone() for p in model.parameters()]
    assert torch.equal(model[1].running_mean, stats[0]) and torch.equal(model[1].running_var, stats[1])
    assert model[1].momentum == pytest.approx(0.1)  # restored
    for k, v in model.state_dict().items():
        if k not in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
            torch.testing.assert_close(v, before[k], rtol=0, atol=1e-7)
    # by hand: move each weight by rho * g / |g|, take the gradient there
    norm = torch.sqrt(sum((t**2).sum() for t in g))
    with torch.no_grad():
        for p, t in zip(model.parameters(), g, strict=True):
            p.add_(rho * t / norm)
    model.zero_grad()
    model[1].momentum = 0.0
    loss().backward()
    for p, t in zip(model.parameters(), sam_grad, strict=True):
        torch.testing.assert_close(p.grad, t, rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(a, b) for a, b in zip(g, sam_grad, strict=True))  # a different gradient


def test_sharpness_aware_training_still_separates_the_classes_and_is_reproducible() -> None:
    x, y = _separable_data(0, 512)
    xt, yt = _separable_data(1, 400)

    def fit(**kw: float) -> np.ndarray:
        cfg = TrainConfig(epochs=4, batch_size=64, lr=1e-2, seed=0, threads=1, **kw)
        weights, _, _ = fit_head(x, y, None, None, head=HEAD, cfg=cfg)
        return Checkpoint("t", "v2", "0", FeatureConfig(), HEAD, weights).logits(xt)

    sam = fit(sam=0.05)
    assert roc_auc(sam, yt) > 0.99
    np.testing.assert_array_equal(sam, fit(sam=0.05))
    assert not np.allclose(sam, fit())
    with pytest.raises(ValueError, match="sam"):
        fit_head(x, y, None, None, head=HEAD, cfg=TrainConfig(epochs=1, sam=-0.1))
