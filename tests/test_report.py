"""The analysis report: it validates against the shipped JSON Schema, carries the timeline section
(``metrics``) exactly where the model's spec says, decides the verdict at the threshold, and renders
for the terminal; the schema has one loader, which the HTTP service's OpenAPI document also uses."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import melcnn
from melcnn.registry import MODELS
from melcnn.report import SCHEMA_VERSION, build_report, schema, summary, timeline

EXAMPLES = Path(str(resources.files("melcnn"))) / "examples"
SPECS = list(MODELS.values())

MEASUREMENTS = {
    "pitch": {"mean_pitch_hz": 180.0, "pitch_stability_score": 0.8, "voiced_ratio": 0.5},
    "energy": {"rms_energy": 0.1, "silence_ratio": 0.2},
    "spectral": {"spectral_centroid": 1500.0, "spectral_contrast": 20.0},
}


def synthetic_report(spec, scores, threshold=0.5, **changes):
    scores = np.asarray(scores, dtype=np.float64)
    step = spec.chunk_s - spec.default_overlap_s
    starts = np.arange(len(scores)) * step
    kwargs = {
        "spec": spec,
        "chunk_scores": scores,
        "chunk_starts_s": starts,
        "chunk_ends_s": starts + spec.chunk_s,
        "chunk_s": spec.chunk_s,
        "overlap_s": spec.default_overlap_s,
        "threshold": threshold,
        "properties": {
            "duration_seconds": 10.0,
            "analyzed_seconds": float(starts[-1] + spec.chunk_s),
            "sample_rate": 16000,
            "channels": 1,
            "original_sample_rate": 44100,
            "original_channels": 2,
            "format": "flac",
        },
        "measurements": MEASUREMENTS,
        "model": {"name": spec.name, "variant": spec.variant, "version": "1", "weights_sha256": "0" * 64},
        "visualization": {"spectrogram_url": None, "spectrogram_data": [round(float(s), 4) for s in scores]},
        "warnings": ["a warning"],
        "processing_time_s": 1.23456,
        "timings_s": {"decode": 0.1},
    }
    kwargs.update(changes)
    return build_report(**kwargs)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.variant)
def test_built_report_validates_and_has_the_timeline_section_only_where_the_spec_says(spec):
    scores = [0.1, 0.9, 0.35]
    r = synthetic_report(spec, scores)
    jsonschema.validate(r, schema())
    assert json.loads(json.dumps(r)) == r  # plain JSON types only
    assert ("metrics" in r) == spec.timeline
    if spec.timeline:
        m = r["metrics"]
        assert m["chunk_predictions"] == [c["fake_score"] for c in r["chunks"]] == scores
        assert m["num_chunks"] == 3 and m["average_chunk_fake_score"] == r["fake_score"]
        assert (m["chunk_duration_s"], m["chunk_overlap_s"]) == (spec.chunk_s, spec.default_overlap_s)
    assert r["fake_score"] == pytest.approx(np.mean(scores), abs=1e-4)
    assert r["schema_version"] == SCHEMA_VERSION and r["processing_time"] == 1.235
    assert r["timings"] == {"decode": 0.1}
    assert "timings" not in synthetic_report(spec, scores, timings_s=None)


def test_verdict_and_confidence_at_the_threshold():
    spec = MODELS["v2"]
    at = synthetic_report(spec, [0.6, 0.4], threshold=0.5)  # mean exactly the threshold: FAKE
    assert (at["prediction"], at["confidence"]) == ("FAKE", 0.5)
    real = synthetic_report(spec, [0.1, 0.3], threshold=0.5)
    assert (real["prediction"], real["confidence"]) == ("REAL", 0.8)
    fake = synthetic_report(spec, [0.9, 0.95], threshold=0.7)
    assert (fake["prediction"], fake["confidence"], fake["threshold"]) == ("FAKE", 0.925, 0.7)


def test_schema_refuses_what_the_report_must_not_be():
    r = synthetic_report(MODELS["v3"], [0.2, 0.4])
    jsonschema.validate(r, schema())
    for broken in (
        {k: v for k, v in r.items() if k != "chunks"},  # a required section missing
        {**r, "prediction": "MAYBE"},
        {**r, "unexpected": 1},
        {**r, "chunks": []},
        {**r, "model": {**r["model"], "variant": ""}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.variant)
def test_real_reports_of_the_shipped_models(spec):
    detector = melcnn.load_model(spec.variant)
    r = detector.analyze(media_path=EXAMPLES / "bonafide_en.flac")
    jsonschema.validate(r, schema())
    assert ("metrics" in r) == spec.timeline
    assert r["model"]["variant"] == spec.variant and r["model"]["name"] == spec.name
    starts = [c["start_s"] for c in r["chunks"]]
    assert np.allclose(np.diff(starts), spec.chunk_s - spec.default_overlap_s)
    data = r["visualization"]["spectrogram_data"]
    if spec.timeline:  # the chunk scores
        assert data == [c["fake_score"] for c in r["chunks"]]
    else:  # the last chunk's mel spectrogram in dB [n_mels][n_frames]
        cfg = detector.config
        assert np.asarray(data).shape == (cfg.n_mels, cfg.n_frames)
        assert -cfg.top_db <= np.min(data) and np.max(data) == 0.0


def test_summary_and_timeline_render_the_report():
    r = synthetic_report(MODELS["v3"], [0.1, 0.9, 0.2])
    text = summary(r, name="call.wav", ascii_only=True)
    assert text.startswith("call.wav: REAL  (fake score 0.400, threshold 0.50")
    assert "3 chunks" in text and "timeline 0.0s [192] 6.0s" in text
    assert "1 chunk scores above the threshold" in text and "warning: a warning" in text
    assert timeline([0.0, 1.0]) == "▁█" and timeline([]) == ""
    assert len(timeline(np.linspace(0, 1, 500), width=60)) == 60


def test_one_schema_loader_serves_the_report_and_the_openapi_document():
    on_disk = json.loads((resources.files("melcnn") / "report.schema.json").read_text())
    assert schema() == on_disk and schema() is schema()  # loaded once
    jsonschema.Draft202012Validator.check_schema(schema())
    pytest.importorskip("fastapi")
    from melcnn.server.app import _report_schema

    component = _report_schema()
    assert component == {k: v for k, v in on_disk.items() if k not in ("$schema", "$id")}
    assert "$id" in schema()  # making the component leaves the cached schema whole
