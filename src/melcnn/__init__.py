"""melcnn: the MEL-Spectrogram-CNN audio deepfake detector (V2 and V3)."""

from __future__ import annotations

from .errors import (
    CheckpointError,
    EmptyMediaError,
    MediaNotFoundError,
    MediaProcessingError,
    MelcnnError,
    NonFiniteAudioError,
    NotAudioError,
    NoWeightsError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    UndecodableMediaError,
)

__version__ = "0.2.0"


def __getattr__(name: str):
    # the detector pulls in NumPy and the decoders: import it on first use, so `import melcnn` stays cheap
    if name in ("load_model", "Detector"):
        from . import detector

        return getattr(detector, name)
    if name == "scan":  # the function (its module is melcnn.scanning, so this name stays the function)
        from .scanning import scan

        return scan
    raise AttributeError(f"module 'melcnn' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "Detector",
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
    "load_model",
    "scan",
]
