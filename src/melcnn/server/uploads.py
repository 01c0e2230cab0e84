"""Stream a ``multipart/form-data`` upload into a private temporary file, enforcing the size limit.

Starlette's own form parsing reads the whole body before the handler sees it; this module parses
the request stream incrementally with ``python-multipart``'s streaming parser instead, so the
413 is answered as soon as the limit is passed and no more than one network chunk is in memory.
The ``media`` part goes to a file created with mode 0600 in the server's private upload folder;
the other (small) fields are kept as text.
"""

from __future__ import annotations

import os
import secrets
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from .errors import ApiError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

#: the form field that carries the media file
MEDIA_FIELD = "media"
#: bytes of multipart framing and small fields allowed on top of the media limit
FORM_OVERHEAD = 64 * 1024
MAX_FIELD_BYTES = 1024
MAX_PARTS = 16
MAX_HEADER_BYTES = 8 * 1024


@dataclass
class Upload:
    """A received upload: the media file on disk and the other form fields.

    ``discard()`` deletes the file; it is idempotent, and the owner must call it whatever happens.
    """

    path: Path | None = None
    size: int = 0
    filename: str = ""
    content_type: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        """Delete the file (safe to call twice, or when none was written)."""
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError:  # pragma: no cover - the work folder is removed at shutdown anyway
                pass


def clean_filename(raw: str) -> str:
    """The client's file name made safe to echo: last path component, no control characters, <= 200 chars."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return name.strip()[:200]


def _new_private_file(directory: Path) -> tuple[Path, BinaryIO]:
    path = directory / f"{secrets.token_hex(16)}.upload"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    return path, os.fdopen(fd, "wb")


def _boundary(content_type: str) -> bytes:
    mime, options = parse_options_header(content_type)
    if mime != b"multipart/form-data":
        raise ApiError(
            415,
            "unsupported_content_type",
            "send the file as multipart/form-data with the file in a part named 'media'",
        )
    boundary = options.get(b"boundary", b"")
    if not boundary or len(boundary) > 200:
        raise ApiError(400, "bad_request", "the multipart/form-data Content-Type has no valid boundary")
    return boundary


class _FormReceiver:
    """Callbacks for ``MultipartParser``: route each part to a file or a small text field."""

    def __init__(self, upload: Upload, upload_dir: Path, max_bytes: int):
        self.upload = upload
        self.upload_dir = upload_dir
        self.max_bytes = max_bytes
        self.parts = 0
        self.finished = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._name = ""
        self._file: BinaryIO | None = None
        self._text: bytearray | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ApiError(400, "bad_request", f"too many form parts (at most {MAX_PARTS})")
        self._headers = {}
        self._header_bytes = 0
        self._name = ""
        self._text = None

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise ApiError(400, "bad_request", "a form part's headers are too long")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise ApiError(400, "bad_request", "each form part needs 'Content-Disposition: form-data; name=...'")
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name == MEDIA_FIELD:
            if self.upload.path is not None:
                raise ApiError(400, "bad_request", "send one file per request (two 'media' parts were sent)")
            self.upload.filename = clean_filename(options.get(b"filename", b"").decode("utf-8", "replace"))
            self.upload.content_type = self._headers.get(b"content-type", b"").decode("latin-1")[:100]
            self.upload.path, self._file = _new_private_file(self.upload_dir)
        else:
            self._text = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._file is not None:
            self.upload.size += n
            if self.upload.size > self.max_bytes:
                raise ApiError(413, "too_large", _too_large_message(self.max_bytes))
            self._file.write(data[start:end])
        elif self._text is not None:
            if len(self._text) + n > MAX_FIELD_BYTES:
                raise ApiError(422, "invalid_parameter", f"form field {self._name!r} is too long")
            self._text += data[start:end]

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._text is not None and self._name not in self.upload.fields:
            self.upload.fields[self._name] = bytes(self._text).decode("utf-8", "replace")
        self._text = None

    def on_end(self) -> None:
        self.finished = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _too_large_message(max_bytes: int) -> str:
    return f"the file is larger than this server's limit of {max_bytes / 2**20:g} MB; send a shorter or smaller file"


async def receive_upload(
    content_type: str,
    content_length: str | None,
    chunks: AsyncIterator[bytes],
    *,
    upload_dir: Path,
    max_bytes: int,
) -> Upload:
    """Parse a multipart body from ``chunks``, writing the ``media`` part to a 0600 file in ``upload_dir``.

    Parameters
    ----------
    content_type, content_length : str
        The request's headers (``content_length`` may be None for a chunked body).
    chunks : async iterator of bytes
        The request body as it arrives.
    max_bytes : int
        Largest media file accepted; the whole body may be ``FORM_OVERHEAD`` bytes larger.

    Returns
    -------
    Upload
        With ``path`` set. The caller owns the file and must ``discard()`` it.

    Raises
    ------
    ApiError
        415 not multipart, 413 too large (as soon as it is known), 400 malformed or no media part,
        422 an over-long field. The partial file is already deleted when this raises.
    """
    boundary = _boundary(content_type)
    body_limit = max_bytes + FORM_OVERHEAD
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise ApiError(400, "bad_request", "invalid Content-Length header") from None
        if declared > body_limit:
            raise ApiError(413, "too_large", _too_large_message(max_bytes))
    upload = Upload()
    receiver = _FormReceiver(upload, upload_dir, max_bytes)
    parser = MultipartParser(boundary, receiver.callbacks())
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > body_limit:
                raise ApiError(413, "too_large", _too_large_message(max_bytes))
            if chunk and not receiver.finished:
                parser.write(chunk)
        parser.finalize()
        receiver.close()
        if not receiver.finished:
            raise ApiError(400, "bad_request", "the multipart body ended early (no closing boundary)")
        if upload.path is None:
            raise ApiError(400, "bad_request", "no file: send the media file in a form part named 'media'")
        return upload
    except ApiError:
        receiver.close()
        upload.discard()
        raise
    except Exception as exc:  # python-multipart's parse errors, client disconnects, ...
        receiver.close()
        upload.discard()
        if isinstance(exc, ClientDisconnect):
            raise ApiError(400, "client_disconnected", "the client went away during the upload") from None
        raise ApiError(400, "bad_request", f"malformed multipart body: {exc}") from None
    except BaseException:  # cancellation (time limit): still no file left behind
        receiver.close()
        upload.discard()
        raise
