"""The API matches its document (issue 13.6): schemathesis, every check, against the live
OpenAPI of a real stack; and what it found, as a client sees it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.engine import events
from schemathesis.engine import from_schema as engine_for

from libs.common.valkey_server import ValkeyServer
from services.gateway.openai_schemas import MAX_MESSAGES
from tests.auth import ADMIN_KEY
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(240)

# Every check schemathesis has (``--checks all``).
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
    "object_level_authorization",
)
# A few examples per operation and phase: the whole run takes seconds (23 operations).
MAX_EXAMPLES = 5
SEED = 13
# What counts as refusing data the document calls invalid: schemathesis's own list, and 413.
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
QUESTION = {"role": "user", "content": "When does the ferry leave?"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("openapi")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp)
        try:
            s.start_all()
            with s.client(timeout=10) as client:
                resp = client.post(
                    "/v1/collections/town/documents", files={"file": ("f.txt", b"Ferry at 9.")}
                )
            assert resp.status_code == 202, resp.text
            assert s.wait_job(resp.json()["job_id"])["status"] == "done"
            yield s
        finally:
            s.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10) as c:
        yield c
    stack.assert_alive()


# A key's name: str.isprintable(), which the document names as a format of its own.
schemathesis.openapi.format(
    "printable", st.text(min_size=1, max_size=200).filter(lambda s: s.isprintable() and bool(s.strip()))
)


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "request-timeout": 30,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "checks": {
                **{name: {"enabled": True} for name in CHECKS},
                # Too many files is refused 413 (Content Too Large), a refusal schemathesis
                # does not count by default.
                "negative_data_rejection": {"enabled": True, "expected-statuses": REFUSALS},
            },
            # The operator key, for the scheme the document declares.
            "auth": {"openapi": {"HTTPBearer": {"bearer": ADMIN_KEY}}},
        }
    )


def _within_rules_no_schema_states(context: Any, case: Any) -> Any:
    """Positive cases kept to the two rules JSON Schema cannot state (both in the
    document's descriptions): a conversation ends with the user's question; a key
    expires in the future. Negative cases are left alone."""
    meta, body = case.meta, case.body
    if meta is None or not meta.generation.mode.is_positive or not isinstance(body, dict):
        return case
    if case.path == "/v1/chat/completions" and isinstance(body.get("messages"), list):
        # Appended, within the document's maxItems (a case of exactly that many loses its last).
        body["messages"] = [*body["messages"][: MAX_MESSAGES - 1], QUESTION]
    if case.path == "/v1/keys" and body.get("expires_at") is not None:
        body["expires_at"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return case


def _failures(stream: Iterator[events.EngineEvent]) -> tuple[list[str], int]:
    found: dict[str, str] = {}
    cases = 0
    for event in stream:
        if isinstance(event, events.FatalError):
            found["fatal"] = f"schemathesis failed: {event.exception!r}"
        if isinstance(event, events.NonFatalError):
            found[f"error {event.label}"] = f"{event.label}: {event.value!r}"
        recorder = getattr(event, "recorder", None)
        if not isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished) or recorder is None:
            continue
        cases += len(recorder.cases)
        for checks in recorder.checks.values():
            for check in checks:
                info = check.failure_info
                if info is None:
                    continue
                failure = info.failure
                key = f"{failure.operation} {failure.title}"
                found.setdefault(
                    key, f"{failure.operation}: {failure.title}\n{failure.message}\n{info.code_sample[:600]}"
                )
    return list(found.values()), cases


def test_the_api_matches_its_document(stack: Stack, tmp_path: Path) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json", config=_config())
    schema.hook("map_case")(_within_rules_no_schema_states)
    failures, cases = _failures(iter(engine_for(schema).execute()))
    stack.assert_alive()
    assert not failures, f"{len(failures)} failures in {cases} cases:\n\n" + "\n\n".join(failures)
    assert cases > 200


# --- what the run found, as a client sees it --------------------------------------


def test_options_lists_every_method_of_the_path(client: httpx.Client) -> None:
    for path, allowed in [
        ("/v1/jobs/j1", "DELETE, GET, HEAD, OPTIONS"),
        ("/v1/collections", "GET, HEAD, OPTIONS, POST"),
        ("/v1/collections/town/documents", "GET, HEAD, OPTIONS, POST"),
        ("/v1/chat/completions", "OPTIONS, POST"),
    ]:
        resp = client.options(path)
        assert resp.status_code == 204, (path, resp.text)
        assert resp.headers["allow"] == allowed, path


def test_a_method_a_path_does_not_take_is_405_with_every_method_allowed(client: httpx.Client) -> None:
    resp = client.put("/v1/documents/d1")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "DELETE, GET, HEAD, OPTIONS"
    assert resp.json() == {"detail": "Method Not Allowed"}
    # On an OpenAI route, in OpenAI's shape.
    resp = client.get("/v1/chat/completions")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "OPTIONS, POST"
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_a_body_that_is_not_utf8_is_refused_in_openai_shape(client: httpx.Client) -> None:
    body = b'{"model": "town", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    resp = client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    # The REST routes answer it in theirs.
    resp = client.post("/v1/chat", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and "detail" in resp.json()


def test_a_last_event_id_that_is_no_event_id_is_ignored(stack: Stack, client: httpx.Client) -> None:
    # A collection of its own: the run above may have deleted any other.
    assert client.post("/v1/collections", json={"name": "last-event-id"}).status_code == 201
    resp = client.post("/v1/chat", json={"question": "When?", "collection": "last-event-id"})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    assert stack.wait_job(job_id)["status"] == "done"
    plain = client.get(f"/v1/jobs/{job_id}/events")
    assert plain.status_code == 200 and "event: done" in plain.text
    for garbage in ("null", "yesterday", "99999999999999999999-0"):
        resp = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": garbage})
        assert resp.status_code == 200, (garbage, resp.text)
        assert resp.text == plain.text
    # As a query parameter it is checked: the document says what an event id is.
    assert client.get(f"/v1/jobs/{job_id}/events", params={"after": "null"}).status_code == 422


def test_the_document_carries_the_limits(client: httpx.Client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    question = schemas["ChatRequest"]["properties"]["question"]
    assert question["maxLength"] == 4000
    top_k = schemas["ChatRequest"]["properties"]["top_k"]["anyOf"][0]
    assert top_k == {"type": "integer", "minimum": 1, "maximum": 50}
    assert schemas["ChatCompletionRequest"]["properties"]["top_k"]["anyOf"][0]["maximum"] == 50
    resp = client.post("/v1/chat", json={"question": "q", "collection": "town", "top_k": 51})
    assert resp.status_code == 422
