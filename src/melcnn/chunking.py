"""Split mono audio into the whole, fixed-length chunks the model scores.

V2 uses non-overlapping chunks (step = chunk); V3 overlapping ones (step = chunk - overlap). As the
specification says, only whole chunks are analysed: a tail shorter than one chunk is not scored. The
overlap obeys the one rule of :func:`melcnn.registry.validate_overlap` (0 to the chunk length less 0.5 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import TooShortError
from .registry import validate_overlap


@dataclass(frozen=True)
class Chunks:
    """Chunks of one signal.

    Attributes
    ----------
    samples : np.ndarray [shape=(n_chunks, chunk_len)]
        A read-only strided view into the signal (no copy).
    starts_s, ends_s : np.ndarray [shape=(n_chunks,)]
        Start and end of every chunk in seconds.
    chunk_s, overlap_s : float
        Chunk length and overlap in seconds, as used.
    """

    samples: np.ndarray
    starts_s: np.ndarray
    ends_s: np.ndarray
    chunk_s: float
    overlap_s: float

    def __len__(self) -> int:
        return int(self.samples.shape[0])


def chunk(y: np.ndarray, *, sr: int, chunk_s: float = 3.0, overlap_s: float = 0.0) -> Chunks:
    """Split ``y`` into whole chunks of ``chunk_s`` seconds, consecutive chunks overlapping by ``overlap_s``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio.
    sr : int > 0
        Sample rate of ``y`` in Hz.
    chunk_s : float > 0
        Chunk length in seconds; ``int(chunk_s * sr)`` samples, as the specification computes it.
    overlap_s : float, 0 <= overlap_s <= chunk_s - 0.5
        Overlap of consecutive chunks in seconds (a model's default: its spec's ``default_overlap_s``).

    Returns
    -------
    Chunks
        ``n_chunks = 1 + (n - chunk_len) // step`` whole chunks, with
        ``step = chunk_len - int(overlap_s * sr)``.

    Raises
    ------
    InvalidParameterError
        If ``overlap_s`` is outside the allowed range.
    TooShortError
        If ``y`` is shorter than one chunk.

    Examples
    --------
    >>> c = chunk(np.zeros(16000 * 6, dtype=np.float32) + 1, sr=16000, chunk_s=3.0, overlap_s=1.5)
    >>> c.starts_s.tolist()
    [0.0, 1.5, 3.0]
    """
    overlap = validate_overlap(overlap_s, chunk_s)
    chunk_len = int(chunk_s * sr)
    step = chunk_len - int(overlap * sr)
    n = int(y.shape[-1])
    if n < chunk_len:
        found = n / sr
        raise TooShortError(
            f"the audio is {found:.2f} s long, shorter than one {chunk_s:g} s chunk; "
            f"melcnn needs at least {chunk_s:g} s of audio",
            duration_s=found,
            minimum_s=float(chunk_s),
        )
    n_chunks = 1 + (n - chunk_len) // step
    windows = np.lib.stride_tricks.sliding_window_view(y, chunk_len)[::step][:n_chunks]
    starts = np.arange(n_chunks) * step
    return Chunks(
        samples=windows,
        starts_s=starts / sr,
        ends_s=(starts + chunk_len) / sr,
        chunk_s=float(chunk_s),
        overlap_s=overlap,
    )


def unscored_tail_warning(duration_s: float, analyzed_s: float, chunk_s: float) -> str | None:
    """The report's warning when the end of a recording was not scored (a tail shorter than a whole
    chunk, 0.5 s or longer), else ``None``."""
    tail = duration_s - analyzed_s
    if tail < 0.5:
        return None
    return f"the last {tail:.1f} s are shorter than a whole {chunk_s:g} s chunk and were not scored"
