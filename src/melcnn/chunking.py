"""Split mono audio into the whole, fixed-length chunks the model scores.

V2 uses non-overlapping chunks (step = chunk); V3 overlapping ones (step = chunk - overlap). As the
specification says, only whole chunks are analysed: a tail shorter than one chunk is not scored. The
overlap obeys the one rule of :func:`melcnn.registry.validate_overlap` (0 to the chunk length less 0.5 s).

:func:`chunk` cuts a whole signal (views, no copy); :class:`ChunkStream` cuts a signal that arrives
block by block (the analysis) into the same chunks, handed out in batches, holding no more than one
batch's span of the signal.
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
    overlap, chunk_len, step = _plan(sr, chunk_s, overlap_s)
    n = int(y.shape[-1])
    if n < chunk_len:
        found = n / sr
        raise TooShortError(
            f"the audio is {found:.2f} s long, shorter than one {chunk_s:g} s chunk; "
            f"melcnn needs at least {chunk_s:g} s of audio",
            duration_s=found,
            minimum_s=float(chunk_s),
        )
    n_chunks = _whole_chunks(n, chunk_len, step)
    starts_s, ends_s = chunk_times(n_chunks, sr=sr, chunk_len=chunk_len, step=step)
    return Chunks(
        samples=_windows(y, chunk_len, step, n_chunks),
        starts_s=starts_s,
        ends_s=ends_s,
        chunk_s=float(chunk_s),
        overlap_s=overlap,
    )


def _plan(sr: int, chunk_s: float, overlap_s: float) -> tuple[float, int, int]:
    """The validated overlap, the samples per chunk and the samples between chunk starts."""
    overlap = validate_overlap(overlap_s, chunk_s)
    chunk_len = int(chunk_s * sr)
    return overlap, chunk_len, chunk_len - int(overlap * sr)


def _whole_chunks(n: int, chunk_len: int, step: int) -> int:
    """Whole chunks in ``n`` samples."""
    return 0 if n < chunk_len else 1 + (n - chunk_len) // step


def _windows(y: np.ndarray, chunk_len: int, step: int, n_chunks: int) -> np.ndarray:
    """The first ``n_chunks`` chunks of ``y`` (a read-only strided view)."""
    return np.lib.stride_tricks.sliding_window_view(y, chunk_len)[::step][:n_chunks]


def chunk_times(n_chunks: int, *, sr: int, chunk_len: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end in seconds of the first ``n_chunks`` chunks."""
    starts = np.arange(n_chunks) * step
    return starts / sr, (starts + chunk_len) / sr


class ChunkStream:
    """The chunks of :func:`chunk` for a signal that arrives block by block, handed out in batches.

    :meth:`push` takes the next samples and returns the batches of ``batch`` chunks that became
    whole; :meth:`flush`, at the end, the last (shorter) batch. Each batch is a new
    ``(n, chunk_len)`` float32 array; the chunks are exactly :func:`chunk`'s of the whole signal,
    in order. Only the samples from the next chunk's start on are kept: at most one batch's span
    (``(batch - 1) * step + chunk_len`` samples) plus one block.

    Parameters
    ----------
    sr : int > 0
        Sample rate in Hz.
    chunk_s, overlap_s : float
        As :func:`chunk` (the overlap is validated here).
    batch : int > 0
        Chunks per batch.
    """

    def __init__(self, *, sr: int, chunk_s: float = 3.0, overlap_s: float = 0.0, batch: int = 16):
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.sr = sr
        self.chunk_s = float(chunk_s)
        self.overlap_s, self.chunk_len, self.step = _plan(sr, chunk_s, overlap_s)
        self.batch = batch
        self.n_chunks = 0  # chunks handed out so far
        self.n_samples = 0  # samples pushed so far
        self._buf = np.zeros(0, np.float32)
        self._first = 0  # index in the signal of _buf[0]
        self._fill = 0  # samples of _buf in use

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        """Add the next samples; the batches of ``batch`` chunks that are now whole."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        self._append(block)
        out = []
        while self._available() >= self.batch:
            out.append(self._take(self.batch))
        return out

    def flush(self) -> list[np.ndarray]:
        """The end of the signal: the remaining whole chunks as one last batch (``[]`` if none)."""
        n = self._available()
        return [self._take(n)] if n else []

    def times(self) -> tuple[np.ndarray, np.ndarray]:
        """Start and end in seconds of the chunks handed out so far."""
        return chunk_times(self.n_chunks, sr=self.sr, chunk_len=self.chunk_len, step=self.step)

    def _available(self) -> int:
        return _whole_chunks(self.n_samples - self.n_chunks * self.step, self.chunk_len, self.step)

    def _append(self, block: np.ndarray) -> None:
        keep_from = min(self.n_chunks * self.step, self.n_samples) - self._first  # the next chunk's start
        needed = self._fill - keep_from + block.size
        if needed > self._buf.size:  # grow (to a span of a batch, plus blocks), dropping what was used
            grown = np.empty(max(needed, 2 * self._buf.size), np.float32)
            grown[: self._fill - keep_from] = self._buf[keep_from : self._fill]
            self._buf = grown
            self._first, self._fill = self._first + keep_from, self._fill - keep_from
        elif self._fill + block.size > self._buf.size:  # move the kept samples to the front
            self._buf[: self._fill - keep_from] = self._buf[keep_from : self._fill]
            self._first, self._fill = self._first + keep_from, self._fill - keep_from
        self._buf[self._fill : self._fill + block.size] = block
        self._fill += block.size
        self.n_samples += block.size

    def _take(self, n: int) -> np.ndarray:
        start = self.n_chunks * self.step - self._first
        span = self._buf[start : start + (n - 1) * self.step + self.chunk_len]
        self.n_chunks += n
        return np.array(_windows(span, self.chunk_len, self.step, n))


def unscored_tail_warning(duration_s: float, analyzed_s: float, chunk_s: float) -> str | None:
    """The report's warning when the end of a recording was not scored (a tail shorter than a whole
    chunk, 0.5 s or longer), else ``None``."""
    tail = duration_s - analyzed_s
    if tail < 0.5:
        return None
    return f"the last {tail:.1f} s are shorter than a whole {chunk_s:g} s chunk and were not scored"
