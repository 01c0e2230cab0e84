"""Tests of the channel-augmentation views, the re-encoding report's encoders, the cross-validation folds
and the calibration's false-reject target (melcnn.training.augment / invariance / crossval / train)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("soxr")
pytest.importorskip("av")

from media_factory import vowel_train  # noqa: E402

from melcnn.training import audio as A  # noqa: E402
from melcnn.training import augment as V  # noqa: E402

SR = A.SR


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


@pytest.mark.parametrize("channel", [c for c, _ in V.VIEW_CHANNELS])
def test_every_view_channel_keeps_length_alignment_and_finite_samples(channel, rng):
    x = vowel_train(rng, 3.0, harmonics=49, noise=0.003)
    for _ in range(2):
        v = V.draw_view(channel, rng, noise_files=1)
        y = V.apply_view(x, v, rng, [rng.standard_normal(4000)])
        assert len(y) == len(x) and np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 0.99 + 1e-9
        assert V.describe_view(v).startswith(f"view:{channel}")
    # without reverberation, noise or EQ the view stays aligned with its input, sample by sample
    plain = {"channel": channel, "floor_dbfs": -70.0, **({"cutoff_hz": 4000} if channel == "band" else {})}
    plain.update({k: v[k] for k in ("codec", "bitrate", "rate", "quality") if k in v})
    y = V.apply_view(x, plain, rng)
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [400.0, 3000.0], btype="bandpass", fs=SR, output="sos")  # a band every channel passes
    bx, by = sosfiltfilt(sos, x), sosfiltfilt(sos, y)
    assert np.corrcoef(bx[2000:-2000], by[2000:-2000])[0, 1] > 0.8


def test_telephone_and_band_views_remove_what_they_claim(rng):
    x = vowel_train(rng, 3.0, harmonics=49, noise=0.003)
    assert _band_energy(x, 4500, 8000) > 0.001
    tel = V.apply_view(x, {"channel": "telephone", "codec": "mulaw", "bitrate": None, "floor_dbfs": -90.0}, rng)
    assert _band_energy(tel, 4500, 8000) < 1e-4
    band = V.apply_view(x, {"channel": "band", "cutoff_hz": 3400, "floor_dbfs": -90.0}, rng)
    assert _band_energy(band, 3600, 8000) < 1e-4


def test_reverberation_and_noise_change_the_signal_at_the_drawn_level(rng):
    x = vowel_train(rng, 3.0, harmonics=49, noise=0.003)
    dry = V.apply_view(x, {"channel": "none", "floor_dbfs": -90.0}, rng)
    wet = V.apply_view(x, {"channel": "none", "rt60_s": 0.6, "drr_db": 0.0, "floor_dbfs": -90.0}, rng)
    # the reverberant tail fills the gaps between syllables: the quietest frames rise
    assert np.percentile(A.frame_rms_db(wet), 5) > np.percentile(A.frame_rms_db(dry), 5) + 6
    noisy = V.apply_view(x, {"channel": "none", "snr_db": 10.0, "noise": "white", "floor_dbfs": -90.0}, rng)
    resid = noisy - dry
    snr = A.active_rms_db(dry) - 10 * np.log10(np.mean(resid**2))
    assert abs(snr - 10.0) < 1.5


def test_noise_suppression_view_gates_the_noise_between_syllables_and_keeps_the_voice(rng):
    """The optional denoise step: white noise at 15 dB SNR, then spectral gating; the quiet frames between
    syllables fall by more than 10 dB and far more than the voiced frames, and the view says so.
    Drawing it is opt-in: without ``denoise_p`` a view's parameters are those drawn before it existed."""
    pytest.importorskip("noisereduce")
    x = vowel_train(rng, 3.0, harmonics=49, noise=0.0)
    base = {"channel": "none", "snr_db": 15.0, "noise": "white", "floor_dbfs": -90.0}
    noisy = V.apply_view(x, base, np.random.default_rng(1))
    for stationary in (True, False):
        d = {"stationary": stationary, "prop_decrease": 1.0, "n_fft": 1024}
        clean = V.apply_view(x, {**base, "denoise": d}, np.random.default_rng(1))
        assert len(clean) == len(noisy) and np.isfinite(clean).all()
        loud = A.frame_rms_db(noisy) > np.percentile(A.frame_rms_db(noisy), 70)
        quiet = A.frame_rms_db(noisy) < np.percentile(A.frame_rms_db(noisy), 20)
        drop = A.frame_rms_db(noisy) - A.frame_rms_db(clean)
        # gating takes the noise between syllables far more than the voice (on a real clip: 32 against 14 dB)
        assert np.median(drop[quiet]) > 10 and np.median(drop[quiet]) > np.median(drop[loud]) + 8, stationary
        assert "denoise" in V.describe_view({**base, "denoise": d})
    for seed in range(50):
        plain = V.draw_view("mp3", np.random.default_rng(seed), 3)
        assert V.draw_view("mp3", np.random.default_rng(seed), 3, denoise_p=0.0) == plain
        drawn = V.draw_view("mp3", np.random.default_rng(seed), 3, denoise_p=1.0)
        assert {k: v for k, v in drawn.items() if k != "denoise"} == plain
        assert drawn["denoise"]["n_fft"] in V.DENOISE_N_FFT and 0.5 <= drawn["denoise"]["prop_decrease"] <= 0.9


def test_view_draws_are_deterministic_and_follow_the_shares():
    a = [V.draw_view("mp3", np.random.default_rng(7), 3) for _ in range(2)]
    assert a[0] == a[1]
    draws = [V.draw_view("none", np.random.default_rng(i), 3) for i in range(2000)]
    assert abs(np.mean(["rt60_s" in d for d in draws]) - V.REVERB_P) < 0.04
    assert abs(np.mean(["snr_db" in d for d in draws]) - V.NOISE_P) < 0.04


def test_av_roundtrip_codecs_decode_to_the_same_length(rng):
    x = vowel_train(rng, 2.0, harmonics=49, noise=0.003)
    for codec, rate, br in (("aac", 16000, 32000), ("opus", 16000, 12000), ("amr", 8000, 7950), ("mp3", 11025, 16000)):
        y = A.av_roundtrip(x, codec, rate, br)
        assert len(y) == len(x) and np.all(np.isfinite(y))
        corr = np.corrcoef(A.band_limit(x, 6000)[500:-500], A.band_limit(y, 6000)[500:-500])[0, 1]
        assert corr > (0.4 if codec == "amr" else 0.8), (codec, corr)  # AMR-NB (CELP) keeps less of the waveform
    assert not np.allclose(A.quantise_u8(x), x, atol=1e-3)


def test_a_build_refuses_to_start_without_the_views_encoders(tmp_path, monkeypatch):
    """PyAV 17.1+ wheels lost the AMR-NB encoder: the build says so before making any clip."""
    from melcnn.training.build import build_dataset

    A.require_av_encoders()  # the pinned PyAV has every encoder the views use
    monkeypatch.setitem(A.AV_CODECS, "amr", ("no_such_amr_encoder", "amr", (8000,)))
    with pytest.raises(RuntimeError, match=r"cannot encode amr \(no_such_amr_encoder\).*av==17.0.0"):
        build_dataset(tmp_path / "data", views=2)
    assert not (tmp_path / "data").exists()  # nothing fetched, nothing written


def test_reencoded_files_are_real_files_of_their_format(tmp_path, rng):
    from melcnn.audio import load_audio
    from melcnn.training import invariance as I

    x = vowel_train(rng, 4.0, harmonics=49, noise=0.003)
    expect = {"mp3_128k": "mp3", "mp3_32k": "mp3", "aac_64k": "aac", "opus_24k": "opus", "telephone_8k": "wav"}
    for cond in I.conditions():
        f = I.encode_file(x, SR, cond, tmp_path / cond)
        audio = load_audio(f)
        assert abs(audio.duration_s - 4.0) < 0.1, cond
        if cond in expect:
            assert expect[cond] in audio.format, (cond, audio.format)
    tel = load_audio(tmp_path / "telephone_8k.wav")
    assert tel.original_sample_rate == 8000


def test_reencoding_report_says_which_way_each_class_flips(tmp_path, rng):
    """The same real clip stands for a bona fide file called REAL (base score 0) and a spoof called FAKE
    (base score 1); its re-encoded copies are really scored by the shipped V2, so in every condition
    exactly one of the two flips, and the report must put that flip in the right column."""
    import soundfile as sf

    from melcnn import load_model
    from melcnn.training import invariance as I

    clip = tmp_path / "clip.flac"
    sf.write(str(clip), vowel_train(rng, 4.0, harmonics=49, noise=0.003), SR)
    ckpt = load_model("MEL-Spectrogram-CNN-V2").checkpoint
    records = []
    rep = I.reencoding_report([clip, clip], [0.0, 1.0], ckpt, labels=[0, 1], records=records)
    assert list(rep) == I.conditions()
    for cond, m in rep.items():
        s1 = m["bonafide_mean_change"]  # the re-encoded copy's score (base 0)
        assert m["files"] == 2 and m["bonafide_files"] == 1 and m["spoof_files"] == 1, cond
        assert m["flip_rate"] == 0.5, cond
        assert m["bonafide_to_fake"] == float(s1 >= ckpt.threshold), cond
        assert m["spoof_to_real"] == float(s1 < ckpt.threshold), cond
        assert abs(m["spoof_mean_change"] - (s1 - 1.0)) < 1e-3, cond
        # before: both verdicts right and the two files apart; after: one score for both, so one verdict
        # right, and the EER of two equal scores is a coin's
        assert m["bonafide_real_before"] == m["spoof_fake_before"] == 1.0 and m["eer_before"] == 0.0, cond
        assert m["bonafide_real_after"] == float(s1 < ckpt.threshold), cond
        assert m["spoof_fake_after"] == float(s1 >= ckpt.threshold), cond
        assert m["eer_after"] == 0.5, cond
        rows = [r for r in records if r["condition"] == cond]
        assert [(r["label"], r["score_before"]) for r in rows] == [(0, 0.0), (1, 1.0)], cond
        assert all(abs(r["score_after"] - s1) < 1e-3 for r in rows), cond
    # without labels the report keeps its pooled figures only
    pooled = I.reencoding_report([clip], [0.0], ckpt)
    assert "bonafide_to_fake" not in pooled["mp3_128k"] and pooled["mp3_128k"]["files"] == 1


def test_calibration_puts_the_threshold_at_the_target_false_reject_rate(rng):
    from melcnn.classifier import HeadConfig
    from melcnn.training.train import calibrate, file_scores

    n = 400
    labels = np.repeat([0, 1], n)
    logits = np.where(labels == 1, 1.0, -1.0) + rng.standard_normal(2 * n) * 1.2
    files = np.arange(2 * n)
    cal = calibrate(logits, labels, files, head=HeadConfig(), target_frr=0.05)
    from melcnn.classifier import calibrated_scores

    s = file_scores(calibrated_scores(logits, head=HeadConfig(), calibration=cal), files)[1]
    assert abs(np.mean(s[labels == 0] >= 0.5) - 0.05) <= 1.0 / n + 1e-9
    assert cal["dev_bonafide_false_reject_at_0.5"] <= 0.05
    eer_cal = calibrate(logits, labels, files, head=HeadConfig(), target_frr=None)
    assert eer_cal["bias"] > cal["bias"]  # the EER point rejects more bona fide files than 5 %


def test_a_saved_training_part_is_reused_only_under_the_same_heads_settings_and_features(tmp_path):
    """The digest that lets an interrupted `melcnn train --fit-on train+dev` reuse its finished parts."""
    from dataclasses import replace

    from melcnn.classifier import HeadConfig
    from melcnn.training.crossval import fit_fingerprint, read_part, write_part
    from melcnn.training.features import Clip, FeatureSet
    from melcnn.training.train import TrainConfig

    clips = [Clip(f"c{i}", Path("x"), i % 2, "train", "g", "s", "en", "none", 4.0, "src") for i in range(4)]
    x = np.random.default_rng(0).standard_normal((8, 3, 2)).astype(np.float32)
    fs = FeatureSet(x, np.arange(8) % 2, np.arange(8) // 2, clips)
    heads, tcfg = (HeadConfig(freq_bands=2),), TrainConfig(epochs=2)
    key = fit_fingerprint(heads, tcfg, fs)
    assert key == fit_fingerprint(heads, replace(tcfg, threads=1), fs)  # threads change no result
    other_x = x.copy()
    other_x[0, 0, 0] += 1
    for other in (
        fit_fingerprint(heads, replace(tcfg, epochs=3), fs),
        fit_fingerprint(heads, replace(tcfg, seed=1), fs),
        fit_fingerprint((HeadConfig(freq_bands=4),), tcfg, fs),
        fit_fingerprint(heads, tcfg, FeatureSet(other_x, fs.y, fs.clip_index, clips)),
        fit_fingerprint(heads, tcfg, FeatureSet(x, fs.y, fs.clip_index, clips[::-1])),
        fit_fingerprint(heads, tcfg, fs, fold=0),
    ):
        assert other != key
    write_part(tmp_path / "p.npz", key, a=np.arange(3.0))
    assert np.array_equal(read_part(tmp_path / "p.npz", key)["a"], np.arange(3.0))
    assert read_part(tmp_path / "p.npz", fit_fingerprint(heads, replace(tcfg, epochs=3), fs)) is None
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    assert read_part(tmp_path / "bad.npz", key) is None and read_part(tmp_path / "none.npz", key) is None
    assert list(tmp_path.glob(".tmp-*")) == []  # no temporary file of the atomic write is left


def test_cross_validation_folds_keep_test_sources_and_generators_out_of_training():
    from melcnn.training import protocol as P
    from melcnn.training.crossval import fold_sets
    from melcnn.training.features import Clip

    clips = []
    for src, split in P.SOURCE_SPLITS.items():
        clips.append(Clip(f"bf.{src}", Path("x"), 0, split, "bonafide", "s", "en", "none", 4.0, src))
        clips.append(Clip(f"bf.{src}~v1", Path("x"), 0, split, "bonafide", "s", "en", "v", 4.0, src, f"bf.{src}"))
        for g, gsplit in P.GENERATOR_SPLITS.items():
            if gsplit == split:
                clips.append(Clip(f"sp.{g}.{src}", Path("x"), 1, split, g, "s", "en", "none", 4.0, src))
    for k, (srcs, gens) in enumerate(P.CV_FOLDS):
        train, test = fold_sets(clips, k)
        tr = [clips[i] for i in train]
        te = [clips[i] for i in test]
        assert te and tr
        assert not any(c.source in srcs or c.generator in gens for c in tr)
        assert not any(c.split == "eval" for c in tr + te)
        assert all(not c.is_view for c in te)
        assert any(c.is_view for c in tr)
        assert all(c.source in srcs and (c.label == 0 or c.generator in gens) for c in te)
