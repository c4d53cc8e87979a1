"""Errors in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.

The facade's routes (``openai_compat``) answer every error this way, and a
streamed completion ends with one such frame. What an error becomes is decided
by its class (:data:`OPENAI_ERRORS`), the same for a request refused and for a
job that ended without an answer:

- an unknown collection is an unknown model: 404 ``model_not_found``;
- any other refused request is 400 ``invalid_request_error`` (other missing
  things 404), with ``param`` when the field at fault is known;
- a full or unreachable queue is 503 with ``Retry-After``;
- a job that failed, expired or was cancelled is 500, 504 or 409, with
  ``x-should-retry: false`` (the pipeline already retried).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, NamedTuple

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from libs.common.errors import (
    CollectionNotFound,
    DocuMindError,
    Forbidden,
    InvalidRequest,
    JobCancelled,
    JobExpired,
    JobFailed,
    JobUnanswered,
    NotFound,
    QueueFull,
    QueueUnavailable,
    RateLimited,
    RequestRefused,
    StoreFull,
    TooManyJobs,
    Unauthorized,
)
from services.gateway.deps import settings as settings_of
from services.gateway.errors import VALKEY_DOWN, headers_of, unavailable


class OpenAIShape(NamedTuple):
    status: int
    type: str
    code: str | None = None


# What each error class (and its subclasses, unless listed themselves) becomes.
OPENAI_ERRORS: dict[type[DocuMindError], OpenAIShape] = {
    CollectionNotFound: OpenAIShape(404, "invalid_request_error", "model_not_found"),
    NotFound: OpenAIShape(404, "invalid_request_error"),
    QueueFull: OpenAIShape(503, "server_error", "overloaded"),
    QueueUnavailable: OpenAIShape(503, "server_error"),
    StoreFull: OpenAIShape(503, "server_error", "overloaded"),
    RequestRefused: OpenAIShape(400, "invalid_request_error"),
    Unauthorized: OpenAIShape(401, "invalid_request_error", "invalid_api_key"),
    Forbidden: OpenAIShape(403, "invalid_request_error", "insufficient_permissions"),
    RateLimited: OpenAIShape(429, "requests", "rate_limit_exceeded"),
    TooManyJobs: OpenAIShape(429, "requests", "rate_limit_exceeded"),
    JobUnanswered: OpenAIShape(500, "server_error", "job_failed"),
    JobFailed: OpenAIShape(500, "server_error", "job_failed"),
    JobExpired: OpenAIShape(504, "timeout_error", "job_expired"),
    JobCancelled: OpenAIShape(409, "cancelled_error", "job_cancelled"),
}
# Any other error of ours (none is meant to reach a client).
DEFAULT_SHAPE = OpenAIShape(500, "server_error")


def shape_of(exc: DocuMindError) -> OpenAIShape:
    for cls in type(exc).__mro__:
        if cls in OPENAI_ERRORS:
            return OPENAI_ERRORS[cls]
    return DEFAULT_SHAPE


def param_of(exc: DocuMindError) -> str | None:
    """The request field at fault: ``model`` names the collection."""
    if isinstance(exc, CollectionNotFound):
        return "model"
    if isinstance(exc, InvalidRequest):
        return exc.param
    return None


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def openai_body(exc: DocuMindError) -> dict[str, Any]:
    """``exc`` as OpenAI's error body (a response's, or a stream's last frame)."""
    shape = shape_of(exc)
    return error_body(exc.message, shape.type, shape.code, param_of(exc))


def openai_response(exc: DocuMindError) -> JSONResponse:
    return JSONResponse(openai_body(exc), status_code=shape_of(exc).status, headers=headers_of(exc))


def invalid(exc: RequestValidationError) -> InvalidRequest:
    """A body that fails validation: its first error, naming the field."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = f"{where}: {first.get('msg')}" if where else str(first.get("msg", "invalid request"))
    return InvalidRequest(message, param=where or None)


def framework_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An HTTP error the framework raised itself (a body it could not parse, a method the
    path does not take; ours raise none), in OpenAI's shape."""
    type_ = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(error_body(message, type_, None), status_code=status, headers=headers)


class OpenAIRoute(APIRoute):
    """Every error of the facade's routes in OpenAI's shape, validation errors included."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def in_openai_shape(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                return openai_response(invalid(exc))
            except (RequestRefused, JobUnanswered) as exc:
                return openai_response(exc)
            except VALKEY_DOWN as exc:
                return openai_response(unavailable(exc, settings_of(request).retry_after_s))
            except HTTPException as exc:
                # Starlette's (a body that is not UTF-8), FastAPI's subclass (one not JSON).
                return framework_response(exc.status_code, str(exc.detail), exc.headers)

        return in_openai_shape
