"""Chunk -> pre-emphasis -> mel spectrogram (dB) -> 256x256 image, in NumPy (and scipy.fft).

This reproduces the specification's librosa calls (``librosa.effects.preemphasis``,
``librosa.feature.melspectrogram`` with a Hann window, centred frames and zero padding,
``librosa.power_to_db(ref=np.max)``), checked against librosa in the tests, without importing
librosa (whose import and first call cost seconds in a fresh process).

The image is built directly from the dB array instead of a matplotlib render and PNG round trip:

* intensity = ``(dB + top_db) / top_db``, so 0 dB (the chunk's loudest cell) is 1.0 and
  ``-top_db`` dB and below is 0.0 (``power_to_db`` already clips at ``-top_db``);
* the mel axis is flipped so that low frequencies are at the bottom row, as on a plotted spectrogram;
* the ``(n_mels, n_frames)`` array is resized to ``image_size x image_size`` with bilinear
  interpolation (pixel centres aligned, as ``PIL``/``torch`` ``align_corners=False`` do), applied as
  two small matrix products.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import _dsp
from .config import FeatureConfig


@lru_cache(maxsize=8)
def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin_hz: float = 0.0, fmax_hz: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filters, as ``librosa.filters.mel`` with its defaults.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2)], float32, read-only
    """
    fmax = sr / 2.0 if fmax_hz is None else float(fmax_hz)
    fftfreqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = _dsp.mel_to_hz(np.linspace(_dsp.hz_to_mel(fmin_hz), _dsp.hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    out = weights.astype(np.float32)
    out.setflags(write=False)
    return out


#: mel bands per banded product (see _mel_groups): 16 per group was fastest for 128 bands (measured)
_BANDS_PER_GROUP = 16


@lru_cache(maxsize=8)
def _mel_groups(
    sr: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float | None
) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """The mel filter bank cut into groups of consecutive bands, each with the FFT bins it covers.

    A triangular filter is non-zero on a few neighbouring bins only, so ``power @ fb.T`` is done
    as one small product per group, ``power[..., lo:hi] @ fb[b0:b1, lo:hi].T`` (7 % of the dense
    product's multiplications for 128 bands, 5x faster): ``(b0, b1, lo, hi, weights)``.
    """
    fb = mel_filterbank(sr, n_fft, n_mels, fmin_hz, fmax_hz)
    used = fb > 0
    groups = []
    for b0 in range(0, n_mels, _BANDS_PER_GROUP):
        b1 = min(n_mels, b0 + _BANDS_PER_GROUP)
        cols = np.flatnonzero(used[b0:b1].any(axis=0))
        lo, hi = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)
        w = np.ascontiguousarray(fb[b0:b1, lo:hi].T)
        w.setflags(write=False)
        groups.append((b0, b1, lo, hi, w))
    return tuple(groups)


def _mel_project(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``power @ fb.T`` for power spectra ``(..., 1 + n_fft // 2)`` -> ``(..., n_mels)``, float32."""
    groups = _mel_groups(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax_hz)
    flat = power.reshape(-1, power.shape[-1])
    out = np.zeros((flat.shape[0], cfg.n_mels), np.float32)
    for b0, b1, lo, hi, w in groups:
        if hi > lo:
            np.matmul(flat[:, lo:hi], w, out=out[:, b0:b1])
    return out.reshape(*power.shape[:-1], cfg.n_mels)


def preemphasis(y: np.ndarray, *, coef: float = 0.97) -> np.ndarray:
    """``y[n] - coef * y[n-1]`` along the last axis, started as ``librosa.effects.preemphasis`` does.

    librosa initialises the filter state with ``2 * y[0] - y[1]``, so the first output sample is
    ``3 * y[0] - y[1]``; reproduced here so that features match the specification's code.
    """
    y = np.asarray(y, dtype=np.float32)
    out = np.empty_like(y)
    out[..., 1:] = y[..., 1:] - np.float32(coef) * y[..., :-1]
    out[..., 0] = 3 * y[..., 0] - y[..., 1]
    return out


def mel_power(y: np.ndarray, *, cfg: FeatureConfig) -> np.ndarray:
    """Mel power spectrogram of (batches of) audio, as ``librosa.feature.melspectrogram`` (power 2).

    Parameters
    ----------
    y : np.ndarray [shape=(..., n)]
        Audio at ``cfg.sample_rate``.

    Returns
    -------
    np.ndarray [shape=(..., n_mels, 1 + n // hop_length)], float32
    """
    half = cfg.n_fft // 2
    y = np.asarray(y, dtype=np.float32)
    pad = [(0, 0)] * (y.ndim - 1) + [(half, half)]
    return _frames_power(np.pad(y, pad, mode="constant"), cfg=cfg)


def power_to_db(power: np.ndarray, *, top_db: float = 80.0) -> np.ndarray:
    """``librosa.power_to_db(power, ref=np.max, amin=1e-10, top_db=top_db)`` over the last two axes.

    Each 2-D spectrogram in the batch is referenced to its own maximum, so its loudest cell is 0 dB.
    An all-zero (digitally silent) spectrogram gives all 0 dB, never NaN.
    """
    return _dsp.power_to_db(power, relative_to_max=True, top_db=top_db, axis=(-2, -1)).astype(np.float32)


#: signals per block of a batched :func:`mel_db`. Its temporaries (frames, spectrum, power) take
#: about 0.8 MB per 3 s chunk each; a block of 9 chunks (a 15 s file in V3) made glibc map fresh
#: pages for them on every call (about 1500 page faults, 8 ms of 25), blocks of 3 reuse freed memory.
_MEL_BLOCK = 3


def mel_db(y: np.ndarray, *, cfg: FeatureConfig) -> np.ndarray:
    """Pre-emphasis, mel power spectrogram and dB, per signal in the batch.

    Returns
    -------
    np.ndarray [shape=(..., n_mels, n_frames)], float32, values in ``[-top_db, 0]``
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim < 2 or np.prod(y.shape[:-1]) <= _MEL_BLOCK:
        return power_to_db(mel_power(preemphasis(y, coef=cfg.preemphasis), cfg=cfg), top_db=cfg.top_db)
    flat = y.reshape(-1, y.shape[-1])
    out = np.concatenate([mel_db(flat[i : i + _MEL_BLOCK], cfg=cfg) for i in range(0, len(flat), _MEL_BLOCK)])
    return out.reshape(*y.shape[:-1], *out.shape[-2:])


@lru_cache(maxsize=16)
def _resize_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Bilinear interpolation weights [shape=(n_out, n_in)] with half-pixel centres (align_corners=False)."""
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    x = np.clip(x, 0, n_in - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = x - lo
    w = np.zeros((n_out, n_in), dtype=np.float64)
    w[np.arange(n_out), lo] += 1 - frac
    w[np.arange(n_out), hi] += frac
    out = w.astype(np.float32)
    out.setflags(write=False)
    return out


def db_to_image(db: np.ndarray, *, size: int = 256, top_db: float = 80.0) -> np.ndarray:
    """Map mel dB arrays to square single-channel images.

    Parameters
    ----------
    db : np.ndarray [shape=(..., n_mels, n_frames)]
        Output of :func:`mel_db`.

    Returns
    -------
    np.ndarray [shape=(..., size, size)], float32 in [0, 1]
        Row 0 is the highest mel band, the last row the lowest; columns are time.
    """
    intensity = np.clip((db + top_db) / top_db, 0.0, 1.0)[..., ::-1, :]
    rows = _resize_matrix(size, db.shape[-2])
    cols = _resize_matrix(size, db.shape[-1])
    return np.ascontiguousarray(rows @ intensity @ cols.T, dtype=np.float32)


def chunk_images(chunks: np.ndarray, *, cfg: FeatureConfig) -> np.ndarray:
    """The model's input images for a batch of chunks.

    Parameters
    ----------
    chunks : np.ndarray [shape=(n_chunks, chunk_len)]

    Returns
    -------
    np.ndarray [shape=(n_chunks, image_size, image_size)], float32 in [0, 1]
    """
    return db_to_image(mel_db(chunks, cfg=cfg), size=cfg.image_size, top_db=cfg.top_db)


class OverviewMel:
    """The pictures' whole-file mel spectrogram (dB re the file's maximum) of a signal that arrives block
    by block: :meth:`push` the samples in order, then :meth:`result`.

    Frames are computed ``block_frames`` at a time as their samples arrive and averaged (in power) into
    columns of ``group`` consecutive frames; whenever there would be more than ``max_frames`` columns,
    neighbouring columns are merged and ``group`` doubles. So at most ``max_frames`` columns of
    ``group`` frames remain (``group`` is 1, equal to :func:`mel_db` of the whole signal, up to
    ``max_frames`` frames; else the smallest power of two that fits), and memory stays bounded whatever
    the length: ``max_frames`` columns, ``block_frames`` frames' worth of samples and temporaries.
    """

    def __init__(self, *, cfg: FeatureConfig, max_frames: int = 2000, block_frames: int = 256):
        if max_frames < 1 or block_frames < 1:
            raise ValueError(f"max_frames and block_frames must be positive, got {max_frames}, {block_frames}")
        self.cfg = cfg
        self.max_frames = max_frames
        self.block_frames = block_frames
        self.group = 1  # frames per column
        self.n = 0  # samples pushed
        self._first = np.zeros(0, np.float32)  # the first sample, until the second one arrives
        self._last = np.float32(0.0)  # the last sample pushed (for the pre-emphasis)
        # the pre-emphasised signal padded with n_fft // 2 zeros in front, from the next frame's start on
        self._buf = np.zeros(cfg.n_fft // 2, np.float32)
        self._frames_done = 0
        self._cols: list[np.ndarray] = []  # (n_mels, k) mean power of ``group`` frames each, float64
        self._n_cols = 0
        self._part_sum = np.zeros(cfg.n_mels)  # power summed over the frames of the incomplete column
        self._part_n = 0

    def push(self, block: np.ndarray) -> None:
        """Add the next samples."""
        y = np.asarray(block, dtype=np.float32).reshape(-1)
        if not y.size:
            return
        coef = np.float32(self.cfg.preemphasis)
        if self.n < 2:  # :func:`preemphasis` starts from the first two samples
            self.n += y.size
            head = np.concatenate([self._first, y])
            if head.size < 2:
                self._first = head
                return
            self._first = np.zeros(0, np.float32)
            emphasized = preemphasis(head, coef=self.cfg.preemphasis)
        else:
            self.n += y.size
            emphasized = np.empty_like(y)
            emphasized[0] = y[0] - coef * self._last
            emphasized[1:] = y[1:] - coef * y[:-1]
        self._last = y[-1]
        self._buf = np.concatenate([self._buf, emphasized])
        self._frames(final=False)

    def _frames(self, final: bool) -> None:
        n_fft, hop = self.cfg.n_fft, self.cfg.hop_length
        if final:
            total = 1 + self.n // hop
            self._buf = np.concatenate([self._buf, np.zeros(n_fft // 2, np.float32)])
        while True:
            ready = 1 + (len(self._buf) - n_fft) // hop if len(self._buf) >= n_fft else 0
            if final:
                ready = min(ready, total - self._frames_done)
            elif ready < self.block_frames:
                return
            k = min(ready, self.block_frames)
            if k <= 0:
                return
            self._add(_frames_power(self._buf[: (k - 1) * hop + n_fft], cfg=self.cfg))
            self._buf = self._buf[k * hop :]
            self._frames_done += k

    def _add(self, power: np.ndarray) -> None:
        """Average the frames ``power`` (n_mels, k) into columns of ``group`` frames, then merge columns
        while there are more than ``max_frames``."""
        k, i, g = power.shape[1], 0, self.group
        if self._part_n:
            i = min(g - self._part_n, k)
            self._part_sum += power[:, :i].sum(axis=1, dtype=np.float64)
            self._part_n += i
            if self._part_n == g:
                self._cols.append(self._part_sum[:, None] / g)
                self._part_sum, self._part_n = np.zeros(self.cfg.n_mels), 0
        full = (k - i) // g
        if full:
            whole = power[:, i : i + full * g]
            if g > 1:
                whole = whole.reshape(whole.shape[0], full, g).mean(axis=2, dtype=np.float64)
            self._cols.append(whole.astype(np.float64))
            i += full * g
        if i < k:
            self._part_sum = self._part_sum + power[:, i:].sum(axis=1, dtype=np.float64)
            self._part_n += k - i
        self._n_cols = sum(c.shape[1] for c in self._cols)
        while self._n_cols > self.max_frames:  # merge neighbours: columns of twice as many frames
            c = np.concatenate(self._cols, axis=1)
            if c.shape[1] % 2:  # the odd one out goes back to the incomplete column (whose frames follow it)
                self._part_sum = self._part_sum + c[:, -1] * self.group
                self._part_n += self.group
                c = c[:, :-1]
            c = c.reshape(c.shape[0], -1, 2).mean(axis=2)
            self.group *= 2
            self._cols, self._n_cols = [c], c.shape[1]

    def result(self) -> tuple[np.ndarray, float]:
        """``(mel_db, column_s)``: the spectrogram, float32 ``(n_mels, n_columns)``, in dB re its maximum
        (``top_db`` below it at most), and the seconds per column."""
        if 0 < self.n < 2:  # a one-sample signal: pre-emphasised as y[0] * 3
            self._buf = np.concatenate([self._buf, 3 * self._first])
            self._first = np.zeros(0, np.float32)
        self._frames(final=True)
        cols = list(self._cols)
        if self._part_n:
            cols.append(self._part_sum[:, None] / self._part_n)
        power = np.concatenate(cols, axis=1) if cols else np.zeros((self.cfg.n_mels, 1))
        column_s = self.group * self.cfg.hop_length / self.cfg.sample_rate
        return power_to_db(power, top_db=self.cfg.top_db), column_s


def overview_mel_db(
    y: np.ndarray, *, cfg: FeatureConfig, max_frames: int = 2000, block_frames: int = 256
) -> tuple[np.ndarray, float]:
    """Mel spectrogram (dB re the file's maximum) of a whole signal, for pictures: :class:`OverviewMel`.

    Returns
    -------
    mel_db : np.ndarray [shape=(n_mels, n_columns)], float32
    column_s : float
        Seconds per column.
    """
    overview = OverviewMel(cfg=cfg, max_frames=max_frames, block_frames=block_frames)
    overview.push(y)
    return overview.result()


def _frames_power(seg: np.ndarray, *, cfg: FeatureConfig) -> np.ndarray:
    """Mel power ``(..., n_mels, n_frames)`` of already padded audio ``(..., n)``: frames start at 0, every hop."""
    n_fft, hop = cfg.n_fft, cfg.hop_length
    spec = _dsp.rfft(_dsp.frames(seg, n_fft, hop) * _dsp.hann(n_fft))  # (..., n_frames, 1 + n_fft // 2), complex64
    power = spec.real**2 + spec.imag**2
    return _mel_project(power, cfg).swapaxes(-1, -2)
