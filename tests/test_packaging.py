"""Packaging: the sdist carries the kernels' Cython source, and without a C compiler the install still works.

The wheel built with a failing compiler is installed, with its core dependencies only, into a fresh
virtual environment (no system site-packages), and that installation analyses a clip. pip resolves the
dependencies from the package index (its cache makes it about 30 s; a first download is about 150 MB),
so this test needs the index: on this project's 2-core machine the whole file takes 1.5-2.5 min.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import melcnn

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "src" / "melcnn" / "examples" / "spoof_en.flac"

_IN_VENV = r"""
import importlib.util, json, sys
import melcnn
from melcnn import scattering
report = melcnn.load_model("v2").analyze(sys.argv[1])
print(json.dumps({
    "file": melcnn.__file__, "version": melcnn.__version__, "kernels": scattering._kernels is not None,
    "scores": [c["fake_score"] for c in report["chunks"]], "prediction": report["prediction"],
    "torch_imported": "torch" in sys.modules,
    "installed": {m: importlib.util.find_spec(m) is not None for m in ("torch", "fastapi", "kymatio", "uvicorn")},
}))
"""


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_sdist_then_wheel_without_a_c_compiler(tmp_path):
    """The sdist builds a wheel on a machine whose C compiler fails: melcnn._kernels is optional."""
    src = tmp_path / "checkout"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, src / name)
    # the sources only: no generated C, no built extension, no caches
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.c"))
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path / "dist"), str(src)])
    (sdist,) = (tmp_path / "dist").glob("melcnn-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert any(n.endswith("src/melcnn/_kernels.pyx") for n in names)
    assert not any(n.endswith("_kernels.c") for n in names)

    env = dict(os.environ, CC="/bin/false", PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "wheels"), str(sdist)], env=env)
    (wheel,) = (tmp_path / "wheels").glob("melcnn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "melcnn/weights/v2/model.safetensors" in names
    scattering = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src/melcnn/scattering").glob("*.py")}
    assert "melcnn/scattering/__init__.py" in scattering and scattering <= set(names)  # the subpackage, whole
    scanning = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src/melcnn/scanning").glob("*.py")}
    assert "melcnn/scanning/__init__.py" in scanning and scanning <= set(names)
    assert "melcnn/training/cli.py" in names  # `melcnn --help` lists the training commands without the extra
    assert not [n for n in names if "_kernels" in n]  # the compile failed: neither extension nor its sources

    # the core's metadata: no torch, no server; those come with extras, and torch with no exact pin
    (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = zipfile.ZipFile(wheel).read(meta_name).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = [r for r in requires if "extra ==" not in r]
    assert core and not [r for r in core if re.search(r"torch|fastapi|uvicorn|kymatio", r)], core
    torch_reqs = [r for r in requires if re.match(r"Requires-Dist: torch\b", r)]
    assert torch_reqs and all("==" not in r.partition(";")[0] for r in torch_reqs), torch_reqs
    assert {"serve", "gpu", "train"} <= {m.group(1) for r in requires if (m := re.search(r'extra == "(\w+)"', r))}

    # a fresh environment with the wheel and its core dependencies analyses a clip, in NumPy, without torch
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", MELCNN_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("PYTHONPATH", None)  # the venv's own melcnn, not this checkout's
    _run([str(py), "-m", "pip", "install", "--quiet", str(wheel)], env=env)
    got = json.loads(_run([str(py), "-c", _IN_VENV, str(CLIP)], env=env, cwd=tmp_path).stdout.splitlines()[-1])
    assert got["file"].startswith(str(venv)) and got["version"] == melcnn.__version__
    assert got["kernels"] is False  # the pure-Python package: NumPy loops
    assert got["installed"] == {"torch": False, "fastapi": False, "kymatio": False, "uvicorn": False}
    assert got["torch_imported"] is False
    here = melcnn.load_model("v2").analyze(CLIP)  # this checkout, compiled kernels where built
    assert got["prediction"] == here["prediction"] == "FAKE"
    assert got["scores"] == pytest.approx([c["fake_score"] for c in here["chunks"]], abs=1e-4)
    cli = _run([str(venv / "bin" / "melcnn"), "analyze", str(CLIP), "--json"], env=env, cwd=tmp_path)
    assert json.loads(cli.stdout)["prediction"] == "FAKE"
    serve = subprocess.run([str(venv / "bin" / "melcnn"), "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2 and "pip install 'melcnn[serve]'" in serve.stderr, serve.stderr


def test_version_agrees_across_pyproject_package_and_changelog():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version == melcnn.__version__
    newest = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert newest and newest.group(1) == version


def test_ci_workflow_runs_the_ci_command():
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "run: bash .ci/run" in workflow
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert 'TORCH_PIN="torch==2.13.0"' in script and "took" in script
