"""The batched scattering and scoring path of a scan (:class:`_Engine`): the one place that calls
melcnn's internal feature functions (re-point here after restructurings).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: images per scattering call on the CPU: the engine's batch (on the torch engine, a GPU: the
#: scattering's own, 256 by default)
BATCH_IMAGES = 16


class _Engine:
    """melcnn's internal batched feature path, in one place (re-point here after restructurings).

    Worker side: :meth:`images` (mel images of chunks). Main side: :meth:`scores` (the scattering of
    a batch of images from any number of files, then the head). Together they equal
    ``Detector.score_chunks``.
    """

    def __init__(self, detector: Any):
        from ..features import scattering_for

        self.checkpoint = detector.checkpoint
        self.scattering = scattering_for(detector.config, device=detector.device)
        self.batch_images = BATCH_IMAGES if detector.device == "cpu" else self.scattering.batch

    @staticmethod
    def images(chunks: np.ndarray, cfg: Any) -> np.ndarray:
        from ..spectrogram import chunk_images

        return chunk_images(np.asarray(chunks), cfg=cfg)

    def scores(self, images: np.ndarray) -> np.ndarray:
        from .._blas import single_threaded_blas
        from ..features import pool_time

        with single_threaded_blas():
            return self.checkpoint.fake_scores(pool_time(self.scattering, images, self.checkpoint.time_stats))
