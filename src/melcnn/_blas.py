"""Hold NumPy's OpenBLAS to one thread while melcnn computes (shared by the detector and the scattering).

Measured on 2 cores: OpenBLAS's two threads made the mel filter product 2 ms -> 370 ms when the other
core was busy, and the scattering 2-3x slower.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any


class _SingleThreadedBlas:
    """Context manager: NumPy's OpenBLAS runs single-threaded inside (re-entrant, thread-safe).

    melcnn's matrix products (mel filters, scattering, the head) are small, and the scattering runs
    its own worker threads; OpenBLAS's own threads would oversubscribe the cores and busy-wait
    between calls. The previous thread count is restored when the last user leaves. A no-op when
    NumPy's BLAS is not an OpenBLAS found among the loaded libraries.
    """

    _names = (
        ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
        ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
        ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
        ("openblas_get_num_threads", "openblas_set_num_threads"),
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: list[int] = []
        self._funcs = self._find()

    @classmethod
    def _find(cls) -> list[tuple[Any, Any]]:
        import ctypes

        paths: list[str] = []
        try:
            with open("/proc/self/maps") as f:
                for line in f:
                    path = line.rsplit(None, 1)[-1]
                    if "openblas" in os.path.basename(path).lower() and path not in paths:
                        paths.append(path)
        except OSError:
            return []
        funcs = []
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for get_name, set_name in cls._names:
                get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
                if get is not None and set_ is not None:
                    get.restype, get.argtypes = ctypes.c_int, []
                    set_.restype, set_.argtypes = None, [ctypes.c_int]
                    funcs.append((get, set_))
                    break
        return funcs

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._saved = [get() for get, _ in self._funcs]
                for (_, set_), n in zip(self._funcs, self._saved, strict=True):
                    if n != 1:
                        set_(1)
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for (_, set_), n in zip(self._funcs, self._saved, strict=True):
                    if n != 1:
                        set_(n)


@functools.lru_cache(maxsize=1)
def single_threaded_blas() -> _SingleThreadedBlas:
    """The process-wide context manager that holds NumPy's OpenBLAS to one thread while in use."""
    return _SingleThreadedBlas()
