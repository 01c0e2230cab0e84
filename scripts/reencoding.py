"""The re-encoding report of a checkpoint again, for chosen conditions, on the files its evaluation used.

python scripts/reencoding.py DATA_DIR CKPT [CKPT ...] [--conditions NAME[,NAME...]] [--files-from CSV]
    re-encodes the files listed in CSV (default: the first CKPT's ``eval/reencoding.csv``, written by
    ``melcnn train`` / ``melcnn eval``: the evaluation's files and their scores), scores every copy with
    each CKPT, and prints the report's Markdown table per checkpoint. The scores before re-encoding are
    each checkpoint's own, of the original files, through the same decoder. Default conditions: the
    VoIP legs through Opus 1.5 (``melcnn.training.invariance.VOIP_CONDITIONS``), which need Node.js and
    the npm decoder (``scripts/install_training_deps.sh``).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from melcnn.classifier import load_checkpoint
from melcnn.training import invariance as I


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, metavar="DATA_DIR")
    ap.add_argument("ckpt", type=Path, nargs="+", metavar="CKPT")
    ap.add_argument("--conditions", default=",".join(I.VOIP_CONDITIONS), metavar="NAME[,NAME...]")
    ap.add_argument("--files-from", type=Path, default=None, metavar="CSV")
    args = ap.parse_args()
    listing = args.files_from or args.ckpt[0] / "eval" / "reencoding.csv"
    files: dict[str, int] = {}
    with listing.open(newline="") as f:
        for row in csv.DictReader(f):
            files.setdefault(row["path"], int(row["label"]))
    paths = [args.data / p for p in files]
    labels = list(files.values())
    only = [c for c in args.conditions.split(",") if c]
    for path in args.ckpt:
        ckpt = load_checkpoint(path)
        base = [I.file_score(p, ckpt) for p in paths]
        keep = [i for i, s in enumerate(base) if s is not None]
        rep = I.reencoding_report(
            [paths[i] for i in keep],
            [float(base[i]) for i in keep],  # type: ignore[arg-type]
            ckpt,
            labels=[labels[i] for i in keep],
            only=only,
        )
        print(f"## {path} ({len(keep)} files, threshold {ckpt.threshold:.3f})\n")
        print("\n".join(I.markdown_lines(rep)))


if __name__ == "__main__":
    main()
