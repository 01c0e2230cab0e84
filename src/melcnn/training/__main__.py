"""``python -m melcnn.training build DATA_DIR [options]`` and ``python -m melcnn.training audit MANIFEST``.

``build`` is ``melcnn data build`` (the same parser and code: see ``melcnn data build --help``);
``audit`` runs the shortcut audit on a manifest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["build"]:
        from ..cli import main as cli_main

        return cli_main(["data", "build", *argv[1:]])
    ap = argparse.ArgumentParser(prog="python -m melcnn.training")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build or resume the training data set (= melcnn data build)")
    a = sub.add_parser("audit", help="run the shortcut audit on a manifest")
    a.add_argument("manifest", type=Path, help="manifest.csv of a built data set")
    args = ap.parse_args(argv)
    import json

    from .audit import format_audit, shortcut_audit

    res = shortcut_audit(args.manifest)
    sys.stdout.write(json.dumps(res, indent=1) + "\n" + format_audit(res) + "\n")
    return 0 if res.get("passes") else 1


if __name__ == "__main__":
    raise SystemExit(main())
