"""Tests of melcnn.metrics: the pitch / energy / spectral sections of the report."""

from __future__ import annotations

import importlib.resources
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from melcnn import metrics
from melcnn.metrics import NO_VOICE_WARNING, audio_metrics

SR = 16_000  # Hz


def _example_clip() -> tuple[np.ndarray, int]:
    path = importlib.resources.files("melcnn") / "examples" / "bonafide_en.flac"
    with importlib.resources.as_file(path) as p:
        x, sr = sf.read(p, dtype="float32")
    return x, sr


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """The bundled real-speech clip (13.7 s, 16 kHz, female voice)."""
    return _example_clip()


def _harmonic_tone(f0_hz: np.ndarray | float, duration_s: float, sr: int = SR) -> np.ndarray:
    """Five harmonics with 1/k amplitudes; ``f0_hz`` may be a per-sample array (a glide)."""
    n = int(duration_s * sr)
    f0 = np.broadcast_to(np.asarray(f0_hz, dtype=np.float64), (n,))
    phase = 2.0 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 6))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _check_types(sections: dict) -> None:
    """Every value is a finite Python float (pitch values may be None); all JSON-serialisable."""
    assert set(sections) == {"pitch", "energy", "spectral"}
    assert set(sections["pitch"]) == {"mean_pitch_hz", "pitch_stability_score", "voiced_ratio"}
    assert set(sections["energy"]) == {"rms_energy", "silence_ratio"}
    assert set(sections["spectral"]) == {"spectral_centroid", "spectral_contrast"}
    for section in sections.values():
        for key, value in section.items():
            if value is None:
                assert key in ("mean_pitch_hz", "pitch_stability_score")
                continue
            assert type(value) is float, (key, type(value))
            assert math.isfinite(value), key
    json.dumps(sections, allow_nan=False)


# --- real speech -------------------------------------------------------------------------------------


def test_example_clip_is_real_speech_of_expected_format(speech):
    x, sr = speech
    assert sr == SR
    assert x.ndim == 1 and 12.0 <= len(x) / sr <= 16.0
    # no inserted digital silence: the pauses are recorded low-level noise
    edges = np.diff(np.r_[0, (x == 0).astype(np.int8), 0])
    longest_zero_run = int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max(initial=0))
    assert longest_zero_run < 50


def test_mean_pitch_agrees_with_pyin_on_real_speech(speech):
    librosa = pytest.importorskip("librosa")
    x, sr = speech
    sections, warnings = audio_metrics(x, sample_rate=sr)
    _check_types(sections)
    assert warnings == []

    f0, voiced, _ = librosa.pyin(x, fmin=librosa.note_to_hz("C2"), fmax=librosa.note_to_hz("C7"), sr=sr)
    pyin_mean = float(np.mean(f0[voiced]))
    ours = sections["pitch"]["mean_pitch_hz"]
    assert abs(ours - pyin_mean) / pyin_mean < 0.05, (ours, pyin_mean)


def test_real_speech_values_are_plausible(speech):
    x, sr = speech
    sections, _ = audio_metrics(x, sample_rate=sr)
    p, e, s = sections["pitch"], sections["energy"], sections["spectral"]
    assert 150.0 < p["mean_pitch_hz"] < 260.0  # adult female voice
    assert 0.6 < p["pitch_stability_score"] < 0.95  # natural intonation: neither flat nor erratic
    assert 0.4 < p["voiced_ratio"] < 0.95
    assert 0.02 < e["rms_energy"] < 0.5
    assert 0.03 < e["silence_ratio"] < 0.3  # ~0.3 s pauses between four prompts
    assert 500.0 < s["spectral_centroid"] < 4000.0
    assert 5.0 < s["spectral_contrast"] < 40.0


# --- synthetic pitch ---------------------------------------------------------------------------------


def test_harmonic_tone_pitch_and_stability():
    sections, warnings = audio_metrics(_harmonic_tone(220.0, 3.0), sample_rate=SR)
    _check_types(sections)
    assert warnings == []
    p = sections["pitch"]
    assert p["mean_pitch_hz"] == pytest.approx(220.0, rel=0.02)
    assert p["pitch_stability_score"] > 0.98
    assert p["voiced_ratio"] > 0.9


def test_gliding_tone_is_less_stable():
    n = 3 * SR
    glide = 150.0 * 2.0 ** (np.arange(n) / n)  # one octave up, linear in semitones
    sections, warnings = audio_metrics(_harmonic_tone(glide, 3.0), sample_rate=SR)
    assert warnings == []
    p = sections["pitch"]
    steady, _ = audio_metrics(_harmonic_tone(220.0, 3.0), sample_rate=SR)
    # uniform over 12 semitones: robust sigma = 1.4826 * 3 st = 4.4 st -> score 1 / (1 + 4.4 / 12) = 0.73
    assert p["pitch_stability_score"] == pytest.approx(0.73, abs=0.05)
    assert p["pitch_stability_score"] < steady["pitch"]["pitch_stability_score"] - 0.2
    assert 190.0 < p["mean_pitch_hz"] < 230.0  # mean of an exponential glide 150..300 Hz is 216 Hz


def test_pitch_stability_definition():
    assert metrics.pitch_stability(np.full(50, 180.0)) == pytest.approx(1.0)
    # normal spread of sigma semitones -> 1 / (1 + sigma / 12)
    st = np.random.default_rng(0).normal(0.0, 3.0, 20_001)
    assert metrics.pitch_stability(200.0 * 2.0 ** (st / 12.0)) == pytest.approx(1.0 / 1.25, abs=0.01)
    # a few octave errors barely move the robust score
    f0 = np.full(100, 200.0)
    f0[:3] = 400.0
    assert metrics.pitch_stability(f0) == pytest.approx(1.0)


@pytest.mark.parametrize("amplitude", [0.1, 1e-4], ids=["white-noise", "silence-ish-noise"])
def test_noise_has_no_pitch(rng, amplitude):
    x = (amplitude * rng.standard_normal(3 * SR)).astype(np.float32)
    sections, warnings = audio_metrics(x, sample_rate=SR)
    _check_types(sections)
    assert sections["pitch"]["mean_pitch_hz"] is None
    assert sections["pitch"]["pitch_stability_score"] is None
    assert warnings == [NO_VOICE_WARNING]


def test_digital_silence_is_finite():
    sections, warnings = audio_metrics(np.zeros(2 * SR, np.float32), sample_rate=SR)
    _check_types(sections)
    assert warnings == [NO_VOICE_WARNING]
    assert sections["energy"] == {"rms_energy": 0.0, "silence_ratio": 1.0}
    assert sections["spectral"] == {"spectral_centroid": 0.0, "spectral_contrast": 0.0}


def test_too_short_for_pitch_is_null_not_error(rng):
    x = (0.1 * rng.standard_normal(SR // 50)).astype(np.float32)  # 20 ms < one 40 ms pitch window
    sections, warnings = audio_metrics(x, sample_rate=SR)
    _check_types(sections)
    assert sections["pitch"] == {"mean_pitch_hz": None, "pitch_stability_score": None, "voiced_ratio": 0.0}
    assert warnings == [NO_VOICE_WARNING]


# --- energy ------------------------------------------------------------------------------------------


def test_rms_of_sine():
    t = np.arange(2 * SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    sections, _ = audio_metrics(x, sample_rate=SR)
    assert sections["energy"]["rms_energy"] == pytest.approx(0.5 / math.sqrt(2.0), rel=1e-4)
    assert sections["energy"]["silence_ratio"] == 0.0


def test_half_silence(rng):
    tone = _harmonic_tone(200.0, 2.0)
    quiet = (3e-5 * rng.standard_normal(2 * SR)).astype(np.float32)  # ~ -90 dBFS recorded-like noise
    x = np.concatenate([tone, quiet])
    sections, _ = audio_metrics(x, sample_rate=SR)
    assert sections["energy"]["silence_ratio"] == pytest.approx(0.5, abs=0.02)


def test_silence_thresholds():
    # a frame 30 dB under the loudest is not silent, 50 dB under is
    levels_db = np.array([0.0, -30.0, -50.0])
    ms = 10.0 ** (levels_db / 10.0) * 0.1
    assert metrics._silent(ms).tolist() == [False, False, True]
    # below -60 dBFS everything is silent, however flat
    assert metrics._silent(np.full(4, 10.0 ** (-70 / 10))).all()


# --- spectral ----------------------------------------------------------------------------------------


def test_centroid_of_pure_tone():
    t = np.arange(3 * SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    sections, _ = audio_metrics(x, sample_rate=SR)
    assert sections["spectral"]["spectral_centroid"] == pytest.approx(1000.0, rel=0.01)


@pytest.mark.parametrize("signal", ["speech", "noise"])
def test_spectral_matches_librosa(signal, speech, rng):
    """Our STFT, centroid and contrast equal librosa's: contrast within 0.01 dB per band and frame."""
    librosa = pytest.importorskip("librosa")
    if signal == "speech":
        x, sr = speech
    else:
        x, sr = (0.1 * rng.standard_normal(40 * SR)).astype(np.float32), SR  # 1251 frames: 2 blocks
    magnitude, _ = metrics.stft_magnitude(x)
    ref_mag = np.abs(librosa.stft(x, n_fft=2048, hop_length=512))
    np.testing.assert_allclose(magnitude, ref_mag, atol=1e-4 * ref_mag.max())

    ours = metrics.spectral_contrast_db(magnitude, sample_rate=sr)
    ref = librosa.feature.spectral_contrast(y=x, sr=sr)
    assert ours.shape == ref.shape == (7, magnitude.shape[1])
    assert np.abs(ours - ref).max() < 0.01
    assert abs(ours.mean() - ref.mean()) < 0.001

    if signal == "noise":  # no silent frames: the reported values are the plain means
        sections, _ = audio_metrics(x, sample_rate=sr)
        assert sections["spectral"]["spectral_contrast"] == pytest.approx(ref.mean(), abs=0.001)
        ref_centroid = librosa.feature.spectral_centroid(y=x, sr=sr).mean()
        assert sections["spectral"]["spectral_centroid"] == pytest.approx(ref_centroid, rel=1e-4)


def test_long_input_in_blocks_matches_whole(speech, monkeypatch):
    """Segmented pitch tracking and blockwise energy equal the one-piece results."""
    x, sr = speech
    whole, _ = audio_metrics(x, sample_rate=sr)
    f0_whole = metrics.pitch_track(x, sample_rate=sr)
    monkeypatch.setattr(metrics, "PITCH_SEGMENT_S", 3.0)  # 5 segments of 2.7 s
    monkeypatch.setattr(metrics, "_BLOCK_SAMPLES", 1000)
    monkeypatch.setattr(metrics, "_STFT_BLOCK_FRAMES", 7)
    f0_parts = metrics.pitch_track(x, sample_rate=sr)
    assert abs(len(f0_parts) - len(f0_whole)) <= 5 * 4  # a 40 ms window lost per boundary
    parts, _ = audio_metrics(x, sample_rate=sr)
    assert parts["pitch"]["mean_pitch_hz"] == pytest.approx(whole["pitch"]["mean_pitch_hz"], rel=0.01)
    assert parts["pitch"]["voiced_ratio"] == pytest.approx(whole["pitch"]["voiced_ratio"], abs=0.02)
    assert parts["energy"] == pytest.approx(whole["energy"], rel=1e-9)
    assert parts["spectral"] == pytest.approx(whole["spectral"], rel=1e-9)


def _random_blocks(x: np.ndarray, rng: np.random.Generator, largest: int) -> list[np.ndarray]:
    """``x`` cut at random places into blocks of 0 to ``largest`` samples (empty and tiny ones too)."""
    cuts = np.cumsum(rng.integers(0, largest + 1, size=2 * len(x) // largest + 2))
    return np.split(x, cuts[cuts < len(x)])


@pytest.mark.parametrize("segment_s", [60.0, 3.0], ids=["one-pitch-segment", "five-pitch-segments"])
def test_measurers_fed_in_blocks_equal_one_push(speech, rng, monkeypatch, segment_s):
    """How the signal arrives (the decoder's blocks) does not change the measurements."""
    monkeypatch.setattr(metrics, "PITCH_SEGMENT_S", segment_s)
    x, sr = speech
    whole, whole_warnings = audio_metrics(x, sample_rate=sr)
    signal, pitch = metrics.SignalMeasurer(sr), metrics.PitchMeasurer(sr)
    for block in _random_blocks(x, rng, 40_000):
        signal.push(block)
        pitch.push(block)
    pitch_section, warnings = pitch.result()
    assert pitch_section == whole["pitch"] and warnings == whole_warnings
    parts = signal.result()
    assert parts["energy"] == pytest.approx(whole["energy"], rel=1e-12)
    assert parts["spectral"] == pytest.approx(whole["spectral"], rel=1e-12)


def test_pitch_segments_are_tracked_relative_to_the_peak_so_far(speech):
    """One segment: exactly one Praat call. Later segments: the silence threshold is relative to the
    peak of everything up to their end (a quieter second minute is judged against the first one)."""
    x, sr = speech
    np.testing.assert_array_equal(metrics.pitch_track(x, sample_rate=sr), metrics._praat_f0(x, sr, 0.03))
    seg = int(metrics.PITCH_SEGMENT_S * sr)
    loud = np.resize(x, seg)
    quiet = 0.25 * x
    track = metrics.pitch_track(np.concatenate([loud, quiet]), sample_rate=sr)
    expected = np.concatenate([metrics._praat_f0(loud, sr, 0.03), metrics._praat_f0(quiet, sr, 0.03 / 0.25)])
    np.testing.assert_array_equal(track, expected)


def test_measurers_without_samples_raise():
    with pytest.raises(ValueError):
        metrics.SignalMeasurer(SR).result()
    with pytest.raises(ValueError):
        metrics.PitchMeasurer(SR).result()
    with pytest.raises(ValueError):
        metrics.SignalMeasurer(0)


def test_energy_frames_are_25ms_every_10ms():
    x = np.zeros(SR, np.float32)  # 1 s: 98 frames of 400 samples every 160
    x[: SR // 2] = 0.5
    sections, _ = audio_metrics(x, sample_rate=SR)
    # frames starting at or after 0.5 s are silent: (98 - 50) / 98
    assert sections["energy"]["silence_ratio"] == pytest.approx(48 / 98)
    assert sections["energy"]["rms_energy"] == pytest.approx(0.5 / math.sqrt(2.0))


def test_contrast_at_low_sample_rate_drops_bands(rng):
    x = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    magnitude, _ = metrics.stft_magnitude(x)
    assert metrics.spectral_contrast_db(magnitude, sample_rate=8000).shape[0] == 6  # 3.2-4 kHz is last


# --- input validation and import cost ----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [np.zeros(0, np.float32), np.zeros((2, 100), np.float32), np.array([0.1, np.nan], np.float32)]
)
def test_bad_input_raises(bad):
    with pytest.raises(ValueError):
        audio_metrics(bad, sample_rate=SR)


def test_signal_and_pitch_parts_make_up_audio_metrics(speech):
    """The two parts the detector runs separately (one on a worker thread) equal the whole."""
    x, sr = speech
    sections, warnings = audio_metrics(x, sample_rate=sr)
    pitch, pitch_warnings = metrics.pitch_metrics(x, sample_rate=sr)
    assert {"pitch": pitch, **metrics.signal_metrics(x, sample_rate=sr)} == sections
    assert pitch_warnings == warnings
    for part in (metrics.signal_metrics, metrics.pitch_metrics):
        with pytest.raises(ValueError):
            part(np.zeros((2, 100), np.float32), sample_rate=sr)


def test_import_does_not_pull_heavy_modules():
    code = (
        "import sys, numpy as np; import melcnn.metrics as m; "
        "m.audio_metrics(np.zeros(16000, np.float32) + 1e-3, sample_rate=16000); "
        "bad = [k for k in ('librosa', 'scipy.signal', 'matplotlib') if k in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
