"""The OpenAI-compatible facade through the real services, driven by the official client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from libs.common import keys
from tests.auth import ADMIN_KEY
from tests.integration.harness import Stack

DOCUMENTS = {
    "ferry.txt": "Ferry timetable. The ferry to Elmsworth leaves from Pier 3 at 7:15 every morning. "
    "A return ticket for the ferry costs twelve pounds.",
    "bus.txt": "The bus to Northgate leaves the market square at noon. It does not run on Sundays, "
    "when it does leave it is late.",
    "bakery.txt": "The bakery on Quay Street uses a wood-fired oven. "
    "Its sourdough starter is forty years old.",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from libs.common.valkey_server import ValkeyServer

    tmp = tmp_path_factory.mktemp("openai")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp)  # hash embeddings, extractive answers
        try:
            s.start_all()
            with s.client(timeout=30) as client:
                for name, text in DOCUMENTS.items():
                    resp = client.post(
                        "/v1/collections/harbour/documents", files={"file": (name, text.encode())}
                    )
                    assert resp.status_code == 202, resp.text
                    job = s.wait_job(resp.json()["job_id"])
                    assert job["status"] == "done", (job, s.logs())
            yield s
        finally:
            s.stop()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key=ADMIN_KEY, max_retries=0, timeout=60) as c:
        yield c


def extra(obj: Any) -> dict[str, Any]:
    """The ``documind`` field the client keeps as an unknown one."""
    found: dict[str, Any] = (obj.model_extra or {})["documind"]
    return found


def job(stack: Stack, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(
        f"{stack.url}/v1/jobs/{job_id}", headers=stack.headers, timeout=10
    ).json()
    return found


def test_models_are_the_collections(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"harbour"}
    assert models["harbour"].owned_by == "documind" and models["harbour"].created > 0
    assert client.models.retrieve("harbour").id == "harbour"


def test_a_plain_completion_answers_with_citations(stack: Stack, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="harbour", messages=[{"role": "user", "content": "When does the ferry to Elmsworth leave?"}]
    )
    assert completion.object == "chat.completion" and completion.model == "harbour"
    (choice,) = completion.choices
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    content = choice.message.content or ""
    assert "7:15" in content, stack.logs()
    documind = extra(completion)
    assert documind["mode"] == "extractive"
    assert documind["citations"][0]["filename"] == "ferry.txt"
    assert f"[{documind['citations'][0]['n']}]" in content
    assert "standalone_question" not in documind
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    stored = job(stack, documind["job_id"])
    assert stored["status"] == "done" and stored["result"]["answer"] == content


def test_a_streamed_completion_adds_up_to_the_answer(stack: Stack, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="harbour",
        messages=[{"role": "user", "content": "How old is the sourdough starter of the bakery?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)  # ends at [DONE]
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason is not None]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    documind = extra(finals[0])
    assert documind["citations"][0]["filename"] == "bakery.txt"
    assert chunks[-1].usage is not None and not chunks[-1].choices
    stored = job(stack, documind["job_id"])
    assert stored["status"] == "done"
    assert content == stored["result"]["answer"] and "forty years" in content
    assert len({c.id for c in chunks}) == 1


def test_a_follow_up_is_condensed_before_retrieval(stack: Stack, client: openai.OpenAI) -> None:
    first = "Tell me about the ferry to Elmsworth"
    earlier = client.chat.completions.create(model="harbour", messages=[{"role": "user", "content": first}])
    messages: list[Any] = [
        {"role": "system", "content": "You are a harbour guide."},
        {"role": "user", "content": first},
        {"role": "assistant", "content": earlier.choices[0].message.content},
        {"role": "user", "content": "When does it leave?"},
    ]
    completion = client.chat.completions.create(model="harbour", messages=messages)
    documind = extra(completion)
    standalone = documind["standalone_question"]
    assert "ferry" in standalone and "When does it leave?" in standalone
    assert documind["citations"][0]["filename"] == "ferry.txt", stack.logs()
    assert "7:15" in (completion.choices[0].message.content or "")

    stored = job(stack, documind["job_id"])
    assert stored["result"]["standalone_question"] == standalone
    assert set(stored["timings"]) >= {"generator", "embedder", "retriever"}
    raw: Any = stack.r.xrange(keys.job(documind["job_id"]).events)
    kinds = [fields[b"type"].decode() for _id, fields in raw]
    assert kinds[:2] == ["queued", "condensing"]
    assert json.loads(raw[1][1][b"data"])["standalone_question"] == standalone
    assert kinds.index("embedding") < kinds.index("generating") < kinds.index("done")

    # Streamed, the same follow-up gives the same answer.
    chunks = list(client.chat.completions.create(model="harbour", messages=messages, stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == completion.choices[0].message.content
    assert extra(chunks[-1])["standalone_question"] == standalone


def test_an_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nowhere", messages=[{"role": "user", "content": "Hello?"}])
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="harbour", messages=[{"role": "assistant", "content": "Hi"}])
