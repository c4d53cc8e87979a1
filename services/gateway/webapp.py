"""The web app: its page at ``/`` and its built assets at ``/assets/``, public.

The app (``services/gateway/web``, built by ``make web`` into ``web/dist``) is a
client of the public API like any other: it signs in with an API key and sends it
as ``Authorization: Bearer``, so its own files need none. Only these two paths are
public (``PATHS`` and ``PREFIXES``, which ``app.py`` adds to the authentication's
public set); no API route is under them.

Every response carries a strict Content-Security-Policy: scripts, styles, workers
(pdf.js's) and requests from this origin only, no inline script, nothing framed. The
page itself is never cached stale (``no-cache``: it names the current assets); the
assets have a content hash in their names and are cached for a year. Without a build,
``/`` answers 503 saying how to build it, not a 500.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, PlainTextResponse, Response

DIST: Final = Path(__file__).parent / "web" / "dist"
INDEX: Final = "index.html"
ASSETS: Final = "assets"
PATHS: Final = frozenset({"/"})
PREFIXES: Final = (f"/{ASSETS}/",)

CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # pdf.js draws pages on a canvas; images of the app itself only.
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        # pdf.js parses in a worker served from /assets/.
        "worker-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Hashed file names: a changed file has a new name.
IMMUTABLE: Final = "public, max-age=31536000, immutable"
# Types by suffix, not from the platform's mimetypes table (which may not know .mjs:
# a module worker served as application/octet-stream does not start).
_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".wasm": "application/wasm",
}
NOT_BUILT: Final = (
    "The DocuMind web app is not built. Run `make web` (or `make run`) in the checkout: "
    "it installs the front end's packages with npm and builds services/gateway/web/dist.\n"
    "The API itself is up: see /docs.\n"
)


def router(dist: Path | None = None) -> APIRouter:
    """The app's routes, serving the build in ``dist`` (``DIST`` when None; read at
    each request, so a build made while the gateway runs is served)."""
    routes = APIRouter(include_in_schema=False)

    def root() -> Path:
        return dist if dist is not None else DIST

    @routes.get("/")
    async def index() -> Response:
        page = root() / INDEX
        if not page.is_file():
            return PlainTextResponse(NOT_BUILT, status_code=503, headers=_SECURITY_HEADERS)
        return _file(page, "no-cache")

    @routes.get("/assets/{name:path}")
    async def asset(name: str) -> Response:
        folder = (root() / ASSETS).resolve()
        found = (folder / name).resolve()
        if not found.is_relative_to(folder) or not found.is_file():
            headers = {**_SECURITY_HEADERS, "Cache-Control": "no-store"}
            return PlainTextResponse("not found\n", status_code=404, headers=headers)
        return _file(found, IMMUTABLE)

    return routes


def _file(path: Path, cache_control: str) -> FileResponse:
    headers = {**_SECURITY_HEADERS, "Cache-Control": cache_control}
    media_type = _TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers=headers)


def install(app: FastAPI, dist: Path | None = None) -> None:
    """Serve the web app on ``app`` (see the module's docstring)."""
    app.include_router(router(dist))
