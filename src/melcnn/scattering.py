"""Fast 2-D scattering transform, numerically equal to Kymatio 0.3.0's ``Scattering2D``.

The classifier consumes Kymatio ``Scattering2D(J=4, L=8, shape=(256, 256))`` coefficients of the
mel-spectrogram image. Kymatio's torch frontend costs about 100 ms per image on two CPU cores,
builds its filter bank in 12-16 s per process and needs ``import torch`` (about 2 s). This module
computes the same transform (same reflection padding, Morlet filters, Fourier periodisation,
modulus, low-pass, unpadding and channel order) with NumPy and FFTW (through pyFFTW; :mod:`scipy.fft`
where pyFFTW is not installed):

* the filter bank is Kymatio's own, built bit for bit by :mod:`melcnn._filters` (0.35 s, where
  Kymatio's ``filter_bank`` takes 12-16 s) on a cache miss and cached on disk as a checksummed
  ``.npz`` (:func:`cache_dir`); a cache hit loads in milliseconds; neither imports Kymatio or torch;
* everything is float32/complex64, as in Kymatio's torch backend; FFTs are unnormalised both ways
  and Kymatio's ``1/size`` of the inverse transform is folded into the filters the forward spectra
  multiply (no extra pass); the modulus images are real, so their spectra come from real-input FFTs
  (half the work) completed by Hermitian symmetry;
* FFTW's measured plans (1.2-2x faster than scipy's pocketfft here; "patient" ones for the small
  transforms) run on per-task buffers; the planner's wisdom is cached beside the filter bank, so a
  new process does not plan them again (:class:`_Transforms`);
* products with the (real) wavelet filters fold in Kymatio's ``subsample_fourier`` (mean of the
  ``k x k`` aliases). Kymatio's Morlet filters are Gaussian bumps in Fourier: filter values below
  ``_ALIAS_RTOL`` (1e-6) of the filters' peak are left out. With the compiled kernels
  (:mod:`melcnn._kernels`, built by ``pip install`` where a C compiler exists) each product reads
  the ``rfft2`` half spectrum and multiplies only the runs of kept filter values, 3-48 % of them
  for ``k >= 2`` (:class:`_SparseFilter`), and the modulus is fused with the low-pass's column
  weights. Without them (``kernels="numpy"``), the spectrum's alias blocks are copied
  contiguously and summed against filters stored the same way, with each value duplicated to
  multiply the complex64 spectrum as float32 (re, im) pairs, skipping the blocks where every
  filter value is below the threshold (:class:`_AliasFilter`);
* the low-pass phi is separable (an isotropic Gaussian), so Kymatio's "multiply by phi, periodise,
  inverse FFT, take the real part, unpad" is a real linear map ``A @ x @ B`` applied to the modulus
  directly: no forward FFT of the last layer and no work on discarded border pixels; the column
  mean of :meth:`Scattering.pooled` folds into ``B``;
* the first-order paths are independent: each image's transform is cut into tasks of similar size
  (a few first-order paths each, a few MB of arrays) that the calling thread and a small pool drain
  from one queue (FFTW and NumPy release the GIL), with NumPy's OpenBLAS held to one thread
  meanwhile; :meth:`Scattering.submit` runs other work on the same threads.

The result equals Kymatio's to float32 rounding: the max abs difference is below 1e-6 of the max
abs coefficient (the tests require 1e-5).

``device="cuda"`` (and ``"cpu-torch"``, for tests) runs Kymatio's own ``ScatteringTorch2D`` with the
cached filters, importing torch only then.

Coefficient layout (Kymatio's): channel 0 is the order-0 low-pass; channels ``1 + j*L + theta`` are
order 1; then order 2 for every first-order path ``n1 = (j1, theta1)`` in that order and, inside it,
every ``n2 = (j2, theta2)`` with ``j2 > j1``. For ``J=4, L=8``: ``1 + 32 + 384 = 417`` channels on a
``16 x 16`` grid for a ``256 x 256`` input.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ._blas import single_threaded_blas
from .errors import MelcnnError

try:  # the optional compiled kernels (built by pip install where a C compiler exists)
    from . import _kernels
except ImportError:  # pragma: no cover - depends on the installation
    _kernels = None

_log = logging.getLogger(__name__)

#: version of the on-disk filter-bank layout; bump it when the file contents change meaning
CACHE_FORMAT_VERSION = 1
#: Kymatio release whose algorithm this module reproduces (and whose filters it caches)
KYMATIO_VERSION = "0.3.0"
#: SVD terms of a low-pass filter below this fraction of the first one are dropped (float32 noise)
_SEPARABLE_RTOL = 1e-6
#: first-order orientations per task at the finest scale j1 = 0 (the coarser scales of an image are one
#: task): for J=4, L=8 five tasks of similar cost per image, each with a few MB of arrays
_THETAS_PER_TASK = 2
#: alias blocks of a periodised filter product whose filter values all stay below this fraction of
#: the largest filter value are skipped (see _AliasFilter)
_ALIAS_RTOL = 1e-6
#: bytes of second-order spectra multiplied, transformed and rectified at a time (about an L2 cache)
_SLICE_BYTES = 1 << 20
#: most images per engine call (bounds the memory of huge batches, e.g. on a GPU)
_IMAGES_PER_CALL = 64
#: FFTW planner rigour: measured plans are 1.5-2x faster than FFTW_ESTIMATE's here; they cost about
#: a second per process for this engine's shapes unless the planner's wisdom is cached (it is)
_FFTW_RIGOUR = "FFTW_MEASURE"
#: transforms of at most this many points per 2-D array (for J=4 on 256 x 256: the 72 x 72 and
#: 36 x 36 ones) are planned with _FFTW_RIGOUR_SMALL: for these small batched transforms
#: FFTW_PATIENT finds plans 10-30 % faster than FFTW_MEASURE's (2-13 % less time per image in
#: interleaved runs) for about 2 s of planning once per machine (the wisdom is cached). For the
#: larger ones it costs 20 s and more for a few percent, so they stay measured.
_SMALL_TRANSFORM_POINTS = 72 * 72
_FFTW_RIGOUR_SMALL = "FFTW_PATIENT"
#: further planner flags for every plan
_FFTW_FLAGS: tuple[str, ...] = ("FFTW_DESTROY_INPUT",)

__all__ = ["CACHE_FORMAT_VERSION", "Scattering", "cache_dir", "get_scattering", "is_prepared", "load_filter_bank"]


# --------------------------------------------------------------------------------------------------
# geometry (Kymatio's rules)


def padded_shape(shape: tuple[int, int], J: int) -> tuple[int, int]:
    """Padded spatial size Kymatio uses for an input of ``shape`` (``compute_padding``).

    Parameters
    ----------
    shape : (int, int)
        Input height and width in pixels.
    J : int
        Number of scales.

    Returns
    -------
    (int, int)
        ``((M + 2**J) // 2**J + 1) * 2**J`` for each side, in pixels.
    """
    step = 2**J
    return tuple(((s + step) // step + 1) * step for s in shape)  # type: ignore[return-value]


def _check_params(J: int, L: int, shape: tuple[int, int]) -> tuple[int, int, tuple[int, int]]:
    try:
        J, L = int(J), int(L)
        shape = (int(shape[0]), int(shape[1]))
    except (TypeError, ValueError, IndexError) as e:
        raise MelcnnError(f"invalid scattering parameters J={J!r}, L={L!r}, shape={shape!r}") from e
    if J < 1 or L < 1:
        raise MelcnnError(f"scattering needs J >= 1 and L >= 1, got J={J}, L={L}")
    if min(shape) < 2**J:
        raise MelcnnError(f"scattering with J={J} needs an image of at least {2**J} pixels a side, got {shape}")
    return J, L, shape


# --------------------------------------------------------------------------------------------------
# filter bank: build with Kymatio once, cache on disk


def cache_dir() -> Path:
    """Directory of melcnn's on-disk caches.

    Returns
    -------
    pathlib.Path
        ``$MELCNN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/melcnn``, else ``~/.cache/melcnn``.
        The directory is not created here.
    """
    env = os.environ.get("MELCNN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "melcnn"


def _installed_kymatio_version() -> str | None:
    """Version of the installed Kymatio distribution, without importing it (None if absent)."""
    from importlib import metadata

    try:
        return metadata.version("kymatio")
    except metadata.PackageNotFoundError:
        return None


def _cache_path(J: int, L: int, padded: tuple[int, int]) -> Path:
    name = f"scattering2d-kymatio{KYMATIO_VERSION}-J{J}-L{L}-{padded[0]}x{padded[1]}-fmt{CACHE_FORMAT_VERSION}.npz"
    return cache_dir() / name


def _filter_keys(J: int, L: int) -> list[str]:
    """Names of the arrays of one filter bank, in Kymatio's order."""
    keys = [f"phi_{res}" for res in range(J)]
    for j in range(J):
        for theta in range(L):
            keys += [f"psi_{j}_{theta}_{res}" for res in range(min(j + 1, max(J - 1, 1)))]
    return keys


def _digest(arrays: dict[str, np.ndarray], keys: list[str]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``arrays[keys]``."""
    h = hashlib.sha256()
    for k in keys:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.data)
    return h.hexdigest()


def _meta(J: int, L: int, padded: tuple[int, int]) -> dict[str, str]:
    return {
        "format": str(CACHE_FORMAT_VERSION),
        "kymatio": KYMATIO_VERSION,
        "J": str(J),
        "L": str(L),
        "padded": f"{padded[0]}x{padded[1]}",
    }


def _build_filters(J: int, L: int, padded: tuple[int, int]) -> dict[str, np.ndarray]:
    """Build Kymatio 0.3.0's filter bank, bit for bit, without Kymatio (:mod:`melcnn._filters`, 0.35 s)."""
    from ._filters import filter_bank

    _log.info("building the Kymatio scattering filter bank J=%d L=%d %dx%d (under a second)", J, L, *padded)
    arrays = filter_bank(padded[0], padded[1], J, L)
    if sorted(arrays) != sorted(_filter_keys(J, L)):
        raise MelcnnError("the scattering filter bank does not have the expected layout")
    return arrays


def _read_cache(path: Path, J: int, L: int, padded: tuple[int, int]) -> dict[str, np.ndarray] | None:
    """Load and verify a cached filter bank; None (with a warning) if it is absent or not valid."""
    if not path.is_file():
        return None
    keys = _filter_keys(J, L)
    try:
        with np.load(path, allow_pickle=False) as z:
            stored_meta = {k[len("meta_") :]: str(z[k][()]) for k in z.files if k.startswith("meta_")}
            if stored_meta != _meta(J, L, padded):
                raise ValueError(f"metadata {stored_meta} != expected {_meta(J, L, padded)}")
            arrays = {k: z[k] for k in keys}
            checksum = str(z["sha256"][()])
        if _digest(arrays, keys) != checksum:
            raise ValueError("checksum mismatch")
        for k, a in arrays.items():
            res = int(k.rsplit("_", 1)[1])
            if a.dtype != np.float32 or a.shape != (padded[0] >> res, padded[1] >> res):
                raise ValueError(f"array {k} has dtype {a.dtype} shape {a.shape}")
    except Exception as e:  # any defect of a cache file (format, metadata, checksum) means: rebuild
        _log.warning("ignoring invalid scattering filter cache %s (%s); rebuilding it", path, e)
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray], J: int, L: int, padded: tuple[int, int]) -> None:
    """Write the filter bank atomically; warn on failure."""
    keys = _filter_keys(J, L)
    payload: dict[str, np.ndarray] = {k: arrays[k] for k in keys}
    payload.update({f"meta_{k}": np.array(v) for k, v in _meta(J, L, padded).items()})
    payload["sha256"] = np.array(_digest(arrays, keys))
    _atomic_write(path, lambda f: np.savez(f, **payload), "scattering filter bank")


def _atomic_write(path: Path, write: Callable[[Any], Any], what: str) -> None:
    """Write a cache file through a temporary file and ``os.replace``; warn (never raise) on failure."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        _log.info("cached the %s in %s", what, path)
    except OSError as e:
        _log.warning("cannot write the %s cache %s (%s); continuing without it", what, path, e)
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def _run_inline(fn: Callable[[], Any]) -> Future:
    """Run ``fn()`` now, on this thread; its result or exception delivered through a future, as from a pool."""
    future: Future = Future()
    try:
        future.set_result(fn())
    except Exception as e:
        future.set_exception(e)
    return future


@functools.lru_cache(maxsize=8)
def _filter_bank_cached(J: int, L: int, padded: tuple[int, int]) -> dict[str, np.ndarray]:
    path = _cache_path(J, L, padded)
    arrays = _read_cache(path, J, L, padded)
    if arrays is None:
        arrays = _build_filters(J, L, padded)
        _write_cache(path, arrays, J, L, padded)
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def load_filter_bank(J: int = 4, L: int = 8, shape: tuple[int, int] = (256, 256)) -> dict[str, np.ndarray]:
    """Kymatio's Fourier-domain filter bank for ``Scattering2D(J, shape, L)``, cached.

    Parameters
    ----------
    J, L : int
        Number of scales and of orientations.
    shape : (int, int)
        Input image size in pixels (the filters are built for Kymatio's padded size).

    Returns
    -------
    dict of str to numpy.ndarray
        Read-only float32 arrays: ``phi_{res}`` of shape ``(M_pad >> res, N_pad >> res)`` for
        ``res < J`` and ``psi_{j}_{theta}_{res}`` likewise, exactly Kymatio's ``filter_bank`` levels.
        Loaded from :func:`cache_dir` (checksum verified) or built (:mod:`melcnn._filters`) and
        written there; built or loaded once per process.
    """
    J, L, shape = _check_params(J, L, shape)
    return _filter_bank_cached(J, L, padded_shape(shape, J))


def is_prepared(J: int = 4, L: int = 8, shape: tuple[int, int] = (256, 256)) -> bool:
    """True when this machine's cache already holds what a first transform would have to make.

    That is the filter bank for these parameters and, where pyFFTW is installed, FFTW's wisdom (its
    measured plans). When False, the first CPU transform of a process builds them (a few seconds,
    once per machine and cache folder): the CLI says so on stderr beforehand.
    """
    J, L, shape = _check_params(J, L, shape)
    if not _cache_path(J, L, padded_shape(shape, J)).is_file():
        return False
    try:
        import pyfftw
    except ImportError:
        return True
    return _wisdom_path(pyfftw).is_file()


# --------------------------------------------------------------------------------------------------
# NumPy engine


def _lowpass_operator(h: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real matrices equal to Kymatio's low-pass step at one resolution.

    Kymatio computes ``unpad(real(ifft2(subsample_fourier(fft2(x) * h, k))))`` for a real image
    ``x`` of shape ``(m, n)``. With ``h`` separable, ``h = sum_r a_r b_r^T``, this is
    ``sum_r real(A_r x B_r^T)`` where ``A_r[y, p] = ifft(a_r)[(k*y - p) mod m]`` for the kept rows
    ``y = 1 .. m/k - 2`` (and ``B_r`` likewise): periodising in Fourier is subsampling in space.

    Parameters
    ----------
    h : numpy.ndarray
        float32 ``(m, n)``, Kymatio's phi at this resolution.
    k : int
        Subsampling factor.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        Pairs ``(A, B)`` of float32 ``(m/k - 2, m)`` and ``(n, n/k - 2)`` such that the output is
        ``sum(A @ x @ B)``. Terms below float32 rounding (imaginary parts, further SVD terms) are
        omitted.
    """
    m, n = h.shape
    h64 = h.astype(np.float64)
    i, j = np.unravel_index(np.argmax(np.abs(h64)), h64.shape)
    col, row = h64[:, j], h64[i, :] / h64[i, j]
    if np.abs(h64 - np.outer(col, row)).max() <= _SEPARABLE_RTOL * np.abs(h64).max():
        # Kymatio's phi is a Gaussian: separable up to float32 rounding (the usual case, no SVD needed)
        norm = np.linalg.norm(row)
        u, s, vt = (col / np.linalg.norm(col))[:, None], np.array([np.linalg.norm(col) * norm]), (row / norm)[None]
    else:
        u, s, vt = np.linalg.svd(h64)
    terms: list[tuple[np.ndarray, np.ndarray]] = []

    def spatial(v: np.ndarray, size: int) -> np.ndarray:
        kernel = np.fft.ifft(v)
        y = np.arange(1, size // k - 1)[:, None]
        p = np.arange(size)[None, :]
        return kernel[(k * y - p) % size]

    for r in range(len(s)):
        if s[r] < _SEPARABLE_RTOL * s[0]:
            break
        ca = spatial(u[:, r] * s[r], m)
        cb = spatial(vt[r], n)
        scale = np.abs(ca).max() * np.abs(cb).max()
        terms.append((ca.real, cb.real.T))
        if np.abs(ca.imag).max() * np.abs(cb.imag).max() > _SEPARABLE_RTOL * scale:
            terms.append((-ca.imag, cb.imag.T))
    return [(np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)) for a, b in terms]


def _apply_lowpass(x: np.ndarray, ops: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``sum(A @ x @ B)`` over the last two axes: float32 ``(..., m, n)`` -> ``(..., mo, no)``."""
    lead, (m, n) = x.shape[:-2], x.shape[-2:]
    flat = x.reshape(-1, n)
    out = None
    for a, b in ops:
        z = (flat @ b).reshape(-1, m, b.shape[1])
        term = np.matmul(a, z)
        out = term if out is None else out + term
    assert out is not None
    return out.reshape(*lead, out.shape[-2], out.shape[-1])


def _dup(h: np.ndarray) -> np.ndarray:
    """Real filter ``(..., m, n)`` -> float32 ``(..., m, 2n)`` that multiplies a complex64 float view."""
    out = np.empty((*h.shape, 2), np.float32)
    out[..., 0] = h
    out[..., 1] = h
    return out.reshape(*h.shape[:-1], 2 * h.shape[-1])


class _AliasFilter:
    """Filters ``(T, m, n)`` prepared for the periodised product with a spectrum (``k x k`` aliases).

    ``blocks`` is float32 ``(T, C, m/k * 2n/k)``: each filter cut into its ``k x k`` alias blocks
    (block ``(a, b)`` holds the frequencies ``(a*m/k + p, b*n/k + q)``), each block stored contiguously
    with every value duplicated, so that it multiplies a complex64 spectrum seen as float32 (re, im).
    Only the ``C`` blocks ``(ridx[c], cidx[c])`` where some filter exceeds ``_ALIAS_RTOL`` of the
    largest filter value are kept. Kymatio's Morlet filters are Gaussians in Fourier: for ``k >= 4``
    most alias blocks hold only values at float32 noise level (at most 4e-7 of the peak), whose
    products lie below the rounding of the sums they would enter; and each orientation uses about
    half of the kept blocks, so the filters are split into two runs of orientations (``groups``),
    each multiplied over its own slice of blocks (a third fewer products for ``k >= 4``).
    """

    def __init__(self, h: np.ndarray, k: int, scale: float = 1.0):
        h = h * np.float32(scale) if scale != 1.0 else h
        t, m, n = h.shape
        self.k, self.out_shape = k, (m // k, n // k)
        mag = np.abs(h.astype(np.float64)).reshape(t, k, m // k, k, n // k)
        peak = mag.max()
        rows = np.flatnonzero(mag.max(axis=(0, 2, 3, 4)) > _ALIAS_RTOL * peak)
        cols = np.flatnonzero(mag.max(axis=(0, 1, 2, 4)) > _ALIAS_RTOL * peak)
        self.groups = [(0, t, 0, len(rows) * len(cols))]
        if k == 1:  # no aliases: a plain product, complex64 times the real filter (half the bytes)
            self.blocks = np.ascontiguousarray(h, np.float32)
        else:
            # the kept blocks as (row, column) pairs; then the filters cut into two groups of
            # orientations (each Morlet uses about half of the blocks), the blocks ordered "first
            # group only, both, second group only" so that each group's blocks are one slice
            ridx, cidx = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
            used = mag[:, ridx, :, cidx].max(axis=(2, 3)).T > _ALIAS_RTOL * peak  # (t, blocks)
            self.groups, order = _orientation_groups(used)
            self.ridx, self.cidx = ridx[order], cidx[order]
            blocks = _dup(h).reshape(t, k, m // k, k, 2 * n // k).transpose(0, 1, 3, 2, 4)[:, self.ridx, self.cidx]
            self.blocks = np.ascontiguousarray(blocks).reshape(t, len(order), -1)
        self.blocks.setflags(write=False)

    def product(self, spec: np.ndarray, out: np.ndarray, t0: int = 0, t1: int | None = None) -> np.ndarray:
        """Periodised products ``spec x filter[t]`` for the filters ``t0 <= t < t1``, written to ``out``.

        Parameters
        ----------
        spec : numpy.ndarray
            complex64 ``(P, m, n)`` spectra.
        out : numpy.ndarray
            C-contiguous complex64 ``(P, T, m/k, n/k)``.

        Returns
        -------
        numpy.ndarray
            ``out``, holding ``sum_{a,b} spec[s, a*m/k + p, b*n/k + q] * h[t, ...]`` (Kymatio's
            ``subsample_fourier`` times ``k**2``; the filters carry the transforms' scaling).
        """
        t1 = self.blocks.shape[0] if t1 is None else t1
        P, k, (m2, n2) = spec.shape[0], self.k, self.out_shape
        if k == 1:
            return np.multiply(spec[:, None], self.blocks[None, t0:t1], out=out)
        # the spectra's alias blocks, each contiguous, in the filters' block order: (P, C, X)
        f = spec.view(np.float32).reshape(P, k, m2, k, 2 * n2).transpose(0, 1, 3, 2, 4)[:, self.ridx, self.cidx]
        f = f.reshape(P, len(self.ridx), -1)
        flat = out.view(np.float32).reshape(P, t1 - t0, -1)
        for g0, g1, c0, c1 in self.groups:
            a, b = max(g0, t0), min(g1, t1)
            if a < b:  # one einsum per group: 1.1-2x faster than one per filter (NumPy 2.4)
                np.einsum("scx,tcx->stx", f[:, c0:c1], self.blocks[a:b, c0:c1], out=flat[:, a - t0 : b - t0])
        return out


class _SparseFilter:
    """Filters ``(T, m, n)`` prepared for the compiled periodised product (``_kernels.periodised_product``).

    The same products as :class:`_AliasFilter`, read from the ``rfft2`` half spectra of real arrays
    (no Hermitian completion) and without its block granularity: Kymatio's Morlet filters are
    Gaussian bumps in Fourier, so only the values above ``_ALIAS_RTOL`` of the largest one are kept
    (12-48 % of them for ``k >= 2``, where whole alias blocks keep 50-100 %), as runs of consecutive
    columns ("pieces"). A piece never crosses an alias block, nor the middle column: columns up to
    ``n // 2`` are read from the half spectrum directly, the others through ``full[r, c] =
    conj(half[-r mod m, n - c])`` (the kernel conjugates these pieces' products). The
    products left out are below the float32 rounding of the sums, as for :class:`_AliasFilter`.
    """

    def __init__(self, h: np.ndarray, k: int, scale: float = 1.0):
        h = h * np.float32(scale) if scale != 1.0 else h
        t, m, n = h.shape
        if n % 2:
            raise MelcnnError(f"periodised products need an even spectrum width, got {n}")  # Kymatio pads to 2**J
        m2, n2 = m // k, n // k
        self.k, self.out_shape, self.n_filters = k, (m2, n2), t
        # rows in the kernel's order: filter t, output row p, alias a (spectrum row a * m2 + p)
        hp = np.ascontiguousarray(h.reshape(t, k, m2, n).transpose(0, 2, 1, 3))
        keep = np.abs(hp) > _ALIAS_RTOL * np.abs(hp).max()
        # runs of kept columns that stay inside one alias block and one half of the spectrum
        c = np.arange(n)
        segment = 2 * (c // n2) + (c > n // 2)
        first = np.r_[True, segment[1:] != segment[:-1]]  # column c starts a segment
        last = np.r_[first[1:], True]
        before = np.zeros_like(keep)
        before[..., 1:] = keep[..., :-1]
        after = np.zeros_like(keep)
        after[..., :-1] = keep[..., 1:]
        ft, fp, fa, c0 = np.nonzero(keep & (~before | first))  # in (t, p, a, column) order
        c1 = np.nonzero(keep & (~after | last))[3]  # each run's last column, same order
        fr = fa * m2 + fp
        lengths = c1 - c0 + 1
        mirrored = c0 > n // 2
        src_row = np.where(mirrored, (m - fr) % m, fr)
        src_col = np.where(mirrored, n - c1, c0)
        offsets = np.r_[0, np.cumsum(lengths)[:-1]]
        self.pieces = np.ascontiguousarray(
            np.stack([src_row, src_col, c0 % n2, lengths, offsets, mirrored], axis=1), np.int32
        )
        self.row_start = np.searchsorted(ft * m2 + fp, np.arange(t * m2 + 1)).astype(np.int32)
        self.values = np.ascontiguousarray(hp[keep], np.float32)  # the pieces' values, in their order
        for a in (self.pieces, self.row_start, self.values):
            a.setflags(write=False)

    def product(self, half: np.ndarray, out: np.ndarray, t0: int = 0, t1: int | None = None) -> np.ndarray:
        """Periodised products, as :meth:`_AliasFilter.product`, from half spectra.

        Parameters
        ----------
        half : numpy.ndarray
            C-contiguous complex64 ``(P, m, n // 2 + 1)``, ``rfft2`` spectra of real arrays.
        out : numpy.ndarray
            C-contiguous complex64 ``(P, t1 - t0, m/k, n/k)``, overwritten and returned.
        """
        t1 = self.n_filters if t1 is None else t1
        P = half.shape[0]
        _kernels.periodised_product(
            half.view(np.float32).reshape(P, half.shape[1], -1),
            self.pieces,
            self.row_start,
            self.values,
            t0,
            t1,
            out.view(np.float32).reshape(P, t1 - t0, self.out_shape[0], -1),
        )
        return out


def _resolve_kernels(kernels: str) -> str:
    """``"compiled"`` or ``"numpy"`` for a ``kernels`` argument of :class:`Scattering`."""
    if kernels not in ("auto", "compiled", "numpy"):
        raise MelcnnError(f"unknown scattering kernels {kernels!r}; expected auto, compiled or numpy")
    if kernels == "compiled" and _kernels is None:
        raise MelcnnError(
            "the compiled scattering kernels are not built (melcnn was installed without a C compiler); "
            "reinstall melcnn where one is available, or use kernels='numpy'"
        )
    return "compiled" if kernels == "compiled" or (kernels == "auto" and _kernels is not None) else "numpy"


def _orientation_groups(used: np.ndarray) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """Split filters into two runs of orientations whose alias blocks form two overlapping slices.

    Parameters
    ----------
    used : numpy.ndarray
        bool ``(T, C)``: filter ``t`` has values above ``_ALIAS_RTOL`` in block ``c``.

    Returns
    -------
    groups : list of (t0, t1, c0, c1)
        Filters ``t0 <= t < t1`` use the blocks ``c0 <= c < c1`` of the new order (one group if a
        split saves nothing).
    order : numpy.ndarray
        The blocks in their new order (first group only, both groups, second group only); blocks no
        filter uses are left out.
    """
    T = used.shape[0]
    anywhere = np.flatnonzero(used.any(axis=0))  # blocks no filter uses are dropped
    best = (T * len(anywhere), 0)
    for split in range(1, T):
        cost = split * used[:split].any(axis=0).sum() + (T - split) * used[split:].any(axis=0).sum()
        if cost < best[0]:
            best = (int(cost), split)
    split = best[1]
    if split == 0:
        return [(0, T, 0, len(anywhere))], anywhere
    first, second = used[:split].any(axis=0), used[split:].any(axis=0)
    parts = [np.flatnonzero(first & ~second), np.flatnonzero(first & second), np.flatnonzero(~first & second)]
    order = np.concatenate(parts)
    return [(0, split, 0, len(parts[0]) + len(parts[1])), (split, T, len(parts[0]), len(order))], order


def _hermitian_full(half: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Complete the ``rfft2`` spectrum ``half`` ``(..., m, n//2 + 1)`` of a real array into ``full`` ``(..., m, n)``.

    ``full[..., a, b] = conj(half[..., -a mod m, n - b])`` for ``b > n//2`` (a real input's spectrum is
    Hermitian).
    """
    n = full.shape[-1]
    h = n // 2 + 1
    full[..., :h] = half
    if n > h:  # row a takes row -a mod m: row 0 itself, rows 1 .. m-1 reversed (no index array)
        np.conjugate(half[..., :1, n - h : 0 : -1], out=full[..., :1, h:])
        np.conjugate(half[..., :0:-1, n - h : 0 : -1], out=full[..., 1:, h:])
    return full


class _Workspace:
    """One thread's FFT buffers (and pyFFTW plans), keyed by array shape; see :class:`_Transforms`."""

    def __init__(self, fftw: Any):
        self._fftw = fftw
        self.planned = 0  # FFTW plans made so far
        self._inverse: dict[tuple[int, ...], tuple[np.ndarray, Any]] = {}
        self._forward: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray | None, np.ndarray, Any]] = {}

    def _empty(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        if self._fftw is None:
            return np.empty(shape, dtype)
        return self._fftw.empty_aligned(shape, dtype=dtype)  # SIMD-aligned: FFTW's fastest codelets

    def _plan(self, src: np.ndarray, dst: np.ndarray, direction: str) -> Any:
        small = src.shape[-2] * src.shape[-1] <= _SMALL_TRANSFORM_POINTS
        flags = (_FFTW_RIGOUR_SMALL if small else _FFTW_RIGOUR, *_FFTW_FLAGS)
        with _fftw_lock:  # FFTW's planner (and its wisdom) must not be used by two threads at once
            plan = self._fftw.FFTW(src, dst, axes=(-2, -1), direction=direction, flags=flags, threads=1)
        self.planned += 1
        return plan

    def inverse_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """complex64 array of ``shape`` to fill with spectra, then transform with :meth:`inverse`."""
        slot = self._inverse.get(shape)
        if slot is None:
            buf = self._empty(shape, "complex64")
            plan = None
            if self._fftw is not None:  # in place: less memory traffic with two threads (5-8 % here)
                plan = self._plan(buf, buf, "FFTW_BACKWARD")
            slot = self._inverse[shape] = (buf, plan)
        return slot[0]

    def inverse(self, buf: np.ndarray) -> np.ndarray:
        """Unnormalised inverse 2-D FFT (over the last two axes) of a buffer from :meth:`inverse_buffer`."""
        stored, plan = self._inverse[buf.shape]
        assert buf is stored
        if plan is None:
            import scipy.fft as sfft

            return sfft.ifft2(buf, norm="forward", overwrite_x=True)
        plan.execute()
        return plan.output_array

    def real_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """float32 array of ``shape`` to fill with real images, then transform with :meth:`forward`."""
        slot = self._forward.get(shape)
        if slot is None:
            real = self._empty(shape, "float32")
            full = np.empty(shape, np.complex64)
            half, plan = None, None  # scipy.fft returns its own half spectrum
            if self._fftw is not None:
                half = self._empty((*shape[:-1], shape[-1] // 2 + 1), "complex64")
                plan = self._plan(real, half, "FFTW_FORWARD")
            slot = self._forward[shape] = (real, half, full, plan)
        return slot[0]

    def forward(self, real: np.ndarray, half: bool = False) -> np.ndarray:
        """Unnormalised 2-D spectrum of a buffer from :meth:`real_buffer` (valid until the next call).

        The full spectrum ``(..., m, n)``, or with ``half`` the ``rfft2`` half ``(..., m, n // 2 + 1)``.
        """
        stored, out, full, plan = self._forward[real.shape]
        assert real is stored
        if plan is None:
            import scipy.fft as sfft

            out = sfft.rfft2(real)
        else:
            plan.execute()
        return out if half else _hermitian_full(out, full)


class _Transforms:
    """FFT workspaces of one engine: pyFFTW (FFTW3) plans when pyFFTW is installed, else :mod:`scipy.fft`.

    For this engine's transforms (batches of 288 x 288 to 36 x 36 complex64 and real float32 arrays)
    FFTW's measured plans are 1.2-2x faster than scipy's pocketfft (``benchmarks/bench_scattering.py``).
    Measuring them costs about a second per process, so FFTW's wisdom (its record of the fastest
    plans) is kept in :func:`cache_dir` and loaded once per process; FFTW itself rejects wisdom that
    does not fit this FFTW build and CPU (then the plans are measured again and the file replaced).
    Plans run without the GIL. A workspace is taken for one task and given back, so there are as
    many as tasks ever ran at once, not one per thread that ever called.
    """

    def __init__(self, backend: str = "auto"):
        fftw = None
        if backend in ("auto", "fftw"):
            try:
                import pyfftw

                fftw = pyfftw
            except ImportError:
                if backend == "fftw":
                    raise MelcnnError("the fftw scattering backend needs pyFFTW, which is not installed") from None
        elif backend != "scipy":
            raise MelcnnError(f"unknown FFT backend {backend!r}; expected auto, fftw or scipy")
        self.backend = "fftw" if fftw is not None else "scipy"
        self._fftw = fftw
        self._free: list[_Workspace] = []
        self._lock = threading.Lock()
        self._unsaved = False  # plans were measured since the wisdom was last written
        if fftw is not None:
            _import_wisdom(fftw)

    @contextlib.contextmanager
    def workspace(self) -> Iterator[_Workspace]:
        """A workspace for this thread's exclusive use while the ``with`` block runs."""
        with self._lock:
            ws = self._free.pop() if self._free else None
        if ws is None:
            ws = _Workspace(self._fftw)
        planned = ws.planned
        try:
            yield ws
        finally:
            with self._lock:
                self._free.append(ws)
                self._unsaved |= ws.planned != planned

    def save_wisdom(self) -> None:
        """Write FFTW's wisdom to the cache if plans were made since the last write."""
        with self._lock:
            if not self._unsaved:
                return
            self._unsaved = False
        _export_wisdom(self._fftw)


_fftw_lock = threading.Lock()  # serialises this module's use of FFTW's planner and wisdom (not thread-safe)
_wisdom_imported: set[Path] = set()  # wisdom files already read by this process (wisdom is per process)


def _wisdom_path(fftw: Any) -> Path:
    return cache_dir() / f"fftw-wisdom-pyfftw{fftw.__version__}-float32.txt"


def _import_wisdom(fftw: Any) -> None:
    """Load the cached FFTW wisdom into this process (once per cache file)."""
    path = _wisdom_path(fftw)
    with _fftw_lock:
        if path in _wisdom_imported:
            return
        _wisdom_imported.add(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            _log.warning("cannot read the FFTW wisdom cache %s (%s); measuring FFT plans anew", path, e)
            return
        if not fftw.import_wisdom((b"", data, b""))[1]:
            _log.warning("ignoring invalid FFTW wisdom cache %s; measuring FFT plans anew", path)


def _export_wisdom(fftw: Any) -> None:
    """Write this process's FFTW wisdom (single precision) to the cache."""
    with _fftw_lock:
        data = fftw.export_wisdom()[1]
    _atomic_write(_wisdom_path(fftw), lambda f: f.write(data), "FFTW wisdom")


class _NumpyEngine:
    """Kymatio's ``scattering2d`` algorithm on the CPU, split into balanced tasks.

    Per image:

    1. (prepare) reflect-pad to ``(M, N)``; order 0 is the low-pass of the padded image (two matrix
       products); ``x0 = fft2(padded)`` (its ``rfft2`` half with the compiled kernels);
    2. for each first-order path ``(j1, theta1)``: ``u1 = ifft2(periodise_{2**j1}(x0 * psi))``
       (:class:`_SparseFilter` or :class:`_AliasFilter`), ``a1 = |u1|``, order 1 is its low-pass;
       ``g1 = rfft2(a1)`` (completed to the full spectrum for the NumPy products) and, for each
       ``j2 > j1``, the periodised products with the ``L`` filters ``psi_{j2}``, ``ifft2``, modulus
       and low-pass, written to Kymatio's channel order.

    The first-order paths are independent, so step 2 is cut into tasks of similar cost: for the
    costliest scale ``j1 = 0``, ``_THETAS_PER_TASK`` orientations per task; all coarser scales of an
    image together. With the images' preparations first, the tasks of a batch are drained by the
    calling thread and ``threads - 1`` pool threads from one queue (FFTs and large NumPy operations
    release the GIL), so both cores stay busy to the end whatever the batch size. Small tasks also
    keep their arrays (a few MB) in cache.

    FFTs are unnormalised both ways and the filters that multiply a forward spectrum carry its
    ``1/size``: with periodisation as a plain sum of aliases this is exactly Kymatio's scaling (mean
    of aliases, ``1/size`` in the inverse transform). Everything is float32/complex64, as Kymatio's
    torch backend.
    """

    def __init__(
        self,
        J: int,
        L: int,
        shape: tuple[int, int],
        filters: dict[str, np.ndarray],
        threads: int,
        fft: str = "auto",
        kernels: str = "auto",
    ):
        self.kernels = _resolve_kernels(kernels)
        compiled = self.kernels == "compiled"
        self.half_spectra = compiled  # the compiled products read rfft2 half spectra, NumPy's full ones
        self.J, self.L, self.shape = J, L, shape
        self.padded = padded_shape(shape, J)
        M, N = self.padded
        H, W = shape
        self.pads = ((M - H) // 2, (M - H + 1) // 2, (N - W) // 2, (N - W + 1) // 2)
        self.out_spatial = (M // 2**J - 2, N // 2**J - 2)
        # low-pass at resolution j (input (M >> j, N >> j), subsampled by 2**(J - j))
        self.lowpass = [_lowpass_operator(filters[f"phi_{j}"], 2 ** (J - j)) for j in range(J)]
        # the same followed by the mean over output columns: (A x B).mean(-1) = A x B.mean(-1)
        self.lowpass_pooled = [[(a, b.mean(axis=1, keepdims=True)) for a, b in ops] for ops in self.lowpass]

        def product_filter(h: np.ndarray, k: int, scale: float) -> _AliasFilter | _SparseFilter:
            return (_SparseFilter if compiled else _AliasFilter)(h, k, scale=scale)

        # the forward FFTs are unnormalised: their 1 / size (Kymatio's scaling) goes into the filters
        # first order: psi_{j1} at full resolution, periodised by 2**j1
        self.psi1 = [
            product_filter(np.stack([filters[f"psi_{j}_{t}_0"] for t in range(L)]), 2**j, 1 / (M * N)) for j in range(J)
        ]
        # second order: psi_{j2} at resolution j1, periodised by 2**(j2 - j1)
        self.psi2 = {
            (j1, j2): product_filter(
                np.stack([filters[f"psi_{j2}_{t}_{j1}"] for t in range(L)]),
                2 ** (j2 - j1),
                1 / ((M >> j1) * (N >> j1)),
            )
            for j1 in range(J)
            for j2 in range(j1 + 1, J)
        }
        self.fft = _Transforms(fft)
        # output channel of every second-order path, in Kymatio's order: channels2[j1, j2][theta1, theta2]
        index, c = {}, 1 + J * L
        for n1 in range(J * L):
            for n2 in range(J * L):
                if n2 // L > n1 // L:
                    index[n1, n2] = c
                    c += 1
        self.n_channels = c
        self.channels2 = {
            (j1, j2): np.array([[index[j1 * L + a, j2 * L + b] for b in range(L)] for a in range(L)])
            for (j1, j2) in self.psi2
        }
        # tasks of one image: (scales j1, first orientation, end orientation), the largest first so
        # that the last tasks of a batch, which decide when both threads are done, are small ones
        self.tasks: list[tuple[range, int, int]] = [(range(1, J), 0, L)] if J > 1 else []
        self.tasks += [(range(0, 1), t0, min(L, t0 + _THETAS_PER_TASK)) for t0 in range(0, L, _THETAS_PER_TASK)]
        self.threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _pad(self, x: np.ndarray) -> np.ndarray:
        """Reflection padding as Kymatio's torch ``Pad`` (including its pad == size special case)."""
        top, bottom, left, right = self.pads
        H, W = x.shape[-2:]
        rows_special, cols_special = top == H, left == W
        pad_rows = (top - rows_special, bottom - rows_special)
        pad_cols = (left - cols_special, right - cols_special)
        xp = np.pad(x, ((0, 0), pad_rows, pad_cols), mode="reflect")
        if rows_special:
            xp = np.concatenate([xp[:, 1:2], xp, xp[:, -2:-1]], axis=1)
        if cols_special:
            xp = np.concatenate([xp[:, :, 1:2], xp, xp[:, :, -2:-1]], axis=2)
        return xp

    def prepare(self, x: np.ndarray, x0: np.ndarray, out: np.ndarray, pooled: bool) -> None:
        """Step 1 for images ``x`` (float32 ``(B, H, W)``): spectra into ``x0``, order 0 into ``out``."""
        with self.fft.workspace() as ws:
            xp = ws.real_buffer((x.shape[0], *self.padded))
            xp[...] = self._pad(x)
            out[:, 0] = _apply_lowpass(xp, (self.lowpass_pooled if pooled else self.lowpass)[0])
            x0[...] = ws.forward(xp, half=self.half_spectra)

    def paths(self, x0: np.ndarray, out: np.ndarray, j1s: range, t0: int, t1: int, pooled: bool) -> None:
        """Step 2 for the first-order paths ``(j1 in j1s, t0 <= theta1 < t1)`` of the images with spectra ``x0``.

        ``out`` is float32 ``(B, C, H', W')`` (``W' = 1`` when ``pooled``: the mean over columns).
        """
        lowpass = self.lowpass_pooled if pooled else self.lowpass
        J, L = self.J, self.L
        B, n1 = x0.shape[0], t1 - t0
        with self.fft.workspace() as ws:
            for j1 in j1s:
                f1 = self.psi1[j1]
                buf = ws.inverse_buffer((B, n1, *f1.out_shape))
                u1 = ws.inverse(f1.product(x0, buf, t0, t1))  # (B, n1, m1, m1')
                real = ws.real_buffer((B * n1, *f1.out_shape))
                last = j1 == J - 1
                # |u1| (kept in `real` for its FFT unless this is the last scale) and its low-pass
                s1 = self._modulus_lowpass(u1, lowpass[j1], None if last else real.reshape(u1.shape))
                out[:, 1 + j1 * L + t0 : 1 + j1 * L + t1] = s1
                if last:
                    break
                # (B*n1, m1, m1' or m1' // 2 + 1 for the compiled products); overwrites a1
                g1 = ws.forward(real, half=self.half_spectra)
                for j2 in range(j1 + 1, J):
                    f2 = self.psi2[j1, j2]
                    # a few orientations theta2 at a time, so that product, FFT and modulus share
                    # an L2-sized buffer
                    per = max(1, min(L, _SLICE_BYTES // (B * n1 * f2.out_shape[0] * f2.out_shape[1] * 8)))
                    for a in range(0, L, per):
                        b = min(L, a + per)
                        buf = ws.inverse_buffer((B * n1, b - a, *f2.out_shape))
                        u2 = ws.inverse(f2.product(g1, buf, a, b))
                        s2 = self._modulus_lowpass(u2, lowpass[j2])  # (B*n1, b - a, m2', 1 or n2')
                        out[:, self.channels2[j1, j2][t0:t1, a:b]] = s2.reshape(B, n1, b - a, *s2.shape[2:])

    def _modulus_lowpass(
        self, u: np.ndarray, ops: list[tuple[np.ndarray, np.ndarray]], store: np.ndarray | None = None
    ) -> np.ndarray:
        """Low-pass of ``|u|`` (complex64 ``(..., m, n)``), storing ``|u|`` into ``store`` if given.

        The compiled kernel forms ``|u| @ B`` row by row without writing ``|u|`` (unless asked to),
        then ``A @`` that; NumPy writes ``|u|`` and applies :func:`_apply_lowpass`.
        """
        if self.kernels != "compiled" or len(ops) != 1:
            return _apply_lowpass(np.abs(u, out=store), ops)
        a, b = ops[0]
        lead, (m, n) = u.shape[:-2], u.shape[-2:]
        z = np.empty((*lead, m, b.shape[1]), np.float32)
        _kernels.abs_pool(
            u.view(np.float32).reshape(-1, m, 2 * n),
            np.ascontiguousarray(b.T),
            z.reshape(-1, m, b.shape[1]),
            None if store is None else store.reshape(-1, m, n),
        )
        return np.matmul(a, z)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="melcnn-scattering")
            return self._pool

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn()`` on a pool thread (inline with one thread); returns its future."""
        if self.threads == 1:
            return _run_inline(fn)
        return self._executor().submit(fn)

    def _drain(self, tasks: list[Callable[[], None]]) -> None:
        """Run ``tasks`` on this thread and up to ``threads - 1`` pool threads, each taking the next one in turn."""
        if self.threads == 1 or len(tasks) == 1:
            for task in tasks:
                task()
            return
        queue = iter(tasks)
        lock = threading.Lock()
        failed = threading.Event()  # after an error, the remaining tasks are not started

        def worker() -> None:
            while not failed.is_set():
                with lock:
                    task = next(queue, None)
                if task is None:
                    return
                try:
                    task()
                except BaseException:
                    failed.set()
                    raise

        pool = self._executor()
        helpers = [pool.submit(worker) for _ in range(min(self.threads, len(tasks)) - 1)]
        try:
            worker()
        finally:
            # a helper that has not started (its thread is busy elsewhere) is not waited for
            pending = [f for f in helpers if not f.cancel()]
            for f in pending:
                f.exception()  # waits
        for f in pending:
            f.result()  # re-raises a helper's error

    def __call__(self, x: np.ndarray, pooled: bool = False) -> np.ndarray:
        """float32 ``(B, H, W)`` -> ``(B, C, H', W')``, or ``(B, C, H')`` averaged over columns if ``pooled``."""
        B = x.shape[0]
        out = np.empty((B, self.n_channels, self.out_spatial[0], 1 if pooled else self.out_spatial[1]), np.float32)
        M, N = self.padded
        x0 = np.empty((B, M, N // 2 + 1 if self.half_spectra else N), np.complex64)
        with single_threaded_blas():
            self._drain(
                [functools.partial(self.prepare, x[i : i + 1], x0[i : i + 1], out[i : i + 1], pooled) for i in range(B)]
            )
            self._drain(
                [
                    functools.partial(self.paths, x0[i : i + 1], out[i : i + 1], j1s, t0, t1, pooled)
                    for i in range(B)
                    for j1s, t0, t1 in self.tasks
                ]
            )
        self.fft.save_wisdom()
        return out[..., 0] if pooled else out

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


# --------------------------------------------------------------------------------------------------
# torch engine (Kymatio's own implementation, with the cached filters)


class _TorchEngine:
    """Kymatio's ``ScatteringTorch2D`` built from cached filters; torch is imported here only."""

    def __init__(self, J: int, L: int, shape: tuple[int, int], filters: dict[str, np.ndarray], device: str):
        try:
            import torch
        except ImportError as e:
            raise MelcnnError(
                f"device {device!r} needs PyTorch, which is not installed: pip install 'melcnn[gpu]', "
                "or use device='cpu'"
            ) from e
        found = _installed_kymatio_version()
        if found != KYMATIO_VERSION:
            raise MelcnnError(
                f"the torch backend needs kymatio=={KYMATIO_VERSION}, found {found}: pip install 'melcnn[gpu]'"
            )
        from kymatio.frontend.torch_frontend import ScatteringTorch
        from kymatio.scattering2d.frontend.base_frontend import ScatteringBase2D
        from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

        # ScatteringTorch2D.__init__ without create_filters (which would rebuild the bank for ~13 s):
        # the same steps as Kymatio 0.3.0's constructor, with our cached (identical) filters
        module = ScatteringTorch2D.__new__(ScatteringTorch2D)
        ScatteringTorch.__init__(module)
        ScatteringBase2D.__init__(
            module, J=J, shape=shape, L=L, max_order=2, pre_pad=False, backend="torch", out_type="array"
        )
        ScatteringBase2D._instantiate_backend(module, "kymatio.scattering2d.backend.")
        ScatteringBase2D.build(module)
        module.phi = {"levels": [np.array(filters[f"phi_{r}"]) for r in range(J)], "j": J}
        module.psi = [
            {
                "levels": [np.array(filters[f"psi_{j}_{t}_{r}"]) for r in range(min(j + 1, max(J - 1, 1)))],
                "j": j,
                "theta": t,
            }
            for j in range(J)
            for t in range(L)
        ]
        module.register_filters()
        self.torch = torch
        self.device = torch.device("cuda" if device == "cuda" else "cpu")
        self.module = module.to(self.device)

    def __call__(self, x: np.ndarray, pooled: bool = False) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            y = self.module(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
            if pooled:
                y = y.mean(dim=-1)
        return y.cpu().numpy().astype(np.float32, copy=False)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------------
# public class


_DEVICES = ("cpu", "cuda", "cpu-torch")


def _default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 4))


class Scattering:
    """Kymatio 0.3.0 ``Scattering2D(J, shape, L)`` (order 2), fast on CPU.

    Parameters
    ----------
    J : int
        Number of scales; the output grid is the input's divided by ``2**J``.
    L : int
        Number of orientations.
    shape : (int, int)
        Input image size ``(H, W)`` in pixels (at least ``2**J``; multiples of ``2**J`` give an
        output of exactly ``(H / 2**J, W / 2**J)``).
    device : {"cpu", "cuda", "cpu-torch"}
        ``"cpu"``: the NumPy/scipy.fft engine (never imports torch). ``"cuda"``: Kymatio's torch
        implementation on the GPU (raises :class:`~melcnn.errors.MelcnnError` if CUDA is not
        available). ``"cpu-torch"``: Kymatio's torch implementation on the CPU (reference, slow).
    threads : int, optional
        Threads that share a transform on the CPU engine: the calling thread and ``threads - 1`` pool
        threads (default: available cores, at most 4).
    fft : {"auto", "fftw", "scipy"}
        FFT library of the CPU engine: ``"auto"`` uses pyFFTW (FFTW3, 2-3x faster at these sizes)
        when it is installed and :mod:`scipy.fft` otherwise; the results agree to float32 rounding.
    kernels : {"auto", "compiled", "numpy"}
        Inner loops of the CPU engine: ``"compiled"`` (:mod:`melcnn._kernels`, built when melcnn
        is installed on a machine with a C compiler) or ``"numpy"``; ``"auto"`` takes the compiled
        ones when they are built. The results agree to float32 rounding.

    Attributes
    ----------
    n_channels : int
        Coefficient channels, ``1 + J*L + L*L*J*(J-1)/2`` (417 for ``J=4, L=8``).
    out_spatial : (int, int)
        Spatial size of the coefficients, ``(16, 16)`` for a 256 x 256 input and ``J=4``.
    """

    def __init__(
        self,
        *,
        J: int = 4,
        L: int = 8,
        shape: tuple[int, int] = (256, 256),
        device: str = "cpu",
        threads: int | None = None,
        fft: str = "auto",
        kernels: str = "auto",
    ):
        J, L, shape = _check_params(J, L, shape)
        if device not in _DEVICES:
            raise MelcnnError(f"unknown scattering device {device!r}; expected one of {', '.join(_DEVICES)}")
        self.J, self.L, self.shape, self.device = J, L, shape, device
        self.padded = padded_shape(shape, J)
        self.out_spatial: tuple[int, int] = (self.padded[0] // 2**J - 2, self.padded[1] // 2**J - 2)
        self.n_channels: int = 1 + J * L + L * L * J * (J - 1) // 2
        if device == "cuda":
            # fail fast on a missing GPU, before spending time on filters
            self._check_cuda()
        filters = load_filter_bank(J, L, shape)
        self._engine: _NumpyEngine | _TorchEngine
        if device == "cpu":
            self._engine = _NumpyEngine(J, L, shape, filters, threads or _default_threads(), fft, kernels)
        else:
            self._engine = _TorchEngine(J, L, shape, filters, "cuda" if device == "cuda" else "cpu")

    @staticmethod
    def _check_cuda() -> None:
        try:
            import torch
        except ImportError as e:
            raise MelcnnError(
                "device 'cuda' needs PyTorch, which is not installed: pip install 'melcnn[gpu]', or use device='cpu'"
            ) from e
        if not torch.cuda.is_available():
            raise MelcnnError(
                "device 'cuda' was requested but CUDA is not available (no GPU, or a CPU-only PyTorch); "
                "use device='cpu'"
            )

    def __repr__(self) -> str:
        return f"Scattering(J={self.J}, L={self.L}, shape={self.shape}, device={self.device!r})"

    def _validate(self, images: Any) -> np.ndarray:
        x = np.asarray(images)
        if x.ndim != 3 or x.shape[1:] != self.shape:
            raise MelcnnError(
                f"scattering expects images of shape (n, {self.shape[0]}, {self.shape[1]}), got shape {x.shape}"
            )
        if x.dtype != np.float32:
            if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
                raise MelcnnError(f"scattering expects real numeric images, got dtype {x.dtype}")
            x = x.astype(np.float32)
        return np.ascontiguousarray(x)

    def _run(self, images: Any, pooled: bool) -> np.ndarray:
        x = self._validate(images)
        n = x.shape[0]
        mo, no = self.out_spatial
        out = np.empty((n, self.n_channels, mo) if pooled else (n, self.n_channels, mo, no), np.float32)
        for i in range(0, n, _IMAGES_PER_CALL):
            out[i : i + _IMAGES_PER_CALL] = self._engine(x[i : i + _IMAGES_PER_CALL], pooled)
        return out

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Scattering coefficients of a batch of images.

        Parameters
        ----------
        images : numpy.ndarray
            ``(n, H, W)`` real images (converted to float32), ``(H, W) == shape``; ``n`` may be 0.

        Returns
        -------
        numpy.ndarray
            float32 ``(n, n_channels, H / 2**J, W / 2**J)``, Kymatio's values and channel order.

        Raises
        ------
        MelcnnError
            If ``images`` is not a real array of shape ``(n, H, W)``.
        """
        return self._run(images, pooled=False)

    def pooled(self, images: np.ndarray) -> np.ndarray:
        """Coefficients averaged over the last (time, column) axis.

        Equal to ``self(images).mean(axis=-1)`` (to float32 rounding) but cheaper: the mean is folded
        into the low-pass matrices, and the full coefficients are never stored.

        Parameters
        ----------
        images : numpy.ndarray
            ``(n, H, W)`` real images, as for :meth:`__call__`.

        Returns
        -------
        numpy.ndarray
            float32 ``(n, n_channels, H / 2**J)``: what the classifier consumes.

        Raises
        ------
        MelcnnError
            If ``images`` is not a real array of shape ``(n, H, W)``.
        """
        return self._run(images, pooled=True)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on the CPU engine's worker threads (inline on other devices).

        For work that should share the cores with the transform, e.g. the report's NumPy measurements
        while the caller prepares the images: a transform started meanwhile runs its tasks on the
        calling thread and picks up the worker when ``fn`` returns (it never waits for ``fn``).

        Returns
        -------
        concurrent.futures.Future
            Its result or exception.
        """
        call = functools.partial(fn, *args, **kwargs)
        if isinstance(self._engine, _NumpyEngine):
            return self._engine.submit(call)
        return _run_inline(call)

    def close(self) -> None:
        """Stop the worker threads (the object stays usable and restarts them on demand)."""
        close = getattr(self._engine, "close", None)
        if close is not None:
            close()


@functools.lru_cache(maxsize=8)
def _get_scattering(J: int, L: int, shape: tuple[int, int], device: str) -> Scattering:
    return Scattering(J=J, L=L, shape=shape, device=device)


def get_scattering(J: int = 4, L: int = 8, shape: tuple[int, int] = (256, 256), device: str = "cpu") -> Scattering:
    """The process-wide :class:`Scattering` for these parameters (built once, then reused).

    Parameters
    ----------
    J, L : int
        Number of scales and orientations.
    shape : (int, int)
        Input image size in pixels.
    device : {"cpu", "cuda", "cpu-torch"}
        See :class:`Scattering`.

    Returns
    -------
    Scattering
        A shared instance; it is thread-safe.
    """
    return _get_scattering(int(J), int(L), (int(shape[0]), int(shape[1])), str(device))
