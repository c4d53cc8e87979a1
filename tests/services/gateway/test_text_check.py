"""Bodies a careless or hostile client sends that used to be 500s: text that is not
Unicode (a lone UTF-16 surrogate, which JSON can spell and UTF-8 cannot carry) and
numbers JSON has no word for (NaN, Infinity). Each is refused with a reason, nothing
queued or created. Against a real Valkey, with the fixtures of ``test_originals``."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.gateway.text_check import NOT_UNICODE
from tests.services.gateway import test_originals

blobs, client = test_originals.blobs, test_originals.client
JSON = {"Content-Type": "application/json"}


def post(client: TestClient, path: str, body: str) -> tuple[int, dict[str, object]]:
    resp = client.post(path, content=body, headers=JSON)
    payload: dict[str, object] = resp.json()
    return resp.status_code, payload


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat", '{"question": "When \\ud800?", "collection": "town"}'),
        ("/v1/chat", '{"question": "When?", "collection": "town", "extra": [{"n": "\\udc00"}]}'),
        ("/v1/search", '{"query": "When \\udbff?", "collection": "town"}'),
        ("/v1/collections", '{"name": "harbour", "description": "a \\ud800 b"}'),
    ],
)
def test_a_lone_surrogate_is_422_and_nothing_is_queued_or_created(
    client: TestClient, path: str, body: str
) -> None:
    assert client.post("/v1/collections", json={"name": "town"}).status_code == 201
    status, payload = post(client, path, body)
    assert (status, payload) == (422, {"detail": NOT_UNICODE})
    names = [c["name"] for c in client.get("/v1/collections").json()["collections"]]
    assert names == ["town"]


def test_a_surrogate_pair_and_an_escaped_backslash_are_text(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "town"}).status_code == 201
    # "\ud83d\ude00" is one character (an emoji); "\\ud800" is a backslash and letters.
    for question in ('"Ferry \\ud83d\\ude00?"', '"Ferry \\\\ud800?"'):
        status, payload = post(client, "/v1/chat", f'{{"question": {question}, "collection": "town"}}')
        assert status == 202, payload


def test_a_lone_surrogate_on_the_openai_route_is_its_400(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "town"}).status_code == 201
    body = '{"model": "town", "messages": [{"role": "user", "content": "hi \\ud800"}]}'
    status, payload = post(client, "/v1/chat/completions", body)
    assert status == 400
    error = payload["error"]
    assert isinstance(error, dict)
    assert error["message"] == NOT_UNICODE
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages.0.content"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("path", ["/v1/chat", "/v1/search"])
def test_a_number_json_has_no_word_for_is_422_with_the_reason(
    client: TestClient, path: str, number: str
) -> None:
    field = "question" if path == "/v1/chat" else "query"
    status, payload = post(client, path, f'{{"{field}": "When?", "collection": "town", "top_k": {number}}}')
    assert status == 422
    assert payload["detail"] == "top_k: Input should be a finite number"
