"""The one Python API: ``load_model(name).analyze(media_path=...)``.

Data flows one way: :mod:`audio` (decode, mono, resample) -> :mod:`chunking` -> :mod:`features`
(mel dB image per chunk, Kymatio Scattering2D, time-pooled; shared with training) ->
:mod:`classifier` (MLP head, calibrated P(fake) per chunk) -> mean -> threshold -> :mod:`report`,
with :mod:`metrics` and (only when asked) :mod:`plots` alongside. The stages run while the file
decodes, a batch of chunks at a time (:func:`melcnn.streaming.analyze_stream`), so memory does not
grow with the recording's length. The CLI and the HTTP service are thin shells over :class:`Detector`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from ._blas import single_threaded_blas
from .classifier import Checkpoint, load_checkpoint
from .config import MAX_DURATION_S, FeatureConfig
from .errors import CheckpointError, MelcnnError
from .features import BATCH_CHUNKS, chunk_features, scattering_for
from .registry import ModelSpec, recorded_sha256, resolve
from .report import build_report
from .spectrogram import mel_db
from .streaming import StreamResult, analyze_stream


class _Picture(TypedDict):
    """The keyword arguments that plots.plot_timeline and plots.plot_spectrogram share."""

    sample_rate: int
    hop_length: int
    fmax_hz: float | None
    path: Path


#: where the scattering runs: "cpu" (the NumPy engine), "cuda" (the batched torch engine on a GPU) or
#: "cpu-torch" (that torch engine on the CPU: how the GPU path is checked on machines without one)
DEVICES = ("cpu", "cuda", "cpu-torch")


class Detector:
    """A loaded MEL-Spectrogram-CNN model (V2 or V3). Create with :func:`load_model`.

    Thread-safe: one instance can serve concurrent ``analyze`` calls.
    """

    def __init__(self, checkpoint: Checkpoint, *, device: str = "cpu", entry: ModelSpec | None = None):
        if device not in DEVICES:
            raise MelcnnError(f"device must be 'cpu', 'cuda' or 'cpu-torch', not {device!r}")
        self.checkpoint = checkpoint
        self.device = device
        self.entry = entry  # the registry entry it was loaded by, None for a checkpoint directory
        self.spec: ModelSpec = checkpoint.spec  # what the variant does: chunking, report sections, picture
        self.config: FeatureConfig = checkpoint.features
        # build (or load from the on-disk cache) the scattering filters now, not on the first request
        scattering_for(self.config, device=device)

    @property
    def name(self) -> str:
        return self.checkpoint.name

    @property
    def variant(self) -> str:
        return self.checkpoint.variant

    @property
    def threshold(self) -> float:
        return self.checkpoint.threshold

    @property
    def default_overlap_s(self) -> float:
        return self.spec.default_overlap_s

    def describe(self) -> dict[str, Any]:
        """Name, settings and recorded quality of the model (for ``melcnn models`` and ``/v1/models``)."""
        ck = self.checkpoint
        return {
            "name": ck.name,
            "variant": ck.variant,
            "version": ck.version,
            "weights_sha256": ck.sha256,
            "checkpoint": str(ck.path) if ck.path else None,
            "parameters": ck.n_parameters(),
            "threshold": ck.threshold,
            "chunk_duration_s": self.config.chunk_s,
            "chunk_overlap_s": self.spec.default_overlap_s,
            "sample_rate": self.config.sample_rate,
            "features": self.config.to_dict(),
            "calibration": ck.calibration,
            "metrics": ck.extra.get("metrics"),
            "training": ck.extra.get("training"),
            "spec": self.spec.to_dict(),
        }

    def score_chunks(self, chunks: np.ndarray) -> np.ndarray:
        """Calibrated P(fake) in [0, 1] for each chunk ``(n_chunks, chunk_len) -> (n_chunks,)``."""
        with single_threaded_blas():
            feats = chunk_features(chunks, cfg=self.config, device=self.device, time_stats=self.checkpoint.time_stats)
            return self.checkpoint.fake_scores(feats)

    def analyze(
        self,
        media_path: str | os.PathLike | bytes,
        *,
        overlap_s: float | None = None,
        plot_dir: str | os.PathLike | None = None,
        max_duration_s: float = MAX_DURATION_S,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Analyse one media file and return the report (a JSON-serialisable dict).

        Parameters
        ----------
        media_path : path or bytes
            Any supported audio or video file; the format is detected from its content.
        overlap_s : float, optional
            Chunk overlap in seconds, ``0 <= overlap_s <= chunk - 0.5`` (the one rule,
            :func:`melcnn.registry.validate_overlap`); default: the model's (``spec.default_overlap_s``).
        plot_dir : path, optional
            Write the picture there (V2: spectrogram, V3: score timeline over the spectrogram) and
            put its path in ``visualization.spectrogram_url``. Nothing is plotted otherwise. The file
            is named after the input (``call_v3_timeline.png`` for ``call.m4a``) and its title
            names the input.
        max_duration_s : float
            Longest audio accepted, enforced while decoding.
        name : str, optional
            The input's name in the picture's title and file name (default: ``media_path``'s file
            name; "audio" for bytes).

        Raises
        ------
        MediaProcessingError
            (a subclass saying why) when the media cannot be analysed.
        """
        t_start = time.perf_counter()
        cfg = self.config
        overlap = self.default_overlap_s if overlap_s is None else self.spec.validate_overlap(overlap_s)
        timings = dict.fromkeys(("decode", "features", "classifier", "measurements", "visualization"), 0.0)
        scores: list[np.ndarray] = []

        def score(chunks: np.ndarray) -> None:  # a batch of chunks, as soon as the decoding has them
            t = time.perf_counter()
            feats = chunk_features(chunks, cfg=cfg, device=self.device, time_stats=self.checkpoint.time_stats)
            t1 = time.perf_counter()
            scores.append(self.checkpoint.fake_scores(feats))
            timings["features"] += t1 - t
            timings["classifier"] += time.perf_counter() - t1

        with single_threaded_blas():
            # The energy and spectral measurements (NumPy, which releases the GIL) run on the
            # scattering's worker thread beside the decoding and the mel images; the scattering
            # shares both cores between its tasks. Praat's pitch tracker holds the GIL throughout.
            stream = analyze_stream(
                media_path,
                cfg=cfg,
                overlap_s=overlap,
                max_duration_s=max_duration_s,
                on_batch=score,
                on_restart=scores.clear,
                measurements=True,
                overview=plot_dir is not None,
                keep_last_chunk=not self.spec.timeline,
                submit=scattering_for(cfg, device=self.device).submit,
                batch_chunks=BATCH_CHUNKS,
            )
            timings["decode"] = stream.timings_s["decode"]
            timings["measurements"] = stream.timings_s["measurements"]
            chunk_scores = np.concatenate(scores)
            t = time.perf_counter()
            if name is None:
                name = Path(os.fsdecode(media_path)).name if isinstance(media_path, str | os.PathLike) else "audio"
            visualization = self._visualization(stream, chunk_scores, plot_dir, name)
            timings["visualization"] = time.perf_counter() - t + stream.timings_s["overview"]

        decoded = stream.audio
        properties = {
            "duration_seconds": round(decoded.duration_s, 3),
            "analyzed_seconds": round(stream.analyzed_s, 3),
            "sample_rate": cfg.sample_rate,
            "channels": 1,
            "original_sample_rate": int(decoded.original_sample_rate),
            "original_channels": int(decoded.channels),
            "format": decoded.format,
        }
        model = {
            "name": self.name,
            "variant": self.variant,
            "version": self.checkpoint.version,
            "weights_sha256": self.checkpoint.sha256 or "",
        }
        assert stream.measurements is not None  # asked for
        return build_report(
            spec=self.spec,
            chunk_scores=chunk_scores,
            chunk_starts_s=stream.starts_s,
            chunk_ends_s=stream.ends_s,
            chunk_s=cfg.chunk_s,
            overlap_s=overlap,
            threshold=self.threshold,
            properties=properties,
            measurements=stream.measurements,
            model=model,
            visualization=visualization,
            warnings=stream.warnings,
            processing_time_s=time.perf_counter() - t_start,
            timings_s=timings,
        )

    def _visualization(self, stream: StreamResult, scores: np.ndarray, plot_dir, name: str) -> dict[str, Any]:
        cfg, spec = self.config, self.spec
        if spec.timeline:
            data: list = [round(float(s), 4) for s in scores]
        else:  # the specification's V2 shows the last chunk's mel spectrogram
            assert stream.last_chunk is not None  # kept for V2
            data = np.round(mel_db(stream.last_chunk, cfg=cfg), 1).tolist()
        url = None
        if plot_dir is not None:
            from . import plots

            assert stream.overview is not None  # computed when plot_dir is given
            overview, column_s = stream.overview
            picture: _Picture = {
                "sample_rate": cfg.sample_rate,
                "hop_length": int(round(column_s * cfg.sample_rate)),  # samples per picture column
                "fmax_hz": cfg.fmax_hz or cfg.sample_rate / 2,
                "path": _picture_path(Path(plot_dir), f"{safe_stem(name)}_{self.variant}_{spec.picture}"),
            }
            if spec.picture == "timeline":
                path = plots.plot_timeline(
                    overview,
                    **picture,
                    chunk_starts_s=stream.starts_s,
                    chunk_ends_s=stream.ends_s,
                    chunk_scores=scores,
                    threshold=self.threshold,
                    title=f"{name}: {self.name} chunk fake scores",
                )
            else:
                path = plots.plot_spectrogram(overview, **picture, title=f"{name}: mel spectrogram ({self.name})")
            url = str(path)
        return {"spectrogram_url": url, "spectrogram_data": data}


def safe_stem(name: str, limit: int = 80) -> str:
    """``name``'s stem as a safe file name part: letters, digits, ``.-_`` kept, the rest ``_``."""
    stem = Path(name.replace("\\", "/")).stem if name else ""
    stem = re.sub(r"[^\w.-]+", "_", stem).strip("._-")[:limit]
    return stem or "audio"


_pictures_written: OrderedDict[Path, None] = OrderedDict()  # the latest picture paths this process wrote
_pictures_lock = threading.Lock()
_PICTURES_REMEMBERED = 10_000


def _picture_path(folder: Path, stem: str) -> Path:
    """``folder/stem.png``, or ``stem-2.png``, ... if this process already wrote that name.

    A new run overwrites its earlier pictures of the same input; within one process (several files
    of the same name, or a server's requests) every picture keeps its own file.
    """
    with _pictures_lock:
        for i in range(1, 10_000):
            path = (folder / (f"{stem}.png" if i == 1 else f"{stem}-{i}.png")).resolve()
            if path not in _pictures_written:
                _pictures_written[path] = None
                if len(_pictures_written) > _PICTURES_REMEMBERED:
                    _pictures_written.popitem(last=False)
                return path
    raise MelcnnError(f"too many pictures named {stem} in {folder}")  # pragma: no cover


def load_model(name: str | os.PathLike = "MEL-Spectrogram-CNN-V2", *, device: str = "cpu") -> Detector:
    """Load a detector by registry name (``MEL-Spectrogram-CNN-V2``/``-V3``, ``v2``/``v3``) or checkpoint dir.

    ``device``: ``"cpu"`` (default), ``"cuda"`` (the scattering on a GPU: needs ``melcnn[gpu]``; a
    :class:`MelcnnError` says so when CUDA is not available) or ``"cpu-torch"`` (the GPU's torch
    engine on the CPU, to check it without a GPU; slower than ``"cpu"``).

    Raises
    ------
    NoWeightsError
        The named model has no trained weights in this installation.
    CheckpointError
        Unknown name, or an invalid checkpoint.
    """
    entry, directory = resolve(name)
    checkpoint = load_checkpoint(directory)
    if entry is not None:
        expected = recorded_sha256(entry)
        if expected is not None and expected != checkpoint.sha256:
            raise CheckpointError(
                f"the shipped weights of {entry.name} do not match their recorded sha256 "
                f"(expected {expected}, found {checkpoint.sha256}): reinstall melcnn"
            )
    return Detector(checkpoint, device=device, entry=entry)
