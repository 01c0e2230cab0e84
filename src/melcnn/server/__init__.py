"""HTTP service and web page: ``melcnn serve`` (FastAPI on uvicorn), a thin shell over :class:`Detector`.

Modules: :mod:`.settings` (options), :mod:`.app` (``create_app``, lifespan), :mod:`.routes`,
:mod:`.uploads` (streaming multipart with the size limit), :mod:`.pool` (bounded worker pool),
:mod:`.artifacts` (expiring pictures by id), :mod:`.errors` (JSON errors and status codes),
:mod:`.accesslog` (one JSON line per request), ``static/`` (the page).
"""

from __future__ import annotations

from .settings import Settings, SettingsError, read_api_key

__all__ = ["Settings", "SettingsError", "create_app", "read_api_key", "serve"]


def create_app(settings: Settings):  # -> fastapi.FastAPI (imported lazily: `import melcnn.server` stays cheap)
    """The FastAPI application for ``settings``; see :func:`melcnn.server.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(settings)


def serve(settings: Settings, *, log_level: str = "info") -> int:
    """Run the service with uvicorn until interrupted; returns 0, or 4 when the models failed to load."""
    import uvicorn

    from .accesslog import log_config

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=log_config(log_level),
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl+C it handled, after shutting down cleanly
        pass
    return 0 if server.started else 4
