"""Packaging: the sdist carries the kernels' Cython source, and without a C compiler the install still works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
    assert "melcnn/scattering.py" in names and "melcnn/weights/v2/model.safetensors" in names
    assert not [n for n in names if "_kernels" in n]  # the compile failed: neither extension nor its sources
