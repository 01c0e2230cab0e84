"""Every error the service answers, as JSON of one shape: ``{"error": {"code": ..., "message": ...}}``.

Status codes (stable; the ``code`` strings are stable too):

===========  =====================================================================================
status       when
===========  =====================================================================================
400          malformed request: no ``media`` part, broken multipart body (``bad_request``), an
             empty file (``empty_file``), or an upload the client abandoned (``client_disconnected``)
401          ``/v1/*`` without the right API key, when the server has one (``unauthorized``)
404          unknown route or unknown/expired picture (``not_found``)
405          wrong method (``method_not_allowed``)
408          the upload did not arrive within the time limit (``upload_timeout``)
413          the file is larger than ``--max-upload-mb`` (``too_large``)
415          the request is not ``multipart/form-data`` (``unsupported_content_type``), or the file
             is not audio/video or has no audio stream (``not_audio``)
422          invalid form field (``invalid_parameter``), or media that cannot be analysed:
             ``undecodable``, ``too_short``, ``too_long``, ``silent``, ``non_finite``,
             ``media_error``
503          the queue is full (``busy``; retry later, see ``Retry-After``)
504          the analysis did not finish within the time limit (``timeout``)
500          a fault of the server (``internal_error``, ``model_error``); never with a traceback
===========  =====================================================================================
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import CheckpointError, MediaProcessingError

logger = logging.getLogger("melcnn.server")

#: HTTP status of each MediaProcessingError code; anything else a media error raises is 422
MEDIA_STATUS: dict[str, int] = {
    "not_audio": 415,
    "empty_file": 400,
    "undecodable": 422,
    "too_short": 422,
    "too_long": 422,
    "silent": 422,
    "non_finite": 422,
    "not_found": 422,  # cannot happen for an upload; kept for completeness
}

_STATUS_CODE = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "upload_timeout",
    413: "too_large",
    415: "unsupported_content_type",
    422: "invalid_parameter",
    429: "too_many_requests",
    503: "busy",
    504: "timeout",
}


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(description="Stable machine-readable code, e.g. `too_short` or `busy`.")
    message: str = Field(description="Plain-language explanation for a person.")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error response."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def media_error(exc: MediaProcessingError, replace: dict[str, str] | None = None) -> ApiError:
    """Map a media error of the detector to its HTTP status, keeping its code and message.

    ``replace`` maps text of the message to what the client should see (our temporary file's name
    to the name the client sent).
    """
    code = getattr(exc, "code", "media_error")
    message = str(exc)
    for old, new in (replace or {}).items():
        message = message.replace(old, new)
    return ApiError(MEDIA_STATUS.get(code, 422), code, message)


def _note(request: Request, code: str) -> None:
    fields = getattr(request.state, "log", None)
    if isinstance(fields, dict):
        fields["error"] = code


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    _note(request, exc.code)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _media_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MediaProcessingError)
    return await _api_error(request, media_error(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODE.get(exc.status_code, "internal_error" if exc.status_code >= 500 else "bad_request")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404:
        message = f"nothing at {request.url.path}: see /docs for the API"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    _note(request, code)
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


def _describe_validation(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    _note(request, "invalid_parameter")
    return error_response(422, "invalid_parameter", _describe_validation(list(exc.errors())))


async def _checkpoint_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("model error: %s", exc)
    _note(request, "model_error")
    return error_response(500, "model_error", "the model failed on this server; its operator has been told in the log")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    _note(request, "internal_error")
    return error_response(500, "internal_error", "the server failed on this request; the error is in its log")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error, including unexpected ones, as JSON without internals."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(MediaProcessingError, _media_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(CheckpointError, _checkpoint_error)
    app.add_exception_handler(Exception, _unexpected)
