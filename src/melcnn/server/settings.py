"""Settings of the HTTP service (``melcnn serve``): one frozen dataclass, validated when built."""

from __future__ import annotations

import math
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..config import MAX_DURATION_S
from ..errors import MelcnnError
from ..registry import SERVE_MODELS

#: one "MB" of ``--max-upload-mb``: a mebibyte
MB = 1024 * 1024
#: environment variable naming the folder the server keeps its private work folder in
TMPDIR_ENV = "MELCNN_SERVER_TMPDIR"


class SettingsError(MelcnnError, ValueError):
    """An option of ``melcnn serve`` is invalid (the message says which and why)."""


@dataclass(frozen=True)
class Settings:
    """Everything ``create_app`` needs; build with :meth:`create` to get validated values.

    Attributes
    ----------
    models : tuple[str, ...]
        Models to load (``v2``, ``v3``, a registry name or a checkpoint directory), at most one per
        variant; the first is the default for requests that name none.
    host, port : str, int
        Where uvicorn listens.
    max_upload_bytes : int
        Largest media file accepted, in bytes (413 beyond, enforced while the upload streams in).
    max_duration_s : float
        Longest audio accepted, in seconds (422 ``too_long`` beyond, enforced while decoding).
    workers : int
        Analyses that run at the same time (threads sharing the loaded models).
    queue_size : int
        Requests that may wait for a worker (uploading or queued); one more gets 503.
    timeout_s : float
        Time limit of one analysis request from its arrival to its report, upload included, in
        seconds: 408 while the upload is still arriving, 504 when the analysis is not done.
    artifact_ttl_s : float
        Seconds a picture stays downloadable at ``/v1/artifacts/{id}``.
    max_artifacts : int
        Pictures kept at most; the oldest go first.
    tmp_dir : Path
        Folder the server creates its private work folder in (uploads and pictures; mode 0700,
        removed at shutdown).
    api_key : bytes | None
        When set, ``/v1/*`` requires it in ``X-API-Key`` or ``Authorization: Bearer``.
    device : str
        ``cpu`` or ``cuda``.
    """

    models: tuple[str, ...] = SERVE_MODELS
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = 200 * MB
    max_duration_s: float = MAX_DURATION_S
    workers: int = 2
    queue_size: int = 16
    timeout_s: float = 600.0
    artifact_ttl_s: float = 3600.0
    max_artifacts: int = 1000
    tmp_dir: Path = field(default_factory=lambda: Path(os.environ.get(TMPDIR_ENV) or tempfile.gettempdir()))
    api_key: bytes | None = field(default=None, repr=False)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.models:
            raise SettingsError("give at least one --model")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"--port must be 0-65535, got {self.port}")
        _positive("--max-upload-mb", self.max_upload_bytes)
        _positive("--max-duration-s", self.max_duration_s)
        _positive("--timeout-s", self.timeout_s)
        _positive("--artifact-ttl-s", self.artifact_ttl_s)
        if self.workers < 1:
            raise SettingsError(f"--workers must be at least 1, got {self.workers}")
        if self.queue_size < 0:
            raise SettingsError(f"--queue-size must be 0 or more, got {self.queue_size}")
        if self.max_artifacts < 1:
            raise SettingsError(f"max_artifacts must be at least 1, got {self.max_artifacts}")
        if self.device not in ("cpu", "cuda"):
            raise SettingsError(f"--device must be cpu or cuda, got {self.device!r}")
        if not Path(self.tmp_dir).is_dir():
            raise SettingsError(f"--tmp-dir {str(self.tmp_dir)!r} is not an existing folder")
        if self.api_key is not None and not self.api_key:
            raise SettingsError("the API key is empty")

    @property
    def capacity(self) -> int:
        """Analysis requests admitted at once (running + waiting); one more gets 503."""
        return self.workers + self.queue_size


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise SettingsError(f"{name} must be a positive number, got {value!r}")


def read_api_key(path: str | os.PathLike) -> bytes:
    """The API key in ``path``: its first line, surrounding white space removed.

    Raises
    ------
    SettingsError
        The file cannot be read, or holds no key.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read --api-key-file {str(p)!r}: {exc}") from None
    lines = text.strip().splitlines()
    key = lines[0].strip() if lines else ""
    if not key:
        raise SettingsError(f"--api-key-file {str(p)!r} holds no key (write the key on its first line)")
    return key.encode("utf-8")


def key_file_is_private(path: str | os.PathLike) -> bool:
    """True if nobody but the owner may read ``path`` (its mode has no group/other bits)."""
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return False
    return not mode & (stat.S_IRWXG | stat.S_IRWXO)
