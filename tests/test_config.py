"""The pipeline settings: FeatureConfig round-trips through dicts, JSON and checkpoints, refuses what
it does not know, and the shipped checkpoints were made with exactly the code's settings."""

from __future__ import annotations

import dataclasses
import json

import pytest

from melcnn.config import CHUNK_S, MAX_DURATION_S, SAMPLE_RATE, FeatureConfig
from melcnn.errors import CheckpointError
from melcnn.registry import MODELS


def test_defaults_are_the_specification():
    cfg = FeatureConfig()
    assert (cfg.sample_rate, cfg.chunk_s) == (SAMPLE_RATE, CHUNK_S) == (16_000, 3.0)
    assert (cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.image_size) == (2048, 512, 128, 256)
    assert (cfg.scattering_J, cfg.scattering_L, cfg.top_db, cfg.preemphasis) == (4, 8, 80.0, 0.97)
    assert cfg.chunk_len == 48_000 and cfg.n_frames == 94  # 1 + 48000 // 512 centred frames
    assert MAX_DURATION_S == 7200.0


@pytest.mark.parametrize(
    "cfg", [FeatureConfig(), FeatureConfig(chunk_s=1.0, fmax_hz=7600.0, n_mels=64)], ids=["default", "changed"]
)
def test_round_trip_through_dict_and_json(cfg):
    d = cfg.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(FeatureConfig)}
    assert FeatureConfig.from_dict(d) == cfg
    assert FeatureConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert hash(FeatureConfig.from_dict(d)) == hash(cfg)  # usable as a cache key


def test_replace_and_derived_sizes():
    cfg = FeatureConfig()
    one = cfg.replace(chunk_s=1.0)
    assert one.chunk_s == 1.0 and one.chunk_len == 16_000 and one.n_frames == 32
    assert cfg.chunk_s == 3.0  # the original is unchanged (frozen)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.chunk_s = 2.0  # type: ignore[misc]


def test_unknown_settings_are_refused():
    d = {**FeatureConfig().to_dict(), "window": "blackman"}
    with pytest.raises(CheckpointError, match=r"unknown feature settings in checkpoint: \['window'\]"):
        FeatureConfig.from_dict(d)
    partial = FeatureConfig.from_dict({"n_mels": 64})  # missing keys take the defaults
    assert partial == FeatureConfig(n_mels=64)


@pytest.mark.parametrize("spec", list(MODELS.values()), ids=lambda s: s.variant)
def test_shipped_checkpoints_use_the_codes_settings(spec):
    recorded = json.loads((spec.checkpoint_dir / "config.json").read_text())["features"]
    assert FeatureConfig.from_dict(recorded) == FeatureConfig(chunk_s=spec.chunk_s)
