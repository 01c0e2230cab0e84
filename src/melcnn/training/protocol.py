"""The evaluation protocol: which bona fide sources, generators and texts belong to which split and fold.

Users always bring a recording channel the model has never seen, and often a generator it has never
seen. So the unit of the protocol is the **source** (a Debian package of recorded speech: one
recording set-up, channel and cast) and the **generator** (one synthesis engine), not the speaker:

- ``eval`` holds out whole bona fide sources (5 sources, 7 languages, a GSM telephone source and
  wideband game/home recordings among them) and whole generators (6: three neural, namely Piper VITS, a
  16 kHz HiFi-GAN and SVOX Pico re-vocoded by it, and Festival HTS, SVOX Pico, LPC).
- ``dev`` (early stopping, calibration, every model choice) is built from other sources and
  generators that train does not contain either, so that model selection rewards generalisation.
- ``train`` has the rest.

Every clip belongs to the split of its source: a spoof partner is made from (or matched to) a bona
fide utterance of its split, with a generator of its split, reading a text of its split. Nothing of
a held-out source or generator, nor any text they use, reaches another split.

The leave-source-out cross-validation (:data:`CV_FOLDS`) partitions the train and dev sources and
generators into five folds; fold 0 is exactly the dev split. Fold k tests on the bona fide clips of
its sources and the spoofs its generators made from those sources, and trains on clips whose source
and generator are both outside the fold. Everything here is a fixed table (no randomness).
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "dev", "eval")

# bona fide source (Debian package) -> split
SOURCE_SPLITS: dict[str, str] = {
    # eval: 5 sources; es (GSM telephone), zh, it, en/es/pl/ru/uk (game voice packs), en (home recordings)
    "asterisk-prompt-es-co": "eval",
    "gcin-voice": "eval",
    "asterisk-core-sounds-it-g722": "eval",
    "hedgewars-data": "eval",
    "megaglest-data": "eval",
    # dev (= CV fold 0): fr (GSM telephone), ru (IVR), en (radio-style game voice), 26 languages of single words
    "asterisk-prompt-fr-armelle": "dev",
    "asterisk-core-sounds-ru-g722": "dev",
    "warzone2100-data": "dev",
    "ktuberling-data": "dev",
    # train
    "asterisk-core-sounds-en-g722": "train",
    "asterisk-core-sounds-es-g722": "train",
    "asterisk-core-sounds-fr-g722": "train",
    "codec2-examples": "train",
    "alsa-utils": "train",
    "festvox-ru": "train",
    "fillets-ng-data-cs": "train",
    "klettres-data": "train",
    "tuxpaint-stamps-default": "train",
    "flight-of-the-amazon-queen": "train",
    "beneath-a-steel-sky": "train",
}

# what kind of channel each source is (for the report's per-source table)
SOURCE_CHANNELS: dict[str, str] = {
    "asterisk-prompt-es-co": "telephone (GSM 6.10, 8 kHz)",
    "asterisk-prompt-fr-armelle": "telephone (GSM 6.10, 8 kHz)",
    "codec2-examples": "narrowband (8 kHz PCM)",
    "gcin-voice": "wideband studio (Vorbis 44.1 kHz)",
    "hedgewars-data": "wideband game voice packs (Vorbis 44.1/48 kHz)",
    "megaglest-data": "wideband home recordings (PCM 22-48 kHz)",
    "warzone2100-data": "radio-style game voice (Vorbis 11 kHz)",
    "ktuberling-data": "mixed home recordings (8-48 kHz)",
    "festvox-ru": "studio (PCM 16 kHz)",
    "fillets-ng-data-cs": "game dialogue (Vorbis 22/44 kHz)",
    "klettres-data": "home recordings (Vorbis 44.1 kHz)",
    "tuxpaint-stamps-default": "home microphones (Vorbis 44.1 kHz)",
    "flight-of-the-amazon-queen": "game talkie (MP3 16 kbps, 11 kHz)",
    "beneath-a-steel-sky": "game talkie (8-bit PCM, 11 kHz)",
    "alsa-utils": "studio (PCM 48 kHz)",
}
for _pkg in SOURCE_SPLITS:
    if _pkg.startswith("asterisk-core-sounds-"):
        SOURCE_CHANNELS[_pkg] = "IVR prompts (G.722, 16 kHz)"

# generator -> split. Eval: three neural (Piper VITS TTS, a 16 kHz HiFi-GAN of another architecture and
# training than the train/dev HiFi-GANs, and SVOX Pico re-vocoded by it), three TTS engines (Piper, Festival
# HTS, SVOX Pico), LPC. A re-vocoded generator (TTS engine + neural vocoder) pairs an engine and a vocoder of
# its own split and CV fold, so holding out either holds out both.
GENERATOR_SPLITS: dict[str, str] = {
    "piper": "eval",
    "hifigan_16k": "eval",
    "festival_hts": "eval",
    "pico": "eval",
    "lpc": "eval",
    "pico_hifigan_16k": "eval",
    "hifigan_universal": "dev",
    "rhvoice": "dev",
    "griffinlim_mel": "dev",
    "rhvoice_hifigan_universal": "dev",
    "world": "train",
    "world_vc": "train",
    "griffinlim_linear": "train",
    "hifigan_lj": "train",
    "espeak": "train",
    "mbrola": "train",
    "flite": "train",
    "festival_diphone": "train",
    "festival_clunits": "train",  # built from festvox-ru's own recordings: same split as that source
    "flite_hifigan_lj": "train",
    # training-only transforms (extra spoofs, `--transform-share`): in no CV fold, so in every fold's training
    "phase_vocoder": "train",
    "minimum_phase": "train",
    "formant_shift": "train",
    "mel_envelope": "train",  # candidates (`--candidate-transforms`), screened by the cross-validation
    "highband_noise": "train",
    "source_filter": "train",
    "source_filter_mp": "train",
    "upsampling_artefacts": "train",
    "unit_splice": "train",
    "psola_prosody": "train",
    "frame_splice": "train",
    "hifigan_lj_jitter": "train",  # made from train utterances; each follows its base vocoder's fold (DERIVED_FROM)
    "hifigan_universal_jitter": "train",
}

HELD_OUT_GENERATORS: tuple[str, ...] = tuple(g for g, s in GENERATOR_SPLITS.items() if s == "eval")
# generators of the train split in no CV fold: every fold trains on them (the signal-processing transforms,
# extra spoofs of `melcnn data build --transform-share`; the folds measure what they teach about the others)
# the training-only transforms outside `--transform-share`'s rotation: a build adds each on its own on request
# (`melcnn data build --candidate-transforms`), to be screened by the cross-validation first
CANDIDATE_TRANSFORMS: tuple[str, ...] = (
    "mel_envelope",
    "highband_noise",
    "source_filter",
    "source_filter_mp",
    "upsampling_artefacts",
    "unit_splice",
    "psola_prosody",
    "frame_splice",
    "hifigan_lj_jitter",
    "hifigan_universal_jitter",
)
# training-only transforms made with a fold's own generator (its weights jittered): a fold that holds out the
# base generator drops them, and `melcnn train` (fit on train) leaves out those whose base is not a train generator
DERIVED_FROM: dict[str, str] = {
    "hifigan_lj_jitter": "hifigan_lj",
    "hifigan_universal_jitter": "hifigan_universal",
}
TRAINING_ONLY_GENERATORS: tuple[str, ...] = ("phase_vocoder", "minimum_phase", "formant_shift", *CANDIDATE_TRANSFORMS)
HELD_OUT_SOURCES: tuple[str, ...] = tuple(p for p, s in SOURCE_SPLITS.items() if s == "eval")

# Leave-source-out cross-validation over the train and dev material: (sources, generators) per fold.
CV_FOLDS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (  # fold 0 = the dev split
        tuple(p for p, s in SOURCE_SPLITS.items() if s == "dev"),
        tuple(g for g, s in GENERATOR_SPLITS.items() if s == "dev"),
    ),
    (  # IVR prompts and narrowband recordings; WORLD vocoders
        ("asterisk-core-sounds-en-g722", "asterisk-core-sounds-es-g722", "asterisk-core-sounds-fr-g722",
         "codec2-examples", "alsa-utils"),
        ("world", "world_vc"),
    ),
    (  # Russian studio and Czech game dialogue; Griffin-Lim, Festival unit selection
        ("festvox-ru", "fillets-ng-data-cs"),
        ("griffinlim_linear", "festival_clunits"),
    ),
    (  # home microphones in many languages; HiFi-GAN (LJSpeech), flite, and flite re-vocoded by that HiFi-GAN
        ("tuxpaint-stamps-default", "klettres-data"),
        ("hifigan_lj", "flite", "flite_hifigan_lj"),
    ),
    (  # 11 kHz game talkies; the diphone and formant engines
        ("flight-of-the-amazon-queen", "beneath-a-steel-sky"),
        ("espeak", "mbrola", "festival_diphone"),
    ),
)  # fmt: skip


def source_split(source: str) -> str:
    """Split of a bona fide source package (unknown packages go to train)."""
    return SOURCE_SPLITS.get(source, "train")


def generators_for(split: str, kind: str, available: dict[str, bool], kinds: dict[str, str]) -> list[str]:
    """Available generators of ``kind`` ('resynthesis' | 'tts') that belong to ``split``, in table order."""
    return [g for g, s in GENERATOR_SPLITS.items() if s == split and kinds.get(g) == kind and available.get(g)]


def text_split(text: str) -> str:
    """Split of a TTS sentence from the shared pool: a hash, so each sentence is read in one split only."""
    h = int(hashlib.sha1(text.strip().encode()).hexdigest(), 16) % 10
    return "train" if h <= 5 else "dev" if h <= 7 else "eval"


def fold_of(source: str, generator: str) -> tuple[int | None, int | None]:
    """(fold of the source, fold of the generator); None where it is not in any fold (eval material, or a
    generator of :data:`TRAINING_ONLY_GENERATORS`)."""
    fs = next((k for k, (srcs, _) in enumerate(CV_FOLDS) if source in srcs), None)
    fg = next((k for k, (_, gens) in enumerate(CV_FOLDS) if generator in gens), None)
    return fs, fg


def fold_role(fold: int, source: str, generator: str, label: str) -> str:
    """'test', 'train' or 'drop' for one clip in CV fold ``fold``.

    Test: the bona fide clips of the fold's sources, and the spoofs of the fold's generators whose partner
    comes from one of the fold's sources (so that, as in eval, both classes of the test reach the model
    through channels it has not seen). Train: clips whose source and generator are both outside the fold
    (and outside eval). Drop: everything else (a spoof of a fold source made by a training generator, a
    spoof of a fold generator made from a training source, a spoof derived from a fold generator
    (:data:`DERIVED_FROM`), and eval material).
    """
    if source_split(source) == "eval" or (generator != "bonafide" and GENERATOR_SPLITS.get(generator) == "eval"):
        return "drop"
    srcs, gens = CV_FOLDS[fold]
    if label == "bonafide":
        return "test" if source in srcs else "train"
    if generator in gens:
        return "test" if source in srcs else "drop"
    if DERIVED_FROM.get(generator) in gens:
        return "drop"
    return "drop" if source in srcs else "train"


def check_protocol(rows: list[dict]) -> list[str]:
    """Violations of the protocol in manifest rows (empty list: all good)."""
    problems = []
    spk_splits: dict[str, set[str]] = {}
    text_splits: dict[str, set[str]] = {}
    for r in rows:
        split = r["split"]
        spk_splits.setdefault(r["speaker"], set()).add(split)
        if r.get("source") in SOURCE_SPLITS and SOURCE_SPLITS[r["source"]] != split:
            problems.append(f"source {r['source']} ({SOURCE_SPLITS[r['source']]}) in {split}: {r['clip_id']}")
        g = r["generator"]
        if g != "bonafide" and g in GENERATOR_SPLITS and GENERATOR_SPLITS[g] != split:
            problems.append(f"generator {g} ({GENERATOR_SPLITS[g]}) in {split}: {r['clip_id']}")
        if g != "bonafide" and r.get("text") and r.get("voice"):
            text_splits.setdefault(r["text"], set()).add(split)
    for spk, ss in sorted(spk_splits.items()):
        if len(ss) > 1:
            problems.append(f"speaker {spk} in several splits: {sorted(ss)}")
    for text, ss in sorted(text_splits.items()):
        if len(ss) > 1:
            problems.append(f"TTS text in several splits {sorted(ss)}: {text[:60]!r}")
    return problems


def describe() -> dict:
    """The protocol's tables, for summaries and reports."""
    return {
        "unit": "bona fide source (package) and generator",
        "source_splits": SOURCE_SPLITS,
        "source_channels": SOURCE_CHANNELS,
        "generator_splits": GENERATOR_SPLITS,
        "held_out_sources": list(HELD_OUT_SOURCES),
        "held_out_generators": list(HELD_OUT_GENERATORS),
        "training_only_generators": list(TRAINING_ONLY_GENERATORS),
        "cv_folds": [{"sources": list(s), "generators": list(g)} for s, g in CV_FOLDS],
        "text_rule": "sha1(sentence) % 10: 0-5 train, 6-7 dev, 8-9 eval (shared sentence pool); "
        "a source's own transcripts stay in its split",
    }
