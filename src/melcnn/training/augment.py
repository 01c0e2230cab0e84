"""Channel augmentation views: the random channel chains applied alike to bona fide and spoof clips.

A user's recording reaches melcnn through microphones, rooms, telephone networks and codecs; the
verdict must not depend on which. Each clip of train and dev therefore gets extra *views*: the same
audio passed through one random chain drawn from one law for both classes::

    EQ (tilt + peaking bands) -> room reverberation -> channel (band limit at 3.4/4/5.5/7 kHz,
    telephone G.711/AMR-NB/GSM, MP3/AAC/Opus/Vorbis at low to high rates, G.722, 8-bit 11 kHz)
    -> additive noise (coloured, or real non-speech sounds) -> level change / mild clipping -> noise floor

The channel of each view is assigned in exactly equal shares per (split, label) group (stratified), the
other steps are drawn per view from the same probabilities; every parameter is recorded in the
manifest's ``augmentation`` column. Needs numpy, scipy, soxr, soundfile, PyAV and ``g722``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import audio as A

SR = A.SR

# Channel of a view, in these shares per (split, label) group.
VIEW_CHANNELS: tuple[tuple[str, float], ...] = (
    ("none", 0.12),
    ("band", 0.14),  # resampling round trip: cutoff 3.4, 4, 5.5 or 7 kHz
    ("telephone", 0.12),  # 8 kHz + G.711 mu/A-law or AMR-NB, 300-3400 Hz band-pass
    ("gsm", 0.05),
    ("mp3", 0.14),
    ("aac", 0.11),
    ("opus", 0.11),
    ("vorbis", 0.06),
    ("g722", 0.05),
    ("u8", 0.05),  # 8-bit unsigned PCM at 11 kHz
    ("mp3lo", 0.05),  # 16 kbps MP3 at 11 kHz
)
EQ_P = 0.5
REVERB_P = 0.25
NOISE_P = 0.35
REAL_NOISE_SHARE = 0.4  # of the noisy views, those that get real non-speech sounds (where available)
GAIN_P = 0.5
CLIP_P = 0.08
# Noise suppression (spectral gating, as phones, call and meeting software, and editors apply to real
# speech): off unless a build asks for it (`--view-denoise P`); drawn after everything else, so a build
# without it draws every other parameter as before.
DENOISE_N_FFT = (512, 1024, 2048)
# A VoIP leg through Opus 1.5's decoder with its neural post-filters (LACE, NoLACE; or none), as real calls
# reach users: off unless a build asks for it (`--view-opus-ml P`); drawn after the noise suppression, so a
# build without it draws every other parameter as before. Below ~9 kbit/s the post-filters do nothing.
OPUS_ML_BITRATES = (9000, 12000, 16000)


def draw_view(
    channel: str, rng: np.random.Generator, noise_files: int = 0, denoise_p: float = 0.0, opus_ml_p: float = 0.0
) -> dict:
    """The parameters of one view whose channel is ``channel`` (drawn from ``rng``); with probability
    ``denoise_p`` the view also passes through a noise suppressor (after the added noise), with probability
    ``opus_ml_p`` through a VoIP leg decoded by Opus 1.5 with or without its post-filters (after that)."""
    v: dict = {"channel": channel}
    if channel == "band":
        v["cutoff_hz"] = int(rng.choice([3400, 4000, 5500, 7000]))
    elif channel == "telephone":
        v["codec"] = str(rng.choice(["mulaw", "alaw", "amr"]))
        v["bitrate"] = int(rng.choice([4750, 5900, 7950, 10200, 12200])) if v["codec"] == "amr" else None
    elif channel == "mp3":
        v["rate"] = int(rng.choice([16000, 22050, 44100]))
        v["bitrate"] = int(rng.choice([24000, 32000, 48000, 64000, 96000, 128000]))
    elif channel == "aac":
        v["rate"] = int(rng.choice([16000, 22050, 44100]))
        v["bitrate"] = int(rng.choice([24000, 32000, 48000, 64000, 96000]))
    elif channel == "opus":
        v["bitrate"] = int(rng.choice([6000, 9000, 12000, 16000, 24000, 32000]))
    elif channel == "vorbis":
        v["quality"] = round(float(rng.uniform(0.2, 0.9)), 2)
    if rng.random() < EQ_P:
        v["eq_tilt_db"] = round(float(rng.uniform(-8.0, 8.0)), 1)
        v["eq_bands"] = [
            [int(rng.uniform(150, 6000)), round(float(rng.uniform(-8, 8)), 1), round(float(rng.uniform(0.7, 3)), 2)]
            for _ in range(int(rng.integers(1, 4)))
        ]
    if rng.random() < REVERB_P:
        v["rt60_s"] = round(float(rng.uniform(0.15, 0.9)), 2)
        v["drr_db"] = round(float(rng.uniform(-3.0, 12.0)), 1)
    if rng.random() < NOISE_P:
        v["snr_db"] = round(float(rng.uniform(5.0, 30.0)), 1)
        if noise_files and rng.random() < REAL_NOISE_SHARE:
            v["noise"] = f"file:{int(rng.integers(noise_files))}"
        else:
            v["noise"] = str(rng.choice(["white", "pink", "brown"]))
    if rng.random() < GAIN_P:
        v["gain_db"] = round(float(rng.uniform(-20.0, 6.0)), 1)
    if rng.random() < CLIP_P:
        v["clip_drive_db"] = round(float(rng.uniform(3.0, 12.0)), 1)
    v["floor_dbfs"] = round(float(rng.uniform(-72.0, -55.0)), 1)
    if denoise_p > 0 and rng.random() < denoise_p:
        v["denoise"] = {
            "stationary": bool(rng.random() < 0.5),
            "prop_decrease": round(float(rng.uniform(0.5, 0.9)), 2),
            "n_fft": int(rng.choice(DENOISE_N_FFT)),
        }
    if opus_ml_p > 0 and rng.random() < opus_ml_p:
        from .opus_ml import MODES

        v["opus_ml"] = {"bitrate": int(rng.choice(OPUS_ML_BITRATES)), "mode": str(rng.choice(MODES))}
    return v


def describe_view(v: dict) -> str:
    """'CHANNEL+steps:details', e.g. 'aac+reverb+noise:aac@22050/32k;rt60=0.4;snr=12'."""
    ch = v["channel"]
    detail = []
    if ch == "band":
        detail.append(f"band{v['cutoff_hz']}")
    elif ch == "telephone":
        detail.append(f"tel-{v['codec']}" + (f"/{v['bitrate']}" if v.get("bitrate") else ""))
    elif ch in ("mp3", "aac"):
        detail.append(f"{ch}@{v['rate']}/{v['bitrate'] // 1000}k")
    elif ch == "opus":
        detail.append(f"opus/{v['bitrate'] // 1000}k")
    elif ch == "vorbis":
        detail.append(f"vorbis/q{v['quality']}")
    steps = [ch]
    if "eq_tilt_db" in v:
        steps.append("eq")
        detail.append(f"tilt={v['eq_tilt_db']:+g}dB")
    if "rt60_s" in v:
        steps.append("reverb")
        detail.append(f"rt60={v['rt60_s']:g}")
    if "snr_db" in v:
        steps.append("noise")
        detail.append(f"{v['noise']}@{v['snr_db']:g}dB")
    if "denoise" in v:
        d = v["denoise"]
        steps.append("denoise")
        detail.append(f"denoise={'s' if d['stationary'] else 'ns'}{d['prop_decrease']:g}/{d['n_fft']}")
    if "opus_ml" in v:
        steps.append("voip")
        detail.append(f"voip-opus/{v['opus_ml']['bitrate'] // 1000}k/{v['opus_ml']['mode']}")
    if "gain_db" in v:
        detail.append(f"gain={v['gain_db']:+g}dB")
    if "clip_drive_db" in v:
        steps.append("clip")
        detail.append(f"clip+{v['clip_drive_db']:g}dB")
    return "view:" + "+".join(steps) + ":" + ";".join(detail)


def _biquad_peak(f0: float, gain_db: float, q: float, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    a = 10 ** (gain_db / 40)
    w = 2 * math.pi * f0 / sr
    alpha = math.sin(w) / (2 * q)
    b = np.array([1 + alpha * a, -2 * math.cos(w), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * math.cos(w), 1 - alpha / a])
    return b / den[0], den / den[0]


def equalise(x: np.ndarray, tilt_db: float, bands: list, sr: int = SR) -> np.ndarray:
    """A spectral tilt of ``tilt_db`` from 100 Hz to 8 kHz (log-frequency linear), then peaking bands."""
    from scipy.signal import lfilter

    n = len(x)
    spec = np.fft.rfft(x)
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 100.0)
    g = tilt_db * (np.log2(f / 100.0) / math.log2(sr / 2 / 100.0) - 0.5)
    y = np.fft.irfft(spec * 10 ** (g / 20), n)
    for f0, gain, q in bands:
        b, a = _biquad_peak(float(f0), float(gain), float(q), sr)
        y = lfilter(b, a, y)
    return y


def room_impulse_response(rt60_s: float, drr_db: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A synthetic room impulse response: a direct path, then exponentially decaying noise (with a
    gently low-passed late tail) whose energy sits ``drr_db`` below the direct path."""
    n = int(sr * min(1.2 * rt60_s, 1.0))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    pre = int(rng.uniform(0.002, 0.01) * sr)  # first reflections start after the direct sound
    tail[:pre] = 0.0
    k = np.ones(3) / 3  # slight high-frequency damping
    tail = np.convolve(tail, k, mode="same")
    tail *= math.sqrt(10 ** (-drr_db / 10) / (np.sum(tail**2) + 1e-20))
    h = tail
    h[0] = 1.0
    return h


def reverberate(x: np.ndarray, rt60_s: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import fftconvolve

    h = room_impulse_response(rt60_s, drr_db, rng)
    return fftconvolve(x, h)[: len(x)]


def telephone(x: np.ndarray, codec: str, bitrate: int | None, sr: int = SR) -> np.ndarray:
    """300-3400 Hz band-pass, 8 kHz, and a narrowband codec (G.711 or AMR-NB)."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [300.0, 3400.0], btype="bandpass", fs=sr, output="sos")
    y = sosfiltfilt(sos, x)
    return A.av_roundtrip(y, codec, 8000, bitrate, sr)


def load_noise_bank(files: list[Path], max_files: int = 400) -> list[np.ndarray]:
    """Real non-speech sounds (16 kHz mono), read once per worker."""
    import soundfile as sf

    bank = []
    for p in files[:max_files]:
        try:
            y, r = sf.read(str(p), dtype="float64", always_2d=False)
        except Exception:
            continue
        y = A.resample(A.to_mono(y), int(r), SR)
        if len(y) > SR // 10 and np.any(y):
            bank.append(y)
    return bank


def _real_noise(n: int, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of a non-speech sound, tiled with random gaps and starts, unit RMS over its active part."""
    out = np.zeros(n)
    pos = int(rng.integers(0, max(1, len(clip))))
    i = 0
    while i < n:
        seg = clip[pos:] if i == 0 else clip
        m = min(len(seg), n - i)
        out[i : i + m] += seg[:m]
        i += m + int(rng.uniform(0.0, 0.5) * SR)
    rms = math.sqrt(float(np.mean(out**2))) + 1e-20
    return out / rms


def suppress_noise(x: np.ndarray, *, stationary: bool, prop_decrease: float, n_fft: int) -> np.ndarray:
    """Spectral-gating noise suppression (noisereduce: a noise profile from the signal itself, stationary
    or tracked over time, its bins attenuated by ``prop_decrease``): the musical-noise residue and the
    gated bands of denoised real recordings."""
    import noisereduce

    y = noisereduce.reduce_noise(
        y=np.asarray(x, dtype=np.float64), sr=SR, stationary=stationary, prop_decrease=prop_decrease, n_fft=n_fft
    )
    return np.asarray(y, dtype=np.float64)


def apply_view(x: np.ndarray, v: dict, rng: np.random.Generator, noise_bank: list[np.ndarray] | None = None):
    """Apply the view ``v`` (from :func:`draw_view`) to 16 kHz samples ``x``; returns the new samples."""
    y = np.asarray(x, dtype=np.float64)
    if "eq_tilt_db" in v:
        y = equalise(y, v["eq_tilt_db"], v["eq_bands"])
    if "rt60_s" in v:
        y = reverberate(y, v["rt60_s"], v["drr_db"], rng)
    y = A.normalise_loudness(y)
    ch = v["channel"]
    if ch == "band":
        y = A.band_limit(y, 2 * v["cutoff_hz"])
    elif ch == "telephone":
        y = telephone(y, v["codec"], v.get("bitrate"))
    elif ch in ("mp3", "aac"):
        y = A.av_roundtrip(y, ch, v["rate"], v["bitrate"])
    elif ch == "opus":
        y = A.av_roundtrip(y, "opus", 16000, v["bitrate"])
    elif ch == "mp3lo":
        y = A.av_roundtrip(y, "mp3", 11025, 16000)
    elif ch == "vorbis":
        y = A._align(y, A._sf_roundtrip(y, SR, "OGG", "VORBIS", 1.0 - v["quality"]))
    elif ch in ("gsm", "g722"):
        y = A.codec_roundtrip(y, ch, rng)
    elif ch == "u8":
        y = A.quantise_u8(y)
    elif ch != "none":
        raise ValueError(f"unknown view channel {ch!r}")
    if "snr_db" in v:
        if v["noise"].startswith("file:") and noise_bank:
            nz = _real_noise(len(y), noise_bank[int(v["noise"][5:]) % len(noise_bank)], rng)
            y = y + nz * 10 ** ((A.active_rms_db(y) - v["snr_db"]) / 20)
        else:
            colour = v["noise"] if not v["noise"].startswith("file:") else "pink"
            y = A.add_noise_snr(y, v["snr_db"], colour, rng)
    if "denoise" in v:
        y = suppress_noise(y, **v["denoise"])
    if "opus_ml" in v:
        from .opus_ml import roundtrip

        y = roundtrip(y, v["opus_ml"]["bitrate"], v["opus_ml"]["mode"])
    if "gain_db" in v:
        y = y * 10 ** (v["gain_db"] / 20)
    if "clip_drive_db" in v:
        y = np.clip(y * 10 ** (v["clip_drive_db"] / 20), -0.99, 0.99)
    y = A.add_noise_floor(y, v["floor_dbfs"], rng)
    return A.limit_peak(y, 0.99)
