"""Tests of melcnn.plots: the V2 spectrogram and V3 timeline PNGs."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from melcnn import plots

SR = 16_000  # Hz
HOP = 512  # samples
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def mel_db(rng) -> np.ndarray:
    """A 128-band, 15 s "spectrogram" in dB (0 at the top): a falling spectrum with noise."""
    n_mels, n_frames = 128, 1 + 15 * SR // HOP
    tilt = -np.linspace(0.0, 60.0, n_mels)[:, None]
    return tilt + 10.0 * rng.standard_normal((n_mels, n_frames)) - 10.0


@pytest.fixture
def chunks() -> dict[str, np.ndarray]:
    """V3 chunks of 3 s every 1.5 s over 15 s; chunks 3 and 4 (4.5 .. 9 s) score above 0.5."""
    starts = np.arange(0.0, 12.0 + 1e-9, 1.5)
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.3, 0.2, 0.1, 0.15])
    return {"chunk_starts_s": starts, "chunk_ends_s": starts + 3.0, "chunk_scores": scores}


def _read_png(path: Path) -> np.ndarray:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return matplotlib.image.imread(path)  # float in [0, 1], shape (height, width, 3 or 4)


def test_spectrogram_png(tmp_path, mel_db):
    out = tmp_path / "new" / "folder" / "spec.png"
    result = plots.plot_spectrogram(mel_db, sample_rate=SR, hop_length=HOP, fmax_hz=8000.0, path=out)
    assert result == out and out.is_file()
    img = _read_png(out)
    assert img.shape[:2] == (400, 1000)
    assert img[..., :3].std() > 0.1  # not blank
    assert not list(out.parent.glob(".*"))  # no temporary file left behind


def test_spectrogram_axes(mel_db):
    fig = plots._spectrogram_figure(
        mel_db, sample_rate=SR, hop_length=HOP, fmin_hz=0.0, fmax_hz=8000.0, title="clip.wav"
    )
    ax, cbar_ax = fig.axes
    assert ax.get_xlabel() == "Time (s)" and ax.get_ylabel() == "Frequency (Hz)"
    assert ax.get_title() == "clip.wav"
    assert ax.get_xlim() == pytest.approx((0.0, (mel_db.shape[1] - 1) * HOP / SR))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "0" and labels[-1] == "8000" and "1000" in labels
    # mel-spaced: 0..1000 Hz (linear part of the Slaney scale) takes ~40 % of the height up to 8 kHz
    y0, y1k, y8k = (ax.get_yticks()[labels.index(s)] for s in ("0", "1000", "8000"))
    assert (y1k - y0) / (y8k - y0) == pytest.approx(15.0 / 45.245, rel=0.01)
    assert "dB" in cbar_ax.get_ylabel()


def test_long_spectrogram_is_downsampled(tmp_path, rng):
    mel = rng.standard_normal((128, 60_000))  # ~32 min at hop 512
    fig = plots._spectrogram_figure(mel, sample_rate=SR, hop_length=HOP, fmin_hz=0.0, fmax_hz=None, title=None)
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (128, 2000)
    assert ax.get_xlim() == pytest.approx((0.0, 59_999 * HOP / SR))
    out = plots.plot_spectrogram(mel, sample_rate=SR, hop_length=HOP, fmax_hz=None, path=tmp_path / "l.png")
    assert _read_png(out).shape[:2] == (400, 1000)


def test_timeline_png_and_red_spans(tmp_path, mel_db, chunks):
    out = tmp_path / "sub" / "timeline.png"
    kwargs = dict(sample_rate=SR, hop_length=HOP, fmax_hz=8000.0, threshold=0.5, **chunks)
    result = plots.plot_timeline(mel_db, path=out, **kwargs)
    assert result == out
    img = _read_png(out)
    assert img.shape[:2] == (500, 1000)
    assert img[..., :3].std() > 0.1

    # The same figure, built again, tells where the score panel's data coordinates land in pixels.
    fig = plots._timeline_figure(mel_db, fmin_hz=0.0, title=None, **kwargs)
    fig.canvas.draw()
    ax_score = fig.axes[0]
    assert ax_score.get_ylabel() == "Fake score"

    # axes patches: one red span (chunks 3 and 4 merged) from 4.5 s to 9.0 s
    red = [p for p in ax_score.patches if p.get_facecolor()[0] > 0.5 and p.get_facecolor()[1] < 0.5]
    assert len(red) == 1
    assert (red[0].get_x(), red[0].get_x() + red[0].get_width()) == pytest.approx((4.5, 9.0))

    def redness(t0: float, t1: float) -> float:
        """Mean of R - (G + B) / 2 in the score panel between times t0 and t1, at score 0.1 .. 0.4."""
        (x0, y0), (x1, y1) = ax_score.transData.transform([(t0, 0.1), (t1, 0.4)])
        h = img.shape[0]
        patch = img[int(h - y1) : int(h - y0), int(x0) : int(x1), :3]
        return float(np.mean(patch[..., 0] - 0.5 * (patch[..., 1] + patch[..., 2])))

    assert redness(5.0, 8.5) > 0.1  # shaded: alpha 0.25 tab:red on white gives ~0.17

    assert redness(0.5, 4.0) < 0.03  # not shaded: ~0 (white, grey grid, blue line)
    assert redness(9.5, 14.5) < 0.03


def test_timeline_without_fake_chunks_has_no_red(mel_db, chunks):
    chunks["chunk_scores"] = np.full_like(chunks["chunk_scores"], 0.2)
    fig = plots._timeline_figure(
        mel_db, sample_rate=SR, hop_length=HOP, fmin_hz=0.0, fmax_hz=8000.0, threshold=0.5, title="t", **chunks
    )
    assert list(fig.axes[0].patches) == []


@pytest.mark.parametrize(
    "change",
    [
        {"chunk_scores": np.array([0.1, 1.5])},
        {"chunk_scores": np.array([0.1])},
        {"threshold": float("nan")},
        {"chunk_ends_s": np.array([-1.0, 4.0])},
    ],
)
def test_timeline_rejects_bad_input(tmp_path, mel_db, change):
    kwargs = {
        "chunk_starts_s": np.array([0.0, 1.5]),
        "chunk_ends_s": np.array([3.0, 4.5]),
        "chunk_scores": np.array([0.2, 0.7]),
        "threshold": 0.5,
    }
    kwargs.update(change)
    with pytest.raises(ValueError):
        plots.plot_timeline(mel_db, sample_rate=SR, hop_length=HOP, fmax_hz=8000.0, path=tmp_path / "x.png", **kwargs)
    assert not (tmp_path / "x.png").exists()


def test_spectrogram_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError):
        plots.plot_spectrogram(np.zeros(10), sample_rate=SR, hop_length=HOP, fmax_hz=8000.0, path=tmp_path / "x.png")


def test_merge_spans():
    merged = plots._merge_spans(np.array([3.0, 0.0, 1.5, 9.0]), np.array([6.0, 3.0, 4.5, 12.0]))
    assert merged == [(0.0, 6.0), (9.0, 12.0)]


def test_threads_draw_independently(tmp_path, mel_db, chunks):
    def draw(i: int) -> Path:
        if i % 2:
            return plots.plot_spectrogram(
                mel_db, sample_rate=SR, hop_length=HOP, fmax_hz=8000.0, path=tmp_path / f"{i}.png"
            )
        return plots.plot_timeline(
            mel_db, sample_rate=SR, hop_length=HOP, fmax_hz=8000.0, threshold=0.5, path=tmp_path / f"{i}.png", **chunks
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = list(pool.map(draw, range(4)))
    for i, p in enumerate(paths):
        assert _read_png(p).shape[:2] == ((400, 1000) if i % 2 else (500, 1000))


def test_import_does_not_import_matplotlib():
    code = "import sys, melcnn.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
