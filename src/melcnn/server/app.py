"""The FastAPI application: ``create_app(settings)``; models load once, in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..detector import Detector, load_model
from ..report import schema
from .accesslog import AccessLogMiddleware
from .artifacts import ArtifactStore
from .deps import Service
from .errors import install_error_handlers
from .pool import AnalysisPool
from .routes import build_router
from .settings import Settings, SettingsError

logger = logging.getLogger("melcnn.server")

#: where Swagger UI's own files are served, so /docs works offline. They come from the fastapi-offline
#: package (Swagger UI 5: FastAPI's documents are OpenAPI 3.1, which Swagger UI 4 cannot render)
DOCS_STATIC = "/docs-static"

#: name prefix of the server's private work folder in --tmp-dir: melcnn-serve-<pid>-<random>
WORK_PREFIX = "melcnn-serve-"

DESCRIPTION = """\
Audio deepfake detection (MEL-Spectrogram-CNN V2/V3) over HTTP.

`POST /v1/analyze` with a media file in a multipart form field `media` answers the same JSON report as
`melcnn.load_model(...).analyze(...)`. Errors are `{"error": {"code": ..., "message": ...}}`. The web page
is at `/`.
"""


def load_detectors(settings: Settings) -> dict[str, Detector]:
    """Load each ``--model`` once, keyed by variant in the order given.

    Raises
    ------
    CheckpointError
        A model cannot be loaded.
    SettingsError
        Two models of the same variant.
    """
    detectors: dict[str, Detector] = {}
    for name in settings.models:
        detector = load_model(name, device=settings.device)
        if detector.variant in detectors:
            raise SettingsError(f"two models of variant {detector.variant} were given; load at most one of each")
        detectors[detector.variant] = detector
    return detectors


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def remove_stale_work_dirs(tmp_dir: Path) -> list[Path]:
    """Remove work folders that servers which died without cleaning up left in ``tmp_dir``.

    A folder is ``melcnn-serve-<pid>-<random>``; it is removed only when it belongs to this user and
    no process ``<pid>`` exists. Returns the folders removed.
    """
    removed = []
    for d in tmp_dir.glob(f"{WORK_PREFIX}*"):
        try:
            pid = int(d.name[len(WORK_PREFIX) :].split("-", 1)[0])
            owned = d.is_dir() and not d.is_symlink() and d.stat().st_uid == os.getuid()
        except (ValueError, OSError):
            continue
        if owned and pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    if removed:
        logger.info("removed %d work folder(s) left by stopped servers", len(removed))
    return removed


def _report_schema() -> dict[str, Any]:
    """The report's JSON Schema (:func:`melcnn.report.schema`) as an OpenAPI component: no ``$schema``/``$id``."""
    return {k: v for k, v in schema().items() if k not in ("$schema", "$id")}


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["Report"] = _report_schema()
        # validation errors are answered in our shape (errors.py), not FastAPI's HTTPValidationError
        for operations in doc.get("paths", {}).values():
            for op in operations.values():
                r422 = op.get("responses", {}).get("422")
                if r422 and "HTTPValidationError" in json.dumps(r422):
                    op["responses"]["422"] = {
                        "description": "Invalid parameter",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
                    }
        if "HTTPValidationError" not in json.dumps(doc["paths"]):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        app.openapi_schema = doc
    return app.openapi_schema


async def docs_page(request: Request) -> HTMLResponse:
    """Swagger UI for the OpenAPI document, with its script, style and icon served by this server (no CDN)."""
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root + (request.app.openapi_url or "/openapi.json"),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},  # no badge from the online validator
    )


async def _purge_loop(store: ArtifactStore) -> None:
    interval = max(0.5, min(60.0, store.ttl_s / 4))
    while True:
        await asyncio.sleep(interval)
        store.purge_expired()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the models, create the private work folder; on shutdown, remove it."""
    settings: Settings = app.state.settings
    detectors = await asyncio.to_thread(load_detectors, settings)
    remove_stale_work_dirs(Path(settings.tmp_dir))
    work_dir = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=settings.tmp_dir))  # mode 0700
    upload_dir = work_dir / "uploads"
    plot_dir = work_dir / "plots"
    for d in (upload_dir, plot_dir):
        d.mkdir(mode=0o700)
    store = ArtifactStore(work_dir / "artifacts", ttl_s=settings.artifact_ttl_s, max_items=settings.max_artifacts)
    pool = AnalysisPool(workers=settings.workers, queue_size=settings.queue_size)
    app.state.service = Service(
        settings=settings,
        detectors=detectors,
        default_variant=next(iter(detectors)),
        pool=pool,
        artifacts=store,
        work_dir=work_dir,
        upload_dir=upload_dir,
        plot_dir=plot_dir,
    )
    purge = asyncio.create_task(_purge_loop(store))
    fields = {
        "models": {v: d.name for v, d in detectors.items()},
        "default": next(iter(detectors)),
        "workers": settings.workers,
        "capacity": settings.capacity,
        "max_upload_bytes": settings.max_upload_bytes,
        "api_key": settings.api_key is not None,
    }
    logger.info("models loaded; serving", extra={"fields": fields})
    if not settings.api_key and not _is_loopback(settings.host):
        logger.warning("listening on %s without an API key: anyone who can reach it may use it", settings.host)
    try:
        yield
    finally:
        purge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purge
        pool.shutdown()
        shutil.rmtree(work_dir, ignore_errors=True)


def create_app(settings: Settings) -> FastAPI:
    """The application for ``settings`` (models load when it starts, in :func:`lifespan`)."""
    app = FastAPI(
        title="melcnn",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by docs_page from local files, not FastAPI's CDN page
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(AccessLogMiddleware)
    app.include_router(build_router(settings))
    static = Path(str(resources.files("melcnn.server") / "static"))
    app.mount("/static", StaticFiles(directory=static), name="static")
    app.add_route("/docs", docs_page, include_in_schema=False)
    docs_files = Path(str(resources.files("fastapi_offline") / "static"))
    app.mount(DOCS_STATIC, StaticFiles(directory=docs_files), name="docs-static")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
