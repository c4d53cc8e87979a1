"""The gateway's FastAPI application."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import Counter, Histogram
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.apikeys import ApiKeyStore
from libs.common.blobstore import build_blob_store
from libs.common.cluster_client import ready
from libs.common.fanout import Fanout
from libs.common.ratelimit import RATE_LIMIT_HEADERS
from libs.common.sentinel import SentinelTarget
from libs.common.service import connect
from libs.common.settings import GatewaySettings
from libs.common.telemetry import tracing_enabled
from services.gateway import errors, methods, openapi, webapp
from services.gateway.answer_cache import CACHE_BYPASS_HEADER
from services.gateway.auth import PUBLIC_PATHS, Authentication, Gate, authorize
from services.gateway.body_limit import BodyLimit
from services.gateway.collections import router as collections_router
from services.gateway.events import router as events_router
from services.gateway.head import HeadAsGet
from services.gateway.health import router as health_router
from services.gateway.key_concurrency import KeyConcurrency, ReleasingWatcher
from services.gateway.keys_api import router as keys_router
from services.gateway.openai_compat import router as openai_router
from services.gateway.openai_stream import JOB_ID_HEADER
from services.gateway.originals import router as originals_router
from services.gateway.routes import router
from services.gateway.submit import Submitter
from services.gateway.text_check import text_is_unicode
from services.gateway.uploads import router as uploads_router

logger = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "documind_http_requests_total", "HTTP requests by route and status.", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram("documind_http_request_seconds", "HTTP request handling time.", ["method", "route"])


DOCS_URL: Final = "/docs"
REDOC_URL: Final = "/redoc"
# Where the docs pages' JavaScript, CSS and icon are served from (public).
DOCS_ASSETS: Final = "/docs-assets"


class StartupError(RuntimeError):
    """Settings the gateway refuses to serve with (see ``GatewaySettings.startup_problem``)."""


def create_app(settings: GatewaySettings) -> FastAPI:
    if problem := settings.startup_problem():
        raise StartupError(problem)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Ordinary requests share a bounded pool; waiters share the fan-out's few connections.
        client = connect(
            settings.valkey_url,
            max(settings.max_wait_s, settings.sse_keepalive_s),
            max_connections=settings.valkey_pool_size,
            pool_wait_s=settings.valkey_pool_wait_s,
            client_name="documind-gateway",
            cluster=settings.valkey_cluster,
            sentinel=SentinelTarget.of(settings),
        )
        waiters = Fanout.from_url(
            settings.valkey_url,
            readers=settings.waiter_connections,
            client_name="documind-gateway-waiters",
            cluster=settings.valkey_cluster,
            sentinel=SentinelTarget.of(settings),
        )
        await ready(client)
        app.state.settings = settings
        # A request that starts waiting on a job gives its key's place back (it holds
        # no pooled connection while it waits).
        app.state.submitter = Submitter(client, settings, ReleasingWatcher(waiters))
        # Uploads' originals and extracted text (DOCUMIND_BLOB_STORE).
        app.state.blobs = build_blob_store(settings)
        app.state.keys = ApiKeyStore.from_settings(client, settings)
        store = app.state.keys if settings.auth == "on" else None
        app.state.gate = Gate(
            store,
            open_rpm=settings.rate_limit_per_min,
            retry_after_s=settings.retry_after_s,
            concurrency=key_concurrency(settings),
        )
        try:
            yield
        finally:
            await waiters.aclose()
            await client.aclose()

    # Every route needs a valid key (``authorize``) but the probes and the API's docs,
    # whose JavaScript and CSS come from the fastapi-offline package (no CDN).
    app = FastAPIOffline(
        docs_url=DOCS_URL,
        redoc_url=REDOC_URL,
        static_url=DOCS_ASSETS,
        title="DocuMind",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(authorize), Depends(text_is_unicode)],
    )
    public = {
        *PUBLIC_PATHS,
        *webapp.PATHS,
        app.openapi_url,
        DOCS_URL,
        REDOC_URL,
        app.swagger_ui_oauth2_redirect_url,
    }
    # Outermost first: Host check, HEAD as GET, CORS, metrics, authentication, body limit
    # (add_middleware prepends).
    app.add_middleware(BodyLimit, settings=settings)
    openai_routes = [route for route in openai_router.routes if isinstance(route, APIRoute)]
    openai_paths = [route.path_regex for route in openai_routes]
    app.add_middleware(
        Authentication,
        public={p for p in public if p},
        public_prefixes=[f"{DOCS_ASSETS}/", *webapp.PREFIXES],
        openai_paths=openai_paths,
        cors_origins=settings.cors_origin_list,
    )
    app.add_middleware(HttpMetrics)
    if origins := settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            # Range: a page of another origin reading an original in pieces (its PDF viewer).
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Range", CACHE_BYPASS_HEADER],
            expose_headers=[
                *RATE_LIMIT_HEADERS,
                "Retry-After",
                JOB_ID_HEADER,
                "Accept-Ranges",
                "Content-Range",
                "Content-Disposition",
            ],
            max_age=600,
        )
    app.add_middleware(HeadAsGet)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_host_list)
    # Each router behind the key check with the errors any of its routes may answer.
    rest = (router, events_router, collections_router, keys_router, originals_router)
    for included in rest:
        app.include_router(included, responses=openapi.AUTHENTICATED)
    # A form that cannot be parsed (400), too many or too large files, unreadable types.
    app.include_router(
        uploads_router, responses={**openapi.AUTHENTICATED, **openapi.rest_errors(400, 413, 415)}
    )
    app.include_router(openai_router, responses=openapi.OPENAI_AUTHENTICATED)
    app.include_router(health_router)
    # The web app's page and assets (public; it signs in with a key like any client).
    webapp.install(app)
    if tracing_enabled():
        # A server span per request: the trace every stage of its job joins.
        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz")

    errors.install(app, settings.retry_after_s)
    every_router = (*rest, uploads_router, openai_router, health_router)
    methods.install(
        app, [*app.router.routes, *(r for included in every_router for r in included.routes)], openai_paths
    )
    openapi.install(app, settings, public=PUBLIC_PATHS, openai=[route.path for route in openai_routes])
    return app


def key_concurrency(settings: GatewaySettings) -> KeyConcurrency | None:
    """The bound on each key's requests in progress; none with authentication off (one
    user, on loopback)."""
    if settings.auth == "off":
        return None
    if settings.key_max_concurrent >= settings.valkey_pool_size:
        logger.warning(
            "DOCUMIND_KEY_MAX_CONCURRENT (%d) is not below DOCUMIND_VALKEY_POOL_SIZE (%d): "
            "one API key's burst can take every pooled connection",
            settings.key_max_concurrent,
            settings.valkey_pool_size,
        )
    return KeyConcurrency(
        settings.key_max_concurrent,
        settings.unverified_key_max_concurrent,
        settings.key_queue_wait_s,
        settings.retry_after_s,
    )


class HttpMetrics:
    """Requests by route template and status, as a plain ASGI middleware.

    (FastAPI's ``@app.middleware("http")`` costs a task and a stream per request.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - start)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
