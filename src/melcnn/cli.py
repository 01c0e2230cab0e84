"""Command-line shell over the Python API: the ``melcnn`` parser and entry point, ``analyze``, ``models``, ``serve``.

``melcnn scan`` is in :mod:`melcnn.scanning.cli`; ``data build``, ``train`` and ``eval`` are in
:mod:`melcnn.training.cli` (registered here; their training code is imported only when they run).

Exit codes: 0 every file analysed; 3 at least one file could not be analysed (its error on stderr,
and as an error object in JSON mode); 4 the model could not be loaded; 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._cli_common import _DEFAULT_OVERLAPS, _VARIANTS, EXIT_MEDIA, EXIT_MODEL, EXIT_OK, EXIT_USAGE, _non_negative_float
from .errors import MediaProcessingError, MelcnnError
from .registry import DEFAULT_MODEL, MIN_STEP_S, MODELS, SERVE_MODELS

#: modules of the optional extras (pyproject.toml), for a plain message when one is missing
_EXTRA_OF_MODULE = {
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
    "fastapi_offline": "serve",
    "starlette": "serve",
    "torch": "train",
    "librosa": "train",
    "sklearn": "train",
    "kymatio": "gpu",
    "pyarrow": "scan",
}


def _error_object(exc: BaseException) -> dict[str, Any]:
    return {"code": getattr(exc, "code", "error"), "message": str(exc), "type": type(exc).__name__}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="melcnn", description="MEL-Spectrogram-CNN audio deepfake detector (V2/V3).")
    parser.add_argument("--version", action="version", version=f"melcnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    an = sub.add_parser("analyze", help="analyse audio or video files: REAL or FAKE, with details")
    an.add_argument("files", nargs="+", metavar="FILE", help="media files (any common audio/video format)")
    an.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"{_VARIANTS}, a registry name or a checkpoint directory (default {DEFAULT_MODEL})",
    )
    an.add_argument(
        "--overlap",
        default=None,
        metavar="S",
        help=f"chunk overlap in seconds, 0 to the chunk length less {MIN_STEP_S:g} s "
        f"(default: the model's; {_DEFAULT_OVERLAPS})",
    )
    an.add_argument(
        "--json", action="store_true", help="print the JSON report, one compact object per line (JSON Lines)"
    )
    an.add_argument("--pretty", action="store_true", help="print the JSON report indented for reading (implies --json)")
    an.add_argument(
        "--plot-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write one picture per file to DIR, named after the file (default: no pictures)",
    )
    an.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the scattering runs (default cpu; cuda needs melcnn[gpu] and a GPU)",
    )
    an.add_argument(
        "--max-duration",
        type=_non_negative_float,
        default=None,
        metavar="S",
        help="longest input accepted in seconds (default 7200)",
    )
    an.add_argument("--ascii", action="store_true", help="ASCII timeline instead of block characters")
    an.set_defaults(func=_cmd_analyze)

    sc = sub.add_parser("scan", help="scan files and folders into a resumable results table (Parquet/JSONL/CSV)")
    _scan_arguments(sc)
    sc.set_defaults(func=_cmd_scan)

    mo = sub.add_parser("models", help="list the models, their settings and measured quality")
    mo.add_argument("--json", action="store_true", help="print JSON, one compact object")
    mo.add_argument("--pretty", action="store_true", help="print the JSON indented for reading (implies --json)")
    mo.set_defaults(func=_cmd_models)

    from .training.cli import add_commands

    add_commands(sub)

    se = sub.add_parser("serve", help="HTTP service and web page (FastAPI on uvicorn)")
    se.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    se.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    se.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="MODEL",
        help=f"{_VARIANTS}, a registry name or a checkpoint directory; give it once per model to load, the first is "
        f"the default for requests that name none (default: {' and '.join(SERVE_MODELS)}, {SERVE_MODELS[0]} the "
        "default)",
    )
    se.add_argument("--max-upload-mb", type=float, default=200.0, metavar="MB", help="largest file (MiB, default 200)")
    se.add_argument(
        "--max-duration-s", type=float, default=None, metavar="S", help="longest audio in seconds (default 7200)"
    )
    se.add_argument("--workers", type=int, default=None, metavar="N", help="analyses at once (default: CPUs, max 4)")
    se.add_argument(
        "--queue-size", type=int, default=16, metavar="N", help="requests that may wait; more get 503 (default 16)"
    )
    se.add_argument(
        "--timeout-s",
        type=float,
        default=600.0,
        metavar="S",
        help="time limit per request in seconds, upload included (default 600)",
    )
    se.add_argument(
        "--artifact-ttl-s",
        type=float,
        default=3600.0,
        metavar="S",
        help="seconds pictures stay available (default 3600)",
    )
    se.add_argument(
        "--api-key-file", type=Path, default=None, metavar="F", help="require the key in F for /v1/* (default: no key)"
    )
    se.add_argument(
        "--tmp-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the private work folder goes (default $MELCNN_SERVER_TMPDIR, else the system temp folder)",
    )
    se.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the scattering runs (default cpu; cuda needs melcnn[gpu] and a GPU)",
    )
    se.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="least severe log lines shown (default info)",
    )
    se.set_defaults(func=_cmd_serve)
    return parser


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from .config import MAX_DURATION_S
    from .registry import resolve
    from .server import Settings, SettingsError, read_api_key, serve
    from .server.settings import MB, TMPDIR_ENV, key_file_is_private

    names = tuple(args.model or SERVE_MODELS)
    for name in names:
        try:
            resolve(name)
        except MelcnnError as exc:
            print(f"melcnn: cannot load model {name!r}: {exc}", file=sys.stderr)
            return EXIT_MODEL
    try:
        api_key = None
        if args.api_key_file is not None:
            api_key = read_api_key(args.api_key_file)
            if not key_file_is_private(args.api_key_file):
                print(f"melcnn: warning: {args.api_key_file} is readable by other users", file=sys.stderr)
        tmp_dir = args.tmp_dir or os.environ.get(TMPDIR_ENV) or None
        settings = Settings(
            models=names,
            host=args.host,
            port=args.port,
            max_upload_bytes=int(args.max_upload_mb * MB) if args.max_upload_mb > 0 else 0,
            max_duration_s=MAX_DURATION_S if args.max_duration_s is None else args.max_duration_s,
            workers=args.workers if args.workers is not None else max(1, min(4, os.cpu_count() or 1)),
            queue_size=args.queue_size,
            timeout_s=args.timeout_s,
            artifact_ttl_s=args.artifact_ttl_s,
            api_key=api_key,
            device=args.device,
            tmp_dir=Path(tmp_dir or tempfile.gettempdir()),
        )
    except SettingsError as exc:
        print(f"melcnn: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.device == "cpu":
        from .scattering import cache_dir, is_prepared

        if not is_prepared():
            print(
                "melcnn: first run on this machine: the first analysis prepares the scattering filter bank and "
                f"FFT plans (a few seconds, once; kept in {cache_dir()})",
                file=sys.stderr,
                flush=True,
            )
    return serve(settings, log_level=args.log_level)


def _scan_arguments(parser: argparse.ArgumentParser) -> None:
    from .scanning.cli import add_arguments

    add_arguments(parser, DEFAULT_MODEL)


def _cmd_scan(args: argparse.Namespace) -> int:
    from .scanning.cli import run_cli

    return run_cli(args)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .config import MAX_DURATION_S
    from .detector import load_model
    from .errors import TooLongError

    try:
        model = load_model(args.model, device=args.device)
    except MelcnnError as exc:
        print(f"melcnn: cannot load model {args.model!r}: {exc}", file=sys.stderr)
        return EXIT_MODEL
    overlap = None
    if args.overlap is not None:
        try:
            overlap = model.spec.validate_overlap(args.overlap)
        except MelcnnError as exc:
            print(f"melcnn: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.plot_dir is not None:
        problem = _unwritable_folder(args.plot_dir)
        if problem:
            print(f"melcnn: --plot-dir {str(args.plot_dir)!r}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    max_duration = MAX_DURATION_S if args.max_duration is None else args.max_duration
    as_json = args.json or args.pretty
    ascii_only = args.ascii or not _can_print("▁█")
    _first_run_notice(model)
    status = EXIT_OK
    for name in args.files:
        try:
            report = model.analyze(name, overlap_s=overlap, plot_dir=args.plot_dir, max_duration_s=max_duration)
        except MediaProcessingError as exc:
            if isinstance(exc, TooLongError):
                exc = exc.naming("--max-duration")
            status = EXIT_MEDIA
            print(f"melcnn: {name}: {exc}", file=sys.stderr)
            if as_json:
                _print_json({"file": name, "error": _error_object(exc)}, pretty=args.pretty)
            continue
        except OSError as exc:  # e.g. the picture could not be written (disk full, folder removed meanwhile)
            print(f"melcnn: {name}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
        if as_json:
            _print_json({"file": name, **report}, pretty=args.pretty)
        else:
            _print(_summary(report, name, ascii_only))
    return status


def _unwritable_folder(folder: Path) -> str | None:
    """Why pictures cannot be written to ``folder`` (created if missing), or None if they can."""
    import os
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except FileExistsError:
        return "is a file, not a folder"
    except OSError as exc:
        what = "cannot create or write to that folder"
        return f"{what} ({exc.strerror})" if exc.strerror else what
    if not os.access(folder, os.W_OK):  # pragma: no cover - TemporaryFile would have failed
        return "that folder is not writable"
    return None


def _first_run_notice(model: Any) -> None:
    """Say on stderr, before the wait, that the first analysis on this machine prepares its caches."""
    if model.device != "cpu":
        return
    from .scattering import cache_dir, is_prepared

    cfg = model.config
    if not is_prepared(cfg.scattering_J, cfg.scattering_L, (cfg.image_size, cfg.image_size)):
        print(
            "melcnn: first run on this machine: preparing the scattering filter bank and FFT plans "
            f"(a few seconds, once; kept in {cache_dir()})",
            file=sys.stderr,
            flush=True,
        )


def _summary(report: dict[str, Any], name: str, ascii_only: bool) -> str:
    from .report import summary

    return summary(report, name=name, ascii_only=ascii_only)


def _cmd_models(args: argparse.Namespace) -> int:
    from .detector import load_model

    rows = []
    for entry in MODELS.values():
        row: dict[str, Any] = {"name": entry.name, "short": entry.variant, "description": entry.description}
        try:
            row.update(load_model(entry.variant).describe())
            row["available"] = True
        except MelcnnError as exc:
            row.update({"available": False, "reason": str(exc), "chunk_overlap_s": entry.default_overlap_s})
            row["spec"] = entry.to_dict()
        rows.append(row)
    if args.json or args.pretty:
        _print_json({"models": rows}, pretty=args.pretty)
        return EXIT_OK
    for row in rows:
        lines = [f"{row['name']} ({row['short']}): {row['description']}"]
        if not row["available"]:
            lines.append(f"  not available: {row['reason']}")
        else:
            lines.append(
                f"  version {row['version']}, {row['parameters']:,} parameters, threshold {row['threshold']}, "
                f"chunks {row['chunk_duration_s']:g} s / overlap {row['chunk_overlap_s']:g} s, "
                f"{row['sample_rate']} Hz"
            )
            lines.append(f"  weights sha256 {row['weights_sha256']}")
            metrics = row.get("metrics") or {}
            if metrics:
                shown = ", ".join(f"{k} {v}" for k, v in metrics.items() if not isinstance(v, dict | list))
                lines.append(f"  measured: {shown}")
        _print("\n".join(lines))
    return EXIT_OK


def _can_print(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _print(text: str) -> None:
    """One result on stdout, flushed at once: a pipe reader (jq, head) sees each file as it is done."""
    print(text, flush=True)


def _print_json(obj: dict[str, Any], *, pretty: bool) -> None:
    _print(json.dumps(obj, indent=2) if pretty else json.dumps(obj, separators=(",", ":")))


def _stdout_closed() -> int:
    """The reader of stdout went away (``| head``): stop quietly, with success, as Unix tools do."""
    import os

    try:  # later writes (and the interpreter's final flush) go nowhere instead of raising again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``melcnn`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        return _stdout_closed()
    except ModuleNotFoundError as exc:
        extra = _EXTRA_OF_MODULE.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        print(
            f"melcnn {args.command}: {exc.name} is not installed; it comes with pip install 'melcnn[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("melcnn: interrupted", file=sys.stderr)
        return 130
    except MelcnnError as exc:
        print(f"melcnn: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, ValueError) as exc:  # training/eval inputs: missing manifest, empty split
        print(f"melcnn: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
