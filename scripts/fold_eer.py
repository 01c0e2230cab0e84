"""Per-fold file EER of cross-fitted scores: the leave-source-out cross-validation of a shipped recipe.

python scripts/fold_eer.py CKPT DATA_DIR [--detail]
    the folds of a ``--fit-on train+dev`` checkpoint's cross-fitted logits (CKPT/oof.npz: each
    train/dev file of DATA_DIR scored by a head trained without the fold holding out its source or
    generator); --detail adds, per fold, each held-out source's own EER (its bona fide files against
    the spoofs made from them: low when the fold fails only because sources sit at different score
    levels) and each held-out generator's EER against all of the fold's bona fide files. A file's score
    here is its mean chunk probability (as the README's tables of the shipped weights were made); the
    report that `melcnn train --fit-on train+dev` writes to CKPT/cv/ from the same logits averages chunk
    logits, as `melcnn eval --cv` does (so that runs average file by file: scripts/average_cv.py)
python scripts/fold_eer.py --train-on OTHER_DATA_DIR --like CKPT --out DIR DATA_DIR [--seed S]
    five fold heads of CKPT's recipe (its head input and training settings; its seed unless --seed)
    trained on another build's train and dev clips, scoring DATA_DIR's files; writes DIR/oof.npz,
    then prints its folds. Two builds are compared on the same test files this way (features come
    from each build's cache).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from melcnn.training import protocol as P
from melcnn.training.crossval import eer_per_generator, fold_sets
from melcnn.training.evaluate import eer
from melcnn.training.features import FeatureSet, load_features, read_clips
from melcnn.training.train import file_scores


def fold_table(ckpt: Path, data: Path, detail: bool = False) -> list[float]:
    """Print and return each fold's file EER (file score = mean chunk probability); with ``detail``,
    also per held-out source and generator."""
    clips = read_clips(data)
    index = {c.clip_id: i for i, c in enumerate(clips)}
    with np.load(ckpt / "oof.npz") as z:
        logits, ids = z["logits@0"], z["clip_ids@0"]
    ok = np.isfinite(logits)
    files, scores = file_scores(1 / (1 + np.exp(-logits[ok])), np.array([index[str(c)] for c in ids[ok]]))
    score_of = dict(zip(files.tolist(), scores.tolist(), strict=True))
    res = []
    for k in range(len(P.CV_FOLDS)):
        test = [i for i in fold_sets(clips, k)[1] if i in score_of]
        y = np.array([clips[i].label for i in test])
        scores = np.array([score_of[i] for i in test])
        e = eer(scores, y)[0]
        res.append(e)
        print(f"fold {k}: {len(y) - y.sum()} bona fide / {y.sum()} spoof files, EER {100 * e:.1f} %")
        if detail:
            _detail([clips[i] for i in test], scores)
    print(f"mean {100 * np.mean(res):.1f} %, worst {100 * max(res):.1f} %")
    return res


def _detail(clips: list, scores: np.ndarray) -> None:
    """Per source of ``clips``: its own EER and mean scores; per generator: its EER against every bona fide file."""
    labels = np.array([c.label for c in clips])
    for name in sorted({c.source for c in clips}):
        mine = np.array([c.source == name for c in clips])
        y = labels[mine]
        if 0 < y.sum() < len(y):
            s = scores[mine]
            print(
                f"    source {name}: {len(y) - y.sum()} / {y.sum()} files, own EER {100 * eer(s, y)[0]:.1f} %, "
                f"mean score bona fide {s[y == 0].mean():.2f}, spoof {s[y == 1].mean():.2f}"
            )
    for name, e in eer_per_generator(clips, scores).items():
        n = sum(c.label == 1 and c.generator == name for c in clips)
        print(f"    generator {name}: {n} files, EER {100 * e:.1f} %")


def train_fold_heads(train_data: Path, data: Path, out: Path, like: Path, seed: int | None) -> None:
    """Five fold heads of ``like``'s recipe (its head input and training settings) on ``train_data``'s
    train+dev clips, scoring ``data``'s; writes ``out/oof.npz``."""
    from dataclasses import fields, replace

    from melcnn.classifier import load_checkpoint
    from melcnn.training.crossval import out_of_fold_logits, save_oof
    from melcnn.training.features import cache_features
    from melcnn.training.train import TrainConfig

    ck = load_checkpoint(like)
    head, cfg = ck.head, ck.features
    settings = ck.extra.get("training", {}).get("config", {})
    tcfg = TrainConfig(**{f.name: settings[f.name] for f in fields(TrainConfig) if f.name in settings})
    tcfg = replace(tcfg, patience=tcfg.epochs, seed=tcfg.seed if seed is None else seed)

    def feats(root: Path, base_only: bool) -> FeatureSet:
        clips = [c for c in read_clips(root) if c.split in ("train", "dev") and not (base_only and c.is_view)]
        cache = cache_features(root, clips, cfg=cfg, overlap_s=0.0, time_stats=head.time_stats, workers=2)
        return load_features(cache, clips, head.time_stats)

    tests = {0.0: feats(data, True)}
    oof = out_of_fold_logits(feats(train_data, False), tests, head, tcfg, lambda s, i, n: print(f"{s}: {i}/{n}"))
    save_oof(out / "oof.npz", oof, tests)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="CKPT DATA_DIR, or DATA_DIR with --train-on")
    ap.add_argument("--train-on", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--like", type=Path, help="the checkpoint whose recipe the fold heads follow")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--detail", action="store_true", help="per held-out source and generator of each fold")
    a = ap.parse_args()
    if a.train_on:
        if len(a.paths) != 1 or a.out is None or a.like is None:
            ap.error("--train-on needs --like CKPT, --out DIR and one DATA_DIR")
        train_fold_heads(a.train_on, a.paths[0], a.out, a.like, a.seed)
        fold_table(a.out, a.paths[0], detail=a.detail)
    else:
        if len(a.paths) != 2:
            ap.error("give CKPT DATA_DIR")
        fold_table(*a.paths, detail=a.detail)


if __name__ == "__main__":
    main()
