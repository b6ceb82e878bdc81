"""The application: routes, middleware, and what starts and stops with the server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from unetbg.api import jobs_routes, remove_routes
from unetbg.api.auth import DOCS_ASSETS, BearerAuth
from unetbg.api.config import ApiConfig
from unetbg.api.errors import install_handlers
from unetbg.api.limits import DeclaredSizeLimit
from unetbg.api.metrics import ApiMetrics, LatencyMiddleware
from unetbg.api.removal import MAX_MODELS, RemovalQueue
from unetbg.api.runners import Runners
from unetbg.inference import ModelCache
from unetbg.removal import RunOptions

#: Request bodies other than uploads (job JSON) are small.
JSON_BODY_LIMIT = 1 * 2**20
# Declares the bearer scheme, so the docs page's "Authorize" sends the key; BearerAuth
# is what enforces it, before any body is read.
_bearer_scheme = Depends(HTTPBearer(auto_error=False))


def create_app(config: ApiConfig) -> FastAPI:
    """The API for ``config``: the removal queue starts with it; at shutdown, jobs this
    process runs (embedded mode) are cancelled and queued images refused."""
    metrics = ApiMetrics(config.settings)
    models = ModelCache(MAX_MODELS, on_load=metrics.model_loaded)
    run = RunOptions(device=config.device, backend=config.backend, batch_size=config.batch_size)
    removal = RemovalQueue(models, config.queue_size, run)
    runners = Runners(config.settings)
    metrics.remove_queue.set_function(lambda: removal.depth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        removal.start()
        try:
            yield
        finally:
            removal.stop()
            runners.stop()

    # Swagger UI's script and style come from the fastapi-offline wheel, not a CDN: the
    # docs must work on a server without internet.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="unetbg",
        summary="Remove the background around people; jobs, checkpoints and metrics.",
        description="Every endpoint but /healthz and these docs needs "
        "`Authorization: Bearer KEY`. See docs/api.md.",
        lifespan=lifespan,
        redoc_url=None,  # one documentation page, /docs (public, see auth.PUBLIC_PATHS)
        dependencies=[_bearer_scheme],
    )
    app.state.config, app.state.removal, app.state.runners = config, removal, runners
    install_handlers(app)
    remove_routes.register(app, config)
    jobs_routes.register(app)

    @app.get("/healthz", summary="Liveness (no key needed)")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Added last, run first: latency is measured for refused requests too, and the key is
    # checked before any body limit, so a stranger's large upload is told 401, not 413.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=JSON_BODY_LIMIT)
    app.add_middleware(
        DeclaredSizeLimit,
        default=JSON_BODY_LIMIT,
        routes=app.router.routes,
        upload_bytes=config.max_upload_bytes,
    )
    app.add_middleware(BearerAuth, key=config.key)
    app.add_middleware(LatencyMiddleware, metrics=metrics, routes=app.router.routes)
    return app
