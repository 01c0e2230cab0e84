"""One file through the pipeline's stages while it decodes, in bounded memory: the one path of
:meth:`melcnn.detector.Detector.analyze` (so of ``melcnn analyze`` and the HTTP server) and of the
scan's worker processes.

:func:`analyze_stream` decodes the file block by block (:func:`melcnn.audio.stream_audio`) and hands
each block to the chunker (:class:`melcnn.chunking.ChunkStream`), to the measurements
(:class:`melcnn.metrics.SignalMeasurer`, on a worker thread when the caller offers one, and
:class:`melcnn.metrics.PitchMeasurer`) and, for a picture, to :class:`melcnn.spectrogram.OverviewMel`.
Every batch of chunks goes to the caller's ``on_batch`` as soon as it is whole (the detector scores
it, a scan worker sends its images to the engine), so what is held at any time is a batch of chunks,
a pitch segment and a few decoded blocks, whatever the length of the recording; what grows with it is
small: a score per chunk (the caller's) and the per-frame values of the measurements (about 20 MB
per hour, see :mod:`melcnn.metrics`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from .audio import AudioInfo, stream_audio
from .chunking import ChunkStream, unscored_tail_warning
from .config import FeatureConfig
from .metrics import PitchMeasurer, SignalMeasurer, TelephoneBand, telephone_band_warning
from .spectrogram import OverviewMel

#: chunks per batch handed to ``on_batch`` (the feature path's batch, :data:`melcnn.features.BATCH_CHUNKS`)
BATCH_CHUNKS = 16
#: samples that may wait for the signal measurements' worker thread before the decoding waits for it
_BACKGROUND_LIMIT = 1 << 20


@dataclass
class StreamResult:
    """What :func:`analyze_stream` found, besides what ``on_batch`` did with the chunks.

    Attributes
    ----------
    audio : AudioInfo
        The decoded signal's format, rates, duration and decoder warnings.
    starts_s, ends_s : np.ndarray
        Start and end of every chunk handed to ``on_batch``, in seconds, in order.
    measurements : dict or None
        The report's ``pitch``, ``energy`` and ``spectral`` sections (None when not asked for).
    warnings : list of str
        The decoder's, the measurements' and the unscored tail's notices, in that order.
    last_chunk : np.ndarray or None
        The samples of the last chunk, when asked for.
    overview : (np.ndarray, float) or None
        :meth:`melcnn.spectrogram.OverviewMel.result` of the whole signal, when asked for.
    timings_s : dict
        Seconds spent decoding (``decode``, the caller's ``on_batch`` excluded), measuring on the
        calling thread (``measurements``) and computing the picture's spectrogram (``overview``).
    """

    audio: AudioInfo
    starts_s: np.ndarray
    ends_s: np.ndarray
    measurements: dict[str, Any] | None
    warnings: list[str]
    last_chunk: np.ndarray | None = None
    overview: tuple[np.ndarray, float] | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def n_chunks(self) -> int:
        return len(self.starts_s)

    @property
    def analyzed_s(self) -> float:
        """End of the last chunk in seconds (0 when there is none)."""
        return float(self.ends_s[-1]) if len(self.ends_s) else 0.0


class _Background:
    """Feeds a :class:`SignalMeasurer` on a worker thread, blocks in order, one job at a time; the
    caller waits (and so the decoding) only when more than ``_BACKGROUND_LIMIT`` samples are waiting."""

    def __init__(self, measurer: SignalMeasurer, submit: Callable[..., Future]):
        self.measurer = measurer
        self._submit = submit
        self._future: Future | None = None
        self._pending: list[np.ndarray] = []
        self._pending_n = 0

    def push(self, block: np.ndarray) -> None:
        self._pending.append(block)
        self._pending_n += block.size
        if self._future is not None and not self._future.done() and self._pending_n <= _BACKGROUND_LIMIT:
            return
        self._join()
        blocks, self._pending, self._pending_n = self._pending, [], 0
        self._future = self._submit(self._feed, blocks)

    def _feed(self, blocks: list[np.ndarray]) -> None:
        for b in blocks:
            self.measurer.push(b)

    def _join(self) -> Any:
        if self._future is not None:
            future, self._future = self._future, None
            return future.result()  # its exception, if any, is the caller's
        return None

    def close(self) -> None:
        """The end of the signal: the last blocks and the results are computed on the worker thread too
        (beside the caller's last batch)."""
        self._join()
        blocks, self._pending = self._pending, []
        self._future = self._submit(self._finish, blocks)

    def _finish(self, blocks: list[np.ndarray]) -> dict[str, Any]:
        self._feed(blocks)
        return self.measurer.result()

    def result(self) -> dict[str, Any]:
        """The sections (after :meth:`close`)."""
        return self._join()

    def cancel(self) -> None:
        """Never leave a job running past an error (or a restart)."""
        if self._future is not None:
            self._future.cancel()
            wait([self._future])
            self._future = None


class _FileStream:
    """The :class:`melcnn.audio.BlockConsumer` of :func:`analyze_stream`: every stage's running state."""

    def __init__(
        self,
        cfg: FeatureConfig,
        overlap_s: float,
        on_batch: Callable[[np.ndarray], None],
        on_restart: Callable[[], None],
        *,
        measurements: bool,
        overview: bool,
        keep_last_chunk: bool,
        submit: Callable[..., Future] | None,
        batch_chunks: int,
    ):
        self.cfg, self.overlap_s, self.batch_chunks = cfg, overlap_s, batch_chunks
        self.on_batch, self.on_restart = on_batch, on_restart
        self.with_measurements, self.with_overview, self.keep_last_chunk = measurements, overview, keep_last_chunk
        self.submit = submit
        self.pushing_s = 0.0  # time spent in push (so the decoding's own time is the rest)
        self.measuring_s = 0.0  # of which measuring on this thread
        self.picture_s = 0.0  # and the picture's spectrogram
        self._reset()

    def _reset(self) -> None:
        cfg = self.cfg
        self.chunks = ChunkStream(
            sr=cfg.sample_rate, chunk_s=cfg.chunk_s, overlap_s=self.overlap_s, batch=self.batch_chunks
        )
        self.signal: SignalMeasurer | _Background | None = None
        self.pitch: PitchMeasurer | None = None
        if self.with_measurements:
            measurer = SignalMeasurer(cfg.sample_rate)
            self.signal = _Background(measurer, self.submit) if self.submit is not None else measurer
            self.pitch = PitchMeasurer(cfg.sample_rate)
        self.overview = OverviewMel(cfg=cfg) if self.with_overview else None
        self.band = TelephoneBand(cfg.sample_rate)
        self.last_chunk: np.ndarray | None = None

    def push(self, block: np.ndarray) -> None:
        t0 = time.perf_counter()
        try:
            if self.signal is not None and self.pitch is not None:
                self.signal.push(block)
                self.pitch.push(block)  # tracks a segment when one is complete (holds the GIL)
            self.band.push(block)
            t1 = time.perf_counter()
            if self.overview is not None:
                self.overview.push(block)
            t2 = time.perf_counter()
            self.measuring_s += t1 - t0
            self.picture_s += t2 - t1
            self._batches(self.chunks.push(block))
        finally:
            self.pushing_s += time.perf_counter() - t0

    def _batches(self, batches: list[np.ndarray]) -> None:
        for batch in batches:
            if self.keep_last_chunk:
                self.last_chunk = batch[-1].copy()
            self.on_batch(batch)

    def restart(self) -> None:
        self.cancel()
        self._reset()
        self.on_restart()

    def cancel(self) -> None:
        if isinstance(self.signal, _Background):
            self.signal.cancel()

    def finish(self) -> tuple[dict[str, Any] | None, list[str]]:
        """The last batch, then the measurements: ``(sections or None, their warnings)``."""
        if isinstance(self.signal, _Background):
            self.signal.close()  # its last frames are computed beside the last batch's features
        self._batches(self.chunks.flush())
        if self.signal is None or self.pitch is None:
            return None, []
        t0 = time.perf_counter()
        # Praat's tracker holds the GIL throughout: its last segment is tracked after the parallel work
        pitch, warnings = self.pitch.result()
        sections = {"pitch": pitch, **self.signal.result()}
        self.measuring_s += time.perf_counter() - t0
        return sections, warnings


def analyze_stream(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    cfg: FeatureConfig,
    overlap_s: float,
    max_duration_s: float,
    on_batch: Callable[[np.ndarray], None],
    on_restart: Callable[[], None] = lambda: None,
    measurements: bool = True,
    overview: bool = False,
    keep_last_chunk: bool = False,
    submit: Callable[..., Future] | None = None,
    batch_chunks: int = BATCH_CHUNKS,
) -> StreamResult:
    """Decode ``source`` and run the pipeline's stages on it as it decodes.

    Parameters
    ----------
    source : path, bytes or binary file object
        The media file (any format :func:`melcnn.audio.stream_audio` reads).
    cfg : FeatureConfig
        Sample rate and chunk length.
    overlap_s : float
        Chunk overlap in seconds (validated).
    max_duration_s : float
        Longest audio accepted (:class:`melcnn.errors.TooLongError` beyond; a policy: memory does not
        depend on it).
    on_batch : callable
        Called with each batch of whole chunks, a float32 ``(n, chunk_len)`` array with
        ``1 <= n <= batch_chunks``, in order, while the file decodes.
    on_restart : callable
        Called when the decoding starts over from the beginning of the file (libsndfile failed
        part-way, FFmpeg decodes it again): forget the batches so far.
    measurements : bool
        Compute the report's ``pitch``, ``energy`` and ``spectral`` sections.
    overview : bool
        Compute the pictures' whole-file mel spectrogram (:class:`melcnn.spectrogram.OverviewMel`).
    keep_last_chunk : bool
        Keep the samples of the last chunk (V2's ``spectrogram_data``).
    submit : callable, optional
        ``submit(fn, *args) -> Future`` running ``fn`` on a worker thread (e.g.
        :meth:`melcnn.scattering.Scattering.submit`): the energy and spectral measurements (NumPy,
        which releases the GIL) then run there, beside the decoding and the caller's ``on_batch``.
    batch_chunks : int
        Most chunks per batch.

    Returns
    -------
    StreamResult

    Raises
    ------
    MediaProcessingError
        (a subclass saying why, see :func:`melcnn.audio.stream_audio`) when the media cannot be
        analysed, including a recording shorter than one chunk. Exceptions of ``on_batch`` propagate.
    """
    stream = _FileStream(
        cfg,
        overlap_s,
        on_batch,
        on_restart,
        measurements=measurements,
        overview=overview,
        keep_last_chunk=keep_last_chunk,
        submit=submit,
        batch_chunks=batch_chunks,
    )
    t0 = time.perf_counter()
    try:
        info = stream_audio(
            source, stream, sample_rate=cfg.sample_rate, max_duration_s=max_duration_s, min_duration_s=cfg.chunk_s
        )
        decode_s = time.perf_counter() - t0 - stream.pushing_s
        sections, metric_warnings = stream.finish()
    finally:
        stream.cancel()
    starts_s, ends_s = stream.chunks.times()
    warnings = list(info.warnings) + list(metric_warnings)
    t = time.perf_counter()
    overview_result = stream.overview.result() if stream.overview is not None else None
    result = StreamResult(
        audio=info,
        starts_s=starts_s,
        ends_s=ends_s,
        measurements=sections,
        warnings=warnings,
        last_chunk=stream.last_chunk,
        overview=overview_result,
        timings_s={
            "decode": decode_s,
            "measurements": stream.measuring_s,
            "overview": stream.picture_s + time.perf_counter() - t,
        },
    )
    for extra in (
        unscored_tail_warning(info.duration_s, result.analyzed_s, cfg.chunk_s),
        telephone_band_warning(info.original_sample_rate, stream.band.edge_db()),
    ):
        if extra:
            warnings.append(extra)
    return result
