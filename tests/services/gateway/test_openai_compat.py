"""The OpenAI-compatible facade's requests and errors, against a real Valkey (no workers)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from libs.common import constants, keys
from libs.common.access import Access
from libs.common.envelope import Envelope
from libs.common.errors import InvalidRequest
from libs.common.keys import Partition
from libs.common.settings import GatewaySettings
from services.gateway.app import create_app
from services.gateway.chat import submit_chat
from services.gateway.openai_compat import MAX_HISTORY_MESSAGES, split_messages
from services.gateway.openai_errors import openai_body, shape_of
from services.gateway.openai_schemas import MAX_MESSAGES, ChatMessage
from services.gateway.submit import Submitter
from tests.auth import admin_secret, operator_client

P0 = Partition(0)


def msgs(*pairs: tuple[str, Any]) -> list[ChatMessage]:
    return [ChatMessage(role=role, content=content) for role, content in pairs]


def test_the_last_user_message_is_the_question_and_the_rest_its_history() -> None:
    question, history = split_messages(
        msgs(
            ("system", "Be brief."),
            ("user", "Tell me about the ferry"),
            ("assistant", "It leaves from Pier 3 [1]."),
            ("user", [{"type": "text", "text": "When does "}, {"type": "text", "text": "it leave?"}]),
        ),
        max_chars=100,
    )
    assert question == "When does it leave?"
    assert history == [
        {"role": "user", "content": "Tell me about the ferry"},
        {"role": "assistant", "content": "It leaves from Pier 3 [1]."},
    ]


def test_history_is_bounded() -> None:
    many = [("user" if i % 2 == 0 else "assistant", f"turn {i} " + "x" * 50) for i in range(20)]
    question, history = split_messages(msgs(*many, ("user", "and then?")), max_chars=20)
    assert question == "and then?"
    assert len(history) == MAX_HISTORY_MESSAGES
    assert history[-1]["content"] == ("turn 19 " + "x" * 50)[:20]


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([], "must end with the user's question"),
        ([("system", "Be brief.")], "must end with the user's question"),
        ([("user", "Hi"), ("assistant", "Hello")], "must end with the user's question"),
        ([("user", "   ")], "must not be empty"),
        ([("tool", "42"), ("user", "Hi")], "is not supported"),
        ([("user", [{"type": "image_url", "image_url": {"url": "x"}}])], "only text"),
        ([("user", "x" * 101)], "longer than 100"),
    ],
)
def test_bad_messages_are_refused(messages: list[tuple[str, Any]], says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        split_messages(msgs(*messages), max_chars=100)
    assert shape_of(caught.value).status == 400
    body = openai_body(caught.value)
    assert says in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] is not None and body["error"]["param"].startswith("messages")


@pytest.fixture
def client(valkey_url: str) -> Iterator[TestClient]:
    settings = GatewaySettings(  # type: ignore[call-arg]
        _env_file=None, valkey_url=valkey_url, max_backlog=1, admin_key=admin_secret()
    )
    with operator_client(create_app(settings)) as c:
        assert c.post("/v1/collections", json={"name": "town"}).status_code == 201
        yield c


def chat(client: TestClient, body: Any) -> Any:
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})


def test_models_are_the_collections(client: TestClient) -> None:
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    (model,) = listed["data"]
    assert model["id"] == "town" and model["object"] == "model" and model["owned_by"] == "documind"
    assert isinstance(model["created"], int) and model["created"] > 0
    assert client.get("/v1/models/town").json() == model
    missing = client.get("/v1/models/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_errors_come_in_openai_shape(client: TestClient) -> None:
    user = [{"role": "user", "content": "When does the ferry leave?"}]
    for model in ("nowhere", "not/a/collection"):
        resp = chat(client, {"model": model, "messages": user})
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"]["code"] == "model_not_found"
        assert resp.json()["error"]["param"] == "model"
    for body in ("{not json", {"messages": user}, {"model": "town", "messages": "hi"}):
        resp = chat(client, body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["type"] == "invalid_request_error"
    resp = chat(client, {"model": "town", "messages": [{"role": "tool", "content": "42"}]})
    assert resp.status_code == 400 and "not supported" in resp.json()["error"]["message"]


def test_a_conversation_of_more_than_2048_messages_is_refused(client: TestClient) -> None:
    turns = [{"role": "user" if i % 2 else "assistant", "content": f"turn {i}"} for i in range(MAX_MESSAGES)]
    resp = chat(client, {"model": "nowhere", "messages": turns})
    assert resp.status_code == 404, resp.text  # read through: 2048 is allowed
    resp = chat(client, {"model": "town", "messages": [{"role": "assistant", "content": "hi"}, *turns]})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "messages"
    assert "2048" in error["message"], error


def test_a_full_queue_is_503_with_retry_after(client: TestClient) -> None:
    # No workers: the first job fills the first stage's backlog (max_backlog=1).
    assert client.post("/v1/chat", json={"question": "q", "collection": "town"}).status_code == 202
    resp = chat(client, {"model": "town", "messages": [{"role": "user", "content": "q"}]})
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "2"
    assert resp.json()["error"]["code"] == "overloaded"


def test_a_question_with_history_starts_at_the_generator(valkey_url: str, valkey: redis.Redis) -> None:
    history = [{"role": "user", "content": "Tell me about the ferry"}]

    async def main() -> Envelope:
        client = aioredis.Redis.from_url(valkey_url)
        try:
            sub = Submitter(client, GatewaySettings(_env_file=None, valkey_url=valkey_url))  # type: ignore[call-arg]
            await sub.docs.create_collection(Access(), "town")
            return await submit_chat(sub, Access(), "town", "When does it leave?", history=history)
        finally:
            await client.aclose()

    env = asyncio.run(main())
    assert env.route == list(constants.CHAT_WITH_HISTORY_ROUTE)
    assert env.payload["history"] == history
    queued: Any = valkey.xrange(P0.stream(constants.GENERATOR, constants.INTERACTIVE))
    ((_id, fields),) = queued
    assert Envelope.loads(fields[constants.ENVELOPE_FIELD.encode()]).job_id == env.job_id
    assert valkey.hget(keys.job(env.job_id).hash, "stage") == b"generator"
