"""The VoIP leg through Opus 1.5's decoder and its neural post-filters (melcnn.training.opus_ml): the
libopus encoder through PyAV, the npm decoder run by Node.js, the views that draw it and the re-encoding
report's VoIP conditions. ``scripts/test.sh`` installs Node.js and the npm package
(``scripts/install_training_deps.sh``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("soxr")
pytest.importorskip("av")

from media_factory import vowel_train  # noqa: E402

from melcnn.training import audio as A  # noqa: E402
from melcnn.training import augment as V  # noqa: E402
from melcnn.training import opus_ml as O  # noqa: E402

SR = A.SR
EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "melcnn" / "examples" / "bonafide_en.flac"

needs_decoder = pytest.mark.skipif(
    not O.available(), reason="Node.js or the npm Opus ML decoder is missing (scripts/install_training_deps.sh)"
)


def _snr_db(x: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(x**2) / np.sum((x - y) ** 2)))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(str(EXAMPLE), dtype="float64")
    return A.resample(x, sr, SR)[: 6 * SR]


@needs_decoder
def test_the_voip_leg_keeps_the_signal_and_the_post_filters_change_it(speech):
    """Each mode returns the clip aligned and of its length; NoLACE, the larger post-filter, brings the
    waveform measurably closer to the original than the plain decoder (it enhances, as designed), LACE
    changes it too, and the same input always gives the same output (a build is reproducible)."""
    out = {m: O.roundtrip(speech, 12000, m) for m in O.MODES}
    for m, y in out.items():
        assert len(y) == len(speech) and np.all(np.isfinite(y)), m
        assert np.corrcoef(speech, y)[0, 1] > 0.85, m  # aligned: the codec delay is removed
    snr = {m: _snr_db(speech, y) for m, y in out.items()}
    assert snr["nolace"] > snr["none"] + 2.0, snr
    assert np.sqrt(np.mean((out["lace"] - out["none"]) ** 2)) > 1e-3
    assert np.array_equal(out["nolace"], O.roundtrip(speech, 12000, "nolace"))


@needs_decoder
def test_the_encoder_makes_voip_packets_at_the_asked_rate(speech):
    packets, pre_skip = O.encode(speech, 12000)
    assert pre_skip > 0 and len(packets) >= len(speech) // 320  # 20 ms frames at 16 kHz
    kbps = 8 * sum(len(p) for p in packets) / (len(speech) / SR) / 1000
    assert 6 < kbps < 18, kbps


@needs_decoder
def test_the_decoder_reports_corrupt_packets_and_bad_modes():
    d = O.Decoder()
    try:
        with pytest.raises(O.OpusMLError, match="undecodable"):
            d.decode([b"\xff\xfe not opus" * 4], 312, "lace")
        with pytest.raises(ValueError, match="mode"):
            d.decode([], 312, "loud")
        # the process survives a bad request and decodes the next one
        x = vowel_train(np.random.default_rng(0), 1.0, harmonics=30, noise=0.003)
        assert len(d.decode(*O.encode(x, 16000), "nolace")) >= SR
    finally:
        d.close()


def test_a_missing_decoder_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(O, "OPUS_ML_DIR", tmp_path)
    assert not O.available()
    with pytest.raises(O.OpusMLError, match="install_training_deps"):
        O.Decoder()


@needs_decoder
def test_views_draw_the_voip_leg_last_and_apply_it(rng):
    """Opt-in and drawn after every other parameter: without ``opus_ml_p`` a view is what it was before;
    with it, the same view plus the leg, which the view applies (a real change of the samples)."""
    for seed in range(6):
        plain = V.draw_view("aac", np.random.default_rng(seed), 3, denoise_p=0.3)
        assert V.draw_view("aac", np.random.default_rng(seed), 3, denoise_p=0.3, opus_ml_p=0.0) == plain
        drawn = V.draw_view("aac", np.random.default_rng(seed), 3, denoise_p=0.3, opus_ml_p=1.0)
        assert {k: v for k, v in drawn.items() if k != "opus_ml"} == plain
        assert drawn["opus_ml"]["mode"] in O.MODES and drawn["opus_ml"]["bitrate"] in V.OPUS_ML_BITRATES
    x = vowel_train(rng, 2.0, harmonics=49, noise=0.003)
    base = {"channel": "none", "floor_dbfs": -70.0}
    leg = {**base, "opus_ml": {"bitrate": 9000, "mode": "lace"}}
    assert "voip" in V.describe_view(leg) and "lace" in V.describe_view(leg)
    y0 = V.apply_view(x, base, np.random.default_rng(1))
    y1 = V.apply_view(x, leg, np.random.default_rng(1))
    assert len(y1) == len(x) and np.all(np.isfinite(y1))
    assert np.sqrt(np.mean((y1 - y0) ** 2)) > 0.01 * np.sqrt(np.mean(y0**2))


@needs_decoder
def test_the_report_adds_voip_conditions_as_16k_wav_files(tmp_path, speech):
    from melcnn.audio import load_audio
    from melcnn.training import invariance as I

    assert I.conditions() == list(I.CONDITIONS) + list(I.VOIP_CONDITIONS)
    for cond in I.VOIP_CONDITIONS:
        f = I.encode_file(speech, SR, cond, tmp_path / cond)
        audio = load_audio(f)
        assert f.suffix == ".wav" and audio.original_sample_rate == SR
        assert abs(audio.duration_s - len(speech) / SR) < 0.05, cond
