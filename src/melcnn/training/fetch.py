"""Getting the bona fide material onto disk: Debian packages fetched with ``apt-get download`` and
unpacked with ``dpkg-deb -x``, and the speech inside game archives extracted.

Needs: ``apt-get`` and ``dpkg-deb`` (no root for these two steps; the apt lists must be current:
``apt-get update`` once, as root). The packages are listed in :data:`melcnn.training.sources.PACKAGES`
(``docs/training.md`` describes each).

Each package is unpacked into ``DATA_DIR/sources/PKG`` through a temporary folder that is renamed
when complete, so an interrupted fetch is redone and a finished one skipped. If the environment
variable ``MELCNN_DEB_CACHE`` names a folder, downloaded .deb files are kept there and reused.
Speech inside a game's archives is extracted once into ``PKG/extracted`` (:func:`extracted_speech`;
the Flight of the Amazon Queen and Beneath a Steel Sky formats are read by :mod:`melcnn.training.games`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# ----------------------------------------------------------------------------------- Debian packages


def fetch_packages(sources_dir: Path, progress=None, packages: list[str] | None = None) -> dict[str, str]:
    """Download and unpack every package (or those of ``packages``); returns {package: 'ok' | 'error: ...'}."""
    from .sources import PACKAGES  # the table lives with the sources (imported here: no import cycle)

    debs = sources_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    cache = os.environ.get("MELCNN_DEB_CACHE")
    status: dict[str, str] = {}
    pkgs = sorted(PACKAGES if packages is None else set(packages) & set(PACKAGES))
    for i, pkg in enumerate(pkgs):
        if progress:
            progress("fetch", i, len(pkgs))
        dest = sources_dir / pkg
        if dest.is_dir():
            status[pkg] = "ok"
            continue
        try:
            deb = _download(pkg, debs, Path(cache) if cache else None)
            tmp = Path(tempfile.mkdtemp(prefix=f".{pkg}-", dir=sources_dir))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, capture_output=True)
            os.replace(tmp, dest)
            status[pkg] = "ok"
        except Exception as e:  # a missing package only removes that source
            status[pkg] = f"error: {e}"
    if progress:
        progress("fetch", len(pkgs), len(pkgs))
    return status


def _find_deb(pkg: str, folder: Path) -> Path | None:
    hits = sorted(folder.glob(f"{pkg}_*.deb"))
    return hits[-1] if hits else None


def _download(pkg: str, debs: Path, cache: Path | None) -> Path:
    deb = _find_deb(pkg, debs)
    if deb:
        return deb
    if cache:
        cached = _find_deb(pkg, cache)
        if cached:
            shutil.copy2(cached, debs / cached.name)
            return debs / cached.name
    tmp = Path(tempfile.mkdtemp(prefix=".dl-", dir=debs))
    try:
        r = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True)
        got = _find_deb(pkg, tmp)
        if r.returncode != 0 or got is None:
            raise RuntimeError(f"apt-get download {pkg} failed: {r.stderr.strip()[-300:]}")
        os.replace(got, debs / got.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    deb = debs / got.name
    if cache:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            shutil.copy2(deb, cache / deb.name)
        except OSError:
            pass
    return deb


# ------------------------------------------------------------------------------------- game archives


def extracted_speech(root: Path, pkg: str) -> list[Path]:
    """Speech files that live inside a game's archives, extracted once into ``root/extracted`` (resumable)."""
    out_dir = root / "extracted"
    done = out_dir / ".done"
    if done.exists():
        return sorted(p for p in out_dir.iterdir() if p.suffix in (".mp3", ".wav", ".ogg"))
    from . import games

    if pkg == "flight-of-the-amazon-queen":
        files = games.extract_fotaq(root, out_dir)
    elif pkg == "beneath-a-steel-sky":
        files = games.extract_bass(root, out_dir)
    elif pkg == "warzone2100-data":
        files = _extract_warzone(root, out_dir)
    else:
        raise ValueError(pkg)
    done.write_text(str(len(files)))
    return sorted(files)


def _extract_warzone(root: Path, out_dir: Path) -> list[Path]:
    """Warzone 2100's spoken messages and taunts from ``base.wz`` (a zip archive)."""
    import zipfile

    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    with zipfile.ZipFile(root / "usr/share/games/warzone2100/base.wz") as z:
        for name in sorted(z.namelist()):
            if not name.startswith(("audio/memressp/", "audio/taunts/")) or not name.endswith(".ogg"):
                continue
            dest = out_dir / name.replace("/", "_")
            if not dest.exists():
                tmp = dest.with_suffix(".tmp")
                tmp.write_bytes(z.read(name))
                os.replace(tmp, dest)
            files.append(dest)
    return files
