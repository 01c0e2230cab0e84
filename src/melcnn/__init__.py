"""melcnn: the MEL-Spectrogram-CNN audio deepfake detector (V2 and V3)."""

from __future__ import annotations

from .errors import (
    CheckpointError,
    EmptyMediaError,
    MediaNotFoundError,
    MediaProcessingError,
    MelcnnError,
    NoWeightsError,
    NonFiniteAudioError,
    NotAudioError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    UndecodableMediaError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "EmptyMediaError",
    "MediaNotFoundError",
    "MediaProcessingError",
    "MelcnnError",
    "NoWeightsError",
    "NonFiniteAudioError",
    "NotAudioError",
    "SilentAudioError",
    "TooLongError",
    "TooShortError",
    "UndecodableMediaError",
    "__version__",
]
