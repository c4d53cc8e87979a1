"""The gateway's FastAPI application."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import Counter, Histogram, make_asgi_app
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.service import connect
from libs.common.settings import GatewaySettings
from libs.common.telemetry import tracing_enabled
from services.gateway import errors
from services.gateway.collections import router as collections_router
from services.gateway.events import router as events_router
from services.gateway.openai_compat import router as openai_router
from services.gateway.routes import router
from services.gateway.submit import Submitter
from services.gateway.uploads import router as uploads_router

HTTP_REQUESTS = Counter(
    "documind_http_requests_total", "HTTP requests by route and status.", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram("documind_http_request_seconds", "HTTP request handling time.", ["method", "route"])


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect(settings.valkey_url, max(settings.max_wait_s, settings.sse_keepalive_s))
        app.state.settings = settings
        app.state.submitter = Submitter(client, settings)
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(title="DocuMind", version="0.1.0", lifespan=lifespan)
    app.add_middleware(HttpMetrics)
    app.include_router(router)
    app.include_router(events_router)
    app.include_router(collections_router)
    app.include_router(uploads_router)
    app.include_router(openai_router)
    app.mount("/metrics", make_asgi_app())
    if tracing_enabled():
        # A server span per request: the trace every stage of its job joins.
        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")

    errors.install(app, settings.retry_after_s)
    return app


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
