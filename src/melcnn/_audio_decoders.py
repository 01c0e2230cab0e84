"""The two decoders behind :func:`melcnn.audio.load_audio`, libsndfile and FFmpeg, and the choice
between them.

WAV (integer and float PCM, ``WAVE_FORMAT_EXTENSIBLE``, RF64, W64), AIFF and OGG Vorbis go
through libsndfile (:mod:`soundfile`); FLAC, MP3, AAC/M4A, Opus, and the audio track (the first
one) of video containers (MP4, MOV, Matroska, WebM, AVI, ...) through FFmpeg as bundled in PyAV
(:mod:`av`). FLAC goes to FFmpeg because its decoder is faster and stops cleanly where a file is
cut; whatever libsndfile refuses or fails on part-way is decoded again by FFmpeg. Which one a file
goes to is decided by :func:`melcnn._audio_sniff.sniff`.

Both are used incrementally: blocks of samples go to a :class:`melcnn._audio_sink.MonoSink` as
they are decoded, and :func:`decode` yields the sink's mono blocks as soon as they are resampled, so
nothing here holds more than a few blocks of a file. A file that ends before its header says (or
whose later part is damaged) is decoded as far as it goes, with a notice.

FFmpeg always reads through a Python file object (never a path or URL, so no protocol or playlist
tricks). FFmpeg's log output stays off (PyAV's default), and libsndfile's read errors are caught,
so decoding prints nothing. soundfile and av are imported on first use.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Generator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ._audio_sink import RESAMPLE_BLOCK, MonoSink, fmt_duration
from ._audio_sniff import Probe, announced_frames_aiff, announced_frames_wav, sniff
from .errors import NotAudioError, UndecodableMediaError

logger = logging.getLogger(__name__)

_SF_BLOCK_FRAMES = 65536  # frames per soundfile read
_MAX_CONSECUTIVE_ERRORS = 200  # damaged packets in a row before giving up on the rest
# The decoded audio may fall short of the announced duration by this much without a warning
# (encoder delay/padding of lossy codecs, rounding of container durations).
_SHORTFALL_TOLERANCE_S = 0.2
_SHORTFALL_TOLERANCE_REL = 0.02
_LOSSLESS_TOLERANCE_S = 0.01  # lossless streams decode to exactly the announced length
_LOSSLESS_CODECS = frozenset({"flac", "alac", "wavpack", "tta", "ape", "mlp", "truehd", "wmalossless"})


# ------------------------------------------------------------------------------ choice of decoder
class Restart:
    """Yielded by :func:`decode` when it starts over with the other decoder: forget the blocks so far."""


RESTART = Restart()

#: what :func:`decode` yields: mono float32 blocks at the asked rate, or :data:`RESTART`
Blocks = Generator["np.ndarray | Restart", None, "_Result"]


def decode(fh: IO[bytes], label: str, sample_rate: int, max_duration_s: float) -> Blocks:
    """Decode the audio of ``fh`` with the decoder its content calls for.

    A generator: it yields the mono signal at ``sample_rate`` block by block (float32 arrays) as it is
    decoded, and returns the :class:`_Result` (format, rates, warnings). When libsndfile fails part-way
    and FFmpeg decodes the file again from the start, it yields :data:`RESTART` first.
    """
    probe = sniff(fh)
    if probe.decoder == "text":
        raise NotAudioError(f"{label} is a text file, not audio; an audio or video file is required")
    if probe.decoder == "sf":
        try:
            return (yield from _decode_soundfile(fh, probe, MonoSink(sample_rate, max_duration_s), label))
        except (_SoundfileOpenError, _SoundfileReadError) as exc:
            # libsndfile does not know this codec inside the container (e.g. MP3-in-WAV), or failed
            # at a damaged spot: FFmpeg decodes the container again from the start
            logger.debug("libsndfile failed on %s (%s); trying FFmpeg", label, exc)
            if isinstance(exc, _SoundfileReadError) and exc.seconds_decoded > 0:
                yield RESTART
            try:
                result = yield from _decode_pyav(fh, probe, MonoSink(sample_rate, max_duration_s), label)
            except (UndecodableMediaError, NotAudioError) as exc2:
                raise UndecodableMediaError(
                    f"{label} looks like {probe.container.upper()} but cannot be decoded ({exc}); "
                    "the file is probably damaged or uses an unsupported codec"
                ) from exc2
            return result
    return (yield from _decode_pyav(fh, probe, MonoSink(sample_rate, max_duration_s), label))


# ------------------------------------------------------------------------------- header shortfall
def _shortfall_warning(
    decoded_s: float, announced_s: float | None, *, lossless: bool, reached_end: bool = False
) -> str | None:
    """A notice when less audio came out than the header announced, beyond codec rounding.

    ``reached_end`` says the last decoded frame was stamped at the announced end, so the missing
    audio was lost in the middle rather than at a cut.
    """
    if announced_s is None or not np.isfinite(announced_s) or announced_s <= 0:
        return None
    if lossless:
        tolerance = _LOSSLESS_TOLERANCE_S + 1e-4 * announced_s
    else:
        tolerance = max(_SHORTFALL_TOLERANCE_S, _SHORTFALL_TOLERANCE_REL * announced_s)
    if announced_s - decoded_s <= tolerance:
        return None
    what = "parts of the audio could not be decoded" if reached_end else "the file ends early"
    return f"{what}: decoded {fmt_duration(decoded_s)} of audio; the header announced {fmt_duration(announced_s)}"


def _is_lossless(codec: str) -> bool:
    return codec.startswith("pcm_") or codec in _LOSSLESS_CODECS


# ------------------------------------------------------------------------------ libsndfile decoder
_SF_CODECS = {
    "PCM_U8": "pcm_u8",
    "PCM_S8": "pcm_s8",
    "PCM_16": "pcm_s16",
    "PCM_24": "pcm_s24",
    "PCM_32": "pcm_s32",
    "FLOAT": "pcm_f32",
    "DOUBLE": "pcm_f64",
    "ULAW": "pcm_mulaw",
    "ALAW": "pcm_alaw",
    "IMA_ADPCM": "adpcm_ima",
    "MS_ADPCM": "adpcm_ms",
    "GSM610": "gsm",
}


@dataclass
class _Result:
    original_rate: int
    channels: int
    format: str
    warnings: list[str]


def _decode_soundfile(fh: IO[bytes], probe: Probe, sink: MonoSink, label: str) -> Blocks:
    import soundfile as sf

    # read our own view of the header first: libsndfile must own the file position once open
    announced = None
    if probe.container == "wav":
        announced = announced_frames_wav(fh)
    elif probe.container == "aiff":
        announced = announced_frames_aiff(fh)
    fh.seek(0)
    # libsndfile reads through a Python callback that cannot raise: an I/O error there would be
    # printed and taken for the end of the file. The guard records it so that we can report it.
    guarded = _GuardedReader(fh)
    try:
        snd = sf.SoundFile(guarded)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        if guarded.error is not None:
            raise guarded.error from exc
        raise _SoundfileOpenError(_sf_reason(exc)) from exc
    warnings: list[str] = []
    with snd:
        rate, channels = int(snd.samplerate), int(snd.channels)
        if channels < 1:
            raise UndecodableMediaError(f"{label} declares {channels} audio channels")
        codec = _SF_CODECS.get(snd.subtype, snd.subtype.lower())
        if probe.container == "flac":
            fmt = "flac"
        elif probe.container == "ogg":
            fmt = f"ogg/{probe.detail or snd.subtype.lower()}"
        else:
            if codec[:5] in ("pcm_s", "pcm_f") and codec[-2:] in ("16", "24", "32", "64"):
                codec += "be" if probe.detail == "big-endian" or snd.endian == "BIG" else "le"
            fmt = f"{probe.container}/{codec}"
        if announced is None and 0 < snd.frames < 2**62 and probe.container not in ("ogg",):
            announced = snd.frames
        sink.set_rate(rate)
        while True:
            try:
                block = snd.read(_SF_BLOCK_FRAMES, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                # libsndfile fails a whole block at a damaged spot; FFmpeg decodes up to it
                raise _SoundfileReadError(_sf_reason(exc), sink.seconds_in) from exc
            if block.shape[0] == 0:
                break
            sink.push(list(block.T))
            yield from sink.take()
    if announced is not None:
        w = _shortfall_warning(sink.seconds_in, announced / rate, lossless=_is_lossless(codec))
        if w:
            warnings.append(w)
    if guarded.error is not None:
        raise guarded.error
    sink.close()
    yield from sink.take()
    return _Result(rate, channels, fmt, warnings)


class _GuardedReader:
    """File-object proxy for libsndfile's virtual I/O that records read errors instead of raising."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def read(self, n: int = -1) -> bytes:
        try:
            return self._fh.read(n)
        except OSError as exc:
            self.error = self.error or exc
            return b""

    def readinto(self, buf: Any) -> int:
        try:
            return self._fh.readinto(buf)  # type: ignore[attr-defined]
        except AttributeError:
            data = self.read(len(buf))
            buf[: len(data)] = data
            return len(data)
        except OSError as exc:
            self.error = self.error or exc
            return 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


def _sf_reason(exc: BaseException) -> str:
    """libsndfile's own words, without soundfile's "Error opening <file object>:" prefix."""
    return str(getattr(exc, "error_string", None) or exc).strip()


class _SoundfileOpenError(Exception):
    """libsndfile refused the file; the caller may try FFmpeg instead."""


class _SoundfileReadError(Exception):
    """libsndfile failed part-way; the caller decodes again with FFmpeg."""

    def __init__(self, message: str, seconds_decoded: float) -> None:
        super().__init__(message)
        self.seconds_decoded = seconds_decoded


# ---------------------------------------------------------------------------------- FFmpeg decoder
_NON_AUDIO_DEMUXERS = ("image2", "_pipe", "tty", "srt", "ass", "webvtt", "lrc", "hls", "dash", "concat")
_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


_AV_SAMPLE_FORMATS = frozenset({"flt", "dbl", "u8", "s16", "s32", "s64"})  # each also as planar "...p"


def _frame_channels(frame: Any) -> list[np.ndarray]:
    """The samples of a decoded PyAV audio frame as float32 arrays, one per channel."""
    name = frame.format.name
    base = name.rstrip("p")
    if base not in _AV_SAMPLE_FORMATS:
        raise UndecodableMediaError(f"the decoder produced an unsupported sample format ({name})")
    arr = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels)
    if not frame.format.is_planar:
        nch = max(frame.layout.nb_channels, 1)
        arr = arr.reshape(-1, nch).T
    if base in ("flt", "dbl"):
        return [row.astype(np.float32, copy=False) for row in arr]
    out = []
    for row in arr:
        x = row.astype(np.float32)
        if base == "u8":
            x -= 128.0
        x *= np.float32(1.0 / _INT_SCALE[base])
        out.append(x)
    return out


def _decode_pyav(fh: IO[bytes], probe: Probe, sink: MonoSink, label: str) -> Blocks:
    import av

    if av.logging.get_level() is None:
        av.logging.set_level(None)  # make sure FFmpeg's own messages stay silent
    fh.seek(0)
    try:
        container = av.open(fh, mode="r", format=probe.av_format, metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
        if probe.decoder == "probe":
            raise NotAudioError(
                f"{label} is not an audio or video file in any format we can read; "
                "an audio file (WAV, FLAC, MP3, OGG, Opus, M4A/AAC, AIFF) or a video with sound is required"
            ) from exc
        raise UndecodableMediaError(
            f"{label} looks like {probe.container.upper()} but cannot be read ({_av_reason(exc)}); "
            "the file is probably damaged or incomplete"
        ) from exc
    warnings: list[str] = []
    with container:
        demuxer = container.format.name
        if probe.decoder == "probe" and any(tag in demuxer for tag in _NON_AUDIO_DEMUXERS):
            raise NotAudioError(f"{label} is not audio (it was read as '{demuxer}'); an audio file is required")
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams})
            found = f"it only has {', '.join(kinds)} streams" if kinds else "it has no streams"
            raise NotAudioError(f"{label} has no audio track ({found}); a file with sound is required")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        codec = getattr(ctx.codec, "canonical_name", None) or ctx.name
        container_label = probe.container if probe.decoder != "probe" else demuxer.split(",")[0]
        fmt = codec if container_label == codec else f"{container_label}/{codec}"
        announced_s = None
        if stream.duration and stream.time_base:
            announced_s = float(stream.duration * stream.time_base)
        elif container.duration:
            announced_s = container.duration / 1_000_000
        channels = ctx.layout.nb_channels if ctx.layout else 0
        original_rate = int(ctx.sample_rate or 0)
        errors_in_row = skipped = 0
        stop_reason = None
        tb = float(stream.time_base) if stream.time_base else 0.0
        start_s = stream.start_time * tb if stream.start_time is not None else 0.0
        last_end_s = None  # stream time at the end of the last decoded frame
        # Codec frames are small (1152 samples for MP3, 960 for Opus): gather them in an FFmpeg FIFO
        # and convert ~RESAMPLE_BLOCK samples at a time, which keeps the Python work per frame tiny.
        fifo = av.AudioFifo()

        def drain() -> None:
            nonlocal channels, original_rate
            if fifo.samples:
                big = fifo.read()
                assert big is not None  # read() returns None only from an empty FIFO
                original_rate = original_rate or int(big.sample_rate)
                sink.set_rate(int(big.sample_rate))
                chans = _frame_channels(big)
                channels = channels or len(chans)
                sink.push(chans)

        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except (av.InvalidDataError, av.error.PatchWelcomeError, ValueError) as exc:
                    skipped += 1
                    errors_in_row += 1
                    if errors_in_row > _MAX_CONSECUTIVE_ERRORS:
                        stop_reason = f"too many damaged packets ({_av_reason(exc)})"
                        break
                    continue
                if frames:  # (the final flush packet decodes to nothing and does not count)
                    errors_in_row = 0
                for frame in frames:
                    if frame.pts is not None and tb:
                        last_end_s = frame.pts * tb + frame.samples / frame.sample_rate
                    frame.pts = None  # the FIFO only takes frames without timestamps
                    try:
                        fifo.write(frame)
                    except ValueError:  # sample format, layout or rate changed mid-stream
                        drain()
                        fifo = av.AudioFifo()
                        fifo.write(frame)
                    if fifo.samples >= RESAMPLE_BLOCK:
                        drain()
                    yield from sink.take()
        except av.FFmpegError as exc:
            stop_reason = _av_reason(exc)
        drain()
        yield from sink.take()
        if sink.seconds_in == 0:
            why = stop_reason or (f"{skipped} damaged packets" if skipped else "no audio data found")
            raise UndecodableMediaError(
                f"{label} looks like {fmt} but none of its audio could be decoded ({why}); "
                "the file is probably damaged or incomplete"
            )
        reached_end = (
            last_end_s is not None
            and announced_s is not None
            and last_end_s - start_s >= announced_s - _SHORTFALL_TOLERANCE_S
        )
        shortfall = _shortfall_warning(
            sink.seconds_in, announced_s, lossless=_is_lossless(codec), reached_end=reached_end
        )
        if stop_reason:
            warnings.append(f"decoding stopped at {fmt_duration(sink.seconds_in)}: {stop_reason}")
        else:
            # errors right before the end are the cut-off last packet of a truncated file: no notice
            damaged = skipped - errors_in_row
            if damaged:
                warnings.append(f"{damaged} damaged audio packet{'s were' if damaged > 1 else ' was'} skipped")
            if shortfall:
                warnings.append(shortfall)
        sink.close()
        yield from sink.take()
    return _Result(original_rate or sink.in_rate, channels or 1, fmt, warnings)


def _av_reason(exc: BaseException) -> str:
    msg = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(msg).strip()
