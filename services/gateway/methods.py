"""The framework's own refusals: a method a path does not take, a path that is none.

Starlette answers a method a path does not take with 405 and the methods of the first
route of that path only (``Allow: GET`` where DELETE is taken too). :func:`install`
answers instead from every route of the path: ``OPTIONS`` gets 204 with ``Allow``, any
other method 405 with it (``HEAD`` is listed where ``GET`` is: :mod:`.head` serves it).
These and the framework's other errors (404, a body that cannot be parsed) come in
OpenAI's shape on the OpenAI routes, ``{"detail"}`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from re import Pattern

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute

from services.gateway.openai_errors import framework_response


class Methods:
    """The methods each path takes, from its routes (``path_regex`` and ``methods``)."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._routes: list[tuple[Pattern[str], frozenset[str]]] = []
        for route in routes:
            regex, methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
            if regex is not None and methods:
                self._routes.append((regex, frozenset(methods)))

    def allowed(self, path: str) -> list[str]:
        """The methods ``path`` takes, OPTIONS included (and HEAD with GET: ``head``);
        empty for no route's path."""
        found = {m for regex, methods in self._routes if regex.match(path) for m in methods}
        if "GET" in found:
            found.add("HEAD")
        return sorted({*found, "OPTIONS"}) if found else []


def install(app: FastAPI, routes: Iterable[BaseRoute], openai_paths: Iterable[Pattern[str]]) -> None:
    """Answer the framework's HTTP errors on ``app`` (see the module's docstring)."""
    methods = Methods(routes)
    openai = tuple(openai_paths)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        path = request.url.path
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (allowed := methods.allowed(path)):
            headers["Allow"] = ", ".join(allowed)
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=headers)
        if any(p.match(path) for p in openai):
            return framework_response(exc.status_code, str(exc.detail), headers)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    app.exception_handler(HTTPException)(http_error)
