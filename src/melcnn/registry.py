"""The model variants as data (:class:`ModelSpec`, one entry each in :data:`MODELS`), their names, the
one overlap rule, and where their shipped checkpoints live.

Everything that differs between variants is a field of the variant's :class:`ModelSpec`: chunk length,
default overlap and the valid overlap range, whether the report carries the timeline section
(``metrics``), which picture is drawn, and the words shown for it. The detector, the report, the CLI,
the HTTP routes (and their OpenAPI bounds), the web page (through ``GET /v1/models``) and the training
read it; nothing tests for a variant's name. A new variant is one :data:`MODELS` entry plus its weights.

``load_model`` (in :mod:`melcnn.detector`) accepts the registry names ``MEL-Spectrogram-CNN-V2`` and
``MEL-Spectrogram-CNN-V3`` (case-insensitive), the short names ``v2``/``v3``, or a checkpoint directory.
Shipped checkpoints are package data under ``melcnn/weights/<variant>/``; the environment variable
``MELCNN_WEIGHTS_DIR`` points the names at another folder of the same layout instead (``v2/``,
``v3/``, optionally a ``SHA256SUMS`` to check them against).

This module imports no third-party package (the CLI reads it before anything heavy).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import CheckpointError, InvalidParameterError, NoWeightsError

#: the shortest step between chunk starts, in seconds: it bounds the chunks (the work) per second of
#: audio, so the largest overlap is the chunk length less this
MIN_STEP_S = 0.5

#: the pictures a spec can ask for (:mod:`melcnn.plots`): the whole-file mel spectrogram, or the chunk
#: fake scores over time above it
PICTURES = ("spectrogram", "timeline")


def overlap_range(chunk_s: float) -> tuple[float, float]:
    """The overlaps allowed with ``chunk_s``-second chunks: ``(0, chunk_s - MIN_STEP_S)`` seconds, both included."""
    return 0.0, float(chunk_s) - MIN_STEP_S


def validate_overlap(overlap_s: Any, chunk_s: float) -> float:
    """``overlap_s`` as a float when ``0 <= overlap_s <= chunk_s - MIN_STEP_S``, else :class:`InvalidParameterError`.

    The one overlap rule: the Python API, :func:`melcnn.chunking.chunk`, the CLI's ``--overlap`` and
    the HTTP ``overlap`` field all apply it, with this one message. Text is accepted when it parses as
    a number (the CLI and HTTP pass what the user typed).
    """
    lo, hi = overlap_range(chunk_s)
    try:
        overlap = float(overlap_s)
        shown = f"{overlap:g}"  # 2.9 whether it came as 2.9 (Python) or "2.9" (CLI, HTTP)
    except (TypeError, ValueError):
        overlap = math.nan
        shown = repr(overlap_s[:40] if isinstance(overlap_s, str) else overlap_s)
    if not (math.isfinite(overlap) and lo <= overlap <= hi):
        raise InvalidParameterError(
            f"overlap must be a number of seconds from {lo:g} to {hi:g} (the {chunk_s:g} s chunk length "
            f"less {MIN_STEP_S:g} s); got {shown}"
        )
    return overlap


@dataclass(frozen=True)
class ModelSpec:
    """One model variant, as data. Its checkpoint's ``variant`` names it; the checkpoint holds the weights."""

    name: str  # registry name, as the specification spells it
    variant: str  # short name: key of MODELS, the checkpoint's and the report's "variant", the weights folder
    label: str  # display name ("V2")
    chunk_s: float  # seconds per chunk (the checkpoint's features.chunk_s must agree)
    default_overlap_s: float  # chunk overlap when a request names none
    timeline: bool  # the report carries the timeline section ("metrics"), spectrogram_data = chunk scores
    picture: str  # which picture plot_dir gets (one of PICTURES)
    description: str  # one line for `melcnn models`
    hint: str  # a few words next to the label on the web page

    def __post_init__(self) -> None:
        if self.picture not in PICTURES:
            raise ValueError(f"{self.variant}: picture must be one of {PICTURES}, not {self.picture!r}")
        if not self.chunk_s > MIN_STEP_S:
            raise ValueError(f"{self.variant}: chunks must be longer than {MIN_STEP_S:g} s")
        validate_overlap(self.default_overlap_s, self.chunk_s)

    @property
    def overlap_range(self) -> tuple[float, float]:
        """Smallest and largest overlap in seconds (both allowed)."""
        return overlap_range(self.chunk_s)

    def validate_overlap(self, overlap_s: Any) -> float:
        """:func:`validate_overlap` for this variant's chunk length."""
        return validate_overlap(overlap_s, self.chunk_s)

    @property
    def checkpoint_dir(self) -> Path:
        return weights_root() / self.variant

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON (``melcnn models --json`` and ``GET /v1/models``)."""
        lo, hi = self.overlap_range
        return {
            "name": self.name,
            "variant": self.variant,
            "label": self.label,
            "chunk_s": self.chunk_s,
            "default_overlap_s": self.default_overlap_s,
            "min_overlap_s": lo,
            "max_overlap_s": hi,
            "timeline": self.timeline,
            "picture": self.picture,
            "description": self.description,
            "hint": self.hint,
        }


#: environment variable naming a folder to take the registry models' checkpoints from
WEIGHTS_ENV = "MELCNN_WEIGHTS_DIR"


def weights_root() -> Path:
    """Folder holding the registry models' checkpoints: ``$MELCNN_WEIGHTS_DIR``, else the shipped ones."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(str(resources.files("melcnn"))) / "weights"


MODELS: dict[str, ModelSpec] = {
    spec.variant: spec
    for spec in (
        ModelSpec(
            name="MEL-Spectrogram-CNN-V2",
            variant="v2",
            label="V2",
            chunk_s=3.0,
            default_overlap_s=0.0,
            timeline=False,
            picture="spectrogram",
            description="non-overlapping 3 s chunks, mean of chunk scores",
            hint="separate 3 s chunks",
        ),
        ModelSpec(
            name="MEL-Spectrogram-CNN-V3",
            variant="v3",
            label="V3",
            chunk_s=3.0,
            default_overlap_s=1.5,
            timeline=True,
            picture="timeline",
            description="3 s chunks overlapping by 1.5 s, mean of chunk scores, score timeline",
            hint="overlapping chunks, finer timeline",
        ),
    )
}

#: the model ``melcnn analyze`` uses and ``melcnn serve`` answers with when a request names none. V2, the
#: specification's default: both share one chunk classifier and rank alike on the eval split (README), and
#: V2 takes about two thirds of V3's time.
DEFAULT_MODEL = "v2"
#: what ``melcnn serve`` loads without --model: the default first, then every other variant
SERVE_MODELS = (DEFAULT_MODEL, *(v for v in MODELS if v != DEFAULT_MODEL))


def spec_for(variant: str) -> ModelSpec:
    """The spec of ``variant`` (a checkpoint's ``variant``); :class:`CheckpointError` when unknown."""
    spec = MODELS.get(variant)
    if spec is None:
        raise CheckpointError(f"unknown model variant {variant!r}: this melcnn knows {', '.join(MODELS)}")
    return spec


def resolve(name_or_path: str | os.PathLike) -> tuple[ModelSpec | None, Path]:
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
        if low in (entry.variant, entry.name.lower()):
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


def recorded_sha256(entry: ModelSpec) -> str | None:
    """The sha256 of ``entry``'s shipped weights as recorded in ``weights/SHA256SUMS``, if listed."""
    sums = entry.checkpoint_dir.parent / "SHA256SUMS"
    if not sums.is_file():
        return None
    for line in sums.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == f"{entry.variant}/model.safetensors":
            return parts[0]
    return None


def available() -> list[ModelSpec]:
    """Registry entries whose weights are installed."""
    return [e for e in MODELS.values() if (e.checkpoint_dir / "config.json").is_file()]
