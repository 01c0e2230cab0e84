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


def overview_mel_db(
    y: np.ndarray, *, cfg: FeatureConfig, max_frames: int = 2000, block_frames: int = 4096
) -> tuple[np.ndarray, float]:
    """Mel spectrogram (dB re the file's maximum) of a whole file, for pictures.

    Computed block by block so memory stays bounded for long files; when the file has more than
    ``max_frames`` frames, consecutive frames are averaged (in power) so that at most ``max_frames``
    columns remain.

    Returns
    -------
    mel_db : np.ndarray [shape=(n_mels, n_columns)], float32
    column_s : float
        Seconds per column.
    """
    hop = cfg.hop_length
    n_frames = 1 + len(y) // hop
    group = max(1, int(np.ceil(n_frames / max_frames)))
    step = block_frames * group  # frames per block, a multiple of the group size
    emphasized = preemphasis(y, coef=cfg.preemphasis)
    pad = cfg.n_fft // 2
    padded = np.pad(emphasized, (pad, pad))
    cols = []
    for f0 in range(0, n_frames, step):
        f1 = min(n_frames, f0 + step)
        seg = padded[f0 * hop : (f1 - 1) * hop + cfg.n_fft]
        # mel_power pads by n_fft // 2 itself: undo by slicing its centred frames back out
        power = _frames_power(seg, cfg=cfg)
        n = power.shape[-1]
        usable = n - n % group if f1 < n_frames else n
        if usable:
            full = power[:, : usable - usable % group].reshape(power.shape[0], -1, group).mean(axis=-1)
            cols.append(full)
            rest = usable % group
            if rest:
                cols.append(power[:, usable - rest : usable].mean(axis=-1, keepdims=True))
    power_all = np.concatenate(cols, axis=1)
    return power_to_db(power_all, top_db=cfg.top_db), group * hop / cfg.sample_rate


def _frames_power(seg: np.ndarray, *, cfg: FeatureConfig) -> np.ndarray:
    """Mel power ``(..., n_mels, n_frames)`` of already padded audio ``(..., n)``: frames start at 0, every hop."""
    n_fft, hop = cfg.n_fft, cfg.hop_length
    spec = _dsp.rfft(_dsp.frames(seg, n_fft, hop) * _dsp.hann(n_fft))  # (..., n_frames, 1 + n_fft // 2), complex64
    power = spec.real**2 + spec.imag**2
    return _mel_project(power, cfg).swapaxes(-1, -2)
