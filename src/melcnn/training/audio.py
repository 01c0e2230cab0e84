"""Signal operations of the dataset builder, applied identically to bona fide and spoof clips.

Needs: numpy, soxr, soundfile (libsndfile >= 1.1 in the wheel: Vorbis, Opus, MP3 and GSM 6.10
encoders), and the PyPI package ``g722`` (module ``G722``) for the G.722 round trip.

Order of operations for every clip (see :mod:`melcnn.training.clips`)::

    decode -> 16 kHz mono float -> [spoof: generator -> parent's native channel]
    -> trim_with_margin -> normalise_loudness -> channel augmentation (band limit / codec)
    -> additive noise -> level change -> noise floor -> 16-bit FLAC

Every random choice comes from a ``numpy.random.Generator`` the caller seeds per clip.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import cast

import numpy as np

SR = 16_000  # Hz, sample rate of every clip in the dataset

FRAME = 400  # 25 ms analysis frame at 16 kHz
HOP = 160  # 10 ms
TRIM_REL_DB = 40.0  # frames more than this below the loudest frame count as silence
TARGET_RMS_DBFS = -26.0  # loudness target: RMS of the active frames
PEAK_LIMIT = 0.95

# Lossy codecs of the channel augmentation / native channels.
LOSSY_CODECS = ("gsm", "vorbis", "mp3", "opus", "g722", "u8")


def db(x: float) -> float:
    return float(20.0 * np.log10(max(x, 1e-12)))


def to_mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float64)
    import soxr

    return soxr.resample(np.asarray(x, dtype=np.float64), sr_in, sr_out, quality="HQ").astype(np.float64)


def frame_rms_db(x: np.ndarray, frame: int = FRAME, hop: int = HOP) -> np.ndarray:
    """RMS level in dBFS of each frame (frames start every ``hop`` samples)."""
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    n = 1 + (len(x) - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    e = np.mean(np.square(x[idx]), axis=1)
    return 10.0 * np.log10(np.maximum(e, 1e-20))


def active_bounds(x: np.ndarray, rel_db: float = TRIM_REL_DB) -> tuple[int, int]:
    """First and one-past-last sample of the frames within ``rel_db`` of the loudest frame."""
    f = frame_rms_db(x)
    active = np.flatnonzero(f >= f.max() - rel_db)
    if len(active) == 0:
        return 0, len(x)
    return int(active[0] * HOP), int(min(len(x), active[-1] * HOP + FRAME))


def trim_tight(x: np.ndarray, margin_s: float = 0.03, sr: int = SR) -> np.ndarray:
    a, b = active_bounds(x)
    m = int(margin_s * sr)
    return x[max(0, a - m) : min(len(x), b + m)]


def trim_with_margin(
    x: np.ndarray, rng: np.random.Generator, margin_range_s: tuple[float, float] = (0.05, 0.3), sr: int = SR
) -> np.ndarray:
    """Trim leading/trailing silence, keeping a random margin on each side (same law for both classes).

    The margin is taken from the signal where it has one, and zero-padded where it has not (the noise
    floor added at the end fills the zeros).
    """
    a, b = active_bounds(x)
    lead = int(rng.uniform(*margin_range_s) * sr)
    trail = int(rng.uniform(*margin_range_s) * sr)
    y = x[max(0, a - lead) : min(len(x), b + trail)]
    pad_l = max(0, lead - a)
    pad_r = max(0, trail - (len(x) - b))
    if pad_l or pad_r:
        y = np.pad(y, (pad_l, pad_r))
    return y


def active_rms_db(x: np.ndarray) -> float:
    f = frame_rms_db(x)
    act = f[f >= f.max() - TRIM_REL_DB]
    return float(10.0 * np.log10(np.mean(10.0 ** (act / 10.0))))


def normalise_loudness(x: np.ndarray, target_dbfs: float = TARGET_RMS_DBFS, peak: float = PEAK_LIMIT) -> np.ndarray:
    """Scale so that the RMS of the active frames is ``target_dbfs``; then limit the peak."""
    if not np.any(x):
        return x
    y = x * 10.0 ** ((target_dbfs - active_rms_db(x)) / 20.0)
    return limit_peak(y, peak)


def limit_peak(x: np.ndarray, peak: float = PEAK_LIMIT) -> np.ndarray:
    m = float(np.max(np.abs(x))) if len(x) else 0.0
    return x * (peak / m) if m > peak else x


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: 'white', 'pink' (1/f power) or 'brown' (1/f^2 power)."""
    w = rng.standard_normal(n)
    if colour == "white" or n < 4:
        y = w
    else:
        spec = np.fft.rfft(w)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        expo = {"pink": 0.5, "brown": 1.0}[colour]
        spec = spec / f**expo
        spec[0] = 0.0
        y = np.fft.irfft(spec, n)
    return y / (np.sqrt(np.mean(y**2)) + 1e-20)


def add_noise_snr(x: np.ndarray, snr_db: float, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Additive noise at ``snr_db`` relative to the RMS of the active frames."""
    level = active_rms_db(x) - snr_db
    return x + coloured_noise(len(x), colour, rng) * 10.0 ** (level / 20.0)


def add_noise_floor(x: np.ndarray, level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """The low-level floor every clip of both classes gets: no exact-zero runs survive it."""
    colour = ("white", "pink")[int(rng.integers(2))]
    return x + coloured_noise(len(x), colour, rng) * 10.0 ** (level_dbfs / 20.0)


def band_limit(x: np.ndarray, rate: int = 8000, sr: int = SR) -> np.ndarray:
    """Round trip through ``rate`` Hz: removes everything above rate / 2."""
    if rate >= sr:
        return x
    return _fit_length(resample(resample(x, sr, rate), rate, sr), len(x))


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) >= n:
        return y[:n]
    return np.pad(y, (0, n - len(y)))


def _align(ref: np.ndarray, y: np.ndarray, max_lag: int = 4000) -> np.ndarray:
    """Shift ``y`` to best match ``ref`` (codec delay), then crop/pad to ``len(ref)``."""
    n = len(ref)
    m = 1 << int(np.ceil(np.log2(len(ref) + len(y) + 1)))
    c = np.fft.irfft(np.fft.rfft(y, m) * np.conj(np.fft.rfft(ref, m)), m)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = c[lags % m]
    lag = int(lags[int(np.argmax(vals))])
    if lag > 0:
        y = y[lag:]
    elif lag < 0:
        y = np.pad(y, (-lag, 0))
    return _fit_length(y, n)


def _sf_roundtrip(x: np.ndarray, sr: int, fmt: str, subtype: str, compression: float | None) -> np.ndarray:
    import soundfile as sf

    buf = io.BytesIO()
    kw = {}
    if compression is not None:
        kw["compression_level"] = float(compression)
    sf.write(buf, np.clip(x, -1.0, 1.0).astype(np.float32), sr, format=fmt, subtype=subtype, **kw)
    buf.seek(0)
    y, sr2 = sf.read(buf, dtype="float64", always_2d=False)
    y = to_mono(y)
    if sr2 != sr:
        y = resample(y, sr2, sr)
    return y


def g722_roundtrip(x: np.ndarray, sr: int = SR) -> np.ndarray:
    import G722

    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    codec = G722.G722(16000, 64000)
    data = codec.encode(resample(pcm.astype(np.float64), sr, 16000).astype(np.int16) if sr != 16000 else pcm)
    y = np.asarray(G722.G722(16000, 64000).decode(data), dtype=np.float64) / 32768.0
    return resample(y, 16000, sr)


def codec_roundtrip(
    x: np.ndarray, codec: str, rng: np.random.Generator | None = None, sr: int = SR, rate: int | None = None
) -> np.ndarray:
    """Encode and decode ``x`` with a lossy codec; the result has the same length and alignment.

    codec: 'gsm' (GSM 6.10 at 8 kHz), 'vorbis', 'mp3', 'opus', 'g722' (64 kbit/s), 'band8k'
    (8 kHz resampling round trip), or 'pcm' (no change). ``rate`` (Vorbis only) encodes at that
    rate, as the native files were. Quality settings are drawn from ``rng`` when given.
    """
    n = len(x)
    if n == 0 or codec in ("pcm", "none"):
        return x
    q = float(rng.uniform(0.0, 1.0)) if rng is not None else 0.5
    if codec == "band8k":
        return band_limit(x, 8000, sr)
    if codec == "gsm":
        lo = resample(x, sr, 8000)
        y = _sf_roundtrip(lo, 8000, "WAV", "GSM610", None)
        y = resample(y, 8000, sr)
    elif codec == "vorbis":
        enc_sr = rate if rate else sr
        z = resample(x, sr, enc_sr)
        y = resample(_sf_roundtrip(z, enc_sr, "OGG", "VORBIS", 0.35 + 0.5 * q), enc_sr, sr)
    elif codec == "opus":
        y = _sf_roundtrip(x, sr, "OGG", "OPUS", 0.3 + 0.6 * q)
    elif codec == "mp3":
        y = _sf_roundtrip(x, sr, "MP3", "MPEG_LAYER_III", 0.2 + 0.7 * q)
    elif codec == "g722":
        y = g722_roundtrip(x, sr)
    else:
        raise ValueError(f"unknown codec {codec!r}")
    return _align(x, y)


def apply_channel(x: np.ndarray, channel: str, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Apply a native channel written as 'CODEC@RATE' (e.g. 'gsm@8000', 'vorbis@44100', 'pcm@11025').

    A rate below 16 kHz band-limits first; the codec then runs as the original files were made.
    """
    codec, _, r = channel.partition("@")
    rate = int(r) if r else sr
    if codec == "gsm":
        return codec_roundtrip(x, "gsm", rng, sr)
    if codec == "u8":  # 8-bit unsigned PCM (old game talkies)
        return quantise_u8(band_limit(x, rate, sr), rate, sr)
    if codec == "mp3" and rate < sr:  # low-rate MP3 (16 kbit/s at 11 kHz, as FOTAQ's speech)
        return av_roundtrip(x, "mp3", rate, 16000 if rate <= 11025 else 32000, sr)
    if rate < sr:
        x = band_limit(x, rate, sr)
    if codec == "pcm":
        return x
    if codec == "vorbis":
        return codec_roundtrip(x, "vorbis", rng, sr, rate=min(max(rate, sr), 48000))
    return codec_roundtrip(x, codec, rng, sr)


def channel_is_lossy(channel: str) -> bool:
    return channel.partition("@")[0] in LOSSY_CODECS


def channel_is_narrowband(channel: str) -> bool:
    codec, _, r = channel.partition("@")
    return codec == "gsm" or (bool(r) and int(r) < SR)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def write_flac_atomic(path: Path, x: np.ndarray, sr: int = SR) -> None:
    """Write 16-bit FLAC through a temporary file in the same folder, then rename."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".flac", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, to_int16(x), sr, format="FLAC", subtype="PCM_16")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` through a temporary file in the same folder, then rename: a reader sees the old
    file or the whole new one, and an interrupted write leaves neither a part nor (short of a kill) a
    temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# (PyAV encoder, container, sample rates it accepts)
AV_CODECS: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "aac": ("aac", "adts", (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)),
    "opus": ("libopus", "ogg", (8000, 12000, 16000, 24000, 48000)),
    "mp3": ("libmp3lame", "mp3", (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)),
    "amr": ("amr_nb", "amr", (8000,)),
    "mulaw": ("pcm_mulaw", "wav", (8000,)),
    "alaw": ("pcm_alaw", "wav", (8000,)),
}


def require_av_encoders() -> None:
    """Raise a RuntimeError naming every encoder of :data:`AV_CODECS` that PyAV's bundled FFmpeg lacks
    (PyAV 17.1 and later ship no AMR-NB encoder): a build checks this before it starts, rather than
    have every view that draws such a codec fail on its own."""
    import av
    from av.codec import Codec
    from av.codec.codec import UnknownCodecError

    missing = []
    for name, (encoder, _, _) in AV_CODECS.items():
        try:
            Codec(encoder, "w")
        except UnknownCodecError:
            missing.append(f"{name} ({encoder})")
    if missing:
        raise RuntimeError(
            f"PyAV {av.__version__} cannot encode {', '.join(missing)}, which the channel views use: "
            "install the PyAV that melcnn[train] pins (pip install 'av==17.0.0')"
        )


def av_roundtrip(x: np.ndarray, codec: str, rate: int, bitrate: int | None = None, sr: int = SR) -> np.ndarray:
    """Encode ``x`` (at ``sr``) with FFmpeg's encoder for ``codec`` at sample rate ``rate`` and ``bitrate``
    bit/s, decode it again, and return it at ``sr``, aligned and of the same length.

    codec: 'aac', 'opus', 'mp3', 'amr' (AMR-NB, 8 kHz), 'mulaw' / 'alaw' (G.711, 8 kHz).
    """
    import av

    name, fmt, rates = AV_CODECS[codec]
    if rate not in rates:
        rate = min(rates, key=lambda r: abs(r - rate))
    buf = io.BytesIO()
    av_encode(buf, to_int16(np.clip(resample(x, sr, rate), -1.0, 1.0)), rate, name, fmt, bitrate)
    buf.seek(0)
    parts = []
    with av.open(buf, "r", format=fmt) as inp:
        dec_rate = inp.streams.audio[0].rate or rate
        for fr in inp.decode(audio=0):
            a = fr.to_ndarray()
            a = a.astype(np.float64) / 32768.0 if a.dtype == np.int16 else a.astype(np.float64)
            parts.append(a.mean(axis=0) if a.ndim == 2 and a.shape[0] > 1 else a.reshape(-1))
    y = np.concatenate(parts) if parts else np.zeros(0)
    return _align(x, resample(y, dec_rate, sr))


def av_encode(dest, pcm: np.ndarray, rate: int, encoder: str, fmt: str, bitrate: int | None = None) -> None:
    """Encode int16 mono ``pcm`` at ``rate`` with FFmpeg's ``encoder`` into container ``fmt`` at ``dest``
    (a path or a writable binary file object)."""
    import av

    with av.open(dest if not isinstance(dest, Path) else str(dest), "w", format=fmt) as out:
        # ``encoder`` is an audio codec; PyAV's stubs narrow add_stream's result only for literal names
        st = cast("av.AudioStream", out.add_stream(encoder, rate=rate))
        st.layout = "mono"
        if bitrate:
            st.bit_rate = int(bitrate)
        step = 960 if encoder == "libopus" else 1024  # Opus frames are 20 ms at 48 kHz
        for i in range(0, len(pcm), step):
            fr = av.AudioFrame.from_ndarray(pcm[None, i : i + step], format="s16", layout="mono")
            fr.sample_rate = rate
            fr.pts = i
            for pkt in st.encode(fr):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)


def quantise_u8(x: np.ndarray, rate: int = 11025, sr: int = SR) -> np.ndarray:
    """8-bit unsigned PCM at ``rate`` (as old game talkies stored speech), back at ``sr``."""
    z = resample(x, sr, rate)
    q = np.clip(np.round(z * 128.0) + 128.0, 0, 255)
    return _fit_length(resample((q - 128.0) / 128.0, rate, sr), len(x))
