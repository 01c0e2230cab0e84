"""``melcnn scan``: its options (:func:`add_arguments`) and the command (:func:`run_cli`), a thin shell over
:class:`~melcnn.scanning.api.Scan`.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ..config import MAX_DURATION_S
from ..errors import MelcnnError
from .api import ENGINES, Scan
from .output import output_format
from .progress import Progress, summary
from .workers import FILE_TIMEOUT_S


def add_arguments(parser: Any, default_model: str) -> None:
    """The options of ``melcnn scan`` (registered by :mod:`melcnn.cli`)."""
    add = parser.add_argument
    add("paths", nargs="+", metavar="PATH", help="files, folders (recursive), globs, or - (paths on stdin)")
    add(
        "--out",
        default="scan.parquet",
        metavar="FILE",
        help="results: .parquet (default scan.parquet), .jsonl or .csv; a rerun skips the files already there",
    )
    add("--model", default=default_model, help=f"v2, v3 or a checkpoint directory (default {default_model})")
    add("--workers", type=int, default=None, metavar="N", help="decoding processes (default: half the cores, 1-4)")
    add("--include", action="append", default=[], metavar="GLOB", help="only matching files (repeatable; default: all)")
    add("--exclude", action="append", default=[], metavar="GLOB", help="skip matching files (repeatable; default none)")
    add("--no-measurements", action="store_true", help="skip pitch, energy and spectral measurements (faster)")
    add("--report", default=None, metavar="HTML", help="also write a self-contained HTML report (default: none)")
    add("--max-duration", type=float, default=None, metavar="S", help="longest file in seconds (default 7200)")
    add("--overlap", type=float, default=None, metavar="S", help="chunk overlap in seconds (default: the model's)")
    add(
        "--file-timeout",
        type=float,
        default=FILE_TIMEOUT_S,
        metavar="S",
        help=f"stop a worker that makes no progress on a file for S seconds, or decodes it slower than real "
        f"time by S seconds; the file gets error code timeout (default {FILE_TIMEOUT_S:g}; 0: no limit)",
    )
    add("--top", type=int, default=10, metavar="N", help="most suspicious files in the summary (default 10)")
    add(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: worker processes here (default); ray: Ray Data actors, --workers of them (default: one per "
        "CPU of the Ray cluster; pip install 'melcnn[ray]')",
    )
    add(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --engine ray: join this Ray cluster (auto, HOST:6379, ray://HOST:10001; default: a local Ray)",
    )
    add(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the scattering runs (default cpu; cuda needs melcnn[gpu] and a GPU, and decodes on all "
        "cores unless --workers says otherwise)",
    )


def _say(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def run_cli(args: Any) -> int:
    """``melcnn scan``: returns the exit status (0 when the scan ran, whatever the files' verdicts)."""
    from ..detector import load_model

    try:
        output_format(args.out)
    except MelcnnError as exc:
        _say(f"melcnn scan: {exc}", err=True)
        return 2
    if args.ray_address is not None and args.engine != "ray":
        _say("melcnn scan: --ray-address needs --engine ray", err=True)
        return 2
    if args.engine == "ray":
        from .ray_engine import require_ray

        try:
            require_ray()
        except MelcnnError as exc:
            _say(f"melcnn scan: {exc}", err=True)
            return 2
    try:
        detector = load_model(args.model, device=args.device)
    except MelcnnError as exc:
        _say(f"melcnn scan: cannot load model {args.model!r}: {exc}", err=True)
        return 4
    if args.workers is not None and args.workers < 1:
        _say("melcnn scan: --workers must be at least 1", err=True)
        return 2
    if not args.file_timeout >= 0:  # (also NaN)
        _say("melcnn scan: --file-timeout must be a number of seconds, 0 for no limit", err=True)
        return 2
    s = Scan(
        args.paths,
        model=detector,
        out=args.out,
        workers=args.workers,
        include=args.include,
        exclude=args.exclude,
        measurements=not args.no_measurements,
        max_duration_s=MAX_DURATION_S if args.max_duration is None else args.max_duration,
        overlap_s=args.overlap,
        engine=args.engine,
        ray_address=args.ray_address,
        file_timeout_s=args.file_timeout or None,
    )
    s.on_progress = progress = Progress()
    t0 = time.monotonic()
    interrupted = False
    try:
        for _ in s:
            pass
    except KeyboardInterrupt:
        interrupted = True
    progress(s, s.stats.scanned + s.stats.non_media, final=True)
    elapsed = time.monotonic() - t0
    assert s.output is not None
    rows = list(s.output.rows.values())
    _say(summary(s, rows, top=args.top, elapsed_s=elapsed))
    _say(f"results: {s.output.path}")
    if args.report:
        from .report import write_report

        write_report(rows, args.report, summary=summary(s, rows, top=args.top, elapsed_s=elapsed))
        _say(f"report: {args.report}")
    if interrupted:
        _say("melcnn scan: interrupted; run the same command again to continue", err=True)
        return 130
    return 0
