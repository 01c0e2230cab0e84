"""HTTP routes: ``POST /v1/analyze``, ``GET /v1/models``, ``GET /v1/artifacts/{id}``, ``GET /healthz``, the page."""

from __future__ import annotations

import asyncio
import functools
import secrets
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from ..errors import MediaProcessingError, MelcnnError
from ..registry import MIN_STEP_S, MODELS
from .deps import Service, ServiceDep, api_key_checker
from .errors import ApiError, ErrorResponse, media_error
from .settings import Settings
from .uploads import MEDIA_FIELD, Upload, receive_upload

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


ANALYZE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [MEDIA_FIELD],
                    "properties": {
                        MEDIA_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "The recording: any common audio or video file (WAV, FLAC, MP3, "
                            "M4A/AAC, OGG, Opus, AIFF, MP4, MOV, MKV, WebM); the format is detected "
                            "from the content.",
                        },
                        "model": {
                            "type": "string",
                            "enum": list(MODELS),
                            "description": "Which loaded model analyses it (see GET /v1/models); default: "
                            "the server's first --model.",
                        },
                        "overlap": {
                            "type": "number",
                            # the widest range any variant allows; each model's own is in GET /v1/models
                            "minimum": min(spec.overlap_range[0] for spec in MODELS.values()),
                            "maximum": max(spec.overlap_range[1] for spec in MODELS.values()),
                            "description": "Chunk overlap in seconds, from 0 to the chunk length less "
                            f"{MIN_STEP_S:g} s (each model's range: spec.min_overlap_s and spec.max_overlap_s in "
                            "GET /v1/models); default the model's (spec.default_overlap_s: "
                            + ", ".join(f"{s.label} {s.default_overlap_s:g}" for s in MODELS.values())
                            + ").",
                        },
                        "plots": {
                            "type": "boolean",
                            "default": False,
                            "description": "Also draw the model's picture (spec.picture in GET /v1/models: "
                            + ", ".join(f"{s.label} {s.picture}" for s in MODELS.values())
                            + ") and give its URL in visualization.spectrogram_url.",
                        },
                    },
                },
                "encoding": {MEDIA_FIELD: {"contentType": "application/octet-stream"}},
            }
        },
    }
}


class HealthResponse(BaseModel):
    """Liveness and load."""

    status: str = Field(description="`ok` while the server runs.")
    models: list[str] = Field(description="Variants loaded, the default first.")
    admitted: int = Field(description="Analysis requests being uploaded, queued or analysed now.")
    capacity: int = Field(description="Analysis requests admitted at once; one more gets 503.")


class Limits(BaseModel):
    """What this server accepts."""

    max_upload_bytes: int
    max_duration_s: float
    timeout_s: float
    min_duration_s: float = Field(description="Shortest audio: the default model's chunk length, in seconds.")
    max_overlap_s: float = Field(description="The default model's largest overlap (each model's: its spec).")


class ModelsResponse(BaseModel):
    """The loaded models."""

    default: str = Field(description="Variant used when a request names none.")
    models: list[dict[str, Any]] = Field(
        description="Per model: name, variant, version, threshold, settings, metrics, and its spec (chunk length, "
        "default and allowed overlap, whether the report has the timeline section, which picture it draws)."
    )
    limits: Limits


@dataclass(frozen=True)
class AnalyzeParams:
    """The validated form fields of an analysis request."""

    variant: str
    overlap_s: float | None
    plots: bool


def parse_params(fields: dict[str, str], service: Service) -> AnalyzeParams:
    """Validate ``model``, ``overlap`` and ``plots`` (422 ``invalid_parameter`` when wrong)."""
    raw_model = fields.get("model", "").strip().lower()
    variant = service.default_variant
    if raw_model:
        by_name = {e.name.lower(): e.variant for e in MODELS.values()}
        variant = by_name.get(raw_model, raw_model)
        if variant not in service.detectors:
            loaded = ", ".join(service.detectors)
            raise ApiError(422, "invalid_parameter", f"model {raw_model[:40]!r} is not loaded here; choose {loaded}")
    overlap: float | None = None
    raw_overlap = fields.get("overlap", "").strip()
    if raw_overlap:
        try:
            overlap = service.detectors[variant].spec.validate_overlap(raw_overlap)
        except MelcnnError as exc:
            raise ApiError(422, "invalid_parameter", str(exc)) from None
    raw_plots = fields.get("plots", "").strip().lower()
    if raw_plots not in _TRUE | _FALSE:
        raise ApiError(422, "invalid_parameter", f"plots must be true or false; got {raw_plots[:40]!r}")
    return AnalyzeParams(variant=variant, overlap_s=overlap, plots=raw_plots in _TRUE)


def _analysis_job(service: Service, upload: Upload, params: AnalyzeParams, plot_dir: Path | None) -> dict[str, Any]:
    """Runs on a worker thread: analyse, move the picture into the artifact store."""
    detector = service.detectors[params.variant]
    assert upload.path is not None
    report = detector.analyze(
        upload.path,
        overlap_s=params.overlap_s,
        plot_dir=plot_dir,
        max_duration_s=service.settings.max_duration_s,
        name=upload.filename or "upload",
    )
    vis = report.get("visualization") or {}
    picture = vis.get("spectrogram_url")
    if picture:
        art_id = service.artifacts.add(Path(picture))
        vis["spectrogram_url"] = f"/v1/artifacts/{art_id}"
    return {"file": upload.filename or "upload", **report}


async def analyze(request: Request, service: ServiceDep) -> JSONResponse:
    """Analyse one uploaded recording and answer the same JSON report as the Python API.

    The file is streamed to a private temporary file (deleted afterwards, whatever happens) with the
    size limit enforced while it arrives. Analyses run on a bounded pool of worker threads; when
    all workers are busy and the queue is full the answer is 503 `busy`. The whole request has a
    time limit (408 while uploading, 504 while analysing).
    """
    settings = service.settings
    log: dict[str, Any] = request.state.log
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout_s
    slot = service.pool.try_admit()
    if slot is None:
        raise ApiError(
            503,
            "busy",
            f"the server is busy ({service.pool.capacity} requests in progress); retry in a few seconds",
            headers={"Retry-After": "5"},
        )
    upload: Upload | None = None
    handed_off = False
    try:
        try:
            async with asyncio.timeout_at(deadline):
                upload = await receive_upload(
                    request.headers.get("content-type", ""),
                    request.headers.get("content-length"),
                    request.stream(),
                    upload_dir=service.upload_dir,
                    max_bytes=settings.max_upload_bytes,
                )
        except TimeoutError:
            raise ApiError(
                408, "upload_timeout", f"the upload did not arrive within the time limit ({settings.timeout_s:g} s)"
            ) from None
        log["media_bytes"] = upload.size
        params = parse_params(upload.fields, service)
        log["model"] = params.variant
        plot_dir = service.plot_dir / secrets.token_hex(8) if params.plots else None
        job_upload = upload
        assert job_upload.path is not None
        shown = upload.filename or "the upload"

        def on_done() -> None:
            job_upload.discard()
            if plot_dir is not None:
                shutil.rmtree(plot_dir, ignore_errors=True)
            slot.release()

        future = service.pool.submit(lambda: _analysis_job(service, job_upload, params, plot_dir), on_done=on_done)
        handed_off = True
        remaining = max(0.0, deadline - loop.time())
        try:
            report = await asyncio.wait_for(asyncio.wrap_future(future), timeout=remaining)
        except MediaProcessingError as exc:  # say the client's file name, not our temporary one
            raise media_error(exc, replace={str(job_upload.path): shown, job_upload.path.name: shown}) from None
        except TimeoutError:
            raise ApiError(
                504, "timeout", f"the analysis did not finish within the time limit ({settings.timeout_s:g} s)"
            ) from None
    finally:
        if not handed_off:
            if upload is not None:
                upload.discard()
            slot.release()
    log.update(
        verdict=report.get("prediction"),
        fake_score=report.get("fake_score"),
        media_duration_s=(report.get("properties") or {}).get("duration_seconds"),
        processing_s=report.get("processing_time"),
    )
    return JSONResponse(report)


async def list_models(service: ServiceDep) -> ModelsResponse:
    """The loaded models (the default first), their settings and recorded quality, and the server's limits."""
    models = []
    for variant, detector in service.detectors.items():
        info = detector.describe()
        info.pop("checkpoint", None)  # a server path: not the client's business
        models.append({**info, "default": variant == service.default_variant})
    first = next(iter(service.detectors.values()))
    limits = Limits(
        max_upload_bytes=service.settings.max_upload_bytes,
        max_duration_s=service.settings.max_duration_s,
        timeout_s=service.settings.timeout_s,
        min_duration_s=first.config.chunk_s,
        max_overlap_s=first.spec.overlap_range[1],
    )
    return ModelsResponse(default=service.default_variant, models=models, limits=limits)


async def get_artifact(artifact_id: str, service: ServiceDep) -> Response:
    """A picture made by an analysis with `plots=true`, by the id in its report's URL, until it expires."""
    found = service.artifacts.get(artifact_id)
    if found is None:
        raise ApiError(404, "not_found", "no such picture: it never existed or has expired")
    data, art = found
    return Response(
        data,
        media_type=art.media_type,
        headers={"Cache-Control": "private, max-age=300", "Content-Disposition": "inline"},
    )


async def healthz(service: ServiceDep) -> HealthResponse:
    """Liveness: answers at once even while analyses run. Never needs an API key."""
    return HealthResponse(
        status="ok", models=list(service.detectors), admitted=service.pool.admitted, capacity=service.pool.capacity
    )


@functools.cache
def _page() -> str:
    return (resources.files("melcnn.server") / "static" / "index.html").read_text(encoding="utf-8")


async def page() -> HTMLResponse:
    """The web page."""
    return HTMLResponse(_page())


def build_router(settings: Settings) -> APIRouter:
    """All routes; ``/v1/*`` require the API key when the settings have one."""
    router = APIRouter()
    router.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    router.add_api_route(
        "/healthz", healthz, methods=["GET"], response_model=HealthResponse, tags=["service"], summary="Health"
    )
    v1_deps = [Depends(api_key_checker(settings.api_key))] if settings.api_key else []
    auth = _errors(401) if settings.api_key else {}
    v1 = APIRouter(prefix="/v1", dependencies=v1_deps, tags=["analysis"])
    v1.add_api_route(
        "/analyze",
        analyze,
        methods=["POST"],
        summary="Analyse a recording",
        response_class=JSONResponse,
        responses={
            200: {
                "description": "The analysis report.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Report"}}},
            },
            **auth,
            **_errors(400, 408, 413, 415, 422, 503, 504),
        },
        openapi_extra=ANALYZE_BODY,
    )
    v1.add_api_route(
        "/models", list_models, methods=["GET"], response_model=ModelsResponse, summary="Loaded models", responses=auth
    )
    v1.add_api_route(
        "/artifacts/{artifact_id}",
        get_artifact,
        methods=["GET"],
        summary="A picture of an analysis",
        response_class=Response,
        responses={
            200: {"description": "The picture.", "content": {"image/png": {"schema": {"type": "string"}}}},
            **auth,
            **_errors(404),
        },
    )
    router.include_router(v1)
    return router
