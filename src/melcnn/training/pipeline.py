"""`melcnn train` and `melcnn eval`: features -> head -> calibrated checkpoint -> evaluation report.

Both use the inference feature path (:mod:`melcnn.training.features`) and score with the
checkpoint's NumPy head, exactly as :class:`melcnn.detector.Detector` does.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..classifier import (
    Checkpoint,
    HeadConfig,
    join_members,
    load_checkpoint,
    save_checkpoint,
    stored_weights,
    time_stats_of,
)
from ..config import FeatureConfig
from ..registry import MODELS
from . import evaluate as ev
from . import protocol as P
from .features import Clip, FeatureSet, cache_features, domain_ids, load_features, read_clips, view_groups
from .train import TARGET_FRR, TrainConfig, calibrate, file_scores, fit_head, fit_heads

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
MAX_FLOAT32_BYTES = 15_000_000  # a head larger than this in float32 is stored as float16 (checkpoints <= 16 MB)


def _summarise_data(clips: list[Clip]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in sorted({c.split for c in clips}):
        sel = [c for c in clips if c.split == split]
        out[split] = {
            "files_bonafide": sum(c.label == 0 for c in sel),
            "files_spoof": sum(c.label == 1 for c in sel),
            "minutes_bonafide": round(sum(c.duration_s for c in sel if c.label == 0) / 60, 1),
            "minutes_spoof": round(sum(c.duration_s for c in sel if c.label == 1) / 60, 1),
            "generators": sorted({c.generator for c in sel if c.label == 1}),
            "speakers": len({c.speaker for c in sel}),
            "languages": sorted({c.language for c in sel}),
        }
    return out


def train_model(
    data_dir: Path,
    *,
    variant: str,
    out: Path,
    seed: int = 0,
    epochs: int = 60,
    freq_bands: int = 2,
    time_stats: tuple[str, ...] = ("mean",),
    extra_heads: tuple[HeadConfig, ...] = (),
    train_overlap_s: float | None = None,
    workers: int = 2,
    chunk_classifier: Path | None = None,
    reencode_files: int = 200,
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
    evaluate: bool = True,
    fit_on: str = "train",
    progress: Progress | None = None,
) -> Path:
    """Train a checkpoint of ``variant`` (a key of :data:`melcnn.registry.MODELS`) on DATA_DIR's train split,
    calibrate on dev, evaluate on eval.

    ``fit_on="train+dev"``: the head trains on train and dev together (their sources and generators all),
    for exactly ``epochs`` epochs (no early stopping), and is calibrated on cross-fitted logits instead of
    dev's: each train/dev clip scored by a head of the same recipe trained without the cross-validation
    fold that holds out its source or generator (:func:`melcnn.training.crossval.out_of_fold_logits`).
    Those logits, for the chunking of every variant, are saved beside the checkpoint (``oof.npz``), so
    that a variant made from it with ``chunk_classifier`` is calibrated the same way; the fold heads are
    also the recipe's own leave-source-out cross-validation, whose report is written to ``out/cv/``
    (as by ``melcnn eval --cv`` with the same settings, so the recipe needs no separate run).

    The head takes ``freq_bands`` frequency bands of each scattering coefficient's ``time_stats`` over time
    (:class:`~melcnn.classifier.HeadConfig`). ``extra_heads``: further heads trained the same way beside it,
    each on its own input; the checkpoint's logit is the mean of all heads' logits, and it is that mean
    which is calibrated (and cross-fitted).

    The variant's :class:`~melcnn.registry.ModelSpec` sets the chunk length and the default overlap.
    Training uses chunks overlapping by ``train_overlap_s`` (default: the variant's own overlap, V2 0 s and
    V3 1.5 s); calibration uses dev chunks at the variant's overlap, which inference and evaluation use.
    ``chunk_classifier``: a checkpoint whose head (weights and input settings) is reused as is; only the
    calibration is made anew (V3 = V2's chunk classifier on overlapping chunks).
    """
    spec = MODELS.get(variant)
    if spec is None:
        raise ValueError(f"variant must be one of {', '.join(MODELS)}, not {variant!r}")
    cfg = FeatureConfig(chunk_s=spec.chunk_s)
    overlap = spec.default_overlap_s
    train_overlap_s = overlap if train_overlap_s is None else train_overlap_s
    if fit_on not in FIT_ON:
        raise ValueError(f"fit_on must be one of {', '.join(FIT_ON)}, not {fit_on!r}")
    clips = read_clips(data_dir)
    # fitted on train alone, dev stays unseen: no transform made with a dev generator
    keep = ("train", "dev") if fit_on == "train+dev" else ("train",)
    train_clips = [c for c in clips if c.split == "train" and _base_split(c.generator) in keep]
    dev_clips = [c for c in clips if c.split == "dev"]
    tcfg = TrainConfig(
        epochs=epochs,
        seed=seed,
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
    t0 = time.perf_counter()
    history: list[dict[str, float]]  # one row per epoch (empty for a head calibrated on a given classifier)
    if chunk_classifier is not None:
        base = load_checkpoint(chunk_classifier)
        head, extra, weights, history = base.head, base.extra_heads, base.weights, []
        stats = base.time_stats
        fit_on = base.extra.get("training", {}).get("fit_on", "train")
        dv = load_features(
            cache_features(data_dir, dev_clips, cfg=cfg, overlap_s=overlap, time_stats=stats, workers=workers),
            dev_clips,
            stats,
        )
        if fit_on == "train+dev":  # calibrated as its chunk classifier was: on its cross-fitted logits
            calibration = _calibrate_cross_fitted(Path(chunk_classifier), overlap, head)
        else:
            calibration = calibrate(
                base.logits(dv.x).astype(np.float64), dv.y, dv.clip_index, head=head, target_frr=TARGET_FRR
            )
        calibration["chunk_classifier"] = base.extra.get("training", {}).get("chunk_classifier") or {
            "name": base.name,
            "sha256": base.sha256,
        }
        n_train = None
    else:
        head, extra = HeadConfig(freq_bands=freq_bands, time_stats=tuple(time_stats)), tuple(extra_heads)
        heads = (head, *extra)
        stats = time_stats_of(heads)
        root = cache_features(
            data_dir,
            train_clips + dev_clips,
            cfg=cfg,
            overlap_s=train_overlap_s,
            time_stats=stats,
            workers=workers,
            progress=progress,
        )
        dv = load_features(root, dev_clips, stats)

        def epoch_progress(i: int, n: int, row: dict[str, float]) -> None:
            if progress:
                progress(f"train (dev EER {row['dev_file_eer']:.2%})", i, n)

        if fit_on == "train+dev":
            weights, history, n_train = _fit_train_dev(
                data_dir, root, train_clips + dev_clips, cfg, heads, tcfg, Path(out), workers, progress
            )
            calibration = _calibrate_cross_fitted(Path(out), overlap, head)
        else:
            tr = load_features(root, train_clips, stats)
            n_train = len(tr.y)
            fitted = fit_heads(
                tr.x,
                tr.y,
                dv.x,
                dv.y,
                heads=heads,
                dev_files=dv.clip_index,
                train_groups=view_groups(tr),
                train_domains=domain_ids(tr),
                cfg=tcfg,
                progress=epoch_progress,
            )
            weights, calibration, history = join_members([f[0] for f in fitted]), fitted[0][1], fitted[0][2]
            if overlap != train_overlap_s or extra:  # calibrate the heads' mean, on the variant's own chunking
                ck = Checkpoint("tmp", variant, "0", cfg, head, weights, extra_heads=extra)
                if overlap != train_overlap_s:
                    dv = load_features(
                        cache_features(
                            data_dir, dev_clips, cfg=cfg, overlap_s=overlap, time_stats=stats, workers=workers
                        ),
                        dev_clips,
                        stats,
                    )
                best = {k: calibration[k] for k in ("best_epoch", "dev_file_eer_raw")}
                if extra:  # each head stopped early on its own
                    best = {k: [f[1][k] for f in fitted] for k in best}
                calibration = calibrate(ck.logits(dv.x).astype(np.float64), dv.y, dv.clip_index, head=head)
                calibration.update(best)
    ckpt = Checkpoint(
        name=spec.name,
        variant=variant,
        version=f"{__version__}+{time.strftime('%Y%m%d')}",
        features=cfg,
        head=head,
        weights=weights,
        threshold=0.5,
        calibration=calibration,
        extra_heads=extra,
        extra={
            "training": {
                "data_dir": str(Path(data_dir).name),
                "data": _summarise_data(clips),
                "chunk_classifier": None if chunk_classifier is None else calibration["chunk_classifier"],
                "train_chunks": None if n_train is None else int(n_train),
                "dev_chunks": int(len(dv.y)),
                "config": asdict(tcfg),
                "fit_on": fit_on,
                "train_overlap_s": train_overlap_s,
                "epochs_run": len(history),
                "seconds": round(time.perf_counter() - t0, 1),
                "melcnn_version": __version__,
            }
        },
    )
    if ckpt.n_parameters() * 4 > MAX_FLOAT32_BYTES:  # store float16, if the scores stay within 1e-3
        half = {k: v.astype(np.float32) for k, v in stored_weights(weights, "float16").items()}
        ck16 = Checkpoint(ckpt.name, variant, ckpt.version, cfg, head, half, 0.5, calibration, extra_heads=extra)
        diff = float(np.max(np.abs(ck16.fake_scores(dv.x) - ckpt.fake_scores(dv.x))))
        ckpt.extra["float16_max_score_change_dev"] = diff
        if diff <= 1e-3:
            ckpt.extra["storage"] = "float16"
        else:  # keep the trained head (in float32, too large to ship) rather than lose it
            log.warning("float16 storage would move dev chunk scores by %.2e (> 1e-3): stored as float32", diff)
    save_checkpoint(ckpt, out)
    if evaluate and any(c.split == "eval" for c in clips):
        result = evaluate_model(
            data_dir, out, out_dir=Path(out) / "eval", workers=workers, reencode_files=reencode_files, progress=progress
        )
        ckpt = load_checkpoint(out)
        ckpt.extra["metrics"] = headline(result)
        ckpt.extra["evaluation"] = {
            k: result[k]
            for k in (
                "file_level",
                "chunk_level",
                "per_generator",
                "per_source",
                "per_augmentation",
                "reencoding",
                "score_cue_correlation",
                "shortcut_audit",
            )
            if k in result
        }
        save_checkpoint(ckpt, out)
    return Path(out)


FIT_ON = ("train", "train+dev")  # what the head of `melcnn train` is fitted on (see train_model)
OOF_FILE = "oof.npz"  # beside a train+dev checkpoint: its cross-fitted logits, for its calibration
PARTIAL_DIR = ".partial"  # beside a train+dev checkpoint while it trains: its finished parts, for a resumed run
CV_DIR = "cv"  # beside a train+dev checkpoint: its fold heads' cross-validation report (crossval.write)


def _fit_train_dev(
    data_dir: Path,
    root: Path,
    clips: list[Clip],
    cfg: FeatureConfig,
    heads: tuple[HeadConfig, ...],
    tcfg: TrainConfig,
    out: Path,
    workers: int,
    progress: Progress | None,
) -> tuple[dict[str, np.ndarray], list[dict[str, float]], int]:
    """Train each of ``heads`` on every train and dev clip (``clips``, features cached in ``root``) for
    ``tcfg.epochs`` epochs, and write the cross-fitted logits (the heads' mean) of the train and dev files,
    at the chunking of every variant, to ``out/oof.npz``, and the fold heads' cross-validation report to
    ``out/cv/`` (what ``melcnn eval --cv`` writes, for these settings). Returns the checkpoint's tensors,
    the first head's history and the number of training chunks.

    The heads are trained one after another, each (final and fold heads) on features read for it alone
    (its statistics over time, its bands), which the heads' logits being averaged allows: memory holds
    one head's inputs, not the union of all heads' statistics at every frequency row.

    Resumable: each head and each of its fold heads' logits are saved to ``out/.partial/`` as they
    finish, and a rerun with the same settings and features reuses them (the folder is removed at the end).
    """
    from . import crossval
    from .crossval import (
        cross_fitted_report,
        fit_fingerprint,
        out_of_fold_logits,
        read_part,
        save_oof,
        without_inputs,
        write_part,
    )

    tcfg = replace(tcfg, patience=tcfg.epochs)
    stats = time_stats_of(heads)
    partial = Path(out) / PARTIAL_DIR  # what an interrupted run finished: reused by the next with these settings
    base = [c for c in clips if not c.is_view]
    overlaps = sorted({m.default_overlap_s for m in MODELS.values() if m.chunk_s == cfg.chunk_s})
    test_roots = {
        o: cache_features(data_dir, base, cfg=cfg, overlap_s=o, time_stats=stats, workers=workers) for o in overlaps
    }

    def epoch_progress(i: int, n: int, row: dict[str, float]) -> None:
        if progress:
            progress("train on train+dev", i, n)

    members: list[dict[str, np.ndarray]] = []
    histories: list[list[dict[str, float]]] = []
    oof: dict[float, np.ndarray] = {}
    seconds: dict[int, float] = {}
    for i, h in enumerate(heads):
        fs = load_features(root, clips, h.time_stats, rows=h.freq_bands)
        key = fit_fingerprint((h,), tcfg, fs)
        saved = read_part(partial / f"head{i}.npz", key)
        if saved is not None:
            weights = {k[len("w:") :]: v for k, v in saved.items() if k.startswith("w:")}
            history = json.loads(str(saved["history"]))
        else:
            weights, _, history = fit_head(
                fs.x,
                fs.y,
                None,
                None,
                head=h,
                train_groups=view_groups(fs),
                train_domains=domain_ids(fs),
                cfg=tcfg,
                progress=epoch_progress,
            )
            tensors = {f"w:{k}": v for k, v in weights.items()}
            write_part(partial / f"head{i}.npz", key, history=np.array(json.dumps(history)), **tensors)
        members.append(weights)
        histories.append(history)
        tests = {o: load_features(test_roots[o], base, h.time_stats, rows=h.freq_bands) for o in overlaps}
        took: dict[int, float] = {}
        mine = out_of_fold_logits(fs, tests, (h,), tcfg, progress, took, resume_dir=partial / f"head{i}")
        for o in overlaps:  # the checkpoint's logit is the mean of its heads'
            oof[o] = oof.get(o, 0.0) + mine[o] / len(heads)
        for k, t in took.items():
            seconds[k] = seconds.get(k, 0.0) + t
        trainable, test0 = without_inputs(fs), {o: without_inputs(t) for o, t in tests.items()}
        del fs, tests
    save_oof(out / OOF_FILE, oof, test0)
    if 0.0 in test0:  # the fold heads, at the cross-validation's chunking, are the recipe's cross-validation
        crossval.write(cross_fitted_report(trainable, test0[0.0], oof[0.0], heads, tcfg, seconds), out / CV_DIR)
    shutil.rmtree(partial, ignore_errors=True)  # done: a later run in this folder trains anew
    return join_members(members), histories[0], len(trainable.y)


def _base_split(generator: str) -> str:
    """Split of the generator a training-only transform was made with (``protocol.DERIVED_FROM``); else train."""
    return P.GENERATOR_SPLITS.get(P.DERIVED_FROM.get(generator, ""), "train")


def _calibrate_cross_fitted(ckpt_dir: Path, overlap_s: float, head: HeadConfig) -> dict[str, Any]:
    """:func:`calibrate` on the cross-fitted logits that :func:`_fit_train_dev` saved beside a checkpoint,
    those of the chunking with ``overlap_s``."""
    path = Path(ckpt_dir) / OOF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a train+dev checkpoint keeps its cross-fitted logits there")
    with np.load(path, allow_pickle=False) as f:
        key = f"{overlap_s:g}"
        if f"logits@{key}" not in f:
            raise ValueError(f"{path} holds no cross-fitted logits for chunks overlapping by {overlap_s:g} s")
        z, y, ids = f[f"logits@{key}"], f[f"labels@{key}"], f[f"clip_ids@{key}"]
    files = np.unique(ids, return_inverse=True)[1]
    cal = calibrate(z.astype(np.float64), y, files, head=head, target_frr=TARGET_FRR)
    n_bona = len(set(ids[y == 0].tolist()))
    cal["calibrated_on"] = (
        f"cross-fitted logits of {len(set(ids.tolist()))} train and dev files ({n_bona} bona fide), each scored "
        "by a head of the same recipe trained without the cross-validation fold that holds out its source "
        "or generator"
    )
    for k in [k for k in cal if k.startswith("dev_")]:  # figures of the cross-fitted files, not of a dev split
        cal["cross_fitted_" + k[4:]] = cal.pop(k)
    cal["description"] = cal["description"].replace("on dev chunks", "on cross-fitted train/dev chunk logits")
    cal["description"] = cal["description"].replace("dev bona fide files", "cross-fitted bona fide files")
    return cal


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The few figures `melcnn models` shows."""
    f = result["file_level"]
    gens = result.get("per_generator", {})
    return {
        "eval_file_eer": round(f["eer"], 4),
        "eval_min_dcf": round(f["min_dcf"], 4),
        "eval_roc_auc": round(f["roc_auc"], 4),
        "eval_bonafide_false_reject_at_threshold": round(f["bonafide_false_reject_rate"], 4),
        "eval_worst_generator_eer": round(max((g["eer"] for g in gens.values()), default=float("nan")), 4),
        "eval_files": f["n_bonafide"] + f["n_spoof"],
    }


def _eer_by(fs: FeatureSet, scores: np.ndarray, key: Callable[[Clip], str], *, spoof_only: bool) -> dict:
    """EER per group: for spoof-only grouping (generators) each group's spoofs vs ALL bona fide."""
    labels = np.array([c.label for c in fs.clips])
    groups = np.array([key(c) for c in fs.clips])
    out = {}
    for g in sorted(set(groups[labels == 1]) if spoof_only else set(groups)):
        sel = ((groups == g) & (labels == 1)) | (labels == 0) if spoof_only else groups == g
        if labels[sel].min() == labels[sel].max():
            continue
        value, _ = ev.eer(scores[sel], labels[sel])
        out[str(g)] = {
            "eer": value,
            "n_spoof": int((labels[sel] == 1).sum()),
            "n_bonafide": int((labels[sel] == 0).sum()),
        }
    return out


def per_source(fs: FeatureSet, scores: np.ndarray, threshold: float) -> dict[str, dict[str, Any]]:
    """Per bona fide source: its files' false-reject rate at ``threshold`` and its EER against all spoofs."""
    from .protocol import SOURCE_CHANNELS

    labels = np.array([c.label for c in fs.clips])
    src = np.array([c.source for c in fs.clips])
    out = {}
    for s in sorted(set(src[labels == 0])):
        mine = (src == s) & (labels == 0)
        sel = mine | (labels == 1)
        out[str(s)] = {
            "files": int(mine.sum()),
            "false_reject_rate": float(np.mean(scores[mine] >= threshold)),
            "eer_vs_all_spoofs": ev.eer(scores[sel], labels[sel])[0] if (labels == 1).any() else None,
            "channel": SOURCE_CHANNELS.get(str(s), ""),
        }
    return out


CUE_LIMIT = 0.3  # |Spearman rho| within a class above this is a shortcut finding


def score_cue_correlation(fs: FeatureSet, scores: np.ndarray) -> dict[str, Any]:
    """Spearman correlation, within each class, between the file score and simple cues of the file
    (energy above 4 kHz, bandwidth, digitally silent fraction, level, duration, leading silence)."""
    from scipy.stats import spearmanr

    from .audit import file_features

    cues = ("hf_fraction", "bandwidth_hz", "zero_fraction", "rms_dbfs", "duration_s", "lead_silence_s")
    feats = [file_features(c.path, 0) for c in fs.clips]
    labels = np.array([c.label for c in fs.clips])
    out: dict[str, Any] = {"limit": CUE_LIMIT, "findings": []}
    for name, lab in (("bonafide", 0), ("spoof", 1)):
        sel = labels == lab
        row: dict[str, float | None] = {}
        for cue in cues:
            v = np.array([f[cue] for f in feats])[sel]
            if sel.sum() < 3 or np.all(v == v[0]):
                row[cue] = None
                continue
            rho = float(spearmanr(scores[sel], v).statistic)
            row[cue] = round(rho, 3)
            if abs(rho) > CUE_LIMIT:
                out["findings"].append(f"{name}: score vs {cue} rho = {rho:+.2f}")
        out[name] = row
    return out


def dataset_audit(data_dir: Path) -> dict[str, Any]:
    """The data set's shortcut audit: the one the build wrote (``audit.json``) when it is newer than the
    manifest, else computed anew (it reads every base clip: minutes on a large build)."""
    from .audit import shortcut_audit

    manifest, saved = data_dir / "manifest.csv", data_dir / "audit.json"
    try:
        if saved.stat().st_mtime >= manifest.stat().st_mtime:
            audit = json.loads(saved.read_text())
            if "eer" in audit:
                return audit
    except (OSError, ValueError):
        pass
    return shortcut_audit(manifest)


def evaluate_model(
    data_dir: Path,
    model: str | Path,
    *,
    split: str = "eval",
    out_dir: Path | None = None,
    workers: int = 2,
    timing_files: int = 10,
    reencode_files: int = 200,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint (directory, or v2/v3) on one split; write JSON, Markdown and PNGs to ``out_dir``.

    Base clips only (channel-augmented views are training material). Besides the pooled figures: EER per
    generator and per bona fide source (with its false-reject rate at the threshold), the rank correlation
    of the score with simple cues within each class, and the re-encoding invariance of ``reencode_files``
    files (0: skipped).
    """
    from ..detector import load_model

    detector = load_model(model)
    ckpt = detector.checkpoint
    clips = [c for c in read_clips(data_dir) if c.split == split and not c.is_view]
    if not clips:
        raise ValueError(f"no clips in split {split!r}")
    root = cache_features(
        data_dir,
        clips,
        cfg=ckpt.features,
        overlap_s=ckpt.spec.default_overlap_s,
        time_stats=ckpt.time_stats,
        workers=workers,
        progress=progress,
    )
    fs = load_features(root, clips, ckpt.time_stats)
    chunk_scores = ckpt.fake_scores(fs.x)
    _, file_mean = file_scores(chunk_scores, fs.clip_index)
    labels = np.array([c.label for c in fs.clips])
    result: dict[str, Any] = {
        "model": {"name": ckpt.name, "variant": ckpt.variant, "version": ckpt.version, "sha256": ckpt.sha256},
        "split": split,
        "threshold": ckpt.threshold,
        "dcf_costs": {"p_spoof": ev.DCF_P_SPOOF, "c_miss": ev.DCF_C_MISS, "c_false_alarm": ev.DCF_C_FA},
        "file_level": ev.summary(file_mean, labels, threshold=ckpt.threshold),
        "chunk_level": ev.summary(chunk_scores, fs.y, threshold=ckpt.threshold),
        "per_generator": _eer_by(fs, file_mean, lambda c: c.generator, spoof_only=True),
        "per_augmentation": _eer_by(fs, file_mean, lambda c: c.augmentation.split(":")[0], spoof_only=False),
        "per_language": _eer_by(fs, file_mean, lambda c: c.language, spoof_only=False),
        "per_source": per_source(fs, file_mean, ckpt.threshold),
        "files_without_features": len(clips) - len(fs.clips),
    }
    result["score_cue_correlation"] = score_cue_correlation(fs, file_mean)
    reencoded: list[dict[str, Any]] = []  # every re-encoded file's scores, for reencoding.csv
    if reencode_files:
        from .invariance import reencoding_report

        pick = np.linspace(0, len(fs.clips) - 1, min(reencode_files, len(fs.clips))).astype(int)
        result["reencoding"] = reencoding_report(
            [fs.clips[i].path for i in pick],
            [float(file_mean[i]) for i in pick],
            ckpt,
            labels=[fs.clips[i].label for i in pick],
            records=reencoded,
            progress=progress,
        )
    # end-to-end time per file through Detector.analyze on a few files
    sample = fs.clips[:: max(1, len(fs.clips) // max(1, timing_files))][:timing_files]
    t = time.perf_counter()
    for c in sample:
        detector.analyze(media_path=c.path)
    result["seconds_per_file"] = (time.perf_counter() - t) / max(1, len(sample))
    result["mean_file_duration_s"] = float(np.mean([c.duration_s for c in sample])) if sample else 0.0
    result["shortcut_audit"] = dataset_audit(Path(data_dir))
    if out_dir is not None:
        write_report(result, file_mean, labels, Path(out_dir))
        if reencode_files:
            _write_reencoded(reencoded, Path(data_dir), Path(out_dir) / "reencoding.csv")
    return result


def _write_reencoded(rows: list[dict[str, Any]], data_dir: Path, path: Path) -> None:
    """The re-encoding report's files, one row per file and condition (paths relative to the data)."""
    import csv

    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "condition", "score_before", "score_after"])
        w.writeheader()
        for r in rows:
            p = Path(r["path"])
            rel = p.relative_to(data_dir) if p.is_relative_to(data_dir) else p
            w.writerow(
                {
                    **r,
                    "path": str(rel),
                    "score_before": f"{r['score_before']:.5f}",
                    "score_after": f"{r['score_after']:.5f}",
                }
            )


def markdown(result: dict[str, Any]) -> str:
    """The evaluation as Markdown tables (percentages)."""
    f, c = result["file_level"], result["chunk_level"]
    lines = [
        f"## {result['model']['name']} on split `{result['split']}`",
        "",
        "| level | bona fide | spoof | EER | minDCF | ROC AUC | accuracy @ thr | bona fide FRR @ thr "
        "| spoof miss @ thr |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in (("file", f), ("chunk", c)):
        lines.append(
            f"| {name} | {m['n_bonafide']} | {m['n_spoof']} | {m['eer']:.2%} | {m['min_dcf']:.3f} | {m['roc_auc']:.4f} "
            f"| {m['accuracy']:.2%} | {m['bonafide_false_reject_rate']:.2%} | {m['spoof_miss_rate']:.2%} |"
        )
    d = result["dcf_costs"]
    lines += [
        "",
        f"Threshold {result['threshold']}; minDCF with P(spoof) = {d['p_spoof']}, C_miss = {d['c_miss']}, "
        f"C_fa = {d['c_false_alarm']} (normalised). Time per file: {result['seconds_per_file']:.3f} s "
        f"(mean duration {result['mean_file_duration_s']:.1f} s).",
        "",
    ]
    for title, key in (
        ("generator (its spoofs vs all bona fide)", "per_generator"),
        ("laundering condition", "per_augmentation"),
        ("language", "per_language"),
    ):
        lines += [f"| {title} | bona fide | spoof | EER |", "|---|---|---|---|"]
        for g, m in result[key].items():
            lines.append(f"| {g} | {m['n_bonafide']} | {m['n_spoof']} | {m['eer']:.2%} |")
        lines.append("")
    if result.get("per_source"):
        lines += [
            "| bona fide source (held out) | channel | files | false-reject @ thr | EER vs all spoofs |",
            "|---|---|---|---|---|",
        ]
        for src, m in result["per_source"].items():
            e = m["eer_vs_all_spoofs"]
            lines.append(
                f"| {src} | {m['channel']} | {m['files']} | {m['false_reject_rate']:.1%} | "
                f"{'-' if e is None else f'{e:.1%}'} |"
            )
        lines.append("")
    if result.get("reencoding"):
        from .invariance import markdown_lines

        lines += markdown_lines(result["reencoding"])
    corr = result.get("score_cue_correlation")
    if corr:
        cues = list(corr["bonafide"])
        lines += ["| Spearman rho of score vs cue, within class | " + " | ".join(cues) + " |"]
        lines += ["|---" * (len(cues) + 1) + "|"]
        for cls in ("bonafide", "spoof"):
            vals = [corr[cls][c] for c in cues]
            lines.append(f"| {cls} | " + " | ".join("-" if v is None else f"{v:+.2f}" for v in vals) + " |")
        lines.append("")
        lines.append("Findings (|rho| > 0.3): " + ("; ".join(corr["findings"]) if corr["findings"] else "none") + ".")
        lines.append("")
    audit = result.get("shortcut_audit")
    if audit:
        lines.append(
            f"Shortcut audit (simple classifier on nuisance features, train -> {result['split']}): "
            f"EER {audit.get('eer', float('nan')):.2%} (near 50% = no shortcut)."
        )
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], scores: np.ndarray, labels: np.ndarray, out_dir: Path) -> None:
    """eval.json, eval.md, det.png and hist.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (out_dir / "eval.md").write_text(markdown(result))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy.stats import norm

    det = ev.det_points(scores, labels)
    fr = np.clip(np.array(det["bonafide_false_reject"]), 1e-4, 1 - 1e-4)
    miss = np.clip(np.array(det["spoof_miss"]), 1e-4, 1 - 1e-4)
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(norm.ppf(fr), norm.ppf(miss))
    ticks = np.array([0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    ax.set_xticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks])
    ax.set_xlim(norm.ppf(5e-4), norm.ppf(0.5))
    ax.set_ylim(norm.ppf(5e-4), norm.ppf(0.5))
    ax.set_xlabel("bona fide false-reject rate")
    ax.set_ylabel("spoof miss rate")
    ax.set_title(f"DET, file level, EER {result['file_level']['eer']:.2%}")
    ax.grid(True, alpha=0.3)
    fig.savefig(out_dir / "det.png")
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 41)
    # matplotlib's stub types bins as Sequence[float], which an ndarray is not (hist takes one)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="bona fide")  # type: ignore[arg-type]
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="spoof")  # type: ignore[arg-type]
    ax.axvline(result["threshold"], color="k", linestyle="--", label="threshold")
    ax.set_xlabel("file fake score")
    ax.set_ylabel("files")
    ax.legend()
    fig.savefig(out_dir / "hist.png")
