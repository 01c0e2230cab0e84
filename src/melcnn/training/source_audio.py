"""Decoding bona fide source files and rendering an utterance (one file, a segment of a long file,
or several short files packed) as 16 kHz samples.

Needs soundfile, soxr and the PyPI package ``g722`` (for the asterisk G.722 prompts).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import audio as A

if TYPE_CHECKING:
    from .sources import Utterance


def decode(path: Path, kind: str) -> tuple[np.ndarray, int]:
    """Float64 mono samples and rate of one source file."""
    import soundfile as sf

    if kind == "g722":
        import G722

        y = np.asarray(G722.G722(16000, 64000).decode(path.read_bytes()), dtype=np.float64) / 32768.0
        return y, 16000
    if kind == "gsm":
        y, sr = sf.read(str(path), format="RAW", subtype="GSM610", samplerate=8000, channels=1, dtype="float64")
        return A.to_mono(y), sr
    y, sr = sf.read(str(path), dtype="float64", always_2d=False)
    return A.to_mono(y), int(sr)


def load_piece(sources_dir: Path, path: str, kind: str, start_s: float, end_s: float) -> np.ndarray:
    y, sr = decode(sources_dir / path, kind)
    y = A.resample(y, sr, A.SR)
    if start_s > 0 or end_s >= 0:
        a = int(start_s * A.SR)
        b = len(y) if end_s < 0 else int(end_s * A.SR)
        y = y[a:b]
    return y


def _quiet_cut(y: np.ndarray, t: float, search_s: float = 0.6) -> float:
    """Move a cut point to the quietest 10 ms frame within +-search_s."""
    f = A.frame_rms_db(y)
    c = int(t * A.SR / A.HOP)
    w = int(search_s * A.SR / A.HOP)
    lo, hi = max(0, c - w), min(len(f), c + w + 1)
    if hi <= lo:
        return t
    return float((lo + int(np.argmin(f[lo:hi]))) * A.HOP / A.SR)


def background_db(y: np.ndarray) -> float:
    """Level of the recording's own background: the 10th percentile of frame levels."""
    f = A.frame_rms_db(y)
    return float(np.percentile(f, 10))


def render_utterance(sources_dir: Path, utt: Utterance, rng: np.random.Generator) -> np.ndarray:
    """The 16 kHz samples of a bona fide utterance, before trimming and normalisation.

    Packed short files are trimmed tightly and joined with 0.15-0.45 s gaps of noise at the
    speakers' own background level (never digital zeros).
    """
    if len(utt.pieces) == 1:
        p, kind, a, b = utt.pieces[0]
        y = load_piece(sources_dir, p, kind, 0.0, -1.0)
        if a > 0 or b >= 0:
            # segment of a long file: move the cuts to nearby pauses
            a2 = _quiet_cut(y, a) if a > 0 else 0.0
            b2 = _quiet_cut(y, b) if 0 <= b < len(y) / A.SR - 0.5 else len(y) / A.SR
            y = y[int(a2 * A.SR) : int(b2 * A.SR)]
        return y
    parts = [load_piece(sources_dir, p, kind, a, b) for p, kind, a, b in utt.pieces]
    bg = np.median([background_db(p) for p in parts])
    bg = float(np.clip(bg, -75.0, -35.0))
    out = []
    for i, part in enumerate(parts):
        if i:
            n = int(rng.uniform(0.15, 0.45) * A.SR)
            out.append(A.coloured_noise(n, "pink", rng) * 10.0 ** (bg / 20.0))
        out.append(A.trim_tight(part))
    return np.concatenate(out)
