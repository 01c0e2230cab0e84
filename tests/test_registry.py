"""The model registry: every ModelSpec resolves and loads its shipped weights, and the one overlap rule
(with its one message) holds for the Python API, chunking, the CLI and the HTTP service alike."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import melcnn
from melcnn.chunking import chunk
from melcnn.classifier import load_checkpoint
from melcnn.config import FeatureConfig
from melcnn.errors import CheckpointError, InvalidParameterError, MelcnnError
from melcnn.registry import (
    DEFAULT_MODEL,
    MIN_STEP_S,
    MODELS,
    PICTURES,
    SERVE_MODELS,
    ModelSpec,
    overlap_range,
    resolve,
    spec_for,
    validate_overlap,
)

EXAMPLE = Path(str(resources.files("melcnn"))) / "examples" / "spoof_en.flac"
SPECS = list(MODELS.values())


def overlap_message(value: str, chunk_s: float = 3.0) -> str:
    hi = chunk_s - MIN_STEP_S
    return (
        f"overlap must be a number of seconds from 0 to {hi:g} (the {chunk_s:g} s chunk length less 0.5 s); got {value}"
    )


# ------------------------------------------------------------------------------------------------ the specs
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.variant)
def test_every_spec_resolves_and_loads_its_shipped_weights(spec):
    for name in (spec.name, spec.name.lower(), spec.variant, spec.variant.upper()):
        entry, directory = resolve(name)
        assert entry is spec and directory == spec.checkpoint_dir
    detector = melcnn.load_model(spec.variant)
    assert detector.spec is spec and detector.entry is spec and detector.variant == spec.variant
    assert detector.name == spec.name
    assert detector.config.chunk_s == spec.chunk_s
    assert detector.default_overlap_s == spec.default_overlap_s
    recorded = json.loads((spec.checkpoint_dir / "config.json").read_text())
    assert recorded["variant"] == spec.variant
    assert recorded["chunking"]["overlap_s"] == spec.default_overlap_s
    info = detector.describe()
    assert info["spec"] == spec.to_dict() and info["chunk_overlap_s"] == spec.default_overlap_s


def test_specs_are_consistent_data():
    assert list(MODELS) == [s.variant for s in SPECS]
    assert len({s.name.lower() for s in SPECS}) == len({s.label for s in SPECS}) == len(SPECS)
    for spec in SPECS:
        assert spec.picture in PICTURES
        lo, hi = spec.overlap_range
        assert (lo, hi) == overlap_range(spec.chunk_s) == (0.0, spec.chunk_s - MIN_STEP_S)
        assert lo <= spec.default_overlap_s <= hi
        d = spec.to_dict()
        assert (d["min_overlap_s"], d["max_overlap_s"]) == (lo, hi)
        assert json.loads(json.dumps(d)) == d  # plain JSON for /v1/models
        assert spec_for(spec.variant) is spec
    assert SERVE_MODELS[0] == DEFAULT_MODEL and sorted(SERVE_MODELS) == sorted(MODELS)
    # the shipped variants as the specification describes them
    assert (MODELS["v2"].default_overlap_s, MODELS["v2"].timeline, MODELS["v2"].picture) == (0.0, False, "spectrogram")
    assert (MODELS["v3"].default_overlap_s, MODELS["v3"].timeline, MODELS["v3"].picture) == (1.5, True, "timeline")


def test_a_spec_refuses_impossible_settings():
    base = {"name": "X", "variant": "x", "label": "X", "chunk_s": 1.0, "default_overlap_s": 0.0, "timeline": False}
    base.update(picture="spectrogram", description="", hint="")
    assert ModelSpec(**base).overlap_range == (0.0, 0.5)  # a 1 s variant: one entry, its range follows
    with pytest.raises(ValueError, match="picture"):
        ModelSpec(**{**base, "picture": "waveform"})
    with pytest.raises(InvalidParameterError, match="overlap"):
        ModelSpec(**{**base, "default_overlap_s": 0.75})
    with pytest.raises(ValueError, match="longer than"):
        ModelSpec(**{**base, "chunk_s": 0.5})
    with pytest.raises(CheckpointError, match="unknown model variant 'x'"):
        spec_for("x")


# ------------------------------------------------------------------------------------- checkpoint vs spec
def _copy_shipped(tmp_path: Path, variant: str) -> Path:
    d = tmp_path / variant
    shutil.copytree(MODELS[variant].checkpoint_dir, d)
    return d


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variant": "v9"}, "unknown model variant 'v9'"),
        ({"chunking": {"overlap_s": 1.0}}, "records a default overlap of 1.0 s, but v3 has 1.5 s"),
        ({"features": {**FeatureConfig().to_dict(), "chunk_s": 2.0}}, "2 s chunks, but v3 has 3 s chunks"),
    ],
)
def test_a_checkpoint_must_agree_with_its_spec(tmp_path, change, message):
    d = _copy_shipped(tmp_path, "v3")
    assert load_checkpoint(d).spec is MODELS["v3"]
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(d)


# ------------------------------------------------------------------------------------------- overlap rule
@pytest.mark.parametrize("good", [0, 0.0, 1.5, "1.5", 2.5, " 2.5 ", np.float32(2.0)])
def test_overlaps_in_range_are_accepted(good):
    assert validate_overlap(good, 3.0) == float(good)
    assert MODELS["v3"].validate_overlap(good) == float(good)


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        (-0.1, "-0.1"),
        (2.51, "2.51"),
        ("2.9", "2.9"),
        (3.0, "3"),
        (float("nan"), "nan"),
        ("inf", "inf"),
        ("abc", "'abc'"),
        (None, "None"),
        ("", "''"),
        ("x" * 60, repr("x" * 40)),
    ],
)
def test_one_overlap_rule_and_message(bad, shown):
    with pytest.raises(InvalidParameterError) as caught:
        validate_overlap(bad, 3.0)
    assert str(caught.value) == overlap_message(shown)
    assert caught.value.code == "invalid_parameter" and isinstance(caught.value, MelcnnError | ValueError)
    with pytest.raises(InvalidParameterError) as by_chunking:  # the low-level chunker applies the same rule
        chunk(np.ones(48_000 * 2, dtype=np.float32), sr=16_000, chunk_s=3.0, overlap_s=bad)
    assert str(by_chunking.value) == str(caught.value)


def test_api_cli_and_http_share_the_rule_and_message(capsys):
    """2.9 s: accepted by nobody (the Python API accepted it before), with the same words everywhere."""
    expected = overlap_message("2.9")
    spec = MODELS[DEFAULT_MODEL]
    # Python API (refused before the file is even decoded)
    detector = melcnn.load_model(DEFAULT_MODEL)
    with pytest.raises(InvalidParameterError) as api:
        detector.analyze(media_path=EXAMPLE, overlap_s=2.9)
    assert str(api.value) == expected
    # CLI: exit status 2 (usage), the message on stderr, nothing analysed
    from melcnn.cli import EXIT_USAGE, main

    assert main(["analyze", str(EXAMPLE), "--overlap", "2.9"]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and err == f"melcnn: {expected}\n"
    # HTTP: the form field is checked by the same spec method, answered as 422 invalid_parameter
    pytest.importorskip("fastapi")
    from melcnn.server.errors import ApiError
    from melcnn.server.routes import parse_params

    service = SimpleNamespace(default_variant=spec.variant, detectors={spec.variant: SimpleNamespace(spec=spec)})
    with pytest.raises(ApiError) as http:
        parse_params({"overlap": "2.9"}, service)
    assert (http.value.status, http.value.code, http.value.message) == (422, "invalid_parameter", expected)
    assert parse_params({"overlap": "2.5"}, service).overlap_s == 2.5
    assert parse_params({}, service).overlap_s is None  # the model's default


def test_openapi_bounds_come_from_the_specs(tmp_path):
    pytest.importorskip("fastapi")
    from melcnn.server import Settings
    from melcnn.server.app import create_app

    doc = create_app(Settings(models=SERVE_MODELS, tmp_dir=tmp_path)).openapi()
    body = doc["paths"]["/v1/analyze"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    overlap = body["properties"]["overlap"]
    assert overlap["minimum"] == min(s.overlap_range[0] for s in SPECS) == 0
    assert overlap["maximum"] == max(s.overlap_range[1] for s in SPECS) == 2.5
    assert body["properties"]["model"]["enum"] == list(MODELS)
