"""The scattering's FFTs: per-task buffers and pyFFTW plans, FFTW's wisdom cached on disk, and the
:mod:`scipy.fft` fallback where pyFFTW is not installed."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MelcnnError
from .filters import _atomic_write, cache_dir

_log = logging.getLogger(__name__)

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
        assert out is not None  # a plan writes into the slot's half-spectrum buffer
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
