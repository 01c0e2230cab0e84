"""The service state shared by requests, and the dependencies handlers declare."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..detector import Detector
from .artifacts import ArtifactStore
from .errors import ApiError
from .pool import AnalysisPool
from .settings import Settings


@dataclass
class Service:
    """What the lifespan builds once and every request shares."""

    settings: Settings
    detectors: dict[str, Detector]  # by variant ("v2", "v3"), in --model order
    default_variant: str
    pool: AnalysisPool
    artifacts: ArtifactStore
    work_dir: Path
    upload_dir: Path
    plot_dir: Path


def get_service(request: Request) -> Service:
    """The running service (set by the lifespan)."""
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The server's API key (from `melcnn serve --api-key-file`)."
)
_bearer = HTTPBearer(auto_error=False, description="The same key as `Authorization: Bearer <key>`.")


def api_key_checker(key: bytes) -> Callable[..., Coroutine[Any, Any, None]]:
    """A dependency that answers 401 unless the request carries ``key`` (constant-time comparison)."""

    async def require_api_key(
        x_api_key: Annotated[str | None, Security(_api_key_header)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    ) -> None:
        given = x_api_key if x_api_key else (bearer.credentials if bearer is not None else "")
        if not given or not hmac.compare_digest(given.encode("utf-8", "replace"), key):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong API key: send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_api_key
