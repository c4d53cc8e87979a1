"""What the web app relies on, through the real services: an upload's progress events,
the chat's job id from the start, the abstained flag, and citations' offsets in the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from libs.common.valkey_server import ValkeyServer
from tests.integration.harness import Stack
from tests.integration.test_events import read_sse

pytestmark = pytest.mark.timeout(180)

ORIGIN = "http://app.example"
JOB_ID_HEADER = "X-DocuMind-Job-Id"
# Ten paragraphs of about a dozen words: a chunk each at 12 words, five parts of two.
LIGHTHOUSES = "\n\n".join(
    f"Lighthouse number {n} stands on the granite headland of island {n}, "
    f"and its lamp turns every {n + 5} seconds."
    for n in range(10)
)
FERRY = (
    "Ferry timetable.\n\nThe ferry to Elmsworth leaves from Pier 3 at 7:15 every morning.\n"
    "A return ticket for the ferry costs twelve pounds."
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("app_api")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(
            server.url,
            tmp,
            DOCUMIND_CHUNK_SIZE_WORDS="12",
            DOCUMIND_CHUNK_OVERLAP_WORDS="2",
            DOCUMIND_INGEST_PART_CHUNKS="2",
            DOCUMIND_CORS_ORIGINS=ORIGIN,
        )
        try:
            s.start_all()
            with s.client(timeout=30) as client:
                up = client.post(
                    "/v1/collections/harbour/documents", files={"file": ("ferry.txt", FERRY.encode())}
                )
                assert s.wait_job(up.json()["job_id"])["status"] == "done", s.logs()
            yield s
        finally:
            s.stop()


def test_an_uploads_events_say_parsing_then_its_counts_part_by_part_then_ready(stack: Stack) -> None:
    with stack.client(timeout=30) as client:
        up = client.post(
            "/v1/collections/lights/documents", files={"file": ("lights.txt", LIGHTHOUSES.encode())}
        )
        assert up.status_code == 202, up.text
        accepted = up.json()
        document_id = accepted["document_id"]
        events = list(read_sse(client, f"/v1/jobs/{accepted['job_id']}/events"))
        document = client.get(f"/v1/documents/{document_id}").json()
    types = [e.event for e in events]
    assert types[:3] == ["queued", "parsing", "parsed"], types
    assert types[-3:] == ["embedding", "indexing", "done"], types
    parsed = events[2].data
    total, parts = parsed["chunks_total"], parsed["parts"]
    assert parts >= 3, (parsed, stack.logs())  # several parts: progress moves per part
    assert parsed == {"document_id": document_id, "pages": 1, "chunks_total": total, "parts": parts}
    assert events[1].data == {"document_id": document_id, "filename": "lights.txt"}
    embedded = [e.data for e in events if e.event == "embedded"]
    # One per part, each with its document's count so far; the largest is every chunk.
    assert sorted(e["part"] for e in embedded) == list(range(parts))
    assert all(e["chunks_total"] == total and e["parts"] == parts for e in embedded)
    assert all(0 < e["chunks_embedded"] <= total for e in embedded)
    assert max(e["chunks_embedded"] for e in embedded) == total
    assert types.index("parsed") < types.index("embedded")
    assert len(types) - 1 - types[::-1].index("embedded") < types.index("indexing")
    assert events[-2].data == {"document_id": document_id, "chunks_embedded": total, "chunks_total": total}
    done = events[-1].data
    assert done["chunks"] == total and done["pages"] == 1 and done["document_id"] == document_id
    assert document["status"] == "ready" and document["progress"] == {
        "chunks_embedded": total,
        "chunks_total": total,
    }


def test_a_failed_upload_ends_its_events_with_the_reason(stack: Stack) -> None:
    with stack.client(timeout=30) as client:
        up = client.post("/v1/collections/lights/documents", files={"file": ("blank.txt", b"   \n\n  ")})
        assert up.status_code == 202, up.text
        events = list(read_sse(client, f"/v1/jobs/{up.json()['job_id']}/events"))
    assert [e.event for e in events] == ["queued", "parsing", "error"]
    assert events[-1].data["status"] == "failed" and "no extractable text" in events[-1].data["error"]


def completion(client: httpx.Client, question: str, **body: Any) -> httpx.Response:
    messages = [{"role": "user", "content": question}]
    return client.post("/v1/chat/completions", json={"model": "harbour", "messages": messages, **body})


def test_the_chat_names_its_job_in_a_header_and_the_first_chunk(stack: Stack) -> None:
    with stack.client(timeout=30, headers={"Origin": ORIGIN}) as client:
        plain = completion(client, "When does the ferry to Elmsworth leave?")
        assert plain.status_code == 200, plain.text
        assert plain.headers[JOB_ID_HEADER] == plain.json()["documind"]["job_id"]
        # A page of another origin may read it.
        exposed = plain.headers["Access-Control-Expose-Headers"].lower()
        assert JOB_ID_HEADER.lower() in exposed
        messages = [{"role": "user", "content": "How much is a return ticket for the ferry?"}]
        body = {"model": "harbour", "messages": messages, "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            job_id = resp.headers[JOB_ID_HEADER]
            chunks = [
                json.loads(line.removeprefix("data: "))
                for line in resp.iter_lines()
                if line.startswith("data: ") and line != "data: [DONE]"
            ]
    first, last = chunks[0], chunks[-1]
    assert first["documind"] == {"job_id": job_id} and first["id"] == f"chatcmpl-{job_id}"
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert last["documind"]["job_id"] == job_id and last["documind"]["abstained"] is False
    assert {c["id"] for c in chunks} == {f"chatcmpl-{job_id}"}


def test_an_unanswerable_question_says_it_abstained(stack: Stack) -> None:
    question = "What is the airspeed velocity of an unladen swallow?"
    with stack.client(timeout=30) as client:
        accepted = client.post("/v1/chat", json={"question": question, "collection": "harbour"}).json()
        job = stack.wait_job(accepted["job_id"])
        answered = client.post(
            "/v1/chat", json={"question": "When does the ferry leave?", "collection": "harbour"}
        )
        other = stack.wait_job(answered.json()["job_id"])
        openai_style = completion(client, question).json()
    assert job["status"] == "done" and job["result"]["abstained"] is True
    assert job["result"]["citations"] == []
    assert other["result"]["abstained"] is False and other["result"]["citations"]
    assert openai_style["documind"]["abstained"] is True and openai_style["documind"]["citations"] == []


def test_a_citations_offsets_point_at_its_snippet_in_the_pages_text(stack: Stack) -> None:
    with stack.client(timeout=30) as client:
        accepted = client.post(
            "/v1/chat",
            json={"question": "When does the ferry to Elmsworth leave Pier 3?", "collection": "harbour"},
        ).json()
        job = stack.wait_job(accepted["job_id"])
        [citation, *_] = job["result"]["citations"]
        pages = client.get(f"/v1/documents/{citation['document_id']}/text").json()
    [page] = [p for p in pages if p["page"] == citation["page"]]
    start, end = citation["char_start"], citation["char_end"]
    assert 0 <= start < end <= len(page["text"])
    marked = " ".join(page["text"][start:end].split())
    snippet = citation["snippet"]
    # The snippet is one sentence, or a few of the chunk's joined: the span runs from its
    # first to its last.
    assert marked == snippet or (marked.startswith(snippet[:20]) and marked.endswith(snippet[-20:])), (
        marked,
        snippet,
    )
