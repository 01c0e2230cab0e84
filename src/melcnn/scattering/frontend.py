"""The scattering's public front end: :class:`Scattering` (checks, batches, choice of engine),
:func:`get_scattering` and :func:`is_prepared`."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

from ..errors import MelcnnError
from .engine_numpy import _NumpyEngine, _run_inline
from .engine_torch import _TorchEngine
from .fft import _wisdom_path
from .filters import _cache_path, _check_params, load_filter_bank, padded_shape

#: most images per call of the CPU engine (bounds the memory of huge batches); the torch engine has
#: its own (:data:`.engine_torch.CUDA_IMAGES_PER_CALL`, :data:`.engine_torch.CPU_IMAGES_PER_CALL`)
_IMAGES_PER_CALL = 64


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
        ``"cpu"``: the NumPy/FFTW engine (never imports torch). ``"cuda"``: the batched torch engine
        (:mod:`.engine_torch`) on the GPU (raises :class:`~melcnn.errors.MelcnnError` if CUDA is not
        available). ``"cpu-torch"``: the same torch engine on the CPU (how the tests check it
        without a GPU; slower than ``"cpu"``).
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
    batch : int, optional
        Most images per engine call (larger batches are split): default 64 on the CPU engine, 256 on
        ``"cuda"`` (about 30 MB of GPU memory per image), 16 on ``"cpu-torch"``.

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
        batch: int | None = None,
    ):
        J, L, shape = _check_params(J, L, shape)
        if batch is not None and batch < 1:
            raise MelcnnError(f"scattering batch must be at least 1, got {batch}")
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
            self.batch = batch or _IMAGES_PER_CALL
        else:
            self._engine = _TorchEngine(J, L, shape, filters, "cuda" if device == "cuda" else "cpu", batch)
            self.batch = self._engine.images_per_call

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
        for i in range(0, n, self.batch):
            out[i : i + self.batch] = self._engine(x[i : i + self.batch], pooled)
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
