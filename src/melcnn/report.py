"""The analysis report: the specification's JSON, plus chunk detail, model identity and warnings.

:func:`build_report` assembles the dict that ``Detector.analyze`` returns (JSON-serialisable, plain
Python types only); :func:`summary` renders it for a terminal. The JSON Schema of the report ships
as ``melcnn/report.schema.json`` (:func:`schema`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from .registry import ModelSpec

SCHEMA_VERSION = "1.0"
_BARS = " ▁▂▃▄▅▆▇█"


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def build_report(
    *,
    spec: ModelSpec,
    chunk_scores: np.ndarray,
    chunk_starts_s: np.ndarray,
    chunk_ends_s: np.ndarray,
    chunk_s: float,
    overlap_s: float,
    threshold: float,
    properties: dict[str, Any],
    measurements: dict[str, Any],
    model: dict[str, Any],
    visualization: dict[str, Any],
    warnings: Sequence[str],
    processing_time_s: float,
    timings_s: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Assemble the report dict.

    Parameters
    ----------
    spec : ModelSpec
        The model's variant; ``spec.timeline`` adds the specification's ``metrics`` section (V3's).
    chunk_scores : np.ndarray [shape=(n_chunks,)]
        Calibrated P(fake) per chunk.
    measurements : dict
        ``{"pitch": ..., "energy": ..., "spectral": ...}`` from :func:`melcnn.metrics.audio_metrics`.
    """
    scores = np.asarray(chunk_scores, dtype=np.float64)
    fake_score = float(scores.mean())
    is_fake = fake_score >= threshold
    report: dict[str, Any] = {
        "prediction": "FAKE" if is_fake else "REAL",
        "confidence": _r(fake_score if is_fake else 1.0 - fake_score),
        "processing_time": _r(processing_time_s, 3),
        "fake_score": _r(fake_score),
        "threshold": float(threshold),
        "model": model,
        "properties": properties,
        "pitch": measurements["pitch"],
        "energy": measurements["energy"],
        "spectral": measurements["spectral"],
        "visualization": visualization,
        "chunks": [
            {"start_s": _r(s, 3), "end_s": _r(e, 3), "fake_score": _r(p)}
            for s, e, p in zip(chunk_starts_s, chunk_ends_s, scores, strict=True)
        ],
        "warnings": list(warnings),
        "schema_version": SCHEMA_VERSION,
    }
    if spec.timeline:
        report["metrics"] = {
            "average_chunk_fake_score": _r(fake_score),
            "chunk_predictions": [_r(p) for p in scores],
            "chunk_duration_s": float(chunk_s),
            "chunk_overlap_s": float(overlap_s),
            "num_chunks": len(scores),
        }
    if timings_s is not None:
        report["timings"] = {k: _r(v, 4) for k, v in timings_s.items()}
    return report


def timeline(scores: Sequence[float], *, width: int = 60, ascii_only: bool = False) -> str:
    """One line of bars, one per chunk (or per group of chunks when there are more than ``width``).

    Each bar's height is the (maximum) chunk fake score; with ``ascii_only`` digits 0-9 are used.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return ""
    if s.size > width:
        edges = np.linspace(0, s.size, width + 1).astype(int)
        s = np.array([s[a:b].max() for a, b in zip(edges[:-1], edges[1:], strict=True)])
    if ascii_only:
        return "".join(str(min(9, int(v * 10))) for v in s)
    return "".join(_BARS[min(len(_BARS) - 1, 1 + int(v * (len(_BARS) - 1)))] for v in s)


def summary(report: dict[str, Any], *, name: str | None = None, ascii_only: bool = False) -> str:
    """A short human-readable rendering of a report for the terminal."""
    props = report["properties"]
    lines = []
    head = f"{name}: " if name else ""
    lines.append(
        f"{head}{report['prediction']}  (fake score {report['fake_score']:.3f}, threshold {report['threshold']:.2f}, "
        f"confidence {report['confidence']:.1%})"
    )
    chunks = report["chunks"]
    lines.append(
        f"  model {report['model']['name']}  |  {props['duration_seconds']:.1f} s {props['format']}  |  "
        f"{_count(len(chunks), 'chunk')}  |  {report['processing_time']:.2f} s"
    )
    if chunks:
        t0, t1 = chunks[0]["start_s"], chunks[-1]["end_s"]
        bars = timeline([c["fake_score"] for c in chunks], ascii_only=ascii_only)
        lines.append(f"  timeline {t0:.1f}s [{bars}] {t1:.1f}s")
        flagged = [c for c in chunks if c["fake_score"] >= report["threshold"]]
        if flagged and report["prediction"] == "REAL":
            verb = "scores" if len(flagged) == 1 else "score"
            lines.append(f"  {_count(len(flagged), 'chunk')} {verb} above the threshold")
    pitch = report["pitch"]
    if pitch.get("mean_pitch_hz") is not None:
        lines.append(
            f"  pitch {pitch['mean_pitch_hz']:.0f} Hz (stability {pitch['pitch_stability_score']:.2f})  |  "
            f"silence {report['energy']['silence_ratio']:.0%}  |  "
            f"centroid {report['spectral']['spectral_centroid']:.0f} Hz"
        )
    url = report["visualization"].get("spectrogram_url")
    if url:
        lines.append(f"  picture {url}")
    for w in report["warnings"]:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    """``"1 chunk"``, ``"2 chunks"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the report."""
    text = (resources.files("melcnn") / "report.schema.json").read_text(encoding="utf-8")
    return json.loads(text)
