"""Eval-split file EER of a checkpoint's head, and of the same recipe's head trained again with another seed.

python scripts/seed_eval.py DATA_DIR CKPT [CKPT ...] [--retrain-seed S]
    scores DATA_DIR's eval files (no views) with each CKPT's head, the file score being the mean chunk
    logit (calibration-free, so heads without one compare alike), and prints the file EER overall and per
    held-out generator; with --retrain-seed, the first CKPT's recipe (head input, epochs, loss settings) is
    trained again on DATA_DIR's train and dev clips with seed S, without the cross-fitted heads its
    calibration needs (a --fit-on train+dev head's ranking, in one training instead of six), and scored
    the same way. Tells whether an eval figure is a recipe's or a seed's.
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from melcnn.classifier import Checkpoint, load_checkpoint
from melcnn.training.crossval import eer_per_generator
from melcnn.training.evaluate import eer
from melcnn.training.features import FeatureSet, cache_features, domain_ids, load_features, read_clips, view_groups
from melcnn.training.train import TrainConfig, file_scores, fit_head


def report(name: str, logits: np.ndarray, fs: FeatureSet) -> None:
    ids, scores = file_scores(logits, fs.clip_index)
    clips = [fs.clips[i] for i in ids]
    label = np.array([c.label for c in clips])
    print(f"{name}: file EER {100 * eer(scores, label)[0]:.1f} % ({(label == 0).sum()} / {(label == 1).sum()} files)")
    for g, value in eer_per_generator(clips, scores).items():
        print(f"    {g}: {100 * value:.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, metavar="DATA_DIR")
    ap.add_argument("ckpt", type=Path, nargs="+", metavar="CKPT")
    ap.add_argument("--retrain-seed", type=int, default=None, metavar="S")
    args = ap.parse_args()
    first = load_checkpoint(args.ckpt[0])
    clips = read_clips(args.data)
    test = [c for c in clips if c.split == "eval" and not c.is_view]
    fit = [c for c in clips if c.split in ("train", "dev")] if args.retrain_seed is not None else []
    root = cache_features(args.data, fit + test, cfg=first.features, overlap_s=0.0, time_stats=first.head.time_stats)
    te = load_features(root, test, first.head.time_stats)
    for path in args.ckpt:
        report(str(path), load_checkpoint(path).logits(te.x), te)
    if args.retrain_seed is None:
        return
    stored = first.extra.get("training", {}).get("config", {})
    known = {f.name for f in fields(TrainConfig)}
    cfg = replace(TrainConfig(**{k: v for k, v in stored.items() if k in known}), seed=args.retrain_seed)
    tr = load_features(root, fit, first.head.time_stats)
    weights, _, _ = fit_head(
        tr.x, tr.y, None, None, train_groups=view_groups(tr), train_domains=domain_ids(tr), head=first.head, cfg=cfg
    )
    del tr
    head = Checkpoint("retrained", first.variant, "0", first.features, first.head, weights)
    report(f"{args.ckpt[0]}'s recipe, seed {args.retrain_seed}", head.logits(te.x), te)


if __name__ == "__main__":
    main()
