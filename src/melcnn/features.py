"""The model's feature path, shared by inference and training: chunks -> time-pooled scattering maps.

Each chunk's mel dB array (:func:`melcnn.spectrogram.mel_db`) is rendered to the model's image
(:func:`melcnn.spectrogram.db_to_image`) and transformed by the 2-D scattering
(:mod:`melcnn.scattering`), averaged over time. :class:`melcnn.detector.Detector` scores exactly
these arrays and the training caches them (:mod:`melcnn.training.features`), so both see the same
features. Nothing else is computed or returned here: pictures and measurements have their own modules.
"""

from __future__ import annotations

import numpy as np

from ._blas import single_threaded_blas
from .config import TIME_STATS, FeatureConfig
from .scattering import get_scattering
from .spectrogram import chunk_images

#: chunks per scattering batch on the CPU: bounds memory for long files (an image is 256 KiB); the
#: torch engine takes its own batch (256 on a GPU)
BATCH_CHUNKS = 16


def scattering_for(cfg: FeatureConfig, *, device: str = "cpu"):
    """The (cached) scattering transform ``cfg`` asks for, on ``device``."""
    return get_scattering(J=cfg.scattering_J, L=cfg.scattering_L, shape=(cfg.image_size, cfg.image_size), device=device)


def pool_time(scat, images: np.ndarray, time_stats: tuple[str, ...] = ("mean",)) -> np.ndarray:
    """Scattering maps of ``images`` reduced over time (the last axis) by each of ``time_stats``.

    The mean alone takes the transform's cheaper pooled path; other statistics need the full maps.
    Returns ``(n, len(time_stats) * n_channels, rows)``: one block of channels per statistic, in order.
    """
    if tuple(time_stats) == ("mean",):
        return scat.pooled(images)
    unknown = set(time_stats) - set(TIME_STATS)
    if unknown:
        raise ValueError(f"unknown time statistics {sorted(unknown)}; expected some of {', '.join(TIME_STATS)}")
    full = scat(images)
    blocks = [
        full.mean(axis=-1) if s == "mean" else full.std(axis=-1) if s == "std" else full.max(axis=-1)
        for s in time_stats
    ]
    return np.concatenate(blocks, axis=1).astype(np.float32, copy=False)


def chunk_features(
    chunks: np.ndarray,
    *,
    cfg: FeatureConfig,
    device: str = "cpu",
    batch_chunks: int | None = None,
    time_stats: tuple[str, ...] = ("mean",),
) -> np.ndarray:
    """Time-pooled scattering maps of audio chunks: the classifier's input.

    Parameters
    ----------
    chunks : np.ndarray [shape=(n_chunks, chunk_len)]
        Audio at ``cfg.sample_rate``.
    time_stats : tuple of str
        Statistics over time (:data:`TIME_STATS`; the checkpoint's ``head.time_stats``).

    Returns
    -------
    np.ndarray [shape=(n_chunks, len(time_stats) * n_channels, image_size / 2**J)], float32
    """
    scat = scattering_for(cfg, device=device)
    if batch_chunks is None:
        batch_chunks = BATCH_CHUNKS if device == "cpu" else scat.batch
    out = []
    # the mel and image matrix products are small: OpenBLAS's own threads would busy-wait against the
    # scattering's (the training's feature workers, which reach here outside the Detector, ran 2x slower)
    with single_threaded_blas():
        for i in range(0, len(chunks), batch_chunks):
            out.append(pool_time(scat, chunk_images(np.asarray(chunks[i : i + batch_chunks]), cfg=cfg), time_stats))
    if not out:
        return np.zeros((0, len(time_stats) * scat.n_channels, scat.out_spatial[0]), dtype=np.float32)
    return np.concatenate(out, axis=0)
