"""Create real encoded media files for tests, at test time (no audio is committed).

Usage from any test module::

    from media_factory import KINDS, make_media, source_signal, speech_like

    path = make_media("mp3", tmp_path, seconds=3.0)
    reference = source_signal("mp3", seconds=3.0)  # (n, channels) float32 at KINDS["mp3"].sample_rate

Every kind in :data:`KINDS` is described by a :class:`MediaKind` (file suffix, sample rate and channel
count of the encoded audio, the ``format`` string :func:`melcnn.audio.load_audio` should report, and
whether the codec is lossy). Lossless and lossy audio is encoded with the libraries the package
already depends on: soundfile (libsndfile) for WAV/FLAC/AIFF/OGG Vorbis, PyAV (its bundled FFmpeg)
for MP3, AAC, Opus and the video containers. Broken inputs (truncated files, lying headers, text,
random bytes, ...) are derived from these.

The content is deterministic: ``make_media(kind, d, seconds=s, sr=r, channels=c, seed=k)`` encodes
``multichannel(s, r, c, k)`` (for mono kinds, ``speech_like(s, r, k)``), which tests can regenerate
with :func:`source_signal` to compare against the decoded audio.
"""

from __future__ import annotations

import functools
import logging
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaKind:
    """What :func:`make_media` writes for one kind.

    Attributes
    ----------
    name : str
        The kind, a key of :data:`KINDS`.
    suffix : str
        File name suffix written (deliberately wrong for the ``*_as_*`` kinds).
    sample_rate : int
        Default sample rate (Hz) of the encoded audio.
    channels : int
        Default channel count of the encoded audio.
    format : str | None
        The ``format`` string the decoder should report; None for inputs that must fail.
    lossy : bool
        True if the codec changes the waveform (compare with a tolerance).
    valid : bool
        True if the file should decode to the full signal without error or warning.
    description : str
        One line for humans.
    """

    name: str
    suffix: str
    sample_rate: int
    channels: int
    format: str | None
    lossy: bool
    valid: bool
    description: str


def _k(name, suffix, sr, ch, fmt, lossy, valid, description) -> tuple[str, MediaKind]:
    return name, MediaKind(name, suffix, sr, ch, fmt, lossy, valid, description)


#: Every kind :func:`make_media` can write, by name.
KINDS: dict[str, MediaKind] = dict(
    [
        # --- audio files that must decode completely
        _k("wav_u8", ".wav", 16000, 1, "wav/pcm_u8", False, True, "WAV 8-bit unsigned PCM"),
        _k("wav_s16", ".wav", 44100, 2, "wav/pcm_s16le", False, True, "WAV 16-bit PCM stereo"),
        _k("wav_s24", ".wav", 48000, 1, "wav/pcm_s24le", False, True, "WAV 24-bit PCM"),
        _k("wav_s32", ".wav", 22050, 1, "wav/pcm_s32le", False, True, "WAV 32-bit PCM"),
        _k("wav_f32", ".wav", 16000, 1, "wav/pcm_f32le", False, True, "WAV 32-bit float"),
        _k("wav_f64", ".wav", 8000, 1, "wav/pcm_f64le", False, True, "WAV 64-bit float"),
        _k("wav_extensible", ".wav", 32000, 2, "wav/pcm_s24le", False, True, "WAVE_FORMAT_EXTENSIBLE 24-bit"),
        _k("wav_8ch", ".wav", 48000, 8, "wav/pcm_s16le", False, True, "8-channel 48 kHz WAV (extensible)"),
        _k("clip_1s", ".wav", 16000, 1, "wav/pcm_s16le", False, True, "1 s WAV clip"),
        _k("aiff", ".aiff", 44100, 2, "aiff/pcm_s16be", False, True, "AIFF 16-bit stereo"),
        _k("flac", ".flac", 44100, 2, "flac", False, True, "FLAC 16-bit stereo"),
        _k("flac_96k_24", ".flac", 96000, 2, "flac", False, True, "FLAC 96 kHz 24-bit"),
        _k("ogg_vorbis", ".ogg", 44100, 2, "ogg/vorbis", True, True, "OGG Vorbis (libsndfile)"),
        _k("ogg_opus", ".opus", 48000, 2, "ogg/opus", True, True, "Opus in OGG (libopus)"),
        _k("webm_opus", ".webm", 48000, 2, "webm/opus", True, True, "Opus in WebM, audio only"),
        _k("mp3", ".mp3", 44100, 2, "mp3", True, True, "MP3 (LAME) with Xing header"),
        _k("m4a_aac", ".m4a", 44100, 2, "mp4/aac", True, True, "AAC-LC in an M4A (ISO-BMFF)"),
        _k("mp4_video", ".mp4", 44100, 2, "mp4/aac", True, True, "H.264 video + AAC audio in MP4"),
        _k("mov_video", ".mov", 48000, 2, "mov/aac", True, True, "MPEG-4 video + AAC audio in QuickTime"),
        _k("mkv_video", ".mkv", 48000, 2, "matroska/flac", False, True, "MPEG-4 video + FLAC audio in MKV"),
        _k("webm_video", ".webm", 48000, 1, "webm/opus", True, True, "VP8 video + Opus audio in WebM"),
        _k("mp4_two_audio", ".mp4", 44100, 1, "mp4/aac", True, True, "video + 2 AAC tracks (1st: 440 Hz)"),
        # --- right content, misleading file name
        _k("mp3_as_wav", ".wav", 44100, 2, "mp3", True, True, "an MP3 named .wav"),
        _k("flac_as_ogg", ".ogg", 44100, 2, "flac", False, True, "a FLAC named .ogg"),
        _k("m4a_as_mp3", ".mp3", 44100, 2, "mp4/aac", True, True, "an M4A named .mp3"),
        _k("wav_as_flac", ".flac", 16000, 1, "wav/pcm_s16le", False, True, "a WAV named .flac"),
        # --- damaged: decode what survives, with a warning
        _k("truncated_mp3", ".mp3", 44100, 2, "mp3", True, False, "MP3 cut at 40 % of its bytes"),
        _k("truncated_flac", ".flac", 44100, 1, "flac", False, False, "FLAC cut at 50 % of its bytes"),
        _k("truncated_m4a", ".m4a", 44100, 2, "mp4/aac", True, False, "faststart M4A cut at 50 %"),
        _k("m4a_no_moov", ".m4a", 44100, 2, None, True, False, "M4A cut at 50 %, index (moov) lost"),
        _k("wav_overclaim", ".wav", 16000, 1, "wav/pcm_s16le", False, False, "WAV header says 2.5x the data"),
        _k("wav_huge_header", ".wav", 16000, 1, "wav/pcm_u8", False, False, "claims 2**31 frames, has 1 s"),
        _k("flac_huge_header", ".flac", 16000, 1, "flac", False, False, "STREAMINFO claims 2**35 samples"),
        # --- must be refused
        _k("wav_nan", ".wav", 16000, 1, None, False, False, "float WAV containing NaN"),
        _k("wav_inf", ".wav", 16000, 1, None, False, False, "float WAV containing +Inf"),
        _k("wav_silent", ".wav", 16000, 1, None, False, False, "WAV of exact zeros"),
        _k("video_only_mp4", ".mp4", 0, 0, None, False, False, "H.264 video, no audio stream"),
        _k("text_as_wav", ".wav", 0, 0, None, False, False, "a text file named .wav"),
        _k("random_bytes", ".mp3", 0, 0, None, False, False, "64 KiB of random bytes named .mp3"),
        _k("empty", ".wav", 0, 0, None, False, False, "zero bytes"),
        _k("riff_garbage", ".wav", 0, 0, None, False, False, "RIFF/WAVE header followed by garbage"),
    ]
)

#: Kinds that decode to the complete source signal.
VALID_KINDS: tuple[str, ...] = tuple(k for k, v in KINDS.items() if v.valid)


# ----------------------------------------------------------------------------------------- signals
def speech_like(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """A deterministic voiced, speech-like test signal.

    A glottal-ish harmonic series (f0 gliding between about 100 and 220 Hz with 5.5 Hz vibrato)
    shaped by three moving formant resonances, amplitude-modulated at a syllable rate of about
    4 Hz, with short noise bursts ("fricatives") and a little background noise. Harmonics stop below
    ``min(7 kHz, 0.45 sr)`` so the signal is band-limited at every rate.

    Parameters
    ----------
    seconds : float
        Duration in seconds.
    sr : int
        Sample rate in Hz.
    seed : int
        Seed of the random parts (contour, formant trajectory, noise).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(round(seconds * sr),)``, peak about 0.5.
    """
    return _speech_like_cached(float(seconds), int(sr), int(seed)).copy()


@functools.lru_cache(maxsize=32)
def _speech_like_cached(seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr

    # smooth random contours from a few low-frequency sinusoids
    def contour(lo: float, hi: float, rate: float) -> np.ndarray:
        ph = rng.uniform(0, 2 * np.pi, 3)
        fr = rate * rng.uniform(0.5, 1.5, 3)
        c = sum(np.sin(2 * np.pi * f * t + p) for f, p in zip(fr, ph, strict=True)) / 3.0
        return lo + (hi - lo) * (c + 1.0) / 2.0

    f0 = contour(100.0, 220.0, 0.4) * (1.0 + 0.02 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formants = [contour(300, 800, 1.1), contour(900, 2200, 0.9), contour(2300, 3200, 0.7)]
    widths = [90.0, 120.0, 160.0]
    top = min(7000.0, 0.45 * sr)
    voiced = np.zeros(n)
    # formant gains vary slowly: evaluate them on a 2 ms grid and interpolate
    hop = max(1, sr // 500)
    tc = t[::hop]
    f0c = f0[::hop]
    fmc = [fm[::hop] for fm in formants]
    # sin(k phase) by the Chebyshev recurrence: cheaper than one sin() per harmonic
    two_cos = 2.0 * np.cos(phase)
    s_prev, s_k = np.zeros(n), np.sin(phase)
    for k in range(1, int(top / 100.0) + 1):
        fk = k * f0c
        gain = sum(np.exp(-(((fk - fm) / bw) ** 2)) for fm, bw in zip(fmc, widths, strict=True))
        gain = (gain + 0.02) / k**0.5 * np.clip((top - fk) / 200.0, 0.0, 1.0)
        if gain.max() > 1e-6:
            voiced += np.interp(t, tc, gain) * s_k
        s_prev, s_k = s_k, two_cos * s_k - s_prev
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi)) ** 2
    x = voiced * syllables
    # fricative-like bursts: high-passed (first difference) noise in a few windows
    noise = np.diff(rng.standard_normal(n + 1))
    burst_env = np.zeros(n)
    for start in rng.uniform(0, max(seconds - 0.15, 0.0), int(seconds * 1.5)):
        i0, i1 = int(start * sr), int((start + 0.12) * sr)
        burst_env[i0:i1] = np.hanning(max(i1 - i0, 1))[: max(0, min(i1, n) - i0)]
    x = x / (np.max(np.abs(x)) + 1e-12) * 0.45 + 0.08 * burst_env * noise
    x += 0.003 * rng.standard_normal(n)
    return (x / (np.max(np.abs(x)) + 1e-12) * 0.5).astype(np.float32)


def multichannel(seconds: float, sr: int, channels: int, seed: int = 0) -> np.ndarray:
    """The signal :func:`make_media` writes: ``(n, channels)`` float32.

    Channel 0 is ``speech_like(seconds, sr, seed)``; channel ``c > 0`` is the same signal at gain
    ``1 - 0.1 c`` plus a quiet channel-specific tone at ``(c + 1) * 250 Hz``, so a plain mean of
    channels differs measurably from any single channel.
    """
    base = speech_like(seconds, sr, seed)
    if channels == 1:
        return base[:, None]
    t = np.arange(base.size) / sr
    cols = [base]
    for c in range(1, channels):
        cols.append(base * (1.0 - 0.1 * c) + 0.05 * np.sin(2 * np.pi * 250.0 * (c + 1) * t))
    return np.stack(cols, axis=1).astype(np.float32) * 0.9


def tone(seconds: float, sr: int, freq_hz: float, amplitude: float = 0.5) -> np.ndarray:
    """A pure sine tone, float32 ``(n,)``."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = amplitude * np.sin(2 * np.pi * freq_hz * t)
    fade = min(int(0.01 * sr), x.size // 2)  # 10 ms ramps: no codec overshoot at the edges
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    return x.astype(np.float32)


def vowel_train(
    rng: np.random.Generator, seconds: float, sr: int = 16000, *, harmonics: int = 39, noise: float = 0.005
) -> np.ndarray:
    """Harmonic 'vowels' (f0 140 +- 20 Hz, ``harmonics`` partials at 1/k) with a 3 Hz syllable envelope, plus
    ``noise`` times white noise from ``rng``: broadband like speech, float64 ``(n,)``, peak about 0.5. Used by
    the training-data tests (signal chain, views), which tune their thresholds on it."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140.0 + 20.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    env = 0.5 * (1 - np.cos(2 * np.pi * 3.0 * t)) + 0.05
    return 0.1 * x * env + noise * rng.standard_normal(len(t))


def source_signal(
    kind: str, *, seconds: float = 3.0, sr: int | None = None, channels: int | None = None, seed: int = 0
) -> np.ndarray:
    """The ``(n, channels)`` float32 signal that ``make_media(kind, ...)`` encodes with these arguments.

    For ``mp4_two_audio`` it is the first track (a 440 Hz tone); for kinds that derive from another
    (``*_as_*``, truncated, over-claiming) it is the full signal before damage.
    """
    info = KINDS[kind]
    sr = sr or info.sample_rate
    channels = channels or info.channels
    if kind == "mp4_two_audio":
        return tone(seconds, sr, 440.0)[:, None]
    if kind == "clip_1s":
        seconds = 1.0
    if kind in ("wav_huge_header", "flac_huge_header"):
        seconds = 1.0
    return multichannel(seconds, sr, channels, seed)


# ----------------------------------------------------------------------------------------- writers
def _write_sf(path: Path, data: np.ndarray, sr: int, fmt: str, subtype: str) -> None:
    import soundfile as sf

    sf.write(str(path), data, sr, format=fmt, subtype=subtype)


def _audio_frames(data: np.ndarray, sr: int, codec_ctx) -> list:
    """Cut ``(n, ch)`` float32 into frames in the encoder's sample format, size and rate."""
    import av

    layout = {1: "mono", 2: "stereo"}.get(data.shape[1], f"{data.shape[1]}c")
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T), format="fltp", layout=layout)
    frame.sample_rate = sr
    resampler = av.AudioResampler(
        format=codec_ctx.format.name,
        layout=codec_ctx.layout.name,
        rate=codec_ctx.sample_rate,
        frame_size=codec_ctx.frame_size or 1024,
    )
    frames = list(resampler.resample(frame)) + list(resampler.resample(None))
    return frames


def _write_av(
    path: Path,
    container_format: str,
    audio: list[tuple[str, np.ndarray, int, dict]],
    video_codec: str | None = None,
    seconds: float = 3.0,
    movflags: str | None = None,
) -> None:
    """Mux zero or more audio tracks and optionally a small video track with PyAV.

    ``audio`` holds ``(codec, data (n, ch) float32, sample_rate, codec_options)`` per track.
    """
    import av

    options = {"movflags": movflags} if movflags else {}
    with av.open(str(path), "w", format=container_format, options=options) as out:
        vstream = None
        if video_codec:
            vstream = out.add_stream(video_codec, rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
            if video_codec == "libx264":
                vstream.options = {"preset": "ultrafast"}
        astreams = []
        for codec, data, sr, opts in audio:
            layout = {1: "mono", 2: "stereo"}.get(data.shape[1], f"{data.shape[1]}c")
            s = out.add_stream(codec, rate=sr, layout=layout)
            bitrate = opts.get("bit_rate")
            if bitrate:
                s.bit_rate = bitrate
            if codec == "aac":
                s.codec_context.time_base = Fraction(1, sr)
            astreams.append((s, data, sr))
        if vstream is not None:
            for i in range(int(seconds * 10)):
                img = np.zeros((48, 64, 3), np.uint8)
                img[:, :, 0] = (np.arange(64) * 4 + i * 8) % 256
                img[:, :, 1] = (np.arange(48)[:, None] * 5) % 256
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = i
                vf.time_base = Fraction(1, 10)
                for p in vstream.encode(vf):
                    out.mux(p)
            for p in vstream.encode(None):
                out.mux(p)
        for s, data, sr in astreams:
            pts = 0
            for fr in _audio_frames(data, sr, s.codec_context):
                fr.pts = pts
                fr.time_base = Fraction(1, s.codec_context.sample_rate)
                pts += fr.samples
                for p in s.encode(fr):
                    out.mux(p)
            for p in s.encode(None):
                out.mux(p)


def _patch_wav_data_size(path: Path, new_data_bytes: int) -> None:
    """Rewrite the RIFF and ``data`` chunk sizes of a canonical WAV file (lying header)."""
    raw = bytearray(path.read_bytes())
    pos = raw.find(b"data", 12)
    if pos < 0:
        raise RuntimeError("no data chunk")
    struct.pack_into("<I", raw, pos + 4, new_data_bytes)
    struct.pack_into("<I", raw, 4, min(pos + 8 + new_data_bytes - 8, 0xFFFFFFFF))
    path.write_bytes(bytes(raw))


def make_media(
    kind: str,
    path_dir: Path | str,
    *,
    seconds: float = 3.0,
    sr: int | None = None,
    channels: int | None = None,
    seed: int = 0,
    name: str | None = None,
) -> Path:
    """Write one test file of the given kind and return its path.

    Parameters
    ----------
    kind : str
        A key of :data:`KINDS`.
    path_dir : Path or str
        Directory to write into (created if missing).
    seconds : float
        Duration of the encoded signal (``clip_1s`` and ``wav_huge_header`` always hold 1 s;
        damaged kinds hold less than announced).
    sr, channels : int, optional
        Override the kind's sample rate / channel count where the codec allows it.
    seed : int
        Seed of :func:`speech_like`.
    name : str, optional
        File name; default ``f"{kind}{suffix}"``.

    Returns
    -------
    Path
        The written file.
    """
    if kind not in KINDS:
        raise KeyError(f"unknown media kind {kind!r}; known: {sorted(KINDS)}")
    info = KINDS[kind]
    d = Path(path_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / (name or f"{kind}{info.suffix}")
    sr = sr or info.sample_rate
    channels = channels or info.channels
    data = source_signal(kind, seconds=seconds, sr=sr or 16000, channels=channels or 1, seed=seed)

    wav_subtypes = {
        "wav_u8": "PCM_U8",
        "wav_s16": "PCM_16",
        "wav_s24": "PCM_24",
        "wav_s32": "PCM_32",
        "wav_f32": "FLOAT",
        "wav_f64": "DOUBLE",
        "clip_1s": "PCM_16",
        "wav_as_flac": "PCM_16",
    }
    if kind in wav_subtypes:
        _write_sf(path, data, sr, "WAV", wav_subtypes[kind])
    elif kind == "wav_extensible":
        _write_sf(path, data, sr, "WAVEX", "PCM_24")
    elif kind == "wav_8ch":
        _write_sf(path, data, sr, "WAVEX", "PCM_16")
    elif kind == "aiff":
        _write_sf(path, data, sr, "AIFF", "PCM_16")
    elif kind in ("flac", "flac_as_ogg"):
        _write_sf(path, data, sr, "FLAC", "PCM_16")
    elif kind == "flac_96k_24":
        _write_sf(path, data, sr, "FLAC", "PCM_24")
    elif kind == "ogg_vorbis":
        _write_sf(path, data, sr, "OGG", "VORBIS")
    elif kind == "ogg_opus":
        _write_av(path, "ogg", [("libopus", data, sr, {"bit_rate": 96000})])
    elif kind == "webm_opus":
        _write_av(path, "webm", [("libopus", data, sr, {"bit_rate": 96000})])
    elif kind in ("mp3", "mp3_as_wav"):
        _write_av(path, "mp3", [("libmp3lame", data, sr, {"bit_rate": 128000})])
    elif kind in ("m4a_aac", "m4a_as_mp3"):
        _write_av(path, "ipod", [("aac", data, sr, {"bit_rate": 128000})], movflags="faststart")
    elif kind == "mp4_video":
        _write_av(path, "mp4", [("aac", data, sr, {"bit_rate": 128000})], "libx264", seconds)
    elif kind == "mov_video":
        _write_av(path, "mov", [("aac", data, sr, {"bit_rate": 128000})], "mpeg4", seconds)
    elif kind == "mkv_video":
        _write_av(path, "matroska", [("flac", data, sr, {})], "mpeg4", seconds)
    elif kind == "webm_video":
        _write_av(path, "webm", [("libopus", data, sr, {"bit_rate": 64000})], "libvpx", seconds)
    elif kind == "mp4_two_audio":
        second = tone(seconds, sr, 1250.0)[:, None]
        tracks = [("aac", data, sr, {"bit_rate": 96000}), ("aac", second, sr, {"bit_rate": 96000})]
        _write_av(path, "mp4", tracks, "libx264", seconds)
    elif kind == "truncated_mp3":
        _write_av(path, "mp3", [("libmp3lame", data, sr, {"bit_rate": 128000})])
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * 0.4)])
    elif kind == "truncated_flac":
        _write_sf(path, data, sr, "FLAC", "PCM_16")
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * 0.5)])
    elif kind == "truncated_m4a":
        _write_av(path, "ipod", [("aac", data, sr, {"bit_rate": 128000})], movflags="faststart")
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * 0.5)])
    elif kind == "m4a_no_moov":
        _write_av(path, "ipod", [("aac", data, sr, {"bit_rate": 128000})])  # moov written last
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * 0.5)])
    elif kind == "wav_overclaim":
        _write_sf(path, data, sr, "WAV", "PCM_16")
        _patch_wav_data_size(path, int(data.shape[0] * 2 * 2.5))
    elif kind == "wav_huge_header":
        _write_sf(path, data, sr, "WAV", "PCM_U8")
        _patch_wav_data_size(path, 2**31)  # 8-bit mono: one byte per frame
    elif kind == "flac_huge_header":
        _write_sf(path, data, sr, "FLAC", "PCM_16")
        raw = bytearray(path.read_bytes())
        # STREAMINFO follows "fLaC" + a 4-byte block header; total samples: 36 bits from byte 13.5
        total = 2**35 - 1
        raw[8 + 13] = (raw[8 + 13] & 0xF0) | (total >> 32)
        raw[8 + 14 : 8 + 18] = (total & 0xFFFFFFFF).to_bytes(4, "big")
        path.write_bytes(bytes(raw))
    elif kind in ("wav_nan", "wav_inf"):
        bad = data.copy()
        bad[data.shape[0] // 2, 0] = np.nan if kind == "wav_nan" else np.inf
        _write_sf(path, bad, sr, "WAV", "FLOAT")
    elif kind == "wav_silent":
        _write_sf(path, np.zeros_like(data), sr, "WAV", "PCM_16")
    elif kind == "video_only_mp4":
        _write_av(path, "mp4", [], "libx264", seconds)
    elif kind == "text_as_wav":
        path.write_text("This is not audio.\nJust a few lines of plain text, saved with a .wav name.\n" * 20)
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(seed).integers(0, 256, 65536, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "riff_garbage":
        head = b"RIFF" + struct.pack("<I", 4 + 8000) + b"WAVE"
        path.write_bytes(head + np.random.default_rng(seed).integers(0, 256, 8000, dtype=np.uint8).tobytes())
    else:  # pragma: no cover - KINDS and this dispatch must stay in sync
        raise AssertionError(f"no writer for {kind!r}")
    logger.debug("wrote %s (%d bytes)", path, path.stat().st_size)
    return path


def hanging_mp3(path: Path, seed: int = 72) -> Path:
    """An MP3 whose decoding takes hours: two seconds of audio, then 256 GiB of zero bytes (a sparse
    file: no disk space) through which FFmpeg's MP3 demuxer searches for the next frame, in C. Skips the
    calling test where the file system cannot hold such a file."""
    import os

    import pytest

    make_media("mp3", path.parent, seconds=2.0, seed=seed, name=path.name)
    try:
        os.truncate(path, 256 * 2**30)
    except OSError as exc:  # a file system without sparse files this large
        pytest.skip(f"cannot make a 256 GiB sparse file here: {exc}")
    return path
