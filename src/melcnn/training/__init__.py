"""Training toolkit: dataset building, feature caching, training and evaluation of the head.

Data side: ``build_dataset(DATA_DIR, minutes=..., seed=...)`` fetches the bona fide Debian packages, generates
the spoofs, splits by speaker with held-out generators, and writes ``DATA_DIR/manifest.csv``;
``shortcut_audit(manifest)`` checks that trivial file properties do not separate the classes.
Modules: sources (bona fide), generators (spoofs), audio (shared signal chain), protocol (splits),
plan (which clips to make), clips (making them), manifest (manifest.csv), build (orchestration), audit.
System and Python requirements: ``scripts/install_training_deps.sh``.
Heavy imports happen inside functions, so importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["build_dataset", "shortcut_audit", "read_manifest"]

if TYPE_CHECKING:
    from .audit import shortcut_audit
    from .build import build_dataset
    from .manifest import read_manifest


def __getattr__(name: str):
    if name == "build_dataset":
        from .build import build_dataset

        return build_dataset
    if name == "read_manifest":
        from .manifest import read_manifest

        return read_manifest
    if name == "shortcut_audit":
        from .audit import shortcut_audit

        return shortcut_audit
    raise AttributeError(name)
