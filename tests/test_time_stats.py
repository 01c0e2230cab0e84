"""Heads that take statistics over time beyond the mean (``HeadConfig.time_stats``): the statistics
themselves, the checkpoint format, and a checkpoint with them analysing and scanning real encoded files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from media_factory import make_media

import melcnn
from melcnn.audio import load_audio
from melcnn.chunking import chunk
from melcnn.classifier import Checkpoint, HeadConfig, load_checkpoint, save_checkpoint
from melcnn.config import FeatureConfig
from melcnn.errors import CheckpointError
from melcnn.features import chunk_features, pool_time, scattering_for
from melcnn.spectrogram import chunk_images

torch = pytest.importorskip("torch")


def _checkpoint(head: HeadConfig, variant: str = "v2") -> Checkpoint:
    from melcnn.classifier import torch_head, weights_from_torch

    torch.manual_seed(3)
    module = torch_head(head)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_var.uniform_(0.5, 2.0)
        module.feature_mean.uniform_(-8, -2)  # log-features of scattering coefficients sit around here
        module.feature_std.uniform_(0.5, 2)
    return Checkpoint("time-stats-test", variant, "0", FeatureConfig(), head, weights_from_torch(module))


def test_head_config_checks_the_statistics():
    head = HeadConfig(freq_bands=4, time_stats=("mean", "std", "max"))
    assert head.n_inputs == 417 * 3 * 4
    assert HeadConfig().time_stats == ("mean",) and HeadConfig().n_inputs == 417 * 2
    for bad in (("mean", "median"), ("std", "std"), ()):
        with pytest.raises(CheckpointError, match="time_stats"):
            HeadConfig(time_stats=bad)
    # a config written before time_stats existed reads as the mean; lists from JSON become tuples
    old = {k: v for k, v in HeadConfig().__dict__.items() if k != "time_stats"}
    assert HeadConfig.from_dict(old).time_stats == ("mean",)
    assert HeadConfig.from_dict({**old, "time_stats": ["max", "mean"]}).time_stats == ("max", "mean")


def test_pool_time_stacks_each_statistic_of_the_full_maps(rng):
    scat = scattering_for(FeatureConfig())
    images = rng.random((3, 256, 256)).astype(np.float32)
    full = scat(images)  # (3, 417, 16, 16): channels, frequency rows, time columns
    got = pool_time(scat, images, ("max", "mean", "std"))
    assert got.shape == (3, 3 * 417, 16) and got.dtype == np.float32
    np.testing.assert_allclose(got[:, :417], full.max(axis=-1), rtol=1e-6)
    np.testing.assert_allclose(got[:, 417:834], full.mean(axis=-1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[:, 834:], full.std(axis=-1), rtol=1e-4, atol=1e-7)
    assert np.all(got[:, 834:] > 0)  # the coefficients do vary over time
    # the mean alone takes the pooled path, to the same values
    np.testing.assert_allclose(pool_time(scat, images), got[:, 417:834], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="median"):
        pool_time(scat, images, ("mean", "median"))


def test_time_stats_checkpoint_round_trip_and_size_check(tmp_path):
    head = HeadConfig(freq_bands=2, time_stats=("mean", "max"))
    save_checkpoint(_checkpoint(head), tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.head.time_stats == ("mean", "max")
    assert loaded.weights["net.1.weight"].shape == (1024, 417 * 2 * 2)
    # time_stats removed from the config: the weights no longer fit the head it describes
    import json

    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    del cfg["head"]["time_stats"]
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "ck")


def test_time_stats_model_analyzes_and_scans_encoded_files(tmp_path):
    """A checkpoint with mean, std and max in 4 bands scores an MP3 through analyze() and scan() exactly
    as its head scores statistics computed here from the full scattering maps."""
    head = HeadConfig(freq_bands=4, time_stats=("mean", "std", "max"))
    ckpt_dir = save_checkpoint(_checkpoint(head), tmp_path / "ck")
    detector = melcnn.load_model(ckpt_dir)
    media = tmp_path / "media"
    path = make_media("mp3", media, seconds=8.0, seed=21, name="talk.mp3")
    report = detector.analyze(path)
    cfg = FeatureConfig()
    y = load_audio(path, sample_rate=cfg.sample_rate).samples
    chunks = chunk(y, sr=cfg.sample_rate, chunk_s=cfg.chunk_s, overlap_s=0.0).samples
    full = scattering_for(cfg)(chunk_images(chunks, cfg=cfg))
    pooled = np.concatenate([full.mean(-1), full.std(-1), full.max(-1)], axis=1)
    want = detector.checkpoint.fake_scores(pooled)
    got = [c["fake_score"] for c in report["chunks"]]
    assert len(got) == len(want) == 2
    assert got == pytest.approx(want.tolist(), abs=1e-3)
    assert report["fake_score"] == pytest.approx(float(want.mean()), abs=1e-3)
    # the statistics change the score: the same weights fed the mean thrice would differ
    mean_only = detector.checkpoint.fake_scores(np.concatenate([full.mean(-1)] * 3, axis=1))
    assert np.abs(mean_only - want).max() > 1e-3
    np.testing.assert_allclose(
        chunk_features(chunks, cfg=cfg, time_stats=head.time_stats), pooled, rtol=1e-4, atol=1e-6
    )
    rows = list(melcnn.scan(media, model=detector, workers=1))
    assert [Path(r["path"]).name for r in rows] == ["talk.mp3"] and rows[0]["error_code"] is None
    assert [c["fake_score"] for c in rows[0]["chunks"]] == pytest.approx(got, abs=2e-4)


def test_training_cache_holds_every_statistic_once_and_serves_any_subset(tmp_path):
    from melcnn.training.features import Clip, cache_features, clip_features, load_features

    paths = [
        make_media(kind, tmp_path / "clips", seconds=6.5, seed=i, name=f"c{i}.{ext}")
        for i, (kind, ext) in enumerate([("flac", "flac"), ("ogg_opus", "opus")])
    ]
    clips = [Clip(f"c{i}", p, i % 2, "train", "g", "s", "en", "none", 6.5, "src") for i, p in enumerate(paths)]
    cfg = FeatureConfig()
    root = cache_features(tmp_path, clips, cfg=cfg, overlap_s=0.0, time_stats=("max", "std"), workers=1)
    # a second combination is served by the same cache: nothing is computed again
    assert cache_features(tmp_path, clips, cfg=cfg, overlap_s=0.0, time_stats=("std",), workers=1) == root
    mean_root = cache_features(tmp_path, clips, cfg=cfg, overlap_s=0.0, workers=1)
    assert mean_root != root  # the mean alone has its own, cheaper cache
    fs = load_features(root, clips, ("max", "mean"))
    want = np.concatenate([clip_features(p, cfg, 0.0, ("max", "mean")) for p in paths])
    assert fs.x.shape == (4, 2 * 417, 16)
    np.testing.assert_allclose(fs.x, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(load_features(mean_root, clips).x, fs.x[:, 417:], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="holds the time statistics"):
        load_features(mean_root, clips, ("std",))


def test_training_cache_recomputes_the_features_of_a_clip_made_again(tmp_path):
    """A build extended in place remakes clips under their old ids (other laundering): the cache must
    not serve the old clip's features for the new one, and must not recompute unchanged clips."""
    from melcnn.training.features import Clip, _feature_file, cache_features, clip_features, load_features

    paths = [make_media("flac", tmp_path / "clips", seconds=6.5, seed=i, name=f"c{i}.flac") for i in range(2)]
    clips = [Clip(f"c{i}", p, i % 2, "train", "g", "s", "en", "none", 6.5, "src") for i, p in enumerate(paths)]
    cfg = FeatureConfig()
    root = cache_features(tmp_path, clips, cfg=cfg, overlap_s=0.0, workers=1)
    kept = _feature_file(root, "c1").stat().st_mtime_ns
    before = load_features(root, clips).x
    os.utime(_feature_file(root, "c0"), ns=(1, 1))  # the cached file predates the clip made again below
    make_media("flac", tmp_path / "clips", seconds=6.5, seed=7, name="c0.flac")
    assert cache_features(tmp_path, clips, cfg=cfg, overlap_s=0.0, workers=1) == root
    after = load_features(root, clips).x
    np.testing.assert_allclose(after[:2], clip_features(paths[0], cfg, 0.0), rtol=1e-5, atol=1e-7)
    assert np.abs(after[:2] - before[:2]).max() > 1e-3  # the new clip's features, not the old ones
    np.testing.assert_array_equal(after[2:], before[2:])
    assert _feature_file(root, "c1").stat().st_mtime_ns == kept  # the unchanged clip was not recomputed
