"""The CPU scattering engine: Kymatio's ``scattering2d`` algorithm in NumPy and FFTW, cut into
balanced tasks that the calling thread and a small pool drain."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .._blas import single_threaded_blas
from .fft import _Transforms
from .filters import padded_shape
from .products import (
    _AliasFilter,
    _apply_lowpass,
    _lowpass_operator,
    _modulus_lowpass,
    _resolve_kernels,
    _SparseFilter,
)

#: first-order orientations per task at the finest scale j1 = 0 (the coarser scales of an image are one
#: task): for J=4, L=8 five tasks of similar cost per image, each with a few MB of arrays
_THETAS_PER_TASK = 2
#: bytes of second-order spectra multiplied, transformed and rectified at a time (about an L2 cache)
_SLICE_BYTES = 1 << 20


def _run_inline(fn: Callable[[], Any]) -> Future:
    """Run ``fn()`` now, on this thread; its result or exception delivered through a future, as from a pool."""
    future: Future = Future()
    try:
        future.set_result(fn())
    except Exception as e:
        future.set_exception(e)
    return future


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
            return _SparseFilter(h, k, scale=scale) if compiled else _AliasFilter(h, k, scale=scale)

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
        """Low-pass of ``|u|``, storing ``|u|`` into ``store`` if given (:func:`.products._modulus_lowpass`)."""
        return _modulus_lowpass(u, ops, self.kernels == "compiled", store)

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
