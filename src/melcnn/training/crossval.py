"""Leave-source-out cross-validation: the figure every modelling decision is judged on.

The folds are :data:`melcnn.training.protocol.CV_FOLDS` (fold 0 = the dev split). Fold k trains the
head on every train/dev clip (and its channel-augmented views) whose bona fide source and generator are
both outside the fold, for a fixed number of epochs (no fold has a dev of its own to stop on), then
tests on the fold's bona fide clips and the spoofs of its generators, base clips only, file level.
Eval material never enters. Needs torch (the specification's head) or scikit-learn (the linear probe).
"""

from __future__ import annotations

import csv
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..classifier import HeadConfig, head_inputs, join_members, time_stats_of
from ..config import FeatureConfig
from . import evaluate as ev
from . import protocol as P
from .features import Clip, FeatureSet, cache_features, domain_ids, load_features, read_clips, view_groups
from .train import REGULARISERS, TrainConfig, file_scores, fit_heads

Progress = Callable[[str, int, int], None]


def fold_sets(clips: list[Clip], fold: int) -> tuple[list[int], list[int]]:
    """Indices of the training clips (views included) and test clips (base clips) of ``fold``."""
    train, test = [], []
    for i, c in enumerate(clips):
        role = P.fold_role(fold, c.source, c.generator, "bonafide" if c.label == 0 else "spoof")
        if role == "train":
            train.append(i)
        elif role == "test" and not c.is_view:
            test.append(i)
    return train, test


def _subset(fs: FeatureSet, clip_idx: list[int]) -> FeatureSet:
    keep = np.zeros(len(fs.clips), dtype=bool)
    keep[clip_idx] = True
    rows = keep[fs.clip_index]
    remap = -np.ones(len(fs.clips), dtype=np.int64)
    remap[np.flatnonzero(keep)] = np.arange(int(keep.sum()))
    return FeatureSet(fs.x[rows], fs.y[rows], remap[fs.clip_index[rows]], [fs.clips[i] for i in np.flatnonzero(keep)])


def _fit(
    model: str, tr: FeatureSet, heads: tuple[HeadConfig, ...], tcfg: TrainConfig
) -> Callable[[np.ndarray], np.ndarray]:
    """Train a fold's head (with the mlp model: each of ``heads``, their logits averaged) on ``tr``, whose
    features hold :func:`~melcnn.classifier.time_stats_of` ``heads``; returns its chunk scorer (features
    -> logits, higher = more spoof-like)."""
    head = heads[0]
    if model == "mlp":
        from ..classifier import Checkpoint

        fitted = fit_heads(
            tr.x, tr.y, None, None, heads=heads, train_groups=view_groups(tr), train_domains=domain_ids(tr), cfg=tcfg
        )
        weights = [f[0] for f in fitted]
        return Checkpoint("cv", "v2", "0", FeatureConfig(), head, join_members(weights), extra_heads=heads[1:]).logits
    if len(heads) > 1:
        raise ValueError(f"the {model} model has one head, not {len(heads)}")
    if model == "logreg":
        from sklearn.linear_model import LogisticRegression

        xt = head_inputs(tr.x, head)
        mu, sd = xt.mean(0), xt.std(0) + 1e-4
        clf = LogisticRegression(C=0.05, max_iter=300, class_weight="balanced")
        clf.fit((xt - mu) / sd, tr.y)
        return lambda x: clf.decision_function((head_inputs(x, head) - mu) / sd)
    raise ValueError(f"unknown model {model!r}")


def out_of_fold_logits(
    trainable: FeatureSet,
    tests: dict[float, FeatureSet],
    heads: tuple[HeadConfig, ...],
    tcfg: TrainConfig,
    progress: Progress | None = None,
    seconds: dict[int, float] | None = None,
    resume_dir: Path | None = None,
) -> dict[float, np.ndarray]:
    """Cross-fitted chunk logits: every base clip of ``tests`` scored by the head of the fold that holds
    out its source (bona fide) or generator (spoof), a head trained like the final one (``tcfg``, fixed
    epochs; several ``heads``: each, their logits averaged) on ``trainable``'s clips outside that fold.

    ``tests`` maps a chunk overlap to the train/dev base clips chunked with it (one array of logits per
    overlap, aligned with its chunks; NaN for a clip that no fold holds out). Calibrating on these is
    calibrating on sources and generators the scoring head has not seen, as a dev split would be, while
    the final head trains on all of them (scikit-learn's ``CalibratedClassifierCV(ensemble=False)``).
    ``seconds``, if given, receives each trained fold's time. ``resume_dir``: each fold's logits are
    saved there as it finishes, and a fold saved by an interrupted run with the same heads, settings
    and features (:func:`fit_fingerprint`) is read back instead of trained again (every fold's head is
    seeded alike, so a resumed run gives what an uninterrupted one does).
    """
    out = {o: np.full(len(fs.y), np.nan) for o, fs in tests.items()}
    for k in range(len(P.CV_FOLDS)):
        tr_idx, _ = fold_sets(trainable.clips, k)
        tr = _subset(trainable, tr_idx)
        if len(set(tr.y.tolist())) < 2:
            continue
        rows = {o: np.isin(fs.clip_index, fold_sets(fs.clips, k)[1]) for o, fs in tests.items()}
        part = None if resume_dir is None else Path(resume_dir) / f"fold{k}.npz"
        key = "" if part is None else fit_fingerprint(heads, tcfg, tr, tests, fold=k)
        saved = read_part(part, key)
        if saved is not None and all(len(saved[f"logits@{o:g}"]) == r.sum() for o, r in rows.items()):
            took = float(saved["seconds"])
            for o, r in rows.items():
                out[o][r] = saved[f"logits@{o:g}"]
        else:
            t0 = time.perf_counter()
            score = _fit("mlp", tr, heads, tcfg)
            for o, fs in tests.items():
                if rows[o].any():
                    out[o][rows[o]] = score(fs.x[rows[o]])
            took = time.perf_counter() - t0
            if part is not None:
                arrays = {f"logits@{o:g}": out[o][r] for o, r in rows.items()}
                write_part(part, key, seconds=np.array(took), **arrays)
        if seconds is not None:
            seconds[k] = took
        if progress:
            progress("cross-fitted calibration: fold heads", k + 1, len(P.CV_FOLDS))
    return out


def fit_fingerprint(
    heads: tuple[HeadConfig, ...],
    tcfg: TrainConfig,
    train: FeatureSet,
    tests: dict[float, FeatureSet] | None = None,
    fold: int | None = None,
) -> str:
    """A digest of what a head's training and scoring depend on: ``heads``, ``tcfg`` (but its thread
    count), the training clips, chunk count and a checksum of their features, and the scored clips
    (``tests``); a saved part of an interrupted training is reused only under the same digest."""
    import hashlib
    from dataclasses import asdict

    doc: dict[str, Any] = {
        "fold": fold,
        "heads": [h.to_dict() for h in heads],
        "config": {k: v for k, v in asdict(tcfg).items() if k != "threads"},
        "train": [c.clip_id for c in train.clips],
        "train_chunks": int(len(train.y)),
        "train_sum": float(np.sum(train.x, dtype=np.float64)),
    }
    if tests is not None:
        doc["tests"] = {
            f"{o:g}": [[c.clip_id for c in t.clips], int(len(t.y)), float(np.sum(t.x, dtype=np.float64))]
            for o, t in tests.items()
        }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def read_part(path: Path | None, key: str) -> dict[str, np.ndarray] | None:
    """The arrays of a saved part (:func:`write_part`) if it exists and carries ``key``, else None."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != key:
                return None
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # a damaged part is trained again
        return None


def write_part(path: Path, key: str, **arrays: np.ndarray) -> None:
    """Save ``arrays`` with the fingerprint ``key`` atomically (an interrupted write leaves no part)."""
    import io

    from .audio import write_bytes_atomic

    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, fingerprint=np.array(key), **arrays)
    write_bytes_atomic(path, buf.getvalue())


def save_oof(path: Path, oof: dict[float, np.ndarray], tests: dict[float, FeatureSet]) -> None:
    """Write :func:`out_of_fold_logits`' result to ``path`` (npz): per overlap ``o``, the scored chunks'
    ``logits@o``, ``labels@o`` and ``clip_ids@o`` (chunks no fold holds out are left out)."""
    arrays: dict[str, np.ndarray] = {}
    for o, t in tests.items():
        keep = ~np.isnan(oof[o])
        ids = np.array([c.clip_id for c in t.clips])
        arrays[f"logits@{o:g}"] = oof[o][keep]
        arrays[f"labels@{o:g}"] = t.y[keep]
        arrays[f"clip_ids@{o:g}"] = ids[t.clip_index[keep]]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, allow_pickle=False, **arrays)


def eer_per_generator(clips: list[Clip], scores: np.ndarray) -> dict[str, float]:
    """Each spoof generator among ``clips`` (one score per clip): the EER of its files against every
    bona fide file of ``clips``."""
    labels = np.array([c.label for c in clips])
    out = {}
    for g in sorted({c.generator for c in clips if c.label == 1}):
        sel = np.array([c.label == 0 or c.generator == g for c in clips])
        out[g] = ev.eer(scores[sel], labels[sel])[0]
    return out


FILE_SCORE_FIELDS = ("clip_id", "fold", "label", "generator", "source", "augmentation", "score")


def cross_validate(
    data_dir: Path,
    *,
    model: str = "mlp",
    freq_bands: int = 2,
    time_stats: tuple[str, ...] = ("mean",),
    hidden: tuple[int, ...] | None = None,
    extra_heads: tuple[HeadConfig, ...] = (),
    epochs: int = 12,
    seed: int = 0,
    views: bool = True,
    consistency: float = 0.0,
    average_from: int = 0,
    balance_domains: bool = False,
    mixup: float = 0.0,
    band_dropout: float = 0.0,
    adversary: float = 0.0,
    pairing: float = 0.0,
    label_smoothing: float = 0.0,
    sam: float = 0.0,
    weight_decay: float = TrainConfig.weight_decay,
    folds: list[int] | None = None,
    drop_generators: tuple[str, ...] = (),
    workers: int = 2,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the leave-source-out cross-validation; returns per-fold and summary figures (file level).

    ``consistency``, ``average_from``, ``balance_domains``, ``mixup``, ``band_dropout``, ``adversary``,
    ``pairing``, ``label_smoothing``, ``sam`` and ``weight_decay`` are
    :class:`~melcnn.training.train.TrainConfig`'s (the MLP head);
    ``freq_bands`` and ``time_stats`` the head input's (:class:`~melcnn.classifier.HeadConfig`); ``hidden``
    the MLP's hidden layers (default the specification's 1024-512-128; smaller ones, each with the dropout
    of the specification's layer of the same depth from the end, make a quick screen).
    ``extra_heads``: further heads trained beside that one in every fold (other bands, statistics or
    hidden layers); the fold's logit is the mean of all heads' (a checkpoint's ``extra_heads``).
    ``drop_generators``: spoofs of these generators never enter any fold's training (their test clips
    stay), to measure what a generator family teaches about the others.
    """
    unknown = set(drop_generators) - set(P.GENERATOR_SPLITS)
    if unknown:
        raise ValueError(f"unknown generators {sorted(unknown)}; known: {', '.join(P.GENERATOR_SPLITS)}")
    head = replace(HeadConfig(), freq_bands=freq_bands, time_stats=tuple(time_stats))
    if hidden is not None:
        head = head.with_hidden(tuple(hidden))
    heads = (head, *extra_heads)
    stats = time_stats_of(heads)
    every = read_clips(data_dir)
    # train, then dev: the order in which `melcnn train --fit-on train+dev` fits its fold heads, so that
    # the same settings give the same folds' heads and figures by either command
    clips = [c for split in ("train", "dev") for c in every if c.split == split and (views or not c.is_view)]
    root = cache_features(
        data_dir,
        clips,
        cfg=FeatureConfig(),
        overlap_s=0.0,
        time_stats=stats,
        workers=workers,
        progress=progress,
    )
    if model != "mlp" and len(heads) > 1:
        raise ValueError(f"the {model} model has one head, not {len(heads)}")
    tcfg = TrainConfig(
        epochs=epochs,
        seed=seed,
        patience=epochs,
        consistency=consistency,
        average_from=average_from,
        balance_domains=balance_domains,
        mixup=mixup,
        band_dropout=band_dropout,
        adversary=adversary,
        pairing=pairing,
        label_smoothing=label_smoothing,
        sam=sam,
        weight_decay=weight_decay,
    )
    out = _header(model, heads, tcfg, views=views, drop_generators=drop_generators)
    todo = list(folds if folds is not None else range(len(P.CV_FOLDS)))
    logits: dict[int, np.ndarray] = {}  # per fold: its test chunks' logits, the mean of the heads'
    took: dict[int, float] = {}
    tested: dict[int, tuple[FeatureSet, int]] = {}  # per fold: its test chunks (no features), training chunks
    # one head after another, each on the features it reads alone (see melcnn.training.pipeline)
    for h in heads:
        fs = load_features(root, clips, h.time_stats, rows=h.freq_bands)
        for k in todo:
            t0 = time.perf_counter()
            tr_idx, te_idx = fold_sets(fs.clips, k)
            tr_idx = [i for i in tr_idx if not (fs.clips[i].label == 1 and fs.clips[i].generator in drop_generators)]
            tr, te = _subset(fs, tr_idx), _subset(fs, te_idx)
            if len(set(te.y.tolist())) < 2 or len(set(tr.y.tolist())) < 2:
                continue
            logits[k] = logits.get(k, 0.0) + _fit(model, tr, (h,), tcfg)(te.x) / len(heads)
            took[k] = took.get(k, 0.0) + time.perf_counter() - t0
            tested[k] = (without_inputs(te), len(tr.y))
        del fs
    for k in todo:
        if k in tested:
            _add_fold(out, k, tested[k][0], logits[k], tested[k][1], took[k], progress)
    return _summarise(out)


def without_inputs(fs: FeatureSet) -> FeatureSet:
    """``fs``'s chunks, labels and clips without its features (all that the reports read)."""
    return FeatureSet(np.zeros((len(fs.y), 0, 0), dtype=np.float32), fs.y, fs.clip_index, fs.clips)


def _header(
    model: str, heads: tuple[HeadConfig, ...], tcfg: TrainConfig, *, views: bool, drop_generators: tuple[str, ...]
) -> dict[str, Any]:
    """The settings a cross-validation report starts with (before its folds)."""
    head = heads[0]
    return {
        "model": model,
        "freq_bands": head.freq_bands,
        "time_stats": list(head.time_stats),
        "hidden": list(head.hidden),
        "extra_heads": [h.to_dict() for h in heads[1:]],
        "drop_generators": sorted(drop_generators),
        "epochs": tcfg.epochs,
        "seed": tcfg.seed,
        "views": views,
        **{k: getattr(tcfg, k) for k in REGULARISERS},
        "folds": [],
        "file_scores": [],
    }


def _add_fold(
    out: dict[str, Any],
    k: int,
    te: FeatureSet,
    chunk_logits: np.ndarray,
    train_chunks: int,
    seconds: float,
    progress: Progress | None = None,
) -> None:
    """Append fold ``k``'s figures and file scores to the report ``out``: ``te`` its test clips, scored
    ``chunk_logits`` (one per chunk) by a head trained on ``train_chunks`` chunks outside the fold."""
    _, fscore = file_scores(chunk_logits, te.clip_index)
    labels = np.array([c.label for c in te.clips])
    e, _ = ev.eer(fscore, labels)
    out["file_scores"] += [
        {
            "clip_id": c.clip_id,
            "fold": k,
            "label": c.label,
            "generator": c.generator,
            "source": c.source,
            "augmentation": c.augmentation,
            "score": round(float(v), 6),
        }
        for c, v in zip(te.clips, fscore, strict=True)
    ]
    gens = {g: round(e, 4) for g, e in eer_per_generator(te.clips, fscore).items()}
    srcs = {}
    spoof = labels == 1
    for s in sorted({c.source for c in te.clips if c.label == 0}):
        sel = np.array([c.label == 0 and c.source == s for c in te.clips]) | spoof
        srcs[s] = round(ev.eer(fscore[sel], labels[sel])[0], 4)
    out["folds"].append(
        {
            "fold": k,
            "sources": list(P.CV_FOLDS[k][0]),
            "generators": list(P.CV_FOLDS[k][1]),
            "train_chunks": int(train_chunks),
            "test_files_bonafide": int((labels == 0).sum()),
            "test_files_spoof": int(spoof.sum()),
            "eer": round(float(e), 4),
            "roc_auc": round(ev.roc_auc(fscore, labels), 4),
            "eer_per_generator": gens,
            "eer_per_source": srcs,
            "seconds": round(seconds, 1),
        }
    )
    if progress:
        progress(f"cv fold {k} EER {e:.1%}", len(out["folds"]), len(P.CV_FOLDS))


def _summarise(out: dict[str, Any]) -> dict[str, Any]:
    eers = np.array([f["eer"] for f in out["folds"]])
    if len(eers):
        out["mean_eer"] = round(float(eers.mean()), 4)
        out["worst_eer"] = round(float(eers.max()), 4)
        out["spread"] = round(float(eers.std()), 4)
    return out


def cross_fitted_report(
    trainable: FeatureSet,
    test: FeatureSet,
    logits: np.ndarray,
    heads: tuple[HeadConfig, ...],
    tcfg: TrainConfig,
    seconds: dict[int, float],
) -> dict[str, Any]:
    """The cross-validation report of :func:`out_of_fold_logits`' fold heads: ``test`` (base train/dev
    clips at the cross-validation's chunking) scored ``logits`` by the heads of ``heads`` and ``tcfg``
    trained on ``trainable`` without each fold. The same folds, test files and figures as
    :func:`cross_validate` with those settings, so a ``--fit-on train+dev`` training is its own
    cross-validation (``seconds``: each fold's training time)."""
    out = _header("mlp", heads, tcfg, views=any(c.is_view for c in trainable.clips), drop_generators=())
    out["cross_fitted"] = True
    for k in range(len(P.CV_FOLDS)):
        tr_idx, _ = fold_sets(trainable.clips, k)
        _, te_idx = fold_sets(test.clips, k)
        rows = np.isin(test.clip_index, te_idx)
        te = _subset(test, te_idx)
        if k not in seconds or len(set(te.y.tolist())) < 2 or np.isnan(logits[rows]).any():
            continue
        _add_fold(out, k, te, logits[rows], int(np.isin(trainable.clip_index, tr_idx).sum()), seconds[k])
    return _summarise(out)


def markdown(cv: dict[str, Any]) -> str:
    lines = [
        f"Leave-source-out cross-validation: {cv['model']} head"
        + (f" {'-'.join(map(str, cv['hidden']))}" if cv["model"] == "mlp" and cv.get("hidden") else "")
        + f", {cv['freq_bands']} bands, "
        f"time statistics {'+'.join(cv.get('time_stats', ['mean']))}, {cv['epochs']} epochs, "
        f"views {'on' if cv['views'] else 'off'}"
        + (f", seed {cv['seed']}" if cv.get("seed") else "")
        + "".join(f", with a head on {_head_words(HeadConfig.from_dict(h))}" for h in cv.get("extra_heads", []))
        + (f", without the spoofs of {', '.join(cv['drop_generators'])}" if cv.get("drop_generators") else "")
        + (f", consistency {cv['consistency']:g}" if cv.get("consistency") else "")
        + (f", weights averaged from epoch {cv['average_from']}" if cv.get("average_from") else "")
        + (", domains balanced" if cv.get("balance_domains") else "")
        + (f", mixup {cv['mixup']:g}" if cv.get("mixup") else "")
        + (f", band dropout {cv['band_dropout']:g}" if cv.get("band_dropout") else "")
        + (f", domain adversary {cv['adversary']:g}" if cv.get("adversary") else "")
        + (f", partner ranking {cv['pairing']:g}" if cv.get("pairing") else "")
        + (f", label smoothing {cv['label_smoothing']:g}" if cv.get("label_smoothing") else "")
        + (
            f", weight decay {cv['weight_decay']:g}"
            if cv.get("weight_decay", TrainConfig.weight_decay) != TrainConfig.weight_decay
            else ""
        )
        + (f", sharpness-aware (SAM) radius {cv['sam']:g}" if cv.get("sam") else "")
        + (
            " (the fold heads that cross-fitted the calibration of a `--fit-on train+dev` training)"
            if cv.get("cross_fitted")
            else ""
        ),
        "",
        "| fold | held-out sources | held-out generators | bona fide / spoof files | EER | ROC AUC |",
        "|---|---|---|---|---|---|",
    ]
    for f in cv["folds"]:
        lines.append(
            f"| {f['fold']} | {', '.join(f['sources'])} | {', '.join(f['generators'])} | "
            f"{f['test_files_bonafide']} / {f['test_files_spoof']} | {f['eer']:.1%} | {f['roc_auc']:.3f} |"
        )
    if "mean_eer" in cv:
        lines += ["", f"mean {cv['mean_eer']:.1%}, worst {cv['worst_eer']:.1%}, spread (std) {cv['spread']:.1%}"]
    return "\n".join(lines) + "\n"


def _head_words(h: HeadConfig) -> str:
    return f"{h.freq_bands} bands, {'+'.join(h.time_stats)}, {'-'.join(map(str, h.hidden))} (mean logit)"


def write(cv: dict[str, Any], out_dir: Path) -> None:
    """``cv.json`` (the figures), ``cv.md`` (their table) and ``cv_scores.csv`` (every held-out file's
    score in its fold: to compare or combine runs file by file) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = cv.get("file_scores", [])
    (out_dir / "cv.json").write_text(json.dumps({k: v for k, v in cv.items() if k != "file_scores"}, indent=2) + "\n")
    (out_dir / "cv.md").write_text(markdown(cv))
    with open(out_dir / "cv_scores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FILE_SCORE_FIELDS)
        w.writeheader()
        w.writerows(rows)
