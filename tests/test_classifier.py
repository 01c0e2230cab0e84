import json

import numpy as np
import pytest

from melcnn.classifier import (
    Checkpoint,
    HeadConfig,
    head_inputs,
    load_checkpoint,
    pool_bands,
    save_checkpoint,
    torch_head,
    weights_from_torch,
)
from melcnn.config import FeatureConfig
from melcnn.errors import CheckpointError, NoWeightsError
from melcnn.registry import MODELS, WEIGHTS_ENV, resolve, weights_root

torch = pytest.importorskip("torch")


def _random_checkpoint(rng, head: HeadConfig | None = None) -> tuple[Checkpoint, object]:
    head = head or HeadConfig()
    torch.manual_seed(0)
    module = torch_head(head)
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        module.feature_mean.uniform_(-1, 1)
        module.feature_std.uniform_(0.5, 2)
    return Checkpoint(
        name="test-model",
        variant="v3",
        version="0.0.1",
        features=FeatureConfig(),
        head=head,
        weights=weights_from_torch(module),
        calibration={"scale": 1.5, "bias": -0.2},
    ), module


def test_spec_parameter_count_with_pooled_input():
    head = HeadConfig()
    assert head.n_inputs == 417 * 2
    assert 1_000_000 <= head.n_parameters() <= 2_000_000
    module = torch_head(head)
    assert sum(p.numel() for p in module.parameters()) == head.n_parameters()
    layers = [type(m).__name__ for m in module.net]
    assert layers == ["Flatten"] + ["Linear", "ReLU", "BatchNorm1d", "Dropout"] * 3 + ["Linear"]
    assert [m.p for m in module.net if isinstance(m, torch.nn.Dropout)] == [0.4, 0.4, 0.3]


def test_pool_bands_averages_frequency_rows(rng):
    x = rng.random((3, 417, 16)).astype(np.float32)
    out = pool_bands(x, 2)
    assert out.shape == (3, 834)
    np.testing.assert_allclose(out[:, 0], x[:, 0, :8].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], x[:, 0, 8:].mean(axis=1), rtol=1e-6)


def test_numpy_inference_matches_torch_eval_and_survives_save_load(rng, tmp_path):
    ckpt, module = _random_checkpoint(rng)
    pooled = rng.random((7, 417, 16)).astype(np.float32) + 0.01
    module.eval()
    with torch.no_grad():
        ref = module(torch.from_numpy(head_inputs(pooled, ckpt.head))).numpy()
    np.testing.assert_allclose(ckpt.logits(pooled), ref, rtol=1e-4, atol=1e-4)

    save_checkpoint(ckpt, tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.variant == "v3" and loaded.spec.default_overlap_s == 1.5
    assert loaded.sha256 and len(loaded.sha256) == 64
    np.testing.assert_allclose(loaded.logits(pooled), ref, rtol=1e-4, atol=1e-4)
    scores = loaded.fake_scores(pooled)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-(1.5 * ref - 0.2))), rtol=1e-4)


def test_real_output_convention_is_inverted(rng, tmp_path):
    ckpt, _ = _random_checkpoint(rng, HeadConfig(output="real"))
    pooled = rng.random((4, 417, 16)).astype(np.float32)
    logits = ckpt.logits(pooled)
    expected = 1 / (1 + np.exp(-(1.5 * -logits - 0.2)))
    np.testing.assert_allclose(ckpt.fake_scores(pooled), expected, rtol=1e-5)


def test_checkpoint_never_loads_pickles_and_rejects_damage(rng, tmp_path):
    ckpt, _ = _random_checkpoint(rng)
    d = save_checkpoint(ckpt, tmp_path / "ck")
    # truncated weights
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(d)
    # a pickle in place of the weights
    import pickle

    (d / "model.safetensors").write_bytes(pickle.dumps({"net.1.weight": [1, 2, 3]}))
    with pytest.raises(CheckpointError):
        load_checkpoint(d)
    save_checkpoint(ckpt, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["head"]["freq_bands"] = 4  # weights no longer fit
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(d)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing")


def test_unknown_feature_setting_is_refused(rng, tmp_path):
    ckpt, _ = _random_checkpoint(rng)
    d = save_checkpoint(ckpt, tmp_path / "ck")
    cfg = json.loads((d / "config.json").read_text())
    cfg["features"]["window"] = "blackman"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown feature settings"):
        load_checkpoint(d)


def test_registry_names_and_missing_weights(tmp_path, monkeypatch):
    for name, short in (("MEL-Spectrogram-CNN-V2", "v2"), ("mel-spectrogram-cnn-v3", "v3"), ("v2", "v2"), ("V3", "v3")):
        entry, path = resolve(name)  # the shipped weights
        assert entry is MODELS[short] and (path / "config.json").is_file() and path.parent == weights_root()
    # the same names where no weights are installed: an empty weights folder
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "empty"))
    for name in ("MEL-Spectrogram-CNN-V2", "v3"):
        with pytest.raises(NoWeightsError, match="no trained weights") as caught:
            resolve(name)
        assert str(tmp_path / "empty") in str(caught.value) and WEIGHTS_ENV in str(caught.value)
    monkeypatch.delenv(WEIGHTS_ENV)
    with pytest.raises(CheckpointError, match="unknown model"):
        resolve("v9")
    entry, path = resolve(str(tmp_path))
    assert entry is None and path == tmp_path
    assert MODELS["v3"].default_overlap_s == 1.5 and MODELS["v2"].default_overlap_s == 0.0


def test_float16_storage_halves_the_file_and_keeps_the_scores(rng, tmp_path):
    """A 16-row head (7.4 M parameters) is stored as float16: under the 16 MB a shipped checkpoint may take."""
    from safetensors.numpy import load_file

    ckpt, _ = _random_checkpoint(rng, HeadConfig(freq_bands=16))
    pooled = rng.random((9, 417, 16)).astype(np.float32) + 0.01
    ref = ckpt.fake_scores(pooled)
    d32 = save_checkpoint(ckpt, tmp_path / "f32")
    ckpt.extra["storage"] = "float16"
    d16 = save_checkpoint(ckpt, tmp_path / "f16")
    size32, size16 = ((d / "model.safetensors").stat().st_size for d in (d32, d16))
    assert size16 < 16_000_000 < size32 and abs(size16 / size32 - 0.5) < 0.01
    stored = load_file(str(d16 / "model.safetensors"))
    # the weight matrices in half precision; the vectors (biases, batch norm, standardisation) in float32
    assert {k for k, v in stored.items() if v.dtype == np.float16} == {k for k, v in stored.items() if v.ndim == 2}
    assert all(v.dtype == np.float32 for v in stored.values() if v.ndim == 1)
    loaded = load_checkpoint(d16)
    assert loaded.extra["storage"] == "float16"
    assert all(v.dtype == np.float32 for v in loaded.weights.values())
    assert np.max(np.abs(loaded.fake_scores(pooled) - ref)) < 1e-3
