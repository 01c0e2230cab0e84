"""Train the specification's head on cached scattering features, then calibrate it on dev.

Standard practice: AdamW, BCE with class balancing (``pos_weight``), early stopping on the dev
file-level EER, fixed seeds. Calibration: Platt scaling of the chunk logits on dev (class-balanced),
then the bias is shifted so that the file-level dev EER operating point lands exactly on the
shipped threshold 0.5. So 0.5 means: "the point where, on held-out dev data, the bona fide
false-reject rate equals the spoof miss rate", and scores are monotone probabilities around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np

from ..classifier import (
    HeadConfig,
    calibrated_scores,
    head_inputs,
    select_stats,
    time_stats_of,
    torch_head,
    weights_from_torch,
)
from .evaluate import eer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 10  # epochs without dev-EER improvement before stopping
    seed: int = 0
    threads: int = 2
    #: weight of the view-consistency penalty: the variance, across a clip and its channel-augmented views,
    #: of their mean chunk probabilities (0: off; needs ``train_groups``)
    consistency: float = 0.0
    #: average the weights of epochs ``average_from``..``epochs`` (1-based) instead of early stopping,
    #: then re-estimate BatchNorm statistics on train (0: off, early stopping on dev)
    average_from: int = 0
    #: weight the loss so that, within each class, every domain (a bona fide source, a spoof generator)
    #: counts as much as any other, and the two classes count alike (False: chunks count alike, classes
    #: balanced by ``pos_weight``; needs ``train_domains``)
    balance_domains: bool = False
    #: mixup: each train chunk is replaced by a convex mix with another chunk of its batch, the mixing weight
    #: drawn from Beta(mixup, mixup), and its target (and loss weight) mixed alike (0: off)
    mixup: float = 0.0
    #: band dropout: each frequency band of each train chunk is replaced, with this probability, by the
    #: train mean of its inputs (0 after standardisation), so that no band alone decides (0: off)
    band_dropout: float = 0.0
    #: weight of a domain adversary: a linear classifier on the last hidden layer learns, within each class,
    #: which domain (bona fide source, generator) a chunk comes from, and the head is trained with this
    #: weight to leave it guessing (domain confusion), so the hidden layer is pushed to carry no source or
    #: generator identity (0: off; needs ``train_domains``)
    adversary: float = 0.0
    #: weight of the partner ranking loss: within each utterance of a batch, every spoof clip made from it
    #: (its resynthesis, a transform of it, or TTS in its channel, views included) is asked to score above
    #: the utterance's bona fide clips, softplus(bona fide mean logit - spoof clip logit); a shift of the
    #: scores that a source or channel gives both sides of a pair cancels, so only what the generator changed
    #: lowers it (0: off; needs ``train_groups`` with utterances)
    pairing: float = 0.0
    #: label smoothing: the targets 0 and 1 become ``label_smoothing / 2`` and ``1 - label_smoothing / 2``,
    #: so that no chunk is pushed to an extreme logit by the cues that tell its source apart (0: off)
    label_smoothing: float = 0.0
    #: sharpness-aware minimisation (SAM, Foret et al. 2021): each step takes the gradient at the weights
    #: moved by this radius up the batch's own gradient, so training seeks weights whose whole
    #: neighbourhood has a low loss, which is reported to generalise better (twice the cost per step; the
    #: second pass leaves the BatchNorm statistics alone; 0: off)
    sam: float = 0.0


#: the fields of :class:`TrainConfig` that `melcnn train` and `melcnn eval --cv` take as options (and that a
#: cross-validation report records)
REGULARISERS = (
    "consistency",
    "average_from",
    "balance_domains",
    "mixup",
    "band_dropout",
    "adversary",
    "pairing",
    "label_smoothing",
    "sam",
    "weight_decay",
)


def file_scores(chunk_scores: np.ndarray, file_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean chunk score per file, as the detector aggregates. Returns ``(unique ids, mean scores)``."""
    ids, inv = np.unique(file_ids, return_inverse=True)
    sums = np.bincount(inv, weights=np.asarray(chunk_scores, dtype=np.float64))
    return ids, sums / np.bincount(inv)


def _file_labels(labels: np.ndarray, file_ids: np.ndarray) -> np.ndarray:
    ids, first = np.unique(file_ids, return_index=True)
    return np.asarray(labels)[first]


def fit_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_dev: np.ndarray | None,
    y_dev: np.ndarray | None,
    *,
    dev_files: np.ndarray | None = None,
    train_groups: np.ndarray | None = None,
    train_domains: np.ndarray | None = None,
    head: HeadConfig | None = None,
    cfg: TrainConfig | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any], list[dict[str, float]]]:
    """Train the head and calibrate it.

    Parameters
    ----------
    x_train, x_dev : np.ndarray [shape=(n, n_channels, n_rows)]
        Time-pooled scattering maps of chunks (:func:`melcnn.features.chunk_features`).
    y_train, y_dev : np.ndarray [shape=(n,)]
        1 = spoof, 0 = bona fide.
    dev_files : np.ndarray [shape=(n_dev,)], optional
        File id of each dev chunk; early stopping and calibration use file-level scores.
        With ``x_dev=None`` the head trains for ``cfg.epochs`` epochs, is not calibrated (scale 1, bias 0),
        and the last epoch is returned (the cross-validation's folds have no dev of their own).
    train_groups : np.ndarray [shape=(n,), 2 or 3 columns], optional
        Per train chunk: ``[:, 0]`` its clip, ``[:, 1]`` its view group (the base clip of a clip and its
        channel-augmented views), ``[:, 2]`` its utterance (a bona fide utterance and every spoof made
        from it or in its channel, views included; :func:`melcnn.training.features.view_groups`). With
        ``cfg.consistency > 0`` batches are made of whole view groups and the loss adds ``consistency``
        times the within-group variance of the clips' mean chunk probabilities; with ``cfg.pairing > 0``
        batches are made of whole utterances and the loss adds ``pairing`` times the partner ranking loss.
    train_domains : np.ndarray [shape=(n,)], optional
        Per train chunk: its domain (:func:`melcnn.training.features.domain_ids`), for
        ``cfg.balance_domains``.

    Returns
    -------
    weights : dict of float32 arrays (the checkpoint tensors)
    calibration : dict (``scale``, ``bias``, description and dev figures)
    history : list of per-epoch dicts (loss, dev EER)
    """
    import torch

    head = head or HeadConfig()
    cfg = cfg or TrainConfig()
    if not 0 <= cfg.label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.sam < 0:
        raise ValueError(f"sam must be >= 0, got {cfg.sam}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    fixed_epochs = x_dev is None
    if fixed_epochs:
        x_dev, y_dev = x_train[:2], np.asarray(y_train)[:2]
    assert x_dev is not None and y_dev is not None, "x_dev and y_dev are given together"
    dev_files = np.arange(len(y_dev)) if dev_files is None or fixed_epochs else np.asarray(dev_files)
    dev_file_labels = _file_labels(y_dev, dev_files)
    try:
        xt = head_inputs(x_train, head)
        xd = torch.from_numpy(head_inputs(x_dev, head))
        yt = np.asarray(y_train, dtype=np.float32)
        model = torch_head(head)
        model.feature_mean.copy_(torch.from_numpy(xt.mean(axis=0)))
        model.feature_std.copy_(torch.from_numpy(xt.std(axis=0) + 1e-4))
        n_pos = max(1.0, float(yt.sum()))
        n_neg = max(1.0, float(len(yt) - yt.sum()))
        if cfg.balance_domains and train_domains is None:
            raise ValueError("balance_domains needs train_domains")
        domains = None if train_domains is None else np.unique(np.asarray(train_domains), return_inverse=True)[1]
        if cfg.balance_domains:
            assert domains is not None
            sample_w = torch.from_numpy(_domain_weights(domains, yt))
            loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
        else:
            sample_w = None
            loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(n_neg / n_pos))
        adversary = None
        if cfg.adversary > 0:
            if domains is None or cfg.mixup > 0:
                raise ValueError("the domain adversary needs train_domains and does not combine with mixup")
            adversary = _DomainAdversary(head.hidden[-1], domains, yt)
            domains_t = torch.from_numpy(domains)
            # domains weigh alike within each class for the adversary, so a uniform guess is what knowing
            # nothing of the domain gives (with raw counts it would be the domains' prior)
            adversary_w = sample_w if sample_w is not None else torch.from_numpy(_domain_weights(domains, yt))
        params: list[dict[str, Any]] = [{"params": list(model.parameters())}]
        if adversary is not None:  # it must keep up with the head, or there is nothing to confuse
            params.append({"params": list(adversary.parameters()), "lr": 10 * cfg.lr, "weight_decay": 0.0})
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
        xt_t, yt_t = torch.from_numpy(xt), torch.from_numpy(yt)
        grouped = cfg.consistency > 0 or cfg.pairing > 0
        groups = None if train_groups is None or not grouped else np.asarray(train_groups)
        if cfg.pairing > 0 and (groups is None or groups.shape[1] < 3):
            raise ValueError("the partner ranking loss needs train_groups with an utterance column")
        if groups is not None and cfg.mixup > 0:  # a mixed chunk belongs to no one view group or utterance
            raise ValueError("mixup does not combine with the view-consistency penalty or the partner ranking")
        steps, step = cfg.epochs * -(-len(yt) // cfg.batch_size), 0
        members = None if groups is None else _group_members(groups[:, 2 if cfg.pairing > 0 else 1])
        best: tuple[float, int, dict[str, Any]] | None = None
        history: list[dict[str, float]] = []
        averaged: dict[str, Any] | None = None
        n_averaged = 0

        def batch_loss(xb: Any, yb: Any, target: Any, wb: Any, idx: Any, idx_np: np.ndarray, ramp: float) -> Any:
            """A batch's loss (a tensor) at the model's current weights."""
            hidden = model.net[:-2]((xb - model.feature_mean) / model.feature_std)  # before the last dropout
            logits = model.net[-1](model.net[-2](hidden))[:, 0]
            loss = loss_fn(logits, target)
            if wb is not None:
                loss = (loss * wb).sum() / wb.sum()
            if adversary is not None:
                loss = loss + adversary.loss(hidden, domains_t[idx], yb, adversary_w[idx], cfg.adversary * ramp)
            if groups is not None and cfg.consistency > 0:
                loss = loss + cfg.consistency * _view_variance(torch.sigmoid(logits), groups[idx_np])
            if groups is not None and cfg.pairing > 0:
                loss = loss + cfg.pairing * _partner_ranking(logits, yt[idx_np], groups[idx_np], wb)
            return loss

        for epoch in range(cfg.epochs):
            model.train()
            total = 0.0
            for idx_np in _batches(len(yt), cfg.batch_size, rng, members):
                if len(idx_np) < 2:  # BatchNorm needs two samples
                    continue
                idx = torch.from_numpy(idx_np)
                opt.zero_grad()
                xb, yb = xt_t[idx], yt_t[idx]
                wb = None if sample_w is None else sample_w[idx]
                if cfg.mixup > 0:
                    xb, yb, wb = _mix(xb, yb, wb, rng, cfg.mixup)
                target = yb if cfg.label_smoothing == 0 else yb * (1 - cfg.label_smoothing) + cfg.label_smoothing / 2
                if cfg.band_dropout > 0:
                    xb = _drop_bands(xb, model.feature_mean, head.freq_bands, cfg.band_dropout, rng)
                ramp = 2.0 / (1.0 + np.exp(-10.0 * step / steps)) - 1.0  # DANN's schedule, 0 -> 1
                step += 1

                at_weights = partial(batch_loss, xb, yb, target, wb, idx, idx_np, ramp)
                loss = at_weights()
                loss.backward()
                if cfg.sam > 0:
                    _sharpness_aware_step(model, at_weights, cfg.sam, opt)
                opt.step()
                total += loss.item() * len(idx)
            sched.step()
            model.eval()
            if cfg.average_from and epoch + 1 >= cfg.average_from:
                n_averaged += 1
                state = model.state_dict()
                if averaged is None:
                    averaged = {k: v.detach().clone().double() for k, v in state.items() if v.is_floating_point()}
                else:
                    for k, v in averaged.items():
                        v += (state[k].double() - v) / n_averaged
            if fixed_epochs:  # no model selection: the last epoch is the model
                dev_eer = float("nan")
                history.append({"epoch": epoch + 1, "train_loss": total / len(yt), "dev_file_eer": dev_eer})
                best = (dev_eer, epoch, {})
                if progress:
                    progress(epoch + 1, cfg.epochs, history[-1])
                continue
            with torch.no_grad():
                dev_logits = model(xd).numpy()
            _, dev_mean = file_scores(dev_logits, dev_files)
            dev_eer = eer(dev_mean, dev_file_labels)[0]
            row = {"epoch": epoch + 1, "train_loss": total / len(yt), "dev_file_eer": dev_eer}
            history.append(row)
            if progress:
                progress(epoch + 1, cfg.epochs, row)
            if cfg.average_from:  # no selection: every epoch runs, the average is the model
                best = (dev_eer, epoch, {})
            elif best is None or dev_eer < best[0] - 1e-9:
                best = (dev_eer, epoch, {k: v.clone() for k, v in model.state_dict().items()})
            elif epoch - best[1] >= cfg.patience:
                break
        assert best is not None
        if averaged is not None:
            state = model.state_dict()
            model.load_state_dict({k: averaged[k].to(v.dtype) if k in averaged else v for k, v in state.items()})
            _refresh_batchnorm(model, xt_t, cfg.batch_size)
            if not fixed_epochs:
                with torch.no_grad():
                    _, dev_mean = file_scores(model(xd).numpy(), dev_files)
                best = (eer(dev_mean, dev_file_labels)[0], -1, {})
        elif best[2]:
            model.load_state_dict(best[2])
        model.eval()
        if fixed_epochs:
            return weights_from_torch(model), {"scale": 1.0, "bias": 0.0, "method": "none"}, history
        with torch.no_grad():
            dev_logits = model(xd).numpy().astype(np.float64)
    finally:
        torch.set_num_threads(prev_threads)
    calibration = calibrate(dev_logits, np.asarray(y_dev), dev_files, head=head)
    calibration["best_epoch"] = best[1] + 1 if best[1] >= 0 else f"average of epochs {cfg.average_from}-{cfg.epochs}"
    calibration["dev_file_eer_raw"] = best[0]
    return weights_from_torch(model), calibration, history


def _sharpness_aware_step(model: Any, batch_loss: Callable[[], Any], rho: float, opt: Any) -> None:
    """SAM's second pass: with the batch's gradient in ``model``'s parameters, move them by ``rho`` along
    it (normalised), take the gradient of ``batch_loss`` there (BatchNorm running statistics untouched),
    and move them back, leaving that gradient for the optimiser's step."""
    import torch

    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2)
    with torch.no_grad():
        moves = [p.grad * (rho / (norm + 1e-12)) for p in params]
        for p, m in zip(params, moves, strict=True):
            p.add_(m)
    opt.zero_grad()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: the second pass changes no statistic
    try:
        batch_loss().backward()
    finally:
        for m, mo in zip(norms, momenta, strict=True):
            m.momentum = mo
        with torch.no_grad():
            for p, m in zip(params, moves, strict=True):
                p.sub_(m)


def fit_heads(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_dev: np.ndarray | None,
    y_dev: np.ndarray | None,
    *,
    heads: tuple[HeadConfig, ...],
    **kwargs: Any,
) -> list[tuple[dict[str, np.ndarray], dict[str, Any], list[dict[str, float]]]]:
    """:func:`fit_head` for each of ``heads`` (a checkpoint's ``head`` and ``extra_heads``), each on its own
    statistics over time of features that hold :func:`~melcnn.classifier.time_stats_of` ``heads``; the
    other arguments are :func:`fit_head`'s. Returns its result per head."""
    have = time_stats_of(heads)
    return [
        fit_head(
            select_stats(x_train, have, h.time_stats),
            y_train,
            None if x_dev is None else select_stats(x_dev, have, h.time_stats),
            y_dev,
            head=h,
            **kwargs,
        )
        for h in heads
    ]


class _DomainAdversary:
    """A linear classifier of a chunk's domain among the domains of its own class, on the head's last
    hidden layer. It learns the domain from the hidden layer; the head, in turn, is trained to leave it
    no better than a uniform guess among its class's domains (the domain-confusion loss of Tzeng et al.,
    2015, a bounded form of DANN's gradient reversal, which can instead push the hidden layer to encode
    the domain more strongly with an alternating sign). So the head learns to hide the source (bona
    fide) and the generator (spoof) while it learns the class."""

    def __init__(self, width: int, domains: np.ndarray, labels: np.ndarray) -> None:
        import torch

        n = int(domains.max()) + 1
        self.linear = torch.nn.Linear(width, n)
        of_class = np.zeros((2, n), dtype=bool)
        of_class[labels.astype(np.int64), domains] = True
        self.allowed = torch.from_numpy(of_class)  # (class, domain): the domains a chunk of that class can have

    def parameters(self):  # -> iterator of tensors
        return self.linear.parameters()

    def loss(self, hidden, domain, label, weight, strength: float):  # tensors, float -> scalar tensor
        """The adversary's cross-entropy (its own parameters only) plus ``strength`` times the head's
        confusion loss (the head's parameters only), each weighted by ``weight`` per chunk (weights that
        make the domains of a class count alike, so that the uniform guess is the uninformed one)."""
        import torch
        from torch.nn import functional as F

        allowed = self.allowed[label.long()]
        z = self.linear(hidden.detach()).masked_fill(~allowed, float("-inf"))
        ce = F.cross_entropy(z, domain, reduction="none")
        z_head = F.linear(hidden, self.linear.weight.detach(), self.linear.bias.detach())
        logp = torch.log_softmax(z_head.masked_fill(~allowed, float("-inf")), dim=1)
        confusion = -(logp.masked_fill(~allowed, 0.0).sum(1) / allowed.sum(1))  # CE against uniform
        per_chunk = ce + strength * confusion
        return per_chunk.mean() if weight is None else (per_chunk * weight).sum() / weight.sum()


def _drop_bands(x, mean, bands: int, p: float, rng: np.random.Generator):  # (tensor, tensor, ...) -> tensor
    """Band dropout: each frequency band of each row of ``x`` (head inputs, channel-major: input ``i``
    belongs to band ``i % bands``) is replaced, with probability ``p``, by ``mean`` (the train mean, 0
    once standardised) in every channel."""
    import torch

    drop = torch.from_numpy(rng.random((len(x), bands)) < p)
    return torch.where(drop[:, torch.arange(x.shape[1]) % bands], mean, x)


def _mix(x, y, w, rng: np.random.Generator, alpha: float):  # (tensors, generator, float) -> tensors
    """Mixup of a batch: each row mixed with a random other row of the batch, weight ~ Beta(alpha, alpha)."""
    import torch

    n = len(y)
    lam = torch.from_numpy(rng.beta(alpha, alpha, size=n).astype(np.float32))
    perm = torch.from_numpy(rng.permutation(n))
    x = lam[:, None] * x + (1 - lam[:, None]) * x[perm]
    y = lam * y + (1 - lam) * y[perm]
    w = None if w is None else lam * w + (1 - lam) * w[perm]
    return x, y, w


def _domain_weights(domains: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample loss weights (mean 1): each class half the total, split equally among its domains."""
    w = np.zeros(len(domains), dtype=np.float32)
    for cls in (0, 1):
        in_cls = labels == cls
        doms, counts = np.unique(domains[in_cls], return_counts=True)
        if len(doms) == 0:
            continue
        per = dict(zip(doms.tolist(), (0.5 / len(doms) / counts).tolist(), strict=True))
        w[in_cls] = np.array([per[d] for d in domains[in_cls].tolist()], dtype=np.float32)
    return w * (len(w) / w.sum())


def _group_members(group: np.ndarray) -> list[np.ndarray]:
    """Chunk indices of each group (a view group or an utterance: one id per chunk), in group order."""
    by_group = np.argsort(group, kind="stable")
    return np.split(by_group, np.flatnonzero(np.diff(group[by_group])) + 1)


def _batches(n: int, batch_size: int, rng: np.random.Generator, members: list[np.ndarray] | None) -> list[np.ndarray]:
    """Shuffled mini-batches of chunk indices; with ``members`` (:func:`_group_members`), whole groups in
    batches of about ``batch_size`` chunks."""
    if members is None:
        order = rng.permutation(n)
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    out: list[np.ndarray] = []
    current: list[np.ndarray] = []
    size = 0
    for g in rng.permutation(len(members)):
        current.append(members[g])
        size += len(members[g])
        if size >= batch_size:
            out.append(np.concatenate(current))
            current, size = [], 0
    if current:
        out.append(np.concatenate(current))
    return out


def _view_variance(p, groups: np.ndarray):  # (torch.Tensor, (n, 2) array) -> torch scalar
    """Mean over view groups of the variance of their clips' mean chunk probabilities."""
    import torch

    clip, first = _clips_of(groups[:, 0])
    clip_mean = _clip_means(p, clip)
    _, group = np.unique(groups[first, 1], return_inverse=True)
    n_groups = int(group.max()) + 1
    group_t = torch.from_numpy(group)
    size = torch.zeros(n_groups, dtype=p.dtype).index_add_(0, group_t, torch.ones_like(clip_mean))
    group_mean = torch.zeros(n_groups, dtype=p.dtype).index_add_(0, group_t, clip_mean) / size
    sq = (clip_mean - group_mean[group_t]) ** 2
    var = torch.zeros(n_groups, dtype=p.dtype).index_add_(0, group_t, sq) / size
    multi = size > 1
    return var[multi].mean() if bool(multi.any()) else p.sum() * 0.0


def _clips_of(clip_of_chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each chunk's clip numbered 0.. in order of the clip ids, and each clip's first chunk index."""
    _, clip = np.unique(clip_of_chunk, return_inverse=True)
    return clip, np.unique(clip, return_index=True)[1]


def _clip_means(values, clip: np.ndarray):  # (tensor, array from _clips_of) -> tensor
    """Mean of ``values`` over each clip's chunks."""
    import torch

    n_clips = int(clip.max()) + 1
    clip_t = torch.from_numpy(clip)
    counts = torch.zeros(n_clips, dtype=values.dtype).index_add_(0, clip_t, torch.ones_like(values))
    return torch.zeros(n_clips, dtype=values.dtype).index_add_(0, clip_t, values) / counts


def _partner_ranking(logits, labels: np.ndarray, groups: np.ndarray, weights=None):  # -> torch scalar
    """The partner ranking loss of a batch of whole utterances: for every spoof clip whose utterance
    (``groups[:, 2]``) has bona fide clips in the batch, softplus(mean of those bona fide clips' logits -
    the spoof clip's logit), each clip's logit the mean over its chunks (``groups[:, 0]``); averaged over
    those spoof clips, each weighted by the mean of its chunks' ``weights`` (a tensor; None: alike)."""
    import torch
    from torch.nn import functional as F

    clip, first = _clips_of(groups[:, 0])
    clip_logit = _clip_means(logits, clip)
    clip_label = np.asarray(labels)[first]
    _, utt = np.unique(groups[first, 2], return_inverse=True)
    bona = clip_label == 0
    n_bona = np.bincount(utt[bona], minlength=int(utt.max()) + 1)
    paired = (clip_label == 1) & (n_bona[utt] > 0)
    if not paired.any():
        return logits.sum() * 0.0
    utt_t = torch.from_numpy(utt)
    bona_sum = torch.zeros(len(n_bona), dtype=logits.dtype).index_add_(
        0, utt_t[torch.from_numpy(bona)], clip_logit[torch.from_numpy(bona)]
    )
    bona_mean = bona_sum / torch.from_numpy(np.maximum(n_bona, 1)).to(logits.dtype)
    sel = torch.from_numpy(np.flatnonzero(paired))
    per_clip = F.softplus(bona_mean[utt_t[sel]] - clip_logit[sel])
    if weights is None:
        return per_clip.mean()
    w = _clip_means(weights, clip)[sel]
    return (per_clip * w).sum() / w.sum()


def _refresh_batchnorm(model, x, batch_size: int) -> None:  # (torch module, tensor, int)
    """Re-estimate BatchNorm running statistics with one pass over ``x`` (after weight averaging)."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch_size * 4):
            if len(x[i : i + batch_size * 4]) > 1:
                model(x[i : i + batch_size * 4])
    for m in bns:
        m.momentum = 0.1
    model.eval()


TARGET_FRR = 0.05  # bona fide false-reject rate at the shipped threshold 0.5, on dev (held-out sources)


def calibrate(
    logits: np.ndarray,
    labels: np.ndarray,
    files: np.ndarray,
    *,
    head: HeadConfig,
    target_frr: float | None = TARGET_FRR,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Platt scaling of chunk logits (class-balanced), then a bias shift that puts the shipped threshold 0.5
    where the dev file-level bona fide false-reject rate is ``target_frr`` (None: at the dev EER point).

    ``weights``: optional weight of each dev file in the false-reject rate (default: every file counts once).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    n_pos, n_neg = y.sum(), (1 - y).sum()
    w = np.where(y == 1, 0.5 / max(1, n_pos), 0.5 / max(1, n_neg))
    # Platt's smoothed targets keep the fit finite when dev is perfectly separated
    y = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    a, b = _platt(z, y, w)
    file_labels = _file_labels(labels, files)

    def file_level(bias: float) -> np.ndarray:
        cal = {"scale": a, "bias": bias}
        return file_scores(calibrated_scores(z, head=head, calibration=cal), files)[1]

    fw = np.ones(len(file_labels)) if weights is None else np.asarray(weights, dtype=np.float64)

    def frr(bias: float) -> float:
        bona = file_labels == 0
        return float(np.sum(fw[bona] * (file_level(bias)[bona] >= 0.5)) / np.sum(fw[bona]))

    # shift the bias (bisection; file scores are monotone in the bias) until the operating point sits at 0.5
    lo, hi = b - 50.0, b + 50.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if target_frr is None:
            too_high = eer(file_level(mid), file_labels)[1] > 0.5  # the EER threshold rises with the bias
        else:
            too_high = frr(mid) <= target_frr  # a higher bias rejects more bona fide files
        if too_high == (target_frr is None):
            hi = mid
        else:
            lo = mid
    bias = lo if target_frr is not None else (lo + hi) / 2
    dev_scores = file_level(bias)
    dev_eer, t = eer(dev_scores, file_labels)
    pred = dev_scores >= 0.5
    point = (
        "the dev file-level EER operating point"
        if target_frr is None
        else (f"the point where {target_frr:.0%} of dev bona fide files (held-out sources) score >= 0.5")
    )
    return {
        "method": "platt+eer-shift" if target_frr is None else "platt+frr-shift",
        "target_frr": target_frr,
        "scale": float(a),
        "bias": float(bias),
        "platt_bias": float(b),
        "description": (
            "chunk P(fake) = sigmoid(scale * logit + bias); scale and platt_bias from class-balanced Platt "
            f"scaling on dev chunks, bias shifted so that the mean-of-chunks file score crosses 0.5 at {point}"
        ),
        "dev_file_eer": float(dev_eer),
        "dev_bonafide_false_reject_at_0.5": float(pred[file_labels == 0].mean()),
        "dev_spoof_miss_at_0.5": float((~pred[file_labels == 1]).mean()),
    }


def _platt(z: np.ndarray, t: np.ndarray, w: np.ndarray, l2: float = 1e-4) -> tuple[float, float]:
    """Weighted logistic regression of targets ``t`` on ``z``: Newton's method with a backtracking line search."""

    def loss(p: np.ndarray) -> float:
        m = p[0] * z + p[1]
        return float(np.sum(w * (np.logaddexp(0, m) - t * m)) + l2 * (p[0] - 1.0) ** 2)

    params = np.array([1.0, 0.0])
    current = loss(params)
    for _ in range(100):
        q = 1 / (1 + np.exp(-(params[0] * z + params[1])))
        g = np.array([np.sum(w * (q - t) * z) + 2 * l2 * (params[0] - 1.0), np.sum(w * (q - t))])
        s = w * q * (1 - q)
        h = np.array([[np.sum(s * z * z) + 2 * l2, np.sum(s * z)], [np.sum(s * z), np.sum(s) + 1e-12]])
        step = np.linalg.solve(h, g)
        size = 1.0
        while size > 1e-6 and loss(params - size * step) > current:
            size /= 2
        if size <= 1e-6:
            break
        params = params - size * step
        new = loss(params)
        if current - new < 1e-12:
            current = new
            break
        current = new
    return float(params[0]), float(params[1])


def train_config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)
