"""Pipeline settings in one place, with units in the names.

The defaults are the specification's (see ``docs/model.md``): mono 16 kHz, 3 s
chunks, pre-emphasis, a 128-band mel spectrogram (n_fft 2048, hop 512) in dB relative to the chunk's
maximum, rendered to a 256x256 image and fed to Kymatio ``Scattering2D(J=4, L=8)``.
A checkpoint stores this whole configuration; :func:`melcnn.model.load_checkpoint` refuses a
checkpoint whose feature settings this code cannot reproduce.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

SAMPLE_RATE = 16_000  # Hz
CHUNK_S = 3.0  # seconds per analysed chunk (each variant's ModelSpec.chunk_s, in melcnn.registry, must agree)
MAX_DURATION_S = 7_200.0  # default longest input accepted (2 hours)
#: statistics over time a classifier head may take of each scattering coefficient (``HeadConfig.time_stats``)
TIME_STATS = ("mean", "std", "max")


@dataclass(frozen=True)
class FeatureConfig:
    """Everything between decoded audio and the classifier's input.

    Changing any field changes the features, so a checkpoint records all of them.
    """

    sample_rate: int = SAMPLE_RATE  # Hz, audio is resampled to this
    chunk_s: float = CHUNK_S  # seconds per chunk
    preemphasis: float = 0.97  # coefficient of y[n] - a * y[n-1]
    n_fft: int = 2048  # samples per STFT frame (128 ms at 16 kHz)
    hop_length: int = 512  # samples between frames (32 ms at 16 kHz)
    n_mels: int = 128  # mel bands (Slaney scale and norm, as librosa)
    fmin_hz: float = 0.0
    fmax_hz: float | None = None  # None: sample_rate / 2
    top_db: float = 80.0  # dB range kept below the chunk maximum (librosa.power_to_db default)
    image_size: int = 256  # the mel-dB array is resampled to image_size x image_size
    scattering_J: int = 4  # scales of Kymatio Scattering2D
    scattering_L: int = 8  # orientations of Kymatio Scattering2D

    @property
    def chunk_len(self) -> int:
        """Samples per chunk."""
        return int(round(self.chunk_s * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """STFT frames per chunk (centred frames, as librosa)."""
        return 1 + self.chunk_len // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            from .errors import CheckpointError

            raise CheckpointError(f"unknown feature settings in checkpoint: {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> FeatureConfig:
        return replace(self, **changes)
