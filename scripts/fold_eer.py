"""Per-fold file EER of cross-fitted scores: the leave-source-out cross-validation of a shipped recipe.

python scripts/fold_eer.py CKPT DATA_DIR
    the folds of a ``--fit-on train+dev`` checkpoint's cross-fitted logits (CKPT/oof.npz: each
    train/dev file of DATA_DIR scored by a head trained without the fold holding out its source or
    generator)
python scripts/fold_eer.py --train-on OTHER_DATA_DIR --out DIR DATA_DIR [--seed S]
    the same five fold heads (16 rows, 20 epochs, --balance-domains) trained on another build's
    train and dev clips, scoring DATA_DIR's files; writes DIR/oof.npz, then prints its folds. Two
    builds are compared on the same test files this way (features come from each build's cache).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from melcnn.training import protocol as P
from melcnn.training.crossval import fold_sets
from melcnn.training.evaluate import eer
from melcnn.training.features import FeatureSet, read_clips
from melcnn.training.train import file_scores


def fold_table(ckpt: Path, data: Path) -> list[float]:
    """Print and return each fold's file EER (file score = mean chunk probability)."""
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
        e = eer(np.array([score_of[i] for i in test]), y)[0]
        res.append(e)
        print(f"fold {k}: {len(y) - y.sum()} bona fide / {y.sum()} spoof files, EER {100 * e:.1f} %")
    print(f"mean {100 * np.mean(res):.1f} %, worst {100 * max(res):.1f} %")
    return res


def train_fold_heads(train_data: Path, data: Path, out: Path, seed: int) -> None:
    """Five fold heads of the shipped recipe on ``train_data``'s train+dev clips, scoring ``data``'s."""
    from melcnn.classifier import HeadConfig
    from melcnn.config import FeatureConfig
    from melcnn.training.crossval import out_of_fold_logits
    from melcnn.training.features import cache_features, load_features, read_clips
    from melcnn.training.train import TrainConfig

    head, cfg = HeadConfig(freq_bands=16, time_stats=("mean",)), FeatureConfig(chunk_s=3.0)

    def feats(root: Path, base_only: bool) -> FeatureSet:
        clips = [c for c in read_clips(root) if c.split in ("train", "dev") and not (base_only and c.is_view)]
        cache = cache_features(root, clips, cfg=cfg, overlap_s=0.0, time_stats=head.time_stats, workers=2)
        return load_features(cache, clips, head.time_stats)

    tr, te = feats(train_data, False), feats(data, True)
    tcfg = TrainConfig(epochs=20, seed=seed, balance_domains=True, patience=20)
    oof = out_of_fold_logits(tr, {0.0: te}, head, tcfg, lambda s, i, n: print(f"{s}: {i}/{n}", flush=True))[0.0]
    keep = ~np.isnan(oof)
    ids = np.array([c.clip_id for c in te.clips])[te.clip_index[keep]]
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "oof.npz", **{"logits@0": oof[keep], "labels@0": te.y[keep], "clip_ids@0": ids})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="CKPT DATA_DIR, or DATA_DIR with --train-on")
    ap.add_argument("--train-on", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.train_on:
        if len(a.paths) != 1 or a.out is None:
            ap.error("--train-on needs --out DIR and one DATA_DIR")
        train_fold_heads(a.train_on, a.paths[0], a.out, a.seed)
        fold_table(a.out, a.paths[0])
    else:
        if len(a.paths) != 2:
            ap.error("give CKPT DATA_DIR")
        fold_table(*a.paths)


if __name__ == "__main__":
    main()
