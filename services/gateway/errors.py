"""Errors as HTTP responses: the one place that knows their status codes.

Routes and the service layer raise ``libs.common.errors`` classes; the handlers
:func:`install` puts on the app answer them as ``{"detail": message}`` with the
status in :data:`HTTP_STATUS` (``Retry-After`` when the error has a delay,
``x-should-retry: false`` for a job that ended without an answer). A Valkey that
does not answer is :class:`QueueUnavailable`, one at its memory limit
:class:`StoreFull`, a blob store that fails (:class:`BlobStoreError`: originals)
503 with its reason, and a body that fails validation is 422 with its errors listed.
The OpenAI routes answer in OpenAI's shape instead (``openai_errors``).
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common.errors import (
    BlobStoreError,
    Conflict,
    DocuMindError,
    Forbidden,
    InvalidRequest,
    JobCancelled,
    JobExpired,
    JobFailed,
    JobUnanswered,
    NotFound,
    PayloadTooLarge,
    QueueUnavailable,
    RateLimited,
    RequestRefused,
    StoreFull,
    TooManyJobs,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)

logger = logging.getLogger(__name__)

# The status of each error class (and its subclasses, unless listed themselves).
HTTP_STATUS: dict[type[DocuMindError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidRequest: 422,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    Unavailable: 503,
    RequestRefused: 400,
    Unauthorized: 401,
    Forbidden: 403,
    RateLimited: 429,
    TooManyJobs: 429,
    JobUnanswered: 500,
    JobFailed: 500,
    JobExpired: 504,
    JobCancelled: 409,
}
# Any other error of ours that reaches a client (none is meant to).
DEFAULT_STATUS = 500
# Valkey errors that mean "not now" rather than a bug: it does not answer, or it is at
# its memory limit and refuses writes (see ``unavailable``).
VALKEY_DOWN = (RedisConnectionError, RedisTimeoutError, OutOfMemoryError)


def unavailable(exc: Exception, retry_after_s: int) -> Unavailable:
    """What a client is told of one of the ``VALKEY_DOWN`` errors."""
    if isinstance(exc, OutOfMemoryError):
        return StoreFull(retry_after_s)
    return QueueUnavailable(retry_after_s)


def blob_store_down(exc: BlobStoreError, retry_after_s: int) -> Unavailable:
    """What a client is told when the blob store (originals, extracted text) fails: nothing
    is wrong with the request. The store's own words (its address, the key) are logged."""
    logger.warning("blob store failed: %s", exc.message)
    return Unavailable(retry_after_s, "the store of original files is unavailable; retry later")


def status_of(exc: DocuMindError) -> int:
    """The status of ``exc``'s class, or of its nearest listed base."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return DEFAULT_STATUS


def headers_of(exc: DocuMindError) -> dict[str, str] | None:
    """What a client should do next, as headers: wait, or not send it again."""
    if isinstance(exc, Unavailable | RateLimited | TooManyJobs):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, JobUnanswered):
        # The pipeline has retried already: the client should not submit it again.
        return {"x-should-retry": "false"}
    return None


def error_response(exc: DocuMindError) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=status_of(exc), headers=headers_of(exc))


def install(app: FastAPI, retry_after_s: int) -> None:
    """Answer our errors, Valkey outages and invalid bodies on every route of ``app``."""

    async def documind_error(request: Request, exc: DocuMindError) -> JSONResponse:
        return error_response(exc)

    async def valkey_down(request: Request, exc: Exception) -> JSONResponse:
        return error_response(unavailable(exc, retry_after_s))

    for cls in HTTP_STATUS:
        app.exception_handler(cls)(documind_error)

    async def blobs_down(request: Request, exc: BlobStoreError) -> JSONResponse:
        return error_response(blob_store_down(exc, retry_after_s))

    for down in VALKEY_DOWN:
        app.exception_handler(down)(valkey_down)
    app.exception_handler(BlobStoreError)(blobs_down)
    app.exception_handler(RequestValidationError)(invalid_request)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable sentence first, the structured details after it."""
    errors = exc.errors()
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return JSONResponse(
        status_code=422,
        content={"detail": _text("; ".join(parts)) or "invalid request", "errors": _jsonable(errors)},
    )


def _jsonable(errors: object) -> object:
    """Validation errors may hold exceptions, bytes, text that is not Unicode (a lone
    surrogate) or a number JSON has no word for (NaN, Infinity, as the client sent it);
    keep what JSON can carry."""
    if isinstance(errors, dict):
        return {_text(str(k)): _jsonable(v) for k, v in errors.items() if k != "ctx"}
    if isinstance(errors, list | tuple):
        return [_jsonable(e) for e in errors]
    if isinstance(errors, bytes):
        return errors.decode(errors="replace")
    if isinstance(errors, float) and not math.isfinite(errors):
        return str(errors)
    if isinstance(errors, str):
        return _text(errors)
    if errors is None or isinstance(errors, int | float | bool):
        return errors
    return _text(str(errors))


def _text(text: str) -> str:
    """``text`` with any lone surrogate as "?": what UTF-8 can carry."""
    return text.encode("utf-8", "replace").decode("utf-8")
