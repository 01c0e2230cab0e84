"""The model's feature path, shared by inference and training: chunks -> time-pooled scattering maps.

Each chunk's mel dB array (:func:`melcnn.spectrogram.mel_db`) is rendered to the model's image
(:func:`melcnn.spectrogram.db_to_image`) and transformed by the 2-D scattering
(:mod:`melcnn.scattering`), averaged over time. :class:`melcnn.detector.Detector` scores exactly
these arrays and the training caches them (:mod:`melcnn.training.features`), so both see the same
features. Nothing else is computed or returned here: pictures and measurements have their own modules.
"""

from __future__ import annotations

import numpy as np

from .config import FeatureConfig
from .scattering import get_scattering
from .spectrogram import chunk_images

#: chunks per scattering batch on the CPU: bounds memory for long files (an image is 256 KiB); the
#: torch engine takes its own batch (256 on a GPU)
BATCH_CHUNKS = 16


def scattering_for(cfg: FeatureConfig, *, device: str = "cpu"):
    """The (cached) scattering transform ``cfg`` asks for, on ``device``."""
    return get_scattering(J=cfg.scattering_J, L=cfg.scattering_L, shape=(cfg.image_size, cfg.image_size), device=device)


def chunk_features(
    chunks: np.ndarray, *, cfg: FeatureConfig, device: str = "cpu", batch_chunks: int | None = None
) -> np.ndarray:
    """Time-pooled scattering maps of audio chunks: the classifier's input.

    Parameters
    ----------
    chunks : np.ndarray [shape=(n_chunks, chunk_len)]
        Audio at ``cfg.sample_rate``.

    Returns
    -------
    np.ndarray [shape=(n_chunks, n_channels, image_size / 2**J)], float32
    """
    scat = scattering_for(cfg, device=device)
    if batch_chunks is None:
        batch_chunks = BATCH_CHUNKS if device == "cpu" else scat.batch
    out = []
    for i in range(0, len(chunks), batch_chunks):
        out.append(scat.pooled(chunk_images(np.asarray(chunks[i : i + batch_chunks]), cfg=cfg)))
    if not out:
        return np.zeros((0, scat.n_channels, scat.out_spatial[0]), dtype=np.float32)
    return np.concatenate(out, axis=0)
