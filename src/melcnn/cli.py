"""Command-line shell over the Python API: ``melcnn analyze``, ``melcnn models``.

Exit codes: 0 every file analysed; 3 at least one file could not be analysed (its error on stderr,
and as an error object in JSON mode); 4 the model could not be loaded; 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import MediaProcessingError, MelcnnError

EXIT_OK, EXIT_USAGE, EXIT_MEDIA, EXIT_MODEL = 0, 2, 3, 4


def _error_object(exc: BaseException) -> dict[str, Any]:
    return {"code": getattr(exc, "code", "error"), "message": str(exc), "type": type(exc).__name__}


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="melcnn", description="MEL-Spectrogram-CNN audio deepfake detector (V2/V3).")
    parser.add_argument("--version", action="version", version=f"melcnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    an = sub.add_parser("analyze", help="analyse audio or video files: REAL or FAKE, with details")
    an.add_argument("files", nargs="+", metavar="FILE", help="media files (any common audio/video format)")
    an.add_argument("--model", default="v2", help="v2, v3, a registry name or a checkpoint directory (default v2)")
    an.add_argument(
        "--overlap",
        type=_non_negative_float,
        default=None,
        metavar="S",
        help="chunk overlap in seconds (default: the model's; V3 1.5)",
    )
    an.add_argument("--json", action="store_true", help="print the JSON report (JSON Lines for several files)")
    an.add_argument("--plot-dir", type=Path, default=None, metavar="DIR", help="write pictures to DIR")
    an.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    an.add_argument(
        "--max-duration",
        type=_non_negative_float,
        default=None,
        metavar="S",
        help="longest input accepted in seconds (default 7200)",
    )
    an.add_argument("--ascii", action="store_true", help="ASCII timeline instead of block characters")
    an.set_defaults(func=_cmd_analyze)

    mo = sub.add_parser("models", help="list the models, their settings and measured quality")
    mo.add_argument("--json", action="store_true", help="print JSON")
    mo.set_defaults(func=_cmd_models)
    return parser


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .config import MAX_DURATION_S
    from .detector import load_model

    try:
        model = load_model(args.model, device=args.device)
    except MelcnnError as exc:
        print(f"melcnn: cannot load model {args.model!r}: {exc}", file=sys.stderr)
        return EXIT_MODEL
    if args.overlap is not None and args.overlap >= model.config.chunk_s:
        print(f"melcnn: --overlap must be less than the chunk length ({model.config.chunk_s:g} s)", file=sys.stderr)
        return EXIT_USAGE
    max_duration = MAX_DURATION_S if args.max_duration is None else args.max_duration
    many = len(args.files) > 1
    ascii_only = args.ascii or not _can_print("▁█")
    status = EXIT_OK
    for name in args.files:
        try:
            report = model.analyze(name, overlap_s=args.overlap, plot_dir=args.plot_dir, max_duration_s=max_duration)
        except MediaProcessingError as exc:
            status = EXIT_MEDIA
            print(f"melcnn: {name}: {exc}", file=sys.stderr)
            if args.json:
                _print_json({"file": name, "error": _error_object(exc)}, compact=many)
            continue
        if args.json:
            _print_json({"file": name, **report}, compact=many)
        else:
            print(_summary(report, name, ascii_only))
    return status


def _summary(report: dict[str, Any], name: str, ascii_only: bool) -> str:
    from .report import summary

    return summary(report, name=name, ascii_only=ascii_only)


def _cmd_models(args: argparse.Namespace) -> int:
    from .detector import load_model
    from .registry import MODELS

    rows = []
    for entry in MODELS.values():
        row: dict[str, Any] = {"name": entry.name, "short": entry.short, "description": entry.description}
        try:
            row.update(load_model(entry.short).describe())
            row["available"] = True
        except MelcnnError as exc:
            row.update({"available": False, "reason": str(exc), "chunk_overlap_s": entry.overlap_s})
        rows.append(row)
    if args.json:
        _print_json({"models": rows}, compact=False)
        return EXIT_OK
    for row in rows:
        print(f"{row['name']} ({row['short']}): {row['description']}")
        if not row["available"]:
            print(f"  not available: {row['reason']}")
            continue
        print(
            f"  version {row['version']}, {row['parameters']:,} parameters, threshold {row['threshold']}, "
            f"chunks {row['chunk_duration_s']:g} s / overlap {row['chunk_overlap_s']:g} s, {row['sample_rate']} Hz"
        )
        print(f"  weights sha256 {row['weights_sha256']}")
        metrics = row.get("metrics") or {}
        if metrics:
            shown = ", ".join(f"{k} {v}" for k, v in metrics.items() if not isinstance(v, dict | list))
            print(f"  measured: {shown}")
    return EXIT_OK


def _can_print(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _print_json(obj: dict[str, Any], *, compact: bool) -> None:
    print(json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``melcnn`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("melcnn: interrupted", file=sys.stderr)
        return 130
    except MelcnnError as exc:
        print(f"melcnn: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
