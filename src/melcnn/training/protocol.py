"""The evaluation protocol: which speakers, voices and generators belong to which split.

As in ASVspoof, speakers are disjoint across train / dev / eval, and the eval split holds out whole
generators that train and dev never see. Everything here is a fixed table (no randomness), so the
protocol is the same for every seed and every ``--minutes``.

Held-out generators (eval only): ``lpc`` (classic source-filter vocoder), ``hifigan_universal``
(neural vocoder; note that train sees the same architecture with LJSpeech weights, ``hifigan_lj``),
``festival_hts`` (HMM statistical parametric TTS) and ``piper`` (neural end-to-end VITS TTS).
Needs nothing beyond the standard library.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "dev", "eval")

HELD_OUT_GENERATORS: tuple[str, ...] = ("lpc", "hifigan_universal", "festival_hts", "piper")

# Generators allowed in each split. Eval sees the known ones too (as ASVspoof's eval does).
SPLIT_GENERATORS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "resynthesis": ("world", "world_vc", "griffinlim_linear", "griffinlim_mel", "hifigan_lj"),
        "tts": ("espeak", "flite", "festival_diphone", "festival_clunits"),
    },
    "dev": {
        "resynthesis": ("world", "world_vc", "griffinlim_linear", "griffinlim_mel", "hifigan_lj"),
        "tts": ("espeak", "flite", "festival_diphone", "festival_clunits"),
    },
    "eval": {
        # held-out generators first: with very few eval clips they are the ones that must appear
        "resynthesis": (
            "lpc",
            "hifigan_universal",
            "world",
            "world_vc",
            "griffinlim_linear",
            "griffinlim_mel",
            "hifigan_lj",
        ),
        "tts": ("piper", "festival_hts", "espeak", "flite", "festival_diphone", "festival_clunits"),
    },
}

# Bona fide speakers with a fixed split. (Festival's Russian voice is built from festvox_nsh's own
# recordings, so that voice is in nsh's split.)
SPEAKER_SPLITS: dict[str, str] = {
    "asterisk_allison": "train",  # en + es (same woman, two packages)
    "asterisk_carlo": "train",  # it
    "festvox_nsh": "train",  # ru
    "fillets_v": "train",  # cs, big fish
    "gcin_3": "train",  # zh
    "armelle": "train",  # fr, GSM 8 kHz
    "alsa": "train",  # en
    "asterisk_ivr_ru": "dev",  # ru
    "esco": "dev",  # es, GSM 8 kHz
    "fillets_minor": "dev",  # cs, the ~10 minor characters
    "asterisk_june": "eval",  # fr
    "fillets_m": "eval",  # cs, small fish
    "gcin_5": "eval",  # zh
}

# The long tail (klettres_<lang>, ktuberling_<lang>, codec2_<name>) goes by a hash of the speaker id:
# sha1(id) mod 10 in 0-5 -> train, 6-7 -> dev, 8-9 -> eval.
LONG_TAIL_RULE = "sha1(speaker) % 10: 0-5 train, 6-7 dev, 8-9 eval"

# TTS voices are speakers too: each voice belongs to exactly one split.
TTS_VOICE_SPLITS: dict[str, dict[str, str]] = {
    "espeak": {
        "m1": "train",
        "m2": "train",
        "m3": "train",
        "m4": "train",
        "f1": "train",
        "f2": "train",
        "f3": "train",
        "m5": "dev",
        "f4": "dev",
        "m6": "eval",
        "m7": "eval",
        "f5": "eval",
    },
    "flite": {"kal16": "train", "rms": "train", "awb": "dev", "slt": "eval"},
    "festival_diphone": {
        "kal_diphone": "train",
        "lp_diphone": "train",
        "suo_fi_lj_diphone": "train",
        "czech_dita": "train",
        "hy_fi_mv_diphone": "dev",
        "ked_diphone": "eval",
        "pc_diphone": "eval",
        "czech_machac": "eval",
    },
    "festival_clunits": {"msu_ru_nsh_clunits": "train"},
    "festival_hts": {"cmu_us_slt_arctic_hts": "eval", "upc_ca_ona_hts": "eval"},
    "piper": {"joe": "eval"},
}


def speaker_split(speaker: str) -> str:
    if speaker in SPEAKER_SPLITS:
        return SPEAKER_SPLITS[speaker]
    h = int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 10
    return "train" if h <= 5 else "dev" if h <= 7 else "eval"


def voices_for(generator: str, split: str) -> list[str]:
    return sorted(v for v, s in TTS_VOICE_SPLITS.get(generator, {}).items() if s == split)


def check_protocol(rows: list[dict]) -> list[str]:
    """Violations of the protocol in manifest rows (empty list: all good)."""
    problems = []
    spk_splits: dict[str, set[str]] = {}
    for r in rows:
        spk_splits.setdefault(r["speaker"], set()).add(r["split"])
        if r["split"] in ("train", "dev") and r["generator"] in HELD_OUT_GENERATORS:
            problems.append(f"held-out generator {r['generator']} in {r['split']}: {r['clip_id']}")
    for spk, ss in sorted(spk_splits.items()):
        if len(ss) > 1:
            problems.append(f"speaker {spk} in several splits: {sorted(ss)}")
    return problems
