"""``python -m melcnn.training build DATA_DIR [--minutes N] [--seed S] [--workers W]``.

The same as ``melcnn data build``; kept so that the recipe runs without the CLI.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m melcnn.training")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build or resume the training data set")
    b.add_argument("data_dir", type=Path)
    b.add_argument("--minutes", type=float, default=None, help="approximate bona fide minutes (default: all)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=2, help="generator processes (default 2)")
    b.add_argument("--views", type=int, default=2, help="augmented views per train/dev clip (default 2)")
    b.add_argument(
        "--manifest-only",
        action="store_true",
        help="make no clip: write the manifest of the clips finished so far (default: build everything)",
    )
    a = sub.add_parser("audit", help="run the shortcut audit on a manifest")
    a.add_argument("manifest", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "audit":
        import json

        from .audit import format_audit, shortcut_audit

        res = shortcut_audit(args.manifest)
        sys.stdout.write(json.dumps(res, indent=1) + "\n" + format_audit(res) + "\n")
        return 0 if res.get("passes") else 1
    from .build import build_dataset

    t0 = time.time()
    last: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.time()
        if done in (0, total) or now - last.get(stage, 0.0) > 10:
            last[stage] = now
            sys.stderr.write(f"[{now - t0:7.1f} s] {stage} {done}/{total}\n")

    manifest = build_dataset(
        args.data_dir,
        minutes=args.minutes,
        seed=args.seed,
        workers=args.workers,
        views=args.views,
        manifest_only=args.manifest_only,
        progress=progress,
    )
    sys.stdout.write(f"{manifest}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
