"""Checkpoints of several heads (``extra_heads``): each head on its own input, the logit their mean.

The format (round trip, version, damage), NumPy inference against the torch modules, and such a checkpoint
analysing and scanning real encoded files through the public API.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from media_factory import make_media

import melcnn
from melcnn.audio import load_audio
from melcnn.chunking import chunk
from melcnn.classifier import (
    ENSEMBLE_FORMAT_VERSION,
    FORMAT_VERSION,
    Checkpoint,
    HeadConfig,
    head_inputs,
    join_members,
    load_checkpoint,
    save_checkpoint,
    select_stats,
    time_stats_of,
)
from melcnn.config import FeatureConfig
from melcnn.errors import CheckpointError
from melcnn.features import scattering_for
from melcnn.spectrogram import chunk_images

torch = pytest.importorskip("torch")

# the recipe's head on 16 rows' means, and a small head on 4 bands' mean and standard deviation
MAIN = HeadConfig(freq_bands=16).with_hidden((64, 32))
SIDE = HeadConfig(freq_bands=4, time_stats=("std", "mean")).with_hidden((16,))


def _modules(heads):
    from melcnn.classifier import torch_head

    mods = []
    for i, h in enumerate(heads):
        torch.manual_seed(10 + i)
        m = torch_head(h)
        with torch.no_grad():
            for layer in m.modules():
                if isinstance(layer, torch.nn.BatchNorm1d):
                    layer.running_mean.uniform_(-0.5, 0.5)
                    layer.running_var.uniform_(0.5, 2.0)
            m.feature_mean.uniform_(-8, -2)
            m.feature_std.uniform_(0.5, 2)
        mods.append(m.eval())
    return mods


def _ensemble(heads=(MAIN, SIDE), variant="v2") -> tuple[Checkpoint, list]:
    from melcnn.classifier import weights_from_torch

    mods = _modules(heads)
    weights = join_members([weights_from_torch(m) for m in mods])
    ck = Checkpoint("ensemble-test", variant, "0", FeatureConfig(), heads[0], weights, extra_heads=tuple(heads[1:]))
    ck.calibration = {"scale": 0.8, "bias": 0.1}
    return ck, mods


def _torch_logit(module, pooled, head, have):
    x = head_inputs(select_stats(pooled, have, head.time_stats), head)
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def test_ensemble_logit_is_the_mean_of_its_heads_and_survives_save_load(rng, tmp_path):
    ck, mods = _ensemble()
    assert ck.time_stats == ("mean", "std") == time_stats_of(ck.heads)  # the first head's, then the others'
    assert ck.n_parameters() == MAIN.n_parameters() + SIDE.n_parameters()
    pooled = rng.random((5, 2 * 417, 16)).astype(np.float32) + 0.01  # blocks: mean, then std
    each = np.stack([_torch_logit(m, pooled, h, ck.time_stats) for m, h in zip(mods, ck.heads, strict=True)])
    assert np.abs(each[0] - each[1]).max() > 0.1  # two different heads
    np.testing.assert_allclose(ck.member_logits(pooled), each, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ck.logits(pooled), each.mean(0), rtol=1e-4, atol=1e-4)
    # the side head reads its statistics in its own order from the shared features
    np.testing.assert_allclose(
        select_stats(pooled, ("mean", "std"), ("std", "mean")), np.concatenate([pooled[:, 417:], pooled[:, :417]], 1)
    )
    save_checkpoint(ck, tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert cfg["format_version"] == ENSEMBLE_FORMAT_VERSION != FORMAT_VERSION
    assert cfg["extra_heads"][0]["freq_bands"] == 4 and cfg["extra_heads"][0]["time_stats"] == ["std", "mean"]
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.extra_heads == (SIDE,) and loaded.head == MAIN
    np.testing.assert_allclose(loaded.fake_scores(pooled), ck.fake_scores(pooled), rtol=1e-6)
    expected = 1 / (1 + np.exp(-(0.8 * each.mean(0) + 0.1)))
    np.testing.assert_allclose(loaded.fake_scores(pooled), expected, rtol=1e-4)
    # a one-head checkpoint keeps the format (and tensor names) it always had
    single, _ = _ensemble((MAIN,))
    save_checkpoint(single, tmp_path / "one")
    cfg1 = json.loads((tmp_path / "one" / "config.json").read_text())
    assert cfg1["format_version"] == FORMAT_VERSION and "extra_heads" not in cfg1
    assert not any(k.startswith("heads.") for k in load_checkpoint(tmp_path / "one").weights)


def test_damaged_ensemble_checkpoints_are_refused(tmp_path):
    ck, _ = _ensemble()
    save_checkpoint(ck, tmp_path / "ck")
    cfg_path = tmp_path / "ck" / "config.json"
    good = json.loads(cfg_path.read_text())

    def refused(cfg: dict, match: str) -> None:
        cfg_path.write_text(json.dumps(cfg))
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(tmp_path / "ck")

    # without its extra heads, a reader would score with one head and silently differ
    refused({k: v for k, v in good.items() if k != "extra_heads"}, "goes with extra_heads")
    refused({**good, "format_version": FORMAT_VERSION}, "goes with extra_heads")
    refused({**good, "extra_heads": [{**good["extra_heads"][0], "freq_bands": 8}]}, "shape")
    refused({**good, "extra_heads": [{**good["extra_heads"][0], "output": "real"}]}, "same class")
    refused({**good, "format_version": 3}, "format_version 3")
    cfg_path.write_text(json.dumps(good))
    assert load_checkpoint(tmp_path / "ck").extra_heads == (SIDE,)
    first_only = {k: v for k, v in ck.weights.items() if not k.startswith("heads.1.")}
    with pytest.raises(CheckpointError, match="missing tensors"):
        bad = Checkpoint("x", "v2", "0", FeatureConfig(), MAIN, first_only, extra_heads=(SIDE,))
        save_checkpoint(bad, tmp_path / "bad")


def test_ensemble_model_analyzes_and_scans_an_encoded_file(tmp_path):
    """Through load_model, analyze() and scan(), an M4A's chunks score as the mean of the two heads'
    logits on statistics computed here from the full scattering maps, calibrated."""
    ck, mods = _ensemble(variant="v2")
    detector = melcnn.load_model(save_checkpoint(ck, tmp_path / "ck"))
    assert detector.describe()["parameters"] == ck.n_parameters()
    media = tmp_path / "media"
    path = make_media("m4a_aac", media, seconds=9.5, seed=5, name="voice.m4a")
    report = detector.analyze(path)
    cfg = FeatureConfig()
    y = load_audio(path, sample_rate=cfg.sample_rate).samples
    chunks = chunk(y, sr=cfg.sample_rate, chunk_s=cfg.chunk_s, overlap_s=0.0).samples
    full = scattering_for(cfg)(chunk_images(chunks, cfg=cfg))
    pooled = np.concatenate([full.mean(-1), full.std(-1)], axis=1)
    z = np.mean([_torch_logit(m, pooled, h, ("mean", "std")) for m, h in zip(mods, ck.heads, strict=True)], axis=0)
    want = 1 / (1 + np.exp(-(0.8 * z + 0.1)))
    got = [c["fake_score"] for c in report["chunks"]]
    assert len(got) == len(want) == 3
    assert got == pytest.approx(want.tolist(), abs=1e-3)
    rows = list(melcnn.scan(media, model=detector, workers=1))
    assert [Path(r["path"]).name for r in rows] == ["voice.m4a"] and rows[0]["error_code"] is None
    assert [c["fake_score"] for c in rows[0]["chunks"]] == pytest.approx(got, abs=2e-4)


def test_average_cv_script_scores_the_mean_of_runs_file_by_file(tmp_path):
    """scripts/average_cv.py: two runs that each rank half the files wrong average to a perfect ranking."""
    import subprocess
    import sys

    from melcnn.training import crossval

    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1] * 2)
    folds = np.repeat([0, 1], 8)
    first = np.array([0, 1, 2, 8, 5, 6, 7, 3] * 2, dtype=float)  # bona fide file 3 over spoof 7
    second = np.array([4, 1, 2, 0, 3.5, 6, 7, 9] * 2, dtype=float)  # bona fide file 0 over spoof 4
    for name, s in (("a", first), ("b", second)):
        rows = [
            {
                "clip_id": f"c{i % 8}",
                "fold": int(k),
                "label": int(y),
                "generator": "g",
                "source": "s",
                "augmentation": "none",
                "score": float(v),
            }  # fmt: skip
            for i, (k, y, v) in enumerate(zip(folds, labels, s, strict=True))
        ]
        crossval.write({"model": "mlp", "freq_bands": 16, "epochs": 1, "views": True, "folds": [],
                        "file_scores": rows}, tmp_path / name)  # fmt: skip
    script = Path(__file__).resolve().parents[1] / "scripts" / "average_cv.py"
    p = subprocess.run([sys.executable, script, tmp_path / "a", tmp_path / "b"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0].endswith("25.0 / 25.0 = 25.0 %") and lines[1].endswith("25.0 / 25.0 = 25.0 %")
    assert lines[2].startswith("mean of the runs") and lines[2].endswith("0.0 / 0.0 = 0.0 %")
