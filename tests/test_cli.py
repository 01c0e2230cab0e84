"""The `melcnn` command, run as a real subprocess."""

import json
import subprocess
import sys

import jsonschema
import pytest
from conftest import bonafide_signal, spoof_signal, write_wav

from melcnn.report import schema


def run(*args, check=False):
    return subprocess.run([sys.executable, "-m", "melcnn", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return {
        "real": write_wav(d / "real.wav", bonafide_signal(7.0, seed=601)),
        "fake": write_wav(d / "fake.wav", spoof_signal(7.0, seed=602)),
        "short": write_wav(d / "short.wav", bonafide_signal(1.0, seed=603)),
        "dir": d,
    }


def test_summary_output(tiny_checkpoints, files):
    p = run("analyze", files["real"], files["fake"], "--model", tiny_checkpoints["v3"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    real_line = next(line for line in lines if line.startswith(str(files["real"])))
    fake_line = next(line for line in lines if line.startswith(str(files["fake"])))
    assert "REAL" in real_line and "FAKE" in fake_line
    assert sum("timeline" in line for line in lines) == 2


def test_json_single_and_json_lines(tiny_checkpoints, files):
    p = run("analyze", files["fake"], "--model", tiny_checkpoints["v2"], "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["file"] == str(files["fake"]) and report["prediction"] == "FAKE"
    jsonschema.validate(report, schema())

    p = run("analyze", files["real"], files["short"], files["fake"], "--model", tiny_checkpoints["v3"], "--json")
    assert p.returncode == 3  # one file could not be analysed
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["file"] for r in rows] == [str(files["real"]), str(files["short"]), str(files["fake"])]
    assert rows[1]["error"]["code"] == "too_short"
    assert "1.00 s" in rows[1]["error"]["message"] and "3.00 s" in rows[1]["error"]["message"]
    assert "short.wav" in p.stderr and "Traceback" not in p.stderr
    assert rows[0]["prediction"] == "REAL" and rows[2]["prediction"] == "FAKE"
    assert rows[2]["metrics"]["num_chunks"] == 3


def test_plot_dir(tiny_checkpoints, files, tmp_path):
    p = run("analyze", files["fake"], "--model", tiny_checkpoints["v3"], "--json", "--plot-dir", tmp_path / "pics")
    assert p.returncode == 0, p.stderr
    url = json.loads(p.stdout)["visualization"]["spectrogram_url"]
    assert url.startswith(str(tmp_path / "pics")) and url.endswith(".png")


def test_overlap_option(tiny_checkpoints, files):
    p = run("analyze", files["fake"], "--model", tiny_checkpoints["v3"], "--json", "--overlap", "2.5")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["metrics"]["chunk_overlap_s"] == 2.5
    p = run("analyze", files["fake"], "--model", tiny_checkpoints["v3"], "--overlap", "3")
    assert p.returncode == 2 and "overlap" in p.stderr
    p = run("analyze", files["fake"], "--model", tiny_checkpoints["v3"], "--overlap", "-1")
    assert p.returncode == 2


def test_errors_and_exit_codes(tiny_checkpoints, files):
    p = run("analyze", files["dir"] / "missing.wav", "--model", tiny_checkpoints["v2"])
    assert p.returncode == 3 and "missing.wav" in p.stderr and "Traceback" not in p.stderr
    p = run("analyze", files["real"], "--model", "no-such-model")
    assert p.returncode == 4 and "unknown model" in p.stderr
    p = run("analyze")
    assert p.returncode == 2
    p = run("frobnicate")
    assert p.returncode == 2


def test_models_lists_both_models():
    p = run("models", "--json")
    assert p.returncode == 0, p.stderr
    names = [m["name"] for m in json.loads(p.stdout)["models"]]
    assert names == ["MEL-Spectrogram-CNN-V2", "MEL-Spectrogram-CNN-V3"]
    p = run("models")
    assert p.returncode == 0 and "MEL-Spectrogram-CNN-V3" in p.stdout
