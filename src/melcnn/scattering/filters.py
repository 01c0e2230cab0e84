"""The scattering's filter bank: Kymatio's padding rule, its construction (:mod:`melcnn._filters`)
and its checksummed on-disk cache (:func:`cache_dir`, also home of the FFTW wisdom)."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MelcnnError

_log = logging.getLogger(__name__)

#: version of the on-disk filter-bank layout; bump it when the file contents change meaning
CACHE_FORMAT_VERSION = 1
#: Kymatio release whose algorithm this module reproduces (and whose filters it caches)
KYMATIO_VERSION = "0.3.0"


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
    rows, cols = shape
    return ((rows + step) // step + 1) * step, ((cols + step) // step + 1) * step


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
    from .._filters import filter_bank

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
    # numpy's stub: a **dict could bind savez's keyword allow_pickle (bool); no key here is named so
    _atomic_write(path, lambda f: np.savez(f, **payload), "scattering filter bank")  # type: ignore[arg-type]


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
