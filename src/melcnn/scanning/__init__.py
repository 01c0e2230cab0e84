"""Scan archives: ``melcnn scan PATH...`` and :func:`melcnn.scan` (one row per media file, resumable).

Data flow::

    discover (main thread: walk, stat, include/exclude, skip rows already in the output)
      -> worker processes (decode, chunk, mel images, measurements)      [one file at a time each]
      -> collector thread (pipes -> one bounded queue; replaces dead workers)
      -> main thread: images of many files batched into the scattering engine, head, rows
      -> output (JSON Lines appended and fsync'd; Parquet/CSV: a JSON Lines journal beside, the
         table written at the end by an atomic rename)

With ``engine="ray"`` (:mod:`.ray_engine`) the middle three steps run in Ray Data actors instead (each
decodes, scores and builds the rows of its files with the same code); discovery and output stay here.

One concept per module: :mod:`.discovery` (which files), :mod:`.rows` (the row schema and error
codes), :mod:`.stats` (the counts), :mod:`.workers` (the decoding processes and their pool),
:mod:`.engine` (the batched scattering and head: the one place that calls melcnn's internals),
:mod:`.output` (the resumable output file), :mod:`.api` (:class:`Scan` and :func:`scan`),
:mod:`.progress` (progress bar and summary), :mod:`.cli` (``melcnn scan``), :mod:`.report` (the
HTML report) and :mod:`.ray_engine` (``--engine ray``; not imported here: Ray is an optional extra).
The package is named ``scanning`` (not ``scan``) so that the package attribute ``melcnn.scan`` stays
the function; for the same reason no module in it is named ``scan``.
"""

from __future__ import annotations

from .api import Scan, scan
from .discovery import discover, looks_like_media
from .engine import BATCH_IMAGES, _Engine
from .output import FORMATS, Output, output_format, read_rows
from .progress import Progress, summary
from .rows import (
    COLUMN_NAMES,
    COLUMNS,
    INTERNAL_ERROR,
    NOT_FOUND,
    RETRIED_CODES,
    ROW_SCHEMA_VERSION,
    TIMEOUT,
    WORKER_DIED,
    _error_row,
    _row,
    _Target,
    row_key,
)
from .stats import ScanStats
from .workers import (
    FILE_TIMEOUT_S,
    WORKER_PREFETCH,
    WORKER_SEND_IMAGES,
    _worker_child,
    _WorkerPool,
    default_workers,
)

__all__ = [
    "BATCH_IMAGES",
    "COLUMNS",
    "COLUMN_NAMES",
    "FILE_TIMEOUT_S",
    "FORMATS",
    "INTERNAL_ERROR",
    "NOT_FOUND",
    "Output",
    "Progress",
    "RETRIED_CODES",
    "ROW_SCHEMA_VERSION",
    "Scan",
    "ScanStats",
    "TIMEOUT",
    "WORKER_DIED",
    "WORKER_PREFETCH",
    "WORKER_SEND_IMAGES",
    "_Engine",
    "_Target",
    "_WorkerPool",
    "_error_row",
    "_row",
    "_worker_child",
    "default_workers",
    "discover",
    "looks_like_media",
    "output_format",
    "read_rows",
    "row_key",
    "scan",
    "summary",
]
