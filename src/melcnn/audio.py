"""Decode any common audio or video file to mono float32 at the pipeline's sample rate.

The container is identified by its content (magic bytes, then FFmpeg's prober), never by the file
name. WAV (integer and float PCM, ``WAVE_FORMAT_EXTENSIBLE``, RF64, W64), AIFF and OGG Vorbis go
through libsndfile (:mod:`soundfile`); FLAC, MP3, AAC/M4A, Opus, and the audio track (the first
one) of video containers (MP4, MOV, Matroska, WebM, AVI, ...) through FFmpeg as bundled in PyAV
(:mod:`av`). FLAC goes to FFmpeg because its decoder is faster and stops cleanly where a file is
cut; whatever libsndfile refuses or fails on part-way is decoded again by FFmpeg.

Both are used incrementally: blocks of samples are averaged to mono, checked, and fed to a streaming
:mod:`soxr` resampler, so memory grows with the audio actually decoded, never with what a header
claims, and ``max_duration_s`` is enforced while decoding.

FFmpeg always reads through a Python file object (never a path or URL, so no protocol or playlist
tricks), and text files are refused before FFmpeg's prober sees them. FFmpeg's log output stays
off (PyAV's default), and libsndfile's read errors are caught, so decoding prints nothing.

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
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from .config import MAX_DURATION_S, SAMPLE_RATE
from .errors import (
    EmptyMediaError,
    MediaNotFoundError,
    MediaProcessingError,
    NonFiniteAudioError,
    NotAudioError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    UndecodableMediaError,
)

logger = logging.getLogger(__name__)

#: Peak absolute amplitude below which decoded audio counts as digital silence (see module doc).
SILENCE_PEAK = 1e-7
#: soxr quality recipe used for every resampling.
RESAMPLE_QUALITY = "HQ"

_SNIFF_BYTES = 4096
_SF_BLOCK_FRAMES = 65536  # frames per soundfile read
_RESAMPLE_BLOCK = 65536  # mono samples gathered before each soxr call
_MAX_CONSECUTIVE_ERRORS = 200  # damaged packets in a row before giving up on the rest
# The decoded audio may fall short of the announced duration by this much without a warning
# (encoder delay/padding of lossy codecs, rounding of container durations).
_SHORTFALL_TOLERANCE_S = 0.2
_SHORTFALL_TOLERANCE_REL = 0.02
_LOSSLESS_TOLERANCE_S = 0.01  # lossless streams decode to exactly the announced length
_LOSSLESS_CODECS = frozenset({"flac", "alac", "wavpack", "tta", "ape", "mlp", "truehd", "wmalossless"})


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
    samples = np.asarray(samples)
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(samples.size - np.count_nonzero(finite))
        first = int(np.argmin(finite.ravel())) / sample_rate
        raise NonFiniteAudioError(
            f"the audio contains {bad} invalid samples (NaN or infinity), the first at {first:.2f} s; "
            "every sample must be a finite number. The file is probably corrupt: re-export it."
        )
    duration_s = samples.size / sample_rate
    if samples.size == 0:
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
    peak = float(np.max(np.abs(samples)))
    if peak < SILENCE_PEAK:
        what = "all samples are exactly zero" if peak == 0.0 else f"the peak amplitude is {peak:.1e}"
        raise SilentAudioError(f"the audio is digitally silent ({what}, {duration_s:.2f} s): there is nothing to judge")


# --------------------------------------------------------------------------------- resampling sink
class _MonoSink:
    """Receives decoded blocks: mixes them to mono, checks them, counts duration, resamples them.

    Blocks arrive channel-first, as a list of 1-D float32 arrays (one per channel, all the same
    length; views are fine as long as the caller does not reuse their memory). They are gathered
    until about ``_RESAMPLE_BLOCK`` frames are pending, so the per-block numpy and soxr overhead is
    paid once per batch, not once per codec frame.
    """

    def __init__(self, out_rate: int, max_duration_s: float) -> None:
        self.out_rate = out_rate
        self.max_duration_s = max_duration_s
        self.seconds_in = 0.0  # decoded duration so far
        self.in_rate = 0
        self._frames_at_rate = 0  # frames decoded at the current in_rate
        self._seconds_before = 0.0  # duration decoded at earlier rates
        self._flushed_s = 0.0  # duration already mixed and checked
        self._stream: Any = None
        self._pending: list[list[np.ndarray]] = []
        self._pending_n = 0
        self._out: list[np.ndarray] = []

    def set_rate(self, rate: int) -> None:
        """Start (or switch to) input at ``rate`` Hz; a switch flushes the previous resampler."""
        if rate == self.in_rate:
            return
        if rate <= 0:
            raise UndecodableMediaError(f"the audio stream reports an invalid sample rate ({rate} Hz)")
        if self.in_rate:
            self._flush(last=True)
            self._seconds_before += self._frames_at_rate / self.in_rate
            self._frames_at_rate = 0
        self.in_rate = rate
        if rate == self.out_rate:
            self._stream = None
        else:
            import soxr

            self._stream = soxr.ResampleStream(rate, self.out_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)

    def push(self, channels: list[np.ndarray]) -> None:
        """Add one block (a list of per-channel float32 arrays) at the current input rate."""
        n = channels[0].size
        if n == 0:
            return
        self._frames_at_rate += n
        self.seconds_in = self._seconds_before + self._frames_at_rate / self.in_rate
        if self.seconds_in > self.max_duration_s:
            raise TooLongError(
                f"the audio is longer than the limit of {_fmt_duration(self.max_duration_s)} "
                f"(decoding stopped after {_fmt_duration(self.seconds_in)}); shorten the recording or "
                "raise the limit ({setting}) to analyse it",  # TooLongError fills in the setting's name
                limit_s=self.max_duration_s,
            )
        self._pending.append(channels)
        self._pending_n += n
        if self._pending_n >= _RESAMPLE_BLOCK:
            self._flush(last=False)

    def _mix(self) -> np.ndarray:
        """Mean of channels over all pending blocks, as one contiguous float32 array."""
        blocks = self._pending
        nch = max(len(b) for b in blocks)
        if any(len(b) != nch for b in blocks):  # the channel layout changed mid-stream
            blocks = [[_mean_of(b)] for b in blocks]
            nch = 1
        if nch == 1:
            return np.concatenate([b[0] for b in blocks]) if len(blocks) > 1 else np.array(blocks[0][0])
        return _mean_of([np.concatenate([b[c] for b in blocks]) for c in range(nch)])

    def _flush(self, last: bool) -> None:
        if self._pending_n:
            mono = self._mix()
            self._pending, self._pending_n = [], 0
            finite = np.isfinite(mono)
            if not finite.all():
                at = self._flushed_s + int(np.argmin(finite)) / self.in_rate
                raise NonFiniteAudioError(
                    f"the audio contains invalid samples (NaN or infinity), the first at {at:.2f} s; "
                    "every sample must be a finite number. The file is probably corrupt: re-export it."
                )
            self._flushed_s += mono.size / self.in_rate
        elif last and self._stream is not None:
            mono = np.zeros(0, np.float32)
        else:
            return
        out = mono if self._stream is None else self._stream.resample_chunk(mono, last=last)
        if out.size:
            self._out.append(out)

    def finish(self) -> np.ndarray:
        """Flush the resampler and return the whole mono signal at ``out_rate``."""
        if self.in_rate:
            self._flush(last=True)
        if not self._out:
            return np.zeros(0, np.float32)
        return self._out[0] if len(self._out) == 1 else np.concatenate(self._out)


def _mean_of(channels: list[np.ndarray]) -> np.ndarray:
    """Element-wise mean of equally long 1-D arrays, as a new contiguous float32 array."""
    acc = np.array(channels[0], dtype=np.float32)  # copies
    for ch in channels[1:]:
        acc += ch
    if len(channels) > 1:
        acc *= np.float32(1.0 / len(channels))
    return acc


def _fmt_duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds:.1f} s ({seconds / 3600:.1f} h)"
    if seconds >= 120:
        return f"{seconds:.1f} s ({seconds / 60:.1f} min)"
    return f"{seconds:.1f} s"


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
            fh = open(path, "rb")  # closed by the ``with`` below
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


# ---------------------------------------------------------------------------------------- sniffing
@dataclass(frozen=True)
class _Probe:
    decoder: str  # "sf" (libsndfile), "av" (FFmpeg with av_format), "probe" (let FFmpeg guess)
    container: str  # our label of the container ("wav", "aiff", "flac", "ogg", "mp3", "mp4", ...)
    av_format: str | None = None  # FFmpeg demuxer to force
    detail: str = ""  # what the magic said, for messages


_MPEG_BITRATES = {  # kbit/s by (version is MPEG-1, layer) ; index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame_len(h: bytes) -> int | None:
    """Length in bytes of the MPEG audio frame whose 4-byte header is ``h``, or None if invalid."""
    if len(h) < 4 or h[0] != 0xFF or (h[1] & 0xE0) != 0xE0:
        return None
    version = (h[1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
    layer = 4 - ((h[1] >> 1) & 3)  # 1..3; 4 means reserved
    br_idx, sr_idx, pad = h[2] >> 4, (h[2] >> 2) & 3, (h[2] >> 1) & 1
    if version == 1 or layer == 4 or br_idx in (0, 15) or sr_idx == 3:
        return None
    mpeg1 = version == 3
    bitrate = _MPEG_BITRATES[(mpeg1, 1 if layer == 1 else (layer if mpeg1 else 2))][br_idx - 1] * 1000
    rate = _MPEG_RATES[version][sr_idx]
    if layer == 1:
        return (12 * bitrate // rate + pad) * 4
    return (144 if (layer == 2 or mpeg1) else 72) * bitrate // rate + pad


def _is_adts(h: bytes) -> bool:
    return len(h) >= 7 and h[0] == 0xFF and (h[1] & 0xF6) == 0xF0 and ((h[2] >> 2) & 0xF) < 13


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # only tolerate a character cut at the end
            return False
        text = head[: exc.start].decode("utf-8")
    if not text:
        return False
    return all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text)


def _sniff(fh: IO[bytes]) -> _Probe:
    """Identify the container from the first bytes of ``fh`` (which is left at position 0)."""
    fh.seek(0)
    head = fh.read(_SNIFF_BYTES)
    fh.seek(0)
    four, form = head[:4], head[8:12]
    if four in (b"RIFF", b"RIFX") and form == b"WAVE":
        return _Probe("sf", "wav", "wav", "big-endian" if four == b"RIFX" else "")
    if four in (b"RF64", b"BW64") and form == b"WAVE":
        return _Probe("sf", "rf64", "wav")
    if head[:16] == b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00":
        return _Probe("sf", "w64", "w64")
    if four == b"FORM" and form in (b"AIFF", b"AIFC"):
        sowt = form == b"AIFC" and b"sowt" in head[12:128]  # little-endian AIFF-C
        return _Probe("sf", "aiff", "aiff", "" if sowt else "big-endian")
    if four == b"fLaC":  # FFmpeg's FLAC decoder is faster than libsndfile's and stops cleanly at a cut
        return _Probe("av", "flac", "flac")
    if four == b"OggS":
        return _sniff_ogg(head)
    if four == b"caff":
        return _Probe("sf", "caf", "caf")
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"):
        brand = head[8:12] if head[4:8] == b"ftyp" else b""
        container = "mov" if brand == b"qt  " or head[4:8] in (b"wide", b"pnot") else "mp4"
        if brand.startswith(b"3g"):
            container = "3gp"
        return _Probe("av", container, "mov", brand.decode("latin-1").strip())
    if four == b"\x1a\x45\xdf\xa3":
        doctype = _ebml_doctype(head)
        return _Probe("av", "webm" if doctype == "webm" else "matroska", "matroska", doctype)
    if head[:3] == b"ID3" and len(head) >= 10:
        size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
        fh.seek(10 + size + (10 if head[5] & 0x10 else 0))
        after = fh.read(16)
        fh.seek(0)
        if after[:4] == b"fLaC":
            return _Probe("av", "flac", "flac", "ID3 tag")
        if _is_adts(after):
            return _Probe("av", "aac", "aac", "ID3 tag")
        return _Probe("av", "mp3", "mp3", "ID3 tag")
    if _is_adts(head):
        return _Probe("av", "aac", "aac")
    n = _mpeg_frame_len(head)
    if n is not None and _mpeg_frame_len(head[n : n + 4]) is not None:
        return _Probe("av", "mp3", "mp3")
    if four == b".snd":
        return _Probe("sf", "au", "au")
    if head[:5] == b"#!AMR":
        return _Probe("av", "amr", "amr")
    if _looks_like_text(head):
        return _Probe("text", "text")
    return _Probe("probe", "unknown")


def _sniff_ogg(head: bytes) -> _Probe:
    """Name the codec of the first logical stream of an OGG file from its first packet."""
    packet = b""
    if len(head) >= 27:
        nseg = head[26]
        packet = head[27 + nseg : 27 + nseg + 16]
    if packet.startswith(b"\x01vorbis"):
        return _Probe("sf", "ogg", "ogg", "vorbis")
    if packet.startswith(b"\x7fFLAC"):
        return _Probe("sf", "ogg", "ogg", "flac")
    if packet.startswith(b"OpusHead"):
        return _Probe("av", "ogg", "ogg", "opus")
    return _Probe("av", "ogg", "ogg", "")


def _ebml_doctype(head: bytes) -> str:
    """The EBML DocType string ("webm", "matroska") of a Matroska header, or ""."""
    pos = head.find(b"\x42\x82", 4, 64)
    if pos < 0 or pos + 3 > len(head):
        return ""
    size_byte = head[pos + 2]
    if not size_byte & 0x80:  # only the 1-byte size form occurs in practice
        return ""
    size = size_byte & 0x7F
    return head[pos + 3 : pos + 3 + size].decode("ascii", "replace").strip("\x00")


# ------------------------------------------------------------------------------- header durations
def _announced_frames_wav(fh: IO[bytes]) -> int | None:
    """Frames a RIFF/WAVE header announces in its ``data`` chunk (None if unknown)."""
    try:
        fh.seek(0)
        head = fh.read(12)
        if head[:4] not in (b"RIFF", b"RIFX"):
            return None
        endian = "<" if head[:4] == b"RIFF" else ">"
        block_align = 0
        for _ in range(1000):
            hdr = fh.read(8)
            if len(hdr) < 8:
                return None
            cid, size = hdr[:4], struct.unpack(endian + "I", hdr[4:])[0]
            if cid == b"fmt ":
                fmt = fh.read(min(size, 16))
                if len(fmt) >= 14:
                    block_align = struct.unpack(endian + "H", fmt[12:14])[0]
                fh.seek(size + (size & 1) - len(fmt), io.SEEK_CUR)
            elif cid == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                fh.seek(size + (size & 1), io.SEEK_CUR)
    except (OSError, struct.error, ValueError):
        return None
    finally:
        fh.seek(0)
    return None


def _announced_frames_aiff(fh: IO[bytes]) -> int | None:
    """Frames an AIFF ``COMM`` chunk announces (None if unknown)."""
    try:
        fh.seek(12)
        for _ in range(1000):
            hdr = fh.read(8)
            if len(hdr) < 8:
                return None
            cid, size = hdr[:4], struct.unpack(">I", hdr[4:])[0]
            if cid == b"COMM":
                comm = fh.read(6)
                return struct.unpack(">I", comm[2:6])[0] if len(comm) == 6 else None
            fh.seek(size + (size & 1), io.SEEK_CUR)
    except (OSError, struct.error, ValueError):
        return None
    finally:
        fh.seek(0)
    return None


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
    return f"{what}: decoded {_fmt_duration(decoded_s)} of audio; the header announced {_fmt_duration(announced_s)}"


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
    sink: _MonoSink
    original_rate: int
    channels: int
    format: str
    warnings: list[str]


def _decode_soundfile(fh: IO[bytes], probe: _Probe, sink: _MonoSink, label: str) -> _Result:
    import soundfile as sf

    # read our own view of the header first: libsndfile must own the file position once open
    announced = None
    if probe.container == "wav":
        announced = _announced_frames_wav(fh)
    elif probe.container == "aiff":
        announced = _announced_frames_aiff(fh)
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
    if announced is not None:
        w = _shortfall_warning(sink.seconds_in, announced / rate, lossless=_is_lossless(codec))
        if w:
            warnings.append(w)
    if guarded.error is not None:
        raise guarded.error
    return _Result(sink, rate, channels, fmt, warnings)


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


def _decode_pyav(fh: IO[bytes], probe: _Probe, sink: _MonoSink, label: str) -> _Result:
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
        # and convert ~_RESAMPLE_BLOCK samples at a time, which keeps the Python work per frame tiny.
        fifo = av.AudioFifo()

        def drain() -> None:
            nonlocal channels, original_rate
            if fifo.samples:
                big = fifo.read()
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
                    if fifo.samples >= _RESAMPLE_BLOCK:
                        drain()
        except av.FFmpegError as exc:
            stop_reason = _av_reason(exc)
        drain()
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
            warnings.append(f"decoding stopped at {_fmt_duration(sink.seconds_in)}: {stop_reason}")
        else:
            # errors right before the end are the cut-off last packet of a truncated file: no notice
            damaged = skipped - errors_in_row
            if damaged:
                warnings.append(f"{damaged} damaged audio packet{'s were' if damaged > 1 else ' was'} skipped")
            if shortfall:
                warnings.append(shortfall)
    return _Result(sink, original_rate or sink.in_rate, channels or 1, fmt, warnings)


def _av_reason(exc: BaseException) -> str:
    msg = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(msg).strip()


# ----------------------------------------------------------------------------------------- public
def load_audio(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_duration_s: float = MAX_DURATION_S,
    min_duration_s: float = 0.0,
) -> DecodedAudio:
    """Decode an audio or video file to mono float32 at ``sample_rate``.

    The format is identified from the content, not the file name. Channels are averaged, the
    signal is resampled with soxr (quality "HQ") while decoding, and decoding stops as soon as more
    than ``max_duration_s`` of audio has come out. A file that ends before its header says (or
    whose later part is damaged) is decoded as far as it goes, with a notice in ``warnings``.

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
    with _open_source(source) as (fh, label):
        try:
            result = _decode(fh, label, sample_rate, max_duration_s)
            samples = result.sink.finish()
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
    warnings = tuple(result.warnings)
    for w in warnings:
        logger.info("%s: %s", label, w)
    try:
        validate_audio(samples, sample_rate=sample_rate, min_duration_s=min_duration_s)
    except TooShortError as exc:
        if warnings:
            exc.args = (f"{exc.args[0]} ({'; '.join(warnings)})",)
        raise
    audio = DecodedAudio(
        samples=samples,
        sample_rate=sample_rate,
        original_sample_rate=int(result.original_rate),
        channels=int(result.channels),
        format=result.format,
        duration_s=samples.size / sample_rate,
        warnings=warnings,
    )
    logger.debug(
        "decoded %s: %s, %d Hz x %d ch -> %.2f s at %d Hz",
        label,
        audio.format,
        audio.original_sample_rate,
        audio.channels,
        audio.duration_s,
        sample_rate,
    )
    return audio


def _decode(fh: IO[bytes], label: str, sample_rate: int, max_duration_s: float) -> _Result:
    probe = _sniff(fh)
    if probe.decoder == "text":
        raise NotAudioError(f"{label} is a text file, not audio; an audio or video file is required")
    if probe.decoder == "sf":
        try:
            return _decode_soundfile(fh, probe, _MonoSink(sample_rate, max_duration_s), label)
        except (_SoundfileOpenError, _SoundfileReadError) as exc:
            # libsndfile does not know this codec inside the container (e.g. MP3-in-WAV), or failed
            # at a damaged spot: FFmpeg decodes the container again from the start
            logger.debug("libsndfile failed on %s (%s); trying FFmpeg", label, exc)
            try:
                result = _decode_pyav(fh, probe, _MonoSink(sample_rate, max_duration_s), label)
            except (UndecodableMediaError, NotAudioError) as exc2:
                raise UndecodableMediaError(
                    f"{label} looks like {probe.container.upper()} but cannot be decoded ({exc}); "
                    "the file is probably damaged or uses an unsupported codec"
                ) from exc2
            return result
    return _decode_pyav(fh, probe, _MonoSink(sample_rate, max_duration_s), label)
