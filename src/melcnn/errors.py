"""Exception hierarchy of melcnn.

Every error a user can cause derives from :class:`MelcnnError`. Problems with the media a user hands
in derive from :class:`MediaProcessingError` (also a ``ValueError``); problems with a checkpoint from
:class:`CheckpointError` (also a ``RuntimeError``). The CLI and the server map each class to an exit
code or an HTTP status, so keep messages plain: what was found, what is required, what to do.
"""

from __future__ import annotations


class MelcnnError(Exception):
    """Root of all melcnn errors."""


class InvalidParameterError(MelcnnError, ValueError):
    """A setting the caller passed is out of range (e.g. the chunk overlap)."""

    code = "invalid_parameter"


class MediaProcessingError(MelcnnError, ValueError):
    """The media could not be analysed. Subclasses say why."""

    #: short machine-readable code used by the CLI's JSON output and the HTTP service
    code = "media_error"


class MediaNotFoundError(MediaProcessingError, FileNotFoundError):
    """The path does not exist or is not a regular file."""

    code = "not_found"


class EmptyMediaError(MediaProcessingError):
    """The file has zero bytes."""

    code = "empty_file"


class NotAudioError(MediaProcessingError):
    """The data is not a media container we recognise, or it has no audio stream."""

    code = "not_audio"


class UndecodableMediaError(MediaProcessingError):
    """The container was recognised but its audio could not be decoded."""

    code = "undecodable"


class TooShortError(MediaProcessingError):
    """Less audio than one analysis chunk."""

    code = "too_short"

    def __init__(self, message: str, *, duration_s: float | None = None, minimum_s: float | None = None):
        super().__init__(message)
        self.duration_s = duration_s
        self.minimum_s = minimum_s


class TooLongError(MediaProcessingError):
    """More audio than the configured maximum duration.

    The message names the setting that raises the limit: ``max_duration_s`` (the Python API's
    keyword) unless :meth:`naming` gave another (the CLI's ``--max-duration``).
    """

    code = "too_long"

    def __init__(self, message: str, *, limit_s: float | None = None, setting: str = "max_duration_s"):
        super().__init__(message.replace("{setting}", setting))
        self.template = message
        self.limit_s = limit_s
        self.setting = setting

    def naming(self, setting: str) -> TooLongError:
        """The same error, its message telling the user to raise ``setting`` instead."""
        return TooLongError(self.template, limit_s=self.limit_s, setting=setting)


class NonFiniteAudioError(MediaProcessingError):
    """The decoded samples contain NaN or infinity."""

    code = "non_finite"


class SilentAudioError(MediaProcessingError):
    """The audio is digitally silent: there is no signal to judge."""

    code = "silent"


class CheckpointError(MelcnnError, RuntimeError):
    """A checkpoint is missing, malformed, or incompatible with this pipeline."""

    code = "checkpoint_error"


class NoWeightsError(CheckpointError):
    """The requested model has no trained weights in this installation."""

    code = "no_weights"
