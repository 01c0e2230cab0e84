"""End to end: media file -> Detector.analyze -> report, with small checkpoints trained by the tests."""

import json
import subprocess
import sys
import threading

import jsonschema
import numpy as np
import pytest
from conftest import SR, bonafide_signal, spoof_signal, write_wav

import melcnn
from melcnn.errors import (
    EmptyMediaError,
    MelcnnError,
    NonFiniteAudioError,
    NotAudioError,
    SilentAudioError,
    TooShortError,
)
from melcnn.report import schema


@pytest.fixture(scope="module")
def v2(tiny_checkpoints):
    return melcnn.load_model(tiny_checkpoints["v2"])


@pytest.fixture(scope="module")
def v3(tiny_checkpoints):
    return melcnn.load_model(tiny_checkpoints["v3"])


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    # seeds never seen in training (the fixture trains on 100-109)
    return {
        "real": write_wav(d / "real.wav", bonafide_signal(9.5, seed=501)),
        "fake": write_wav(d / "fake.wav", spoof_signal(9.5, seed=502)),
    }


def test_verdicts_on_unseen_clips(v2, v3, clips):
    for model in (v2, v3):
        real = model.analyze(media_path=str(clips["real"]))
        fake = model.analyze(media_path=str(clips["fake"]))
        assert real["prediction"] == "REAL", real["chunks"]
        assert fake["prediction"] == "FAKE", fake["chunks"]
        assert fake["fake_score"] > real["fake_score"]


def test_v2_report_structure_and_schema(v2, clips):
    r = v2.analyze(media_path=clips["real"])
    jsonschema.validate(r, schema())
    json.dumps(r)  # serialisable
    assert "metrics" not in r
    assert [c["start_s"] for c in r["chunks"]] == [0.0, 3.0, 6.0]
    assert r["properties"]["duration_seconds"] == pytest.approx(9.5, abs=0.01)
    assert r["properties"]["analyzed_seconds"] == pytest.approx(9.0)
    assert r["properties"]["channels"] == 1 and r["properties"]["sample_rate"] == SR
    assert r["properties"]["format"].startswith("wav")
    assert r["fake_score"] == pytest.approx(np.mean([c["fake_score"] for c in r["chunks"]]), abs=1e-3)
    expected_conf = r["fake_score"] if r["prediction"] == "FAKE" else 1 - r["fake_score"]
    assert r["confidence"] == pytest.approx(expected_conf, abs=1e-3)
    assert r["model"]["variant"] == "v2" and len(r["model"]["weights_sha256"]) == 64
    # V2 visualisation data: the last chunk's mel spectrogram in dB
    data = np.array(r["visualization"]["spectrogram_data"])
    assert data.shape == (128, 94) and data.max() == pytest.approx(0.0) and data.min() >= -80
    assert r["visualization"]["spectrogram_url"] is None
    assert any("not scored" in w for w in r["warnings"])


def test_measurements_and_v2_picture_data_equal_their_modules(v2, clips):
    """The measurements (computed partly on the scattering's worker thread) and V2's spectrogram data
    (reused from the feature computation) are what the modules compute on their own."""
    from melcnn.audio import load_audio
    from melcnn.chunking import chunk
    from melcnn.metrics import audio_metrics
    from melcnn.spectrogram import mel_db

    r = v2.analyze(media_path=clips["real"])
    y = load_audio(clips["real"]).samples
    sections, warnings = audio_metrics(y, sample_rate=SR)
    assert {k: r[k] for k in sections} == sections
    assert all(w in r["warnings"] for w in warnings)
    last = mel_db(chunk(y, sr=SR, chunk_s=3.0, overlap_s=0.0).samples[-1], cfg=v2.config)
    np.testing.assert_allclose(r["visualization"]["spectrogram_data"], last, atol=0.051)
    assert set(r["timings"]) == {"decode", "features", "classifier", "measurements", "visualization"}


def test_v3_metrics_section(v3, clips):
    r = v3.analyze(media_path=clips["fake"])
    jsonschema.validate(r, schema())
    m = r["metrics"]
    assert m["chunk_duration_s"] == 3.0 and m["chunk_overlap_s"] == 1.5
    assert m["num_chunks"] == len(r["chunks"]) == 5  # 0, 1.5, 3, 4.5, 6 (ends at 9.0 <= 9.5)
    assert m["chunk_predictions"] == [c["fake_score"] for c in r["chunks"]]
    assert m["average_chunk_fake_score"] == r["fake_score"]
    assert r["visualization"]["spectrogram_data"] == m["chunk_predictions"]


def test_overlap_per_call_and_score_chunks_agree(v3, clips):
    r = v3.analyze(media_path=clips["fake"], overlap_s=2.0)
    assert [c["start_s"] for c in r["chunks"]] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    from melcnn.audio import load_audio
    from melcnn.chunking import chunk

    y = load_audio(clips["fake"]).samples
    scores = v3.score_chunks(chunk(y, sr=SR, chunk_s=3.0, overlap_s=2.0).samples)
    np.testing.assert_allclose(scores, [c["fake_score"] for c in r["chunks"]], atol=1e-4)
    with pytest.raises(MelcnnError, match="overlap"):
        v3.analyze(media_path=clips["fake"], overlap_s=3.0)


def test_pictures_only_when_asked(v2, v3, clips, tmp_path):
    r2 = v2.analyze(media_path=clips["real"], plot_dir=tmp_path / "p")
    r3 = v3.analyze(media_path=clips["fake"], plot_dir=tmp_path / "p")
    for r in (r2, r3):
        url = r["visualization"]["spectrogram_url"]
        assert url and url.endswith(".png")
        with open(url, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "timeline" in r3["visualization"]["spectrogram_url"]
    assert "spectrogram" in r2["visualization"]["spectrogram_url"]


def test_no_matplotlib_without_pictures(tiny_checkpoints, clips):
    code = (
        "import sys, melcnn; m = melcnn.load_model(sys.argv[1]); m.analyze(media_path=sys.argv[2]);"
        "print('matplotlib' in sys.modules, 'torch' in sys.modules, 'librosa' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tiny_checkpoints["v2"]), str(clips["real"])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["False", "False", "False"]


def test_pictures_and_the_cli_do_not_import_torch(tiny_checkpoints, clips, tmp_path):
    """The core install has no torch: analysis with pictures (API and CLI) must not need it."""
    code = (
        "import sys, melcnn; from melcnn.cli import main; m = melcnn.load_model(sys.argv[1]);"
        "m.analyze(media_path=sys.argv[2], plot_dir=sys.argv[3]);"
        "rc = main(['analyze', sys.argv[2], '--model', sys.argv[1], '--plot-dir', sys.argv[3], '--json']);"
        "print(rc, 'matplotlib' in sys.modules, 'torch' in sys.modules, 'fastapi' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tiny_checkpoints["v3"]), str(clips["fake"]), str(tmp_path / "p")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stderr.split()[-4:] == ["0", "True", "False", "False"], out.stderr
    assert len(list((tmp_path / "p").glob("*.png"))) == 2


def test_exactly_one_chunk_is_analysed(v3, tmp_path):
    r = v3.analyze(media_path=write_wav(tmp_path / "one.wav", bonafide_signal(3.0, seed=7)))
    assert r["metrics"]["num_chunks"] == 1 and r["chunks"][0]["end_s"] == 3.0


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda p: p.write_bytes(b""), EmptyMediaError, "empty|zero"),
        (lambda p: p.write_text("hello, this is not audio\n" * 20), NotAudioError, "audio"),
        (lambda p: write_wav(p, np.zeros(5 * SR, dtype=np.float32)), SilentAudioError, "nothing to judge|silent"),
        (lambda p: write_wav(p, bonafide_signal(2.0, seed=3)), TooShortError, r"2\.0"),
    ],
    ids=["empty", "text", "silence", "short"],
)
def test_bad_media_raise_specific_errors(v2, tmp_path, make, error, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(error, match=message):
        v2.analyze(media_path=path)


def test_nan_samples_are_refused(v2, tmp_path):
    import soundfile as sf

    y = bonafide_signal(5.0, seed=4)
    y[1000:1010] = np.nan
    sf.write(tmp_path / "nan.wav", y, SR, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError):
        v2.analyze(media_path=tmp_path / "nan.wav")


def test_concurrent_analyses_agree(v3, clips):
    expected = v3.analyze(media_path=clips["fake"])["chunks"]
    results, errors = [], []

    def work():
        try:
            results.append(v3.analyze(media_path=clips["fake"])["chunks"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    for r in results:
        assert [c["fake_score"] for c in r] == pytest.approx([c["fake_score"] for c in expected], abs=1e-4)


def test_registry_names_without_weights_say_so(tmp_path, monkeypatch):
    """An installation without weights (an empty weights folder): the Python API, `analyze` and `models`."""
    from melcnn.registry import WEIGHTS_ENV

    empty = tmp_path / "weights"
    empty.mkdir()
    monkeypatch.setenv(WEIGHTS_ENV, str(empty))
    for name in ("MEL-Spectrogram-CNN-V2", "v3"):
        with pytest.raises(melcnn.NoWeightsError, match="no trained weights"):
            melcnn.load_model(name)
    clip = write_wav(tmp_path / "clip.wav", bonafide_signal(4.0, seed=9))
    cli = [sys.executable, "-m", "melcnn"]
    p = subprocess.run([*cli, "analyze", str(clip)], capture_output=True, text=True)  # env inherited
    assert p.returncode == 4 and "no trained weights" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([*cli, "models", "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["models"]
    assert [r["available"] for r in rows] == [False, False] and "no trained weights" in rows[0]["reason"]


def test_checkpoint_folder_without_weights_is_refused(tiny_checkpoints, tmp_path):
    """A checkpoint directory with its config.json but no model.safetensors."""
    import shutil

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    shutil.copy(tiny_checkpoints["v2"] / "config.json", ckpt / "config.json")
    with pytest.raises(melcnn.CheckpointError, match="model.safetensors"):
        melcnn.load_model(ckpt)
    with pytest.raises(melcnn.CheckpointError):
        melcnn.load_model(tmp_path / "no-such-folder")


def test_torch_engine_scores_equal_the_cpu_engines():
    """The shipped V2 and V3 weights on the bundled speech: chunk scores with the GPU's torch engine (run on the CPU,
    device="cpu-torch") equal the NumPy engine's within 1e-5, and so do the reports' scores."""
    torch = pytest.importorskip("torch")
    from pathlib import Path

    from melcnn.audio import load_audio
    from melcnn.chunking import chunk

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # OpenMP spin-waits crawl on a busy 2-core machine
    try:
        examples = Path(melcnn.__file__).parent / "examples"
        for name in ("v2", "v3"):
            cpu, torch_cpu = melcnn.load_model(name), melcnn.load_model(name, device="cpu-torch")
            assert torch_cpu.device == "cpu-torch"
            for clip in ("bonafide_en.flac", "spoof_en.flac"):
                y = load_audio(examples / clip).samples
                chunks = chunk(y, sr=SR, chunk_s=cpu.config.chunk_s, overlap_s=cpu.default_overlap_s).samples
                want, got = cpu.score_chunks(chunks), torch_cpu.score_chunks(chunks)
                assert len(want) >= 2 and np.abs(got - want).max() <= 1e-5, (name, clip, got, want)
            report, want_report = torch_cpu.analyze(examples / "spoof_en.flac"), cpu.analyze(examples / "spoof_en.flac")
            assert report["fake_score"] == pytest.approx(want_report["fake_score"], abs=1e-4)
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(MelcnnError, match="device must be"):
        melcnn.load_model("v2", device="tpu")


def test_telephone_band_recordings_carry_a_warning(v2, tmp_path):
    """Telephone-band audio gets the warning in its report: a file sampled at 8 kHz (a mu-law WAV, an 8 kHz
    MP3), and 8 kHz audio stored at 16 and 44.1 kHz (FLAC, MP3); the same speech at full band does not."""
    import soundfile as sf
    from scipy.signal import resample_poly

    x = bonafide_signal(6.5, seed=503)
    phone = resample_poly(resample_poly(x, 1, 2), 2, 1)  # through an 8 kHz line, back at 16 kHz
    files = {
        "ulaw_8k.wav": (resample_poly(x, 1, 2), 8000, "WAV", "ULAW", "sampled at 8000 Hz"),
        "mp3_8k.mp3": (resample_poly(x, 1, 2), 8000, "MP3", "MPEG_LAYER_III", "sampled at 8000 Hz"),
        "phone_16k.flac": (phone, SR, "FLAC", "PCM_16", "almost nothing above 4 kHz"),
        "phone_44k.mp3": (resample_poly(phone, 441, 160), 44100, "MP3", "MPEG_LAYER_III", "almost nothing above"),
        "pcm_11k.wav": (resample_poly(x, 11025, SR), 11025, "WAV", "PCM_16", None),
        "flac_16k.flac": (x, SR, "FLAC", "PCM_16", None),
        "mp3_44k.mp3": (resample_poly(x, 441, 160), 44100, "MP3", "MPEG_LAYER_III", None),
    }
    for name, (y, rate, fmt, subtype, why) in files.items():
        sf.write(tmp_path / name, np.clip(y, -1, 1), rate, format=fmt, subtype=subtype)
        r = v2.analyze(media_path=tmp_path / name)
        assert r["properties"]["original_sample_rate"] == rate, name
        phone_warnings = [w for w in r["warnings"] if w.startswith("telephone-band audio")]
        if why:
            assert len(phone_warnings) == 1 and why in phone_warnings[0] and "REAL verdict" in phone_warnings[0], name
        else:
            assert phone_warnings == [], name


def test_telephone_band_measure_does_not_depend_on_blocks():
    """The band-edge measure is the same however the signal is cut into blocks, and tells a band limit
    at 4 kHz from full-band speech."""
    from scipy.signal import resample_poly

    from melcnn.metrics import TELEPHONE_EDGE_DB, TelephoneBand

    x = bonafide_signal(6.5, seed=504).astype(np.float32)
    phone = resample_poly(resample_poly(x, 1, 2), 2, 1).astype(np.float32)
    for y, narrow in ((x, False), (phone, True)):
        edges = []
        for step in (100, 4096, len(y)):
            band = TelephoneBand(SR)
            for i in range(0, len(y), step):
                band.push(y[i : i + step])
            edges.append(band.edge_db())
        assert max(edges) - min(edges) < 1e-6
        assert (edges[0] > TELEPHONE_EDGE_DB) == narrow
        band, buffer = TelephoneBand(SR), np.empty(1000, np.float32)  # a caller that reuses its buffer
        for i in range(0, len(y) - 999, 1000):
            buffer[:] = y[i : i + 1000]
            band.push(buffer)
        whole = TelephoneBand(SR)
        whole.push(y[: (len(y) // 1000) * 1000])
        assert abs(band.edge_db() - whole.edge_db()) < 1e-6
