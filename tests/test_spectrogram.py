import numpy as np
import pytest

from melcnn import spectrogram as S
from melcnn.config import FeatureConfig

librosa = pytest.importorskip("librosa")
CFG = FeatureConfig()


@pytest.fixture
def chunks(rng):
    t = np.arange(CFG.chunk_len) / CFG.sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    noise = rng.standard_normal((3, CFG.chunk_len)) * np.linspace(0.001, 0.2, CFG.chunk_len)
    return (tone + noise).astype(np.float32)


def test_mel_filterbank_matches_librosa():
    ref = librosa.filters.mel(sr=16000, n_fft=2048, n_mels=128)
    np.testing.assert_allclose(S.mel_filterbank(16000, 2048, 128), ref, atol=1e-7)


@pytest.mark.parametrize(
    "cfg",
    [FeatureConfig(), FeatureConfig(n_mels=40, fmin_hz=300.0, fmax_hz=6000.0), FeatureConfig(n_fft=512, n_mels=80)],
)
def test_banded_mel_projection_equals_the_dense_product(cfg):
    """The filter bank applied group by group (only the bins each group covers) == power @ fb.T."""
    power = np.random.default_rng(3).random((2, 7, 1 + cfg.n_fft // 2), dtype=np.float32) ** 4
    fb = S.mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax_hz)
    want = power.astype(np.float64) @ fb.T.astype(np.float64)
    got = S._mel_project(power, cfg)
    assert got.shape == (2, 7, cfg.n_mels) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * want.max())
    groups = S._mel_groups(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax_hz)
    assert sum((b1 - b0) * (hi - lo) for b0, b1, lo, hi, _ in groups) < 0.5 * fb.size  # the saving


def test_preemphasis_matches_librosa(chunks):
    np.testing.assert_allclose(S.preemphasis(chunks), librosa.effects.preemphasis(chunks), atol=1e-6)


def test_mel_db_matches_the_specifications_librosa_calls(chunks):
    ours = S.mel_db(chunks, cfg=CFG)
    for i, y in enumerate(chunks):
        ref = librosa.power_to_db(
            librosa.feature.melspectrogram(
                y=librosa.effects.preemphasis(y), sr=16000, n_fft=2048, hop_length=512, n_mels=128
            ),
            ref=np.max,
        )
        assert ours[i].shape == ref.shape == (128, 94)
        np.testing.assert_allclose(ours[i], ref, atol=1e-3)


@pytest.mark.parametrize("lead", [(S._MEL_BLOCK * 2 + 1,), (2, S._MEL_BLOCK + 1)])
def test_batched_mel_db_is_each_signals_own_in_order(rng, lead):
    """Large batches run in blocks of _MEL_BLOCK signals: same values, order and shape as one by one."""
    y = rng.standard_normal((*lead, CFG.sample_rate)) * np.geomspace(1e-3, 1.0, np.prod(lead)).reshape(*lead, 1)
    y = y.astype(np.float32)
    got = S.mel_db(y, cfg=CFG)
    assert got.shape == (*lead, CFG.n_mels, 1 + CFG.sample_rate // CFG.hop_length) and got.dtype == np.float32
    for idx in np.ndindex(*lead):
        np.testing.assert_allclose(got[idx], S.mel_db(y[idx], cfg=CFG), atol=1e-4)
    assert not np.allclose(got[(0,) * len(lead)], got[(-1,) * len(lead)], atol=1.0)  # distinct signals


def test_image_is_256_square_low_frequencies_at_bottom(rng):
    t = np.arange(CFG.chunk_len) / CFG.sample_rate
    low = (0.5 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    img = S.chunk_images(low[None], cfg=CFG)
    assert img.shape == (1, 256, 256) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    rows = img[0].mean(axis=1)
    assert rows[-64:].mean() > 5 * rows[:64].mean()  # energy of a 150 Hz tone sits in the bottom rows


def test_db_to_image_mapping_is_linear_in_db():
    db = np.full((128, 94), -40.0, dtype=np.float32)
    np.testing.assert_allclose(S.db_to_image(db, size=256, top_db=80.0), 0.5, atol=1e-6)
    db[:] = 0.0
    np.testing.assert_allclose(S.db_to_image(db), 1.0, atol=1e-6)
    db[:] = -80.0
    np.testing.assert_allclose(S.db_to_image(db), 0.0, atol=1e-6)


def test_digitally_silent_chunk_gives_a_valid_image():
    img = S.chunk_images(np.zeros((2, CFG.chunk_len), dtype=np.float32), cfg=CFG)
    assert np.all(np.isfinite(img)) and img.shape == (2, 256, 256)


def test_overview_equals_full_mel_when_short_and_is_bounded_when_long(rng):
    y = rng.standard_normal(16000 * 20).astype(np.float32)
    full = S.mel_db(y, cfg=CFG)
    overview, column_s = S.overview_mel_db(y, cfg=CFG)
    np.testing.assert_allclose(overview, full, atol=1e-4)
    assert column_s == pytest.approx(512 / 16000)
    # 626 frames in at most 100 columns: 79 columns of 8 frames (the last one of 2), mean power
    small, column_s = S.overview_mel_db(y, cfg=CFG, max_frames=100, block_frames=7)
    assert small.shape == (128, 79)
    assert column_s == pytest.approx(8 * 512 / 16000)
    power = S.mel_power(S.preemphasis(y), cfg=CFG).astype(np.float64)
    pooled = np.concatenate([power[:, :624].reshape(128, 78, 8).mean(axis=2), power[:, 624:].mean(axis=1)[:, None]], 1)
    np.testing.assert_allclose(small, S.power_to_db(pooled), atol=1e-3)


def test_overview_of_a_signal_in_blocks_equals_the_whole_and_stays_bounded(rng):
    y = rng.standard_normal(16000 * 20).astype(np.float32)
    whole = S.overview_mel_db(y, cfg=CFG, max_frames=50)
    overview = S.OverviewMel(cfg=CFG, max_frames=50, block_frames=5)
    cuts = np.cumsum(rng.integers(0, 9000, size=100))
    for block in np.split(y, cuts[cuts < len(y)]):
        overview.push(block)
        assert overview._n_cols <= 50 and len(overview._buf) <= 5 * 512 + 2048 + 9000
    parts = overview.result()
    assert parts[1] == whole[1] == 16 * 512 / 16000
    np.testing.assert_allclose(parts[0], whole[0], atol=1e-4)
