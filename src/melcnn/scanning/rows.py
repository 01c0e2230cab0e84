"""The row of a scan: its documented columns and their types, its error codes, and how a row is built.

One row per media file (:data:`COLUMNS`, in order); ``row_key`` says which row is current for a file.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class _Target:
    """A file to scan, as discovery found it (size and mtime are the row's resume key)."""

    path: str
    size: int | None = None
    mtime: float | None = None
    error: tuple[str, str] | None = None  # (code, message) found while discovering


#: version of the row layout below (a column added or changed: bump it)
ROW_SCHEMA_VERSION = "1"

#: The columns of a row, in order, with their types (Parquet types; JSON and CSV hold the same values).
#: ``chunks`` and ``warnings`` are lists (JSON text in CSV). Failed files have ``error_code`` and
#: ``error_message`` and nulls for the results; measurements are null with ``--no-measurements``.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("path", "string"),
    ("size", "int64"),
    ("mtime", "float64"),
    ("format", "string"),
    ("duration_s", "float64"),
    ("analyzed_s", "float64"),
    ("prediction", "string"),
    ("fake_score", "float64"),
    ("threshold", "float64"),
    ("n_chunks", "int64"),
    ("chunks", "list<struct<start_s: float64, end_s: float64, fake_score: float64>>"),
    ("mean_pitch_hz", "float64"),
    ("pitch_stability", "float64"),
    ("voiced_ratio", "float64"),
    ("rms_energy", "float64"),
    ("silence_ratio", "float64"),
    ("spectral_centroid_hz", "float64"),
    ("warnings", "list<string>"),
    ("error_code", "string"),
    ("error_message", "string"),
    ("model", "string"),
    ("weights_sha256", "string"),
    ("processing_time_s", "float64"),
    ("scanned_at", "string"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)

#: error codes of scan-level failures (the decoder's own codes come from :mod:`melcnn.errors`)
WORKER_DIED = "worker_died"
INTERNAL_ERROR = "internal_error"
NOT_FOUND = "not_found"
#: the file's worker was stopped: it made no progress, or was slower than real time, for --file-timeout
#: seconds (a hanging decoder); not retried on resume, since the same file would hang again
TIMEOUT = "timeout"
#: rows with these codes are not current: a rerun scans their files again (the fault was not the file's)
RETRIED_CODES = frozenset({WORKER_DIED, INTERNAL_ERROR})


# ------------------------------------------------------------------------------------------- rows
def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(path: str, size: int | None, mtime: float | None, model: dict[str, str], **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMN_NAMES)
    row.update(path=path, size=size, mtime=mtime, chunks=[], warnings=[], scanned_at=_now())
    row["model"] = model["name"]
    row["weights_sha256"] = model["weights_sha256"]
    row.update(values)
    return row


def _error_row(target: _Target, model: dict[str, str], code: str, message: str, **values: Any) -> dict[str, Any]:
    return _row(target.path, target.size, target.mtime, model, error_code=code, error_message=message, **values)


def _scored_row(
    target: _Target, model: dict[str, str], meta: dict[str, Any], scores: np.ndarray, threshold: float, t0: float
) -> dict[str, Any]:
    """The row of an analysed file: ``meta`` as the decoding worker reports it, ``scores`` its chunks' P(fake)
    in order, ``t0`` the time its decoding started (both engines build their rows here)."""
    fake = float(scores.mean())
    chunks = [
        {"start_s": round(a, 3), "end_s": round(b, 3), "fake_score": round(float(p), 4)}
        for a, b, p in zip(meta["starts"], meta["ends"], scores, strict=True)
    ]
    return _row(
        target.path,
        target.size,
        target.mtime,
        model,
        format=meta["format"],
        duration_s=meta["duration_s"],
        analyzed_s=meta["analyzed_s"],
        prediction="FAKE" if fake >= threshold else "REAL",
        fake_score=round(fake, 4),
        threshold=threshold,
        n_chunks=len(chunks),
        chunks=chunks,
        warnings=meta["warnings"],
        processing_time_s=round(time.time() - t0, 3),
        **{k: _finite(v) for k, v in _measurement_columns(meta["measurements"]).items()},
    )


def row_key(row: dict[str, Any]) -> tuple:
    """What makes a row current: same path, size, mtime and model (name and weights)."""
    return (row.get("path"), row.get("size"), row.get("mtime"), row.get("model"), row.get("weights_sha256"))


def _measurement_columns(m: dict[str, Any] | None) -> dict[str, Any]:
    if not m:
        return {}
    pitch, energy, spectral = m.get("pitch", {}), m.get("energy", {}), m.get("spectral", {})
    return {
        "mean_pitch_hz": pitch.get("mean_pitch_hz"),
        "pitch_stability": pitch.get("pitch_stability_score"),
        "voiced_ratio": pitch.get("voiced_ratio"),
        "rms_energy": energy.get("rms_energy"),
        "silence_ratio": energy.get("silence_ratio"),
        "spectral_centroid_hz": spectral.get("spectral_centroid"),
    }


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x
