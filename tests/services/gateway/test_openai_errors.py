"""Errors in OpenAI's shape: every error class's status, type, code, param and headers."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError

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
    job_unanswered,
)
from libs.common.settings import GatewaySettings
from services.gateway import errors as http_errors
from services.gateway.openai_errors import OpenAIRoute, openai_body

NO_RETRY = {"x-should-retry": "false"}
# Each error; the status, type, code and param it becomes; the headers it carries.
BEARER = {"www-authenticate": "Bearer"}
CASES: list[tuple[DocuMindError, int, str, str | None, str | None, dict[str, str]]] = [
    (CollectionNotFound("town"), 404, "invalid_request_error", "model_not_found", "model", {}),
    (
        CollectionNotFound("town", "The model 'town' does not exist: no such collection"),
        404,
        "invalid_request_error",
        "model_not_found",
        "model",
        {},
    ),
    (NotFound("x"), 404, "invalid_request_error", None, None, {}),
    (ApiKeyNotFound("k1"), 404, "invalid_request_error", None, None, {}),
    (
        Unauthorized("revoked"),
        401,
        "invalid_request_error",
        "invalid_api_key",
        None,
        {"www-authenticate": "Bearer"},
    ),
    (Forbidden("write"), 403, "invalid_request_error", "insufficient_permissions", None, {}),
    (RateLimited(3, 60, 5), 429, "requests", "rate_limit_exceeded", None, {"retry-after": "3"}),
    (TooManyJobs(2, 1000), 429, "requests", "rate_limit_exceeded", None, {"retry-after": "2"}),
    (DocumentNotFound("d1"), 404, "invalid_request_error", None, None, {}),
    (JobNotFound("j1"), 404, "invalid_request_error", None, None, {}),
    (RequestRefused("no"), 400, "invalid_request_error", None, None, {}),
    (Conflict("clash"), 400, "invalid_request_error", None, None, {}),
    (CollectionExists("town"), 400, "invalid_request_error", None, None, {}),
    (JobAlreadyEnded("j1", "done"), 400, "invalid_request_error", None, None, {}),
    (DuplicateDocument("town", "d1"), 400, "invalid_request_error", None, None, {}),
    (InvalidRequest("top_k must be at most 50"), 400, "invalid_request_error", None, None, {}),
    (
        InvalidRequest("bad", param="messages.1.role"),
        400,
        "invalid_request_error",
        None,
        "messages.1.role",
        {},
    ),
    (PayloadTooLarge("too big"), 400, "invalid_request_error", None, None, {}),
    (UnsupportedMediaType("a.exe: no"), 400, "invalid_request_error", None, None, {}),
    (Unavailable(4), 400, "invalid_request_error", None, None, {"retry-after": "4"}),
    (QueueFull(2), 503, "server_error", "overloaded", None, {"retry-after": "2"}),
    (QueueUnavailable(3), 503, "server_error", None, None, {"retry-after": "3"}),
    (StoreFull(3), 503, "server_error", "overloaded", None, {"retry-after": "3"}),
    (JobUnanswered("it broke"), 500, "server_error", "job_failed", None, NO_RETRY),
    (JobFailed("generator: LLM down"), 500, "server_error", "job_failed", None, NO_RETRY),
    (JobExpired("deadline passed"), 504, "timeout_error", "job_expired", None, NO_RETRY),
    (JobCancelled("cancelled by the client"), 409, "cancelled_error", "job_cancelled", None, NO_RETRY),
]
IDS = [f"{type(c[0]).__name__}-{i}" for i, c in enumerate(CASES)]
PLAIN = {"content-length", "content-type"}


class Body(BaseModel):
    n: int


def raising_app(*raised: BaseException) -> FastAPI:
    """An app whose OpenAI-shaped route raises ``raised[i]``; the REST handlers installed too."""
    app = FastAPI()
    app.state.settings = GatewaySettings(_env_file=None, retry_after_s=9)  # type: ignore[call-arg]
    http_errors.install(app, retry_after_s=7)
    router = APIRouter(route_class=OpenAIRoute)

    @router.post("/raise/{i}")
    async def raise_one(i: int, body: Body) -> None:
        raise raised[i]

    app.include_router(router)
    return app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(raising_app(*(c[0] for c in CASES))) as c:
        yield c


def test_every_gateway_error_class_has_a_case() -> None:
    tested = {type(c[0]) for c in CASES}
    ours = {
        cls
        for cls in vars(domain).values()
        if inspect.isclass(cls) and issubclass(cls, RequestRefused | JobUnanswered)
    }
    assert ours <= tested, ours - tested


@pytest.mark.parametrize(("i", "case"), list(enumerate(CASES)), ids=IDS)
def test_an_error_in_openai_shape(
    client: TestClient, i: int, case: tuple[DocuMindError, int, str, str | None, str | None, dict[str, str]]
) -> None:
    exc, status, type_, code, param, headers = case
    resp = client.post(f"/raise/{i}", json={"n": 1})
    assert resp.status_code == status
    expected = {"error": {"message": exc.message, "type": type_, "param": param, "code": code}}
    assert resp.json() == expected == openai_body(exc)
    assert {k: v for k, v in resp.headers.items() if k not in PLAIN} == headers


def test_an_invalid_body_is_400_naming_the_field(client: TestClient) -> None:
    resp = client.post("/raise/0", json={"n": "many"})
    assert resp.status_code == 400
    error: dict[str, Any] = resp.json()["error"]
    assert error["message"].startswith("n: Input should be a valid integer")
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "n", None)
    unparsable = client.post("/raise/0", content=b"{not json", headers={"Content-Type": "application/json"})
    assert unparsable.status_code == 400 and unparsable.json()["error"]["type"] == "invalid_request_error"


def test_a_full_valkey_is_503_overloaded() -> None:
    with TestClient(raising_app(OutOfMemoryError("maxmemory"))) as c:
        resp = c.post("/raise/0", json={"n": 1})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "9"
    assert resp.json()["error"]["code"] == "overloaded"


def test_a_valkey_outage_is_503_with_retry_after() -> None:
    with TestClient(raising_app(RedisConnectionError("refused"))) as c:
        resp = c.post("/raise/0", json={"n": 1})
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "9"
    assert resp.json() == {
        "error": {
            "message": "the job queue is unavailable; retry later",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


@pytest.mark.parametrize(
    ("status", "type_", "code"),
    [
        ("failed", "server_error", "job_failed"),
        ("expired", "timeout_error", "job_expired"),
        ("cancelled", "cancelled_error", "job_cancelled"),
        ("vanished", "server_error", "job_failed"),
    ],
)
def test_a_job_outcome_in_openai_shape(status: str, type_: str, code: str) -> None:
    body = openai_body(job_unanswered(status, "why"))
    assert body == {
        "error": {"message": f"the job {status}: why", "type": type_, "param": None, "code": code}
    }
