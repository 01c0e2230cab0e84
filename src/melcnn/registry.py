"""Model names and where their shipped checkpoints live.

``load_model`` (in :mod:`melcnn.detector`) accepts the registry names ``MEL-Spectrogram-CNN-V2`` and
``MEL-Spectrogram-CNN-V3`` (case-insensitive), the short names ``v2``/``v3``, or a checkpoint directory.
Shipped checkpoints are package data under ``melcnn/weights/<short name>/``; the environment variable
``MELCNN_WEIGHTS_DIR`` points the names at another folder of the same layout instead (``v2/``,
``v3/``, optionally a ``SHA256SUMS`` to check them against).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .config import CHUNK_S, V3_OVERLAP_S
from .errors import CheckpointError, NoWeightsError


@dataclass(frozen=True)
class ModelEntry:
    name: str  # registry name, as the specification spells it
    short: str  # "v2" or "v3"
    overlap_s: float  # default chunk overlap in seconds
    description: str

    @property
    def checkpoint_dir(self) -> Path:
        return weights_root() / self.short


#: environment variable naming a folder to take the registry models' checkpoints from
WEIGHTS_ENV = "MELCNN_WEIGHTS_DIR"


def weights_root() -> Path:
    """Folder holding the registry models' checkpoints: ``$MELCNN_WEIGHTS_DIR``, else the shipped ones."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(str(resources.files("melcnn"))) / "weights"


MODELS: dict[str, ModelEntry] = {
    "v2": ModelEntry(
        "MEL-Spectrogram-CNN-V2", "v2", 0.0, f"non-overlapping {CHUNK_S:g} s chunks, mean of chunk scores"
    ),
    "v3": ModelEntry(
        "MEL-Spectrogram-CNN-V3",
        "v3",
        V3_OVERLAP_S,
        f"{CHUNK_S:g} s chunks overlapping by {V3_OVERLAP_S:g} s, mean of chunk scores, score timeline",
    ),
}


def resolve(name_or_path: str | os.PathLike) -> tuple[ModelEntry | None, Path]:
    """Map a model name or a checkpoint directory to ``(registry entry or None, checkpoint dir)``.

    Raises
    ------
    NoWeightsError
        A registry model whose weights are not installed.
    CheckpointError
        Neither a known name nor an existing directory.
    """
    key = str(name_or_path).strip()
    low = key.lower()
    for entry in MODELS.values():
        if low in (entry.short, entry.name.lower()):
            if not (entry.checkpoint_dir / "config.json").is_file():
                where = f" (${WEIGHTS_ENV} is set)" if os.environ.get(WEIGHTS_ENV) else ""
                raise NoWeightsError(
                    f"{entry.name} has no trained weights in this installation "
                    f"(expected {entry.checkpoint_dir}{where}); train them with `melcnn train` "
                    "and pass the checkpoint directory instead"
                )
            return entry, entry.checkpoint_dir
    path = Path(key).expanduser()
    if path.is_dir():
        return None, path
    names = ", ".join([e.name for e in MODELS.values()] + list(MODELS))
    raise CheckpointError(f"unknown model {key!r}: use one of {names}, or a checkpoint directory")


def recorded_sha256(entry: ModelEntry) -> str | None:
    """The sha256 of ``entry``'s shipped weights as recorded in ``weights/SHA256SUMS``, if listed."""
    sums = entry.checkpoint_dir.parent / "SHA256SUMS"
    if not sums.is_file():
        return None
    for line in sums.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == f"{entry.short}/model.safetensors":
            return parts[0]
    return None


def available() -> list[ModelEntry]:
    """Registry entries whose weights are installed."""
    return [e for e in MODELS.values() if (e.checkpoint_dir / "config.json").is_file()]
