"""What the OpenAPI document says beyond each route's own models.

- Every error a route may answer, with its body: :func:`rest_errors` and
  :func:`openai_errors` build FastAPI ``responses=`` mappings. ``AUTHENTICATED``
  (``OPENAI_AUTHENTICATED`` for the facade) is what any route behind the key check
  may answer: ``app.py`` includes each router with it, so a new route has them; a
  route adds its own (404, 409, ...).
- The limits set in settings (``DOCUMIND_MAX_TOP_K``, ``DOCUMIND_MAX_QUESTION_CHARS``,
  ``DOCUMIND_MAX_FILES_PER_UPLOAD``), which the request models, built once per
  process, cannot carry: :func:`install` writes them into the document.
- The probes need no key: their operations declare no security.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from fastapi import FastAPI

from libs.common.constants import SUPPORTED_EXTENSIONS
from libs.common.settings import GatewaySettings
from services.gateway.openai_schemas import ErrorBody
from services.gateway.schemas import ErrorResponse

Responses = dict[int | str, dict[str, Any]]

# Why a route answers each error status (the same words for both shapes).
WHY: Final[dict[int, str]] = {
    400: "The body could not be read (not UTF-8, not JSON, a broken form)",
    401: "No valid API key (missing, invalid, revoked or expired)",
    403: "The API key may not do this (its role, tenant or collections)",
    404: "What the path or body names does not exist (or is out of the key's reach)",
    409: "It clashes with what exists (a collection of that name, a job already ended)",
    413: "The body is over its bound (too many files, a file too large, JSON over 1 MiB)",
    415: "A file of a type DocuMind cannot read",
    422: "A parameter or the body is invalid: `detail` says which, `errors` lists each reason",
    429: "The key's requests per minute, or the tenant's jobs in flight, are used up (see Retry-After)",
    500: "The job failed (the pipeline retried already)",
    503: "Valkey does not answer or is full, the queue is full, or the store of original files does not "
    "answer: retry after Retry-After",
    504: "The job did not finish in time",
}
_RETRY_AFTER: Final = {
    "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
}
_OPENAI_WHY: Final[dict[int, str]] = {
    400: "Bad messages or body (OpenAI's invalid_request_error; `param` names the field)",
    404: "The model (collection) does not exist: model_not_found",
    409: "The job was cancelled",
}


_FILE_PART: Final = {
    "description": "The file's name: its extension is its type, one of "
    + ", ".join(sorted(SUPPORTED_EXTENSIONS))
    + " (415 otherwise)",
    "schema": {"type": "string"},
    "example": 'form-data; name="file"; filename="notes.txt"',
}


def _response(status: int, model: type[Any], description: str) -> dict[str, Any]:
    response: dict[str, Any] = {"model": model, "description": description}
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def rest_errors(*statuses: int) -> Responses:
    """``responses=`` for these statuses of a REST route: ``{"detail": ...}`` bodies."""
    return {status: _response(status, ErrorResponse, WHY[status]) for status in statuses}


def openai_errors(*statuses: int) -> Responses:
    """``responses=`` for these statuses of an OpenAI route: ``{"error": {...}}`` bodies."""
    return {status: _response(status, ErrorBody, _OPENAI_WHY.get(status, WHY[status])) for status in statuses}


# What any route behind the key check may answer: refused by the authentication
# middleware (401, 429, 503 when Valkey is down), by the route's permission (403), a
# full queue or store (503), and (REST) an invalid parameter or body (422; the OpenAI
# routes answer those 400).
AUTHENTICATED: Final = rest_errors(401, 403, 422, 429, 503)
OPENAI_AUTHENTICATED: Final = openai_errors(401, 403, 429, 503)


def install(app: FastAPI, settings: GatewaySettings, *, public: Iterable[str], openai: Iterable[str]) -> None:
    """Serve ``app``'s document with the settings' limits, the ``public`` paths without
    security and no FastAPI 422 on the ``openai`` paths (they answer 400 in their shape)."""
    generate = app.openapi
    public, openai = frozenset(public), frozenset(openai)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _adjust(document, settings, public, openai)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _adjust(
    document: dict[str, Any], settings: GatewaySettings, public: frozenset[str], openai: frozenset[str]
) -> None:
    paths: dict[str, dict[str, Any]] = document.get("paths", {})
    for path, operations in paths.items():
        for operation in operations.values():
            if path in public:
                operation.pop("security", None)
            if path in openai:
                operation["responses"].pop("422", None)
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    # FastAPI's own 422 body: every 422 left is ours (ErrorResponse).
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for name in ("ChatRequest", "SearchRequest"):
        props = schemas[name]["properties"]
        _limit(props["question" if name == "ChatRequest" else "query"], maxLength=settings.max_question_chars)
        _limit(props["top_k"], maximum=settings.max_top_k)
    _limit(schemas["ChatCompletionRequest"]["properties"]["top_k"], maximum=settings.max_top_k)
    for parameter in paths["/chat"]["post"]["parameters"]:
        if parameter["name"] == "query":
            _limit(parameter["schema"], maxLength=settings.max_question_chars)
    upload = paths["/v1/collections/{collection}/documents"]["post"]["requestBody"]["content"]
    form = upload["multipart/form-data"]
    ref: str = form["schema"]["$ref"]
    _limit(
        schemas[ref.rsplit("/", 1)[-1]]["properties"]["file"],
        minItems=1,
        maxItems=settings.max_files_per_upload,
    )
    # A file's type is its filename's extension (the part's Content-Disposition).
    form.setdefault("encoding", {})["file"] = {"headers": {"Content-Disposition": _FILE_PART}}


def _limit(schema: dict[str, Any], **keywords: int) -> None:
    """Put ``keywords`` on ``schema``, or on each of its ``anyOf`` branches but null."""
    branches = schema.get("anyOf")
    if branches is None:
        schema.update(keywords)
        return
    for branch in branches:
        if branch.get("type") != "null":
            branch.update(keywords)
