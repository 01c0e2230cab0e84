"""The public audio API: :func:`stream_audio` decodes any common audio or video file to mono float32 at
the pipeline's sample rate and hands it on block by block (bounded memory whatever the length: what the
analysis uses), :func:`load_audio` returns the whole signal in a :class:`DecodedAudio`, and
:func:`validate_audio` checks that a signal can be judged.

This module opens the source (a path, bytes or a binary file object), has it decoded and checks the
result; the decoding itself lives in three private modules:

* :mod:`melcnn._audio_sniff` identifies the container from the content (magic bytes, then FFmpeg's
  prober), never from the file name, and reads the durations WAV and AIFF headers announce;
* :mod:`melcnn._audio_decoders` holds the two decoders, libsndfile (:mod:`soundfile`) and FFmpeg as
  bundled in PyAV (:mod:`av`), and the choice between them (with the fallback to FFmpeg);
* :mod:`melcnn._audio_sink` averages the decoded blocks to mono, checks them, and feeds them to a
  streaming :mod:`soxr` resampler, so nothing is ever sized from what a header claims, and
  ``max_duration_s`` is enforced while decoding.

:func:`stream_audio` holds a few blocks of the file at a time (about 65536 decoded frames each);
the checks of :func:`validate_audio` run on running counts (length, peak, invalid samples), so they
need no whole signal either.

Silence rule: the decoded, resampled mono signal is *digitally silent* when its peak absolute
amplitude is below :data:`SILENCE_PEAK` (1e-7, about -140 dBFS: below one step of 24-bit audio, so
any non-zero 8/16-bit sample and practically any real recording passes).

The heavy libraries (soundfile, av, soxr) are imported on first use, so importing this module is
cheap.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol

import numpy as np

from ._audio_decoders import Restart, decode
from ._audio_sink import RESAMPLE_QUALITY
from .config import MAX_DURATION_S, SAMPLE_RATE
from .errors import (
    EmptyMediaError,
    MediaNotFoundError,
    MediaProcessingError,
    NonFiniteAudioError,
    SilentAudioError,
    TooShortError,
    UndecodableMediaError,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RESAMPLE_QUALITY",
    "SILENCE_PEAK",
    "AudioInfo",
    "BlockConsumer",
    "DecodedAudio",
    "load_audio",
    "stream_audio",
    "validate_audio",
]

#: Peak absolute amplitude below which decoded audio counts as digital silence (see module doc).
SILENCE_PEAK = 1e-7


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`stream_audio` found out about a file (:class:`DecodedAudio` without the samples).

    Attributes
    ----------
    sample_rate : int
        Hz, the rate asked for.
    original_sample_rate : int
        Hz, the rate of the source stream.
    channels : int
        Channel count of the source stream (before the mono mix).
    format : str
        Detected container and codec, as :attr:`DecodedAudio.format`.
    duration_s : float
        Duration of the decoded mono signal in seconds.
    warnings : tuple of str
        Plain-language notices, e.g. that the file ends earlier than its header says.
    """

    sample_rate: int
    original_sample_rate: int
    channels: int
    format: str
    duration_s: float
    warnings: tuple[str, ...] = ()


class BlockConsumer(Protocol):
    """Where :func:`stream_audio` delivers the signal."""

    def push(self, block: np.ndarray) -> None:
        """The next samples: a 1-D float32 array at the asked rate (the consumer may keep it)."""

    def restart(self) -> None:
        """The decoding starts over from the beginning of the file: forget every block pushed so far."""


@dataclass(frozen=True)
class DecodedAudio:
    """Audio decoded to the pipeline's input form.

    Attributes
    ----------
    samples : numpy.ndarray
        float32 mono signal, shape ``(n,)``, at :attr:`sample_rate`.
    sample_rate : int
        Hz, the rate asked for.
    original_sample_rate : int
        Hz, the rate of the source stream.
    channels : int
        Channel count of the source stream (before the mono mix).
    format : str
        Detected container and codec, e.g. ``"wav/pcm_s16le"``, ``"flac"``, ``"ogg/vorbis"``,
        ``"mp3"``, ``"mp4/aac"``, ``"webm/opus"``, ``"matroska/flac"``.
    duration_s : float
        Duration of :attr:`samples` in seconds.
    warnings : tuple of str
        Plain-language notices, e.g. that the file ends earlier than its header says.
    """

    samples: np.ndarray
    sample_rate: int
    original_sample_rate: int
    channels: int
    format: str
    duration_s: float
    warnings: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------- validation
def validate_audio(samples: np.ndarray, *, sample_rate: int, min_duration_s: float) -> None:
    """Check that decoded audio can be judged.

    The checks run in this order: finite values, length, silence.

    Parameters
    ----------
    samples : numpy.ndarray
        Mono signal.
    sample_rate : int
        Its sample rate in Hz.
    min_duration_s : float
        Shortest acceptable duration in seconds.

    Raises
    ------
    NonFiniteAudioError
        If any sample is NaN or infinite.
    TooShortError
        If the signal is empty or shorter than ``min_duration_s``.
    SilentAudioError
        If the peak absolute amplitude is below :data:`SILENCE_PEAK`.
    """
    check = _SignalCheck()
    check.update(np.asarray(samples).ravel())
    check.raise_if_invalid(sample_rate=sample_rate, min_duration_s=min_duration_s)


class _SignalCheck:
    """The running counts :func:`validate_audio` judges by: length, peak, invalid samples."""

    def __init__(self) -> None:
        self.n = 0
        self.peak = 0.0
        self.bad = 0  # NaN or infinite samples
        self.first_bad = -1  # index of the first

    def update(self, block: np.ndarray) -> bool:
        """Count ``block``; True while every sample so far is finite."""
        if block.size:
            finite = np.isfinite(block)
            if not finite.all():
                if self.first_bad < 0:
                    self.first_bad = self.n + int(np.argmin(finite))
                self.bad += int(block.size - np.count_nonzero(finite))
            elif not self.bad:  # (the peak of an invalid signal is never asked for)
                self.peak = max(self.peak, float(block.max()), -float(block.min()))  # no |x| temporary
            self.n += block.size
        return not self.bad

    def raise_if_invalid(self, *, sample_rate: int, min_duration_s: float) -> None:
        if self.bad:
            raise NonFiniteAudioError(
                f"the audio contains {self.bad} invalid samples (NaN or infinity), the first at "
                f"{self.first_bad / sample_rate:.2f} s; every sample must be a finite number. "
                "The file is probably corrupt: re-export it."
            )
        duration_s = self.n / sample_rate
        if self.n == 0:
            raise TooShortError(
                f"the file contains no audio samples; at least {max(min_duration_s, 0.0):.2f} s of audio is required",
                duration_s=0.0,
                minimum_s=min_duration_s,
            )
        if duration_s < min_duration_s:
            raise TooShortError(
                f"the audio lasts {duration_s:.2f} s; at least {min_duration_s:.2f} s is required",
                duration_s=duration_s,
                minimum_s=min_duration_s,
            )
        if self.peak < SILENCE_PEAK:
            peak = self.peak
            what = "all samples are exactly zero" if peak == 0.0 else f"the peak amplitude is {peak:.1e}"
            raise SilentAudioError(
                f"the audio is digitally silent ({what}, {duration_s:.2f} s): there is nothing to judge"
            )


# ----------------------------------------------------------------------------------------- sources
@contextmanager
def _open_source(source: str | os.PathLike | bytes | BinaryIO) -> Iterator[tuple[IO[bytes], str]]:
    """Yield a seekable binary file object positioned at 0 and a name for messages."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise EmptyMediaError("the uploaded data is empty (0 bytes); an audio or video file is required")
        yield io.BytesIO(data), "the uploaded data"
        return
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        label = f"'{path.name}'"
        try:
            if not path.exists():
                raise MediaNotFoundError(f"no such file: {path}")
            if not path.is_file():
                raise MediaNotFoundError(f"{path} is not a regular file (a directory?); a media file is required")
            size = path.stat().st_size
            fh: IO[bytes] = open(path, "rb")  # closed by the ``with`` below
        except MediaProcessingError:
            raise
        except OSError as exc:
            raise MediaNotFoundError(f"cannot open {path}: {exc.strerror or exc}") from exc
        with fh:
            if size == 0:
                raise EmptyMediaError(f"{label} is empty (0 bytes); an audio or video file is required")
            yield fh, label
        return
    if hasattr(source, "read"):
        label = "the uploaded file"
        fh = source
        try:
            seekable = bool(getattr(fh, "seekable", lambda: False)())
            if seekable:
                fh.seek(0)
            else:  # pipes, sockets: buffer the stream to be able to probe and seek
                fh = io.BytesIO(fh.read())
            head = fh.read(1)
            fh.seek(0)
        except OSError as exc:
            raise MediaNotFoundError(f"cannot read {label}: {exc}") from exc
        if not isinstance(head, bytes | bytearray):
            raise TypeError("load_audio needs a binary file object (opened with 'rb'), not a text stream")
        if not head:
            raise EmptyMediaError(f"{label} is empty (0 bytes); an audio or video file is required")
        yield fh, label
        return
    raise TypeError(f"load_audio takes a path, bytes or a binary file object, not {type(source).__name__}")


# ----------------------------------------------------------------------------------------- public
def stream_audio(
    source: str | os.PathLike | bytes | BinaryIO,
    consumer: BlockConsumer,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_duration_s: float = MAX_DURATION_S,
    min_duration_s: float = 0.0,
) -> AudioInfo:
    """Decode an audio or video file to mono float32 at ``sample_rate``, handing it to ``consumer`` as it goes.

    The format is identified from the content, not the file name. Channels are averaged, the
    signal is resampled with soxr (quality "HQ") while decoding, and decoding stops as soon as more
    than ``max_duration_s`` of audio has come out. A file that ends before its header says (or
    whose later part is damaged) is decoded as far as it goes, with a notice in ``warnings``.
    The signal goes to ``consumer.push`` in blocks (each resampled from about 65536 decoded frames),
    in order; no more than a few blocks are held here. If libsndfile fails part-way through a file and FFmpeg
    decodes it again from the start, ``consumer.restart()`` is called first. Once a sample is
    invalid (NaN or infinite) nothing more is pushed (the call ends in :class:`NonFiniteAudioError`).
    The checks of :func:`validate_audio` are made at the end, on the whole signal; an exception
    raised by the consumer ends the decoding and propagates unchanged.

    Parameters
    ----------
    source : str, os.PathLike, bytes or binary file object
        A path, the file's bytes, or an open binary file (read from its start; it is not closed).
    consumer : BlockConsumer
        Receives the blocks (``push``) and restarts (``restart``).
    sample_rate : int
        Output sample rate in Hz.
    max_duration_s : float
        Longest audio accepted, in seconds.
    min_duration_s : float
        Shortest audio accepted, in seconds.

    Returns
    -------
    AudioInfo

    Raises
    ------
    MediaNotFoundError
        The path does not exist or is not a regular file.
    EmptyMediaError
        The file has zero bytes.
    NotAudioError
        The data is not a media container we recognise, or it has no audio stream.
    UndecodableMediaError
        The container was recognised but its audio could not be decoded.
    TooLongError
        More than ``max_duration_s`` of audio.
    NonFiniteAudioError, TooShortError, SilentAudioError
        See :func:`validate_audio`.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not max_duration_s > 0:
        raise ValueError(f"max_duration_s must be positive, got {max_duration_s}")
    check = _SignalCheck()
    with _open_source(source) as (fh, label):
        blocks = decode(fh, label, sample_rate, max_duration_s)
        try:
            while True:
                try:
                    block = next(blocks)
                except StopIteration as stop:
                    result = stop.value
                    break
                except MediaProcessingError:
                    raise
                except OSError as exc:
                    raise UndecodableMediaError(f"reading {label} failed: {exc}") from exc
                except MemoryError as exc:
                    raise UndecodableMediaError(f"{label} could not be decoded: out of memory") from exc
                except Exception as exc:  # a library failed in a way we did not foresee: still a media error
                    logger.debug("unexpected decoder failure", exc_info=True)
                    raise UndecodableMediaError(
                        f"{label} could not be decoded ({type(exc).__name__}: {exc}); the file is probably damaged"
                    ) from exc
                # the consumer runs outside the decoder's error handling: its exceptions are its own
                if isinstance(block, Restart):
                    check = _SignalCheck()
                    consumer.restart()
                elif check.update(block):
                    consumer.push(block)
        finally:
            blocks.close()
    warnings = tuple(result.warnings)
    for w in warnings:
        logger.info("%s: %s", label, w)
    try:
        check.raise_if_invalid(sample_rate=sample_rate, min_duration_s=min_duration_s)
    except TooShortError as exc:
        if warnings:
            exc.args = (f"{exc.args[0]} ({'; '.join(warnings)})",)
        raise
    info = AudioInfo(
        sample_rate=sample_rate,
        original_sample_rate=int(result.original_rate),
        channels=int(result.channels),
        format=result.format,
        duration_s=check.n / sample_rate,
        warnings=warnings,
    )
    logger.debug(
        "decoded %s: %s, %d Hz x %d ch -> %.2f s at %d Hz",
        label,
        info.format,
        info.original_sample_rate,
        info.channels,
        info.duration_s,
        sample_rate,
    )
    return info


class _Collector:
    """A :class:`BlockConsumer` that keeps every block (for :func:`load_audio`)."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []

    def push(self, block: np.ndarray) -> None:
        self.blocks.append(block)

    def restart(self) -> None:
        self.blocks.clear()


def load_audio(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_duration_s: float = MAX_DURATION_S,
    min_duration_s: float = 0.0,
) -> DecodedAudio:
    """Decode an audio or video file to mono float32 at ``sample_rate``: the whole signal at once.

    :func:`stream_audio` with every block kept: the same decoding, checks and errors (see there).
    The analysis itself streams; this is for callers that want the signal as one array (memory:
    4 bytes per sample, 230 MB per hour at 16 kHz).

    Parameters
    ----------
    source : str, os.PathLike, bytes or binary file object
        A path, the file's bytes, or an open binary file (read from its start; it is not closed).
    sample_rate : int
        Output sample rate in Hz.
    max_duration_s : float
        Longest audio accepted, in seconds.
    min_duration_s : float
        Shortest audio accepted, in seconds.

    Returns
    -------
    DecodedAudio

    Raises
    ------
    MediaProcessingError
        As :func:`stream_audio`.
    """
    collector = _Collector()
    info = stream_audio(
        source, collector, sample_rate=sample_rate, max_duration_s=max_duration_s, min_duration_s=min_duration_s
    )
    blocks = collector.blocks
    samples = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    collector.blocks = []
    return DecodedAudio(
        samples=samples,
        sample_rate=info.sample_rate,
        original_sample_rate=info.original_sample_rate,
        channels=info.channels,
        format=info.format,
        duration_s=info.duration_s,
        warnings=info.warnings,
    )
