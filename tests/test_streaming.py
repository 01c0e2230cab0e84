"""melcnn.streaming: the analysis run while a file decodes equals the whole-signal path (decode everything,
cut all chunks, score them at once, measure the whole array) on a real multi-minute encoded file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SR
from media_factory import _write_av, speech_like

import melcnn
from melcnn.audio import load_audio
from melcnn.chunking import chunk
from melcnn.metrics import audio_metrics
from melcnn.spectrogram import mel_db
from melcnn.streaming import analyze_stream

MINUTES = 4.0


@pytest.fixture(scope="module")
def long_mp3(tmp_path_factory) -> Path:
    """Four minutes of speech-like audio with pauses and level changes, a 32 kHz mono MP3 (decoded in
    about 80 blocks, resampled to 16 kHz)."""
    import soxr

    rng = np.random.default_rng(5)
    voices = [speech_like(20.0, SR, seed=k) for k in range(3)]
    parts, total = [], 0
    while total < MINUTES * 60 * SR:
        part = voices[len(parts) % 3] * np.float32(10 ** rng.uniform(-1.0, 0.0))
        pause = (1e-4 * rng.standard_normal(int(rng.uniform(0.2, 1.0) * SR))).astype(np.float32)
        parts += [part, pause]
        total += len(part) + len(pause)
    y = np.concatenate(parts)[: int(MINUTES * 60 * SR)]
    path = tmp_path_factory.mktemp("long") / "four_minutes.mp3"
    y32 = soxr.resample(y, SR, 32000).astype(np.float32)
    _write_av(path, "mp3", [("libmp3lame", y32[:, None], 32000, {"bit_rate": 64000})])
    return path


@pytest.fixture(scope="module")
def whole(long_mp3):
    """The whole-signal path's inputs: the decoded signal and its measurements."""
    y = load_audio(long_mp3).samples
    return y, audio_metrics(y, sample_rate=SR)


@pytest.fixture(scope="module")
def oracle(whole, tiny_checkpoints):
    """Per variant: the detector and its scores of every chunk of the whole signal at once (as before streaming)."""
    y, _ = whole
    out = {}
    for variant in ("v2", "v3"):
        detector = melcnn.load_model(tiny_checkpoints[variant])
        chunks = chunk(y, sr=SR, chunk_s=3.0, overlap_s=detector.default_overlap_s)
        out[variant] = detector, chunks, detector.score_chunks(chunks.samples)
    return out


@pytest.mark.parametrize("variant", ["v2", "v3"])
def test_streamed_scores_equal_the_whole_signal_path(long_mp3, whole, oracle, variant):
    detector, chunks, expected = oracle[variant]
    batches: list[np.ndarray] = []
    stream = analyze_stream(
        long_mp3,
        cfg=detector.config,
        overlap_s=detector.default_overlap_s,
        max_duration_s=3600,
        on_batch=lambda b: batches.append(detector.score_chunks(b)),  # what Detector.analyze does per batch
        measurements=False,
    )
    assert len(batches) == -(-len(expected) // 16) >= 5 and all(len(b) == 16 for b in batches[:-1])
    np.testing.assert_allclose(np.concatenate(batches), expected, rtol=0, atol=1e-6)
    assert stream.starts_s.tolist() == chunks.starts_s.tolist()
    assert stream.audio.duration_s == pytest.approx(len(whole[0]) / SR)


def test_streamed_report_equals_the_whole_signal_path(long_mp3, whole, oracle):
    """Detector.analyze (V2): the chunk scores (rounded to 4 decimals in the report), the measurements
    and the V2 picture data (the last chunk's mel spectrogram)."""
    y, (sections, warnings) = whole
    detector, chunks, expected = oracle["v2"]
    report = detector.analyze(long_mp3)
    got = [c["fake_score"] for c in report["chunks"]]
    np.testing.assert_allclose(got, np.round(expected, 4), rtol=0, atol=1e-4 + 1e-9)
    assert report["fake_score"] == pytest.approx(expected.mean(), abs=1e-4)
    assert [c["start_s"] for c in report["chunks"]] == np.round(chunks.starts_s, 3).tolist()
    assert report["pitch"] == sections["pitch"]  # the same 60 s segments, whatever the blocks
    for key in ("energy", "spectral"):
        assert report[key] == pytest.approx(sections[key], rel=1e-12)
    assert all(w in report["warnings"] for w in warnings)
    last = mel_db(chunks.samples[-1], cfg=detector.config)
    np.testing.assert_allclose(report["visualization"]["spectrogram_data"], last, atol=0.051)
    assert report["properties"]["duration_seconds"] == pytest.approx(MINUTES * 60, abs=0.1)


def test_picture_of_a_long_file_is_drawn_from_bounded_columns(long_mp3, tiny_checkpoints, tmp_path):
    detector = melcnn.load_model(tiny_checkpoints["v3"])
    stream = analyze_stream(
        long_mp3,
        cfg=detector.config,
        overlap_s=1.5,
        max_duration_s=3600,
        on_batch=lambda b: None,
        measurements=False,
        overview=True,
    )
    assert stream.overview is not None
    mel, column_s = stream.overview
    # 7501 frames of 32 ms: 1876 columns of 4 frames (the last one of 1), at most 2000
    assert mel.shape == (128, 1876) and column_s == pytest.approx(4 * 512 / SR)
    report = detector.analyze(long_mp3, plot_dir=tmp_path)
    assert Path(report["visualization"]["spectrogram_url"]).read_bytes()[:4] == b"\x89PNG"


def test_a_restart_forgets_everything_before_it(rng):
    """When the decoding starts over (libsndfile failed part-way, FFmpeg decodes the file again), every
    stage starts afresh: the result is that of the second pass alone."""
    from melcnn.config import FeatureConfig
    from melcnn.streaming import _FileStream

    def run(*signals: np.ndarray) -> tuple:
        batches: list[np.ndarray] = []
        restarts: list[int] = []

        def restart() -> None:
            batches.clear()
            restarts.append(1)

        options = {"measurements": True, "overview": True, "keep_last_chunk": True, "submit": None}
        stream = _FileStream(FeatureConfig(), 1.5, batches.append, restart, batch_chunks=4, **options)
        for i, y in enumerate(signals):
            if i:
                stream.restart()
            for block in np.array_split(y, 7):
                stream.push(block)
        sections, warnings = stream.finish()
        assert stream.overview is not None
        return np.concatenate(batches), sections, warnings, stream.overview.result()[0], stream.last_chunk, restarts

    first = (0.2 * rng.standard_normal(17 * SR)).astype(np.float32)
    second = speech_like(11.0, SR, seed=8)
    again = run(first, second)
    fresh = run(second)
    assert again[-1] == [1] and fresh[-1] == []
    np.testing.assert_array_equal(again[0], fresh[0])
    assert again[1] == fresh[1] and again[2] == fresh[2]
    np.testing.assert_array_equal(again[3], fresh[3])
    np.testing.assert_array_equal(again[4], fresh[4])
