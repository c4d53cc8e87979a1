"""Errors as HTTP responses: every error class's status, body and headers.

Each case is also answered the way the gateway answered it before the error tree
(an ``HTTPException``) where it had one: clients see the same bytes.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common import errors as domain
from libs.common.errors import (
    ApiKeyNotFound,
    CollectionExists,
    CollectionNotFound,
    Conflict,
    DocumentNotFound,
    DocuMindError,
    DuplicateDocument,
    Forbidden,
    InvalidRequest,
    JobAlreadyEnded,
    JobCancelled,
    JobExpired,
    JobFailed,
    JobNotFound,
    JobUnanswered,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    QueueUnavailable,
    RateLimited,
    RequestRefused,
    StoreFull,
    TooManyJobs,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from services.gateway import errors

RETRY_2 = {"retry-after": "2"}
# Each error, its status, and the headers it carries (besides content-type/length).
CASES: list[tuple[DocuMindError, int, dict[str, str]]] = [
    (NotFound("x"), 404, {}),
    (ApiKeyNotFound("k1"), 404, {}),
    (Unauthorized("missing"), 401, {"www-authenticate": "Bearer"}),
    (Unauthorized("unknown"), 401, {"www-authenticate": "Bearer"}),
    (Forbidden("write"), 403, {}),
    (RateLimited(3, 60, 5), 429, {"retry-after": "3"}),
    (TooManyJobs(2, 1000), 429, {"retry-after": "2"}),
    (CollectionNotFound("docs"), 404, {}),
    (DocumentNotFound("d1"), 404, {}),
    (JobNotFound("j1"), 404, {}),
    (Conflict("clash"), 409, {}),
    (CollectionExists("docs"), 409, {}),
    (JobAlreadyEnded("j1", "done"), 409, {}),
    (DuplicateDocument("docs", "d1"), 409, {}),
    (InvalidRequest("top_k must be at most 50"), 422, {}),
    (InvalidRequest("only text content is supported", param="messages.0.content"), 422, {}),
    (PayloadTooLarge("at most 3 files per upload"), 413, {}),
    (UnsupportedMediaType("tool.exe: unsupported file type '.exe'; supported: .txt"), 415, {}),
    (Unavailable(4), 503, {"retry-after": "4"}),
    (QueueFull(2), 503, RETRY_2),
    (
        QueueFull(2, "too many jobs queued; retry later; already accepted: a.txt (d1)"),
        503,
        {"retry-after": "2"},
    ),
    (QueueUnavailable(3), 503, {"retry-after": "3"}),
    (StoreFull(3), 503, {"retry-after": "3"}),
    (RequestRefused("no"), 400, {}),
    (JobUnanswered("it broke"), 500, {"x-should-retry": "false"}),
    (JobFailed("it broke"), 500, {"x-should-retry": "false"}),
    (JobExpired("deadline passed"), 504, {"x-should-retry": "false"}),
    (JobCancelled("cancelled by the client"), 409, {"x-should-retry": "false"}),
]
IDS = [f"{type(exc).__name__}-{i}" for i, (exc, _, _) in enumerate(CASES)]
# Headers every JSON response has.
PLAIN = {"content-length", "content-type"}


def raising_app(*raised: BaseException) -> FastAPI:
    app = FastAPI()
    errors.install(app, retry_after_s=7)

    @app.get("/raise/{i}")
    async def raise_one(i: int) -> None:
        raise raised[i]

    return app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(raising_app(*(exc for exc, _, _ in CASES))) as c:
        yield c


def test_every_gateway_error_class_has_a_case() -> None:
    tested = {type(exc) for exc, _, _ in CASES}
    ours = {
        cls
        for cls in vars(domain).values()
        if inspect.isclass(cls) and issubclass(cls, RequestRefused | JobUnanswered)
    }
    assert ours <= tested, ours - tested


@pytest.mark.parametrize(("i", "case"), list(enumerate(CASES)), ids=IDS)
def test_an_error_is_its_status_detail_and_headers(
    client: TestClient, i: int, case: tuple[DocuMindError, int, dict[str, str]]
) -> None:
    exc, status, headers = case
    resp = client.get(f"/raise/{i}")
    assert resp.status_code == status == errors.status_of(exc)
    assert resp.content == json.dumps({"detail": exc.message}, separators=(",", ":")).encode()
    assert {k: v for k, v in resp.headers.items() if k not in PLAIN} == headers


@pytest.mark.parametrize(("i", "case"), list(enumerate(CASES)), ids=IDS)
def test_the_same_bytes_as_the_http_exception_it_replaces(
    client: TestClient, i: int, case: tuple[DocuMindError, int, dict[str, str]]
) -> None:
    exc, status, headers = case
    before = HTTPException(status, exc.message, headers={k.title(): v for k, v in headers.items()} or None)
    with TestClient(raising_app(before)) as old:
        was = old.get("/raise/0")
    now = client.get(f"/raise/{i}")
    assert (now.status_code, now.content, dict(now.headers)) == (
        was.status_code,
        was.content,
        dict(was.headers),
    )


@pytest.mark.parametrize("down", [RedisConnectionError("refused"), RedisTimeoutError("timed out")])
def test_a_valkey_outage_is_503_with_retry_after(down: Exception) -> None:
    with TestClient(raising_app(down)) as c:
        resp = c.get("/raise/0")
    assert resp.status_code == 503
    assert resp.json() == {"detail": "the job queue is unavailable; retry later"}
    assert resp.headers["Retry-After"] == "7"


def test_a_full_valkey_is_503_saying_so() -> None:
    with TestClient(
        raising_app(OutOfMemoryError("command not allowed when used memory > 'maxmemory'."))
    ) as c:
        resp = c.get("/raise/0")
    assert resp.status_code == 503
    assert resp.json()["detail"].startswith("the job store is full (Valkey reached its memory limit)")
    assert resp.headers["Retry-After"] == "7"


def test_an_invalid_request_lists_its_errors() -> None:
    with TestClient(raising_app()) as c:
        resp = c.get("/raise/not-a-number")
    assert resp.status_code == 422
    body = resp.json()
    assert body["detail"].startswith("path.i: Input should be a valid integer")
    assert body["errors"][0]["loc"] == ["path", "i"]


def test_errors_workers_raise_are_not_answered_here() -> None:
    # A PermanentError reaching the gateway is a bug: a plain 500, as before.
    with TestClient(raising_app(domain.PermanentError("bad")), raise_server_exceptions=False) as c:
        resp = c.get("/raise/0")
    assert resp.status_code == 500
    assert resp.text == "Internal Server Error"
