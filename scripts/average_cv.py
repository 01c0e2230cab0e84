"""Per-fold EER of several cross-validation runs' scores averaged file by file.

python scripts/average_cv.py CV_DIR [CV_DIR ...]
    each CV_DIR written by ``melcnn eval --cv --out CV_DIR`` on the same data (same folds and files);
    prints each run's folds and those of the mean of their file scores (mean chunk logits). With the same
    seeds and epochs that mean is the score of a checkpoint holding those runs' heads (``--extra-head``):
    its logit is the mean of its heads' logits, and a file's score the mean over its chunks, both linear.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from melcnn.training.evaluate import eer


def read_scores(cv_dir: Path) -> dict[tuple[str, int], tuple[int, float]]:
    """``(clip_id, fold) -> (label, score)`` from a run's ``cv_scores.csv``."""
    with open(Path(cv_dir) / "cv_scores.csv", newline="") as f:
        return {(r["clip_id"], int(r["fold"])): (int(r["label"]), float(r["score"])) for r in csv.DictReader(f)}


def fold_eers(keys: list[tuple[str, int]], labels: np.ndarray, scores: np.ndarray) -> list[float]:
    folds = np.array([k[1] for k in keys])
    return [eer(scores[folds == k], labels[folds == k])[0] for k in sorted(set(folds.tolist()))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, metavar="CV_DIR")
    args = ap.parse_args(argv)
    runs = [read_scores(d) for d in args.runs]
    keys = sorted(runs[0])
    if any(sorted(r) != keys for r in runs[1:]):
        ap.error("the runs did not score the same files in the same folds")
    labels = np.array([runs[0][k][0] for k in keys])
    scores = np.array([[r[k][1] for k in keys] for r in runs])
    rows = [(str(d), s) for d, s in zip(args.runs, scores, strict=True)]
    if len(runs) > 1:
        rows.append(("mean of the runs", scores.mean(axis=0)))
    width = max(len(name) for name, _ in rows)
    for name, s in rows:
        e = fold_eers(keys, labels, s)
        print(f"{name:{width}s}  " + " / ".join(f"{100 * v:.1f}" for v in e) + f" = {100 * np.mean(e):.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
