"""Job events over Server-Sent Events: order, replay, resume by Last-Event-ID, cancellation."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI, ok
from tests.integration.backends import Backend
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(180)

DOC = (
    b"The Inishmore ferry leaves Rossaveal at nine every morning. "
    b"Tickets are sold at the pier office and on board. Bicycles travel free of charge."
)


@dataclass(frozen=True)
class Sse:
    id: str
    event: str
    data: dict[str, Any]


def read_sse(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> Iterator[Sse]:
    """Events as the server sends them, until it ends the stream."""
    with client.stream("GET", url, headers=headers or {}) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in resp.iter_lines():
            if line.startswith(":"):
                continue  # keep-alive comment
            if not line:
                if fields:
                    yield Sse(fields["id"], fields["event"], json.loads(fields["data"]))
                fields = {}
                continue
            name, _, value = line.partition(": ")
            fields[name] = value


@pytest.fixture(scope="module")
def stack(module_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("events")
    s = Stack(module_backend.url, tmp, **module_backend.env)
    try:
        s.start_all()
        with s.client(timeout=30) as client:
            up = client.post("/v1/collections/ferries/documents", files={"file": ("ferry.txt", DOC)})
            assert s.wait_job(up.json()["job_id"])["status"] == "done"
        yield s
    finally:
        s.stop()


def ask(client: httpx.Client, question: str) -> dict[str, Any]:
    resp = client.post("/v1/chat", json={"question": question, "collection": "ferries", "stream": True})
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_a_chat_job_streams_its_stages_tokens_and_result_then_replays_them(stack: Stack) -> None:
    with stack.client(timeout=30) as client:
        accepted = ask(client, "When does the ferry leave Rossaveal?")
        assert accepted["events_url"] == f"/v1/jobs/{accepted['job_id']}/events"
        events = list(read_sse(client, accepted["events_url"]))
        types = [e.event for e in events]
        tokens = [e for e in events if e.event == "token"]
        assert [t for t in types if t != "token"] == [
            "queued",
            "embedding",
            "retrieving",
            "generating",
            "done",
        ]
        assert types.index("generating") < types.index("token") < types.index("done")
        assert events[types.index("retrieving")].data["hits"] >= 1
        done = events[-1].data
        assert "".join(t.data["text"] for t in tokens) == done["answer"]
        assert "nine" in done["answer"] and done["mode"] == "extractive"
        assert done["citations"][0]["filename"] == "ferry.txt"
        # Ids are the stream's: strictly increasing.
        ids = [tuple(map(int, e.id.split("-"))) for e in events]
        assert ids == sorted(set(ids))
        # A finished job replays the same events, ids included.
        assert list(read_sse(client, accepted["events_url"])) == events


def test_reconnecting_with_last_event_id_gets_exactly_the_rest(stack: Stack) -> None:
    with stack.client(timeout=30) as client:
        accepted = ask(client, "Where are tickets sold?")
        url = accepted["events_url"]
        events = list(read_sse(client, url))
        for k, seen in enumerate(events[:-1]):
            rest = list(read_sse(client, url, {"Last-Event-ID": seen.id}))
            assert rest == events[k + 1 :]
        # After the last event there is nothing more, and the stream ends.
        assert list(read_sse(client, url, {"Last-Event-ID": events[-1].id})) == []
        # One that is no event id is ignored: every event, as without one.
        assert list(read_sse(client, url, {"Last-Event-ID": "yesterday"})) == events
        assert client.get("/v1/jobs/nope/events").status_code == 404


def test_a_reader_connected_before_the_job_ends_sees_it_live(stack: Stack) -> None:
    """The stream is read while the job runs (it blocks for new events, no polling)."""
    with stack.client(timeout=30) as client:
        accepted = ask(client, "Do bicycles cost extra?")
        seen: list[Sse] = []
        reader = threading.Thread(target=lambda: seen.extend(read_sse(client, accepted["events_url"])))
        reader.start()
        job = stack.wait_job(accepted["job_id"])
        reader.join(timeout=30)
        assert not reader.is_alive()
        assert seen[-1].event == "done" and seen[-1].data == job["result"]


def test_cancelling_a_queued_job_ends_its_stream_and_the_generator_skips_it(
    backend: Backend, tmp_path: Path
) -> None:
    stack = Stack(backend.url, tmp_path, **backend.env)
    try:
        for name in ("gateway", "embedder", "retriever"):
            stack.start(name)
        stack.wait_healthy()
        with stack.client(timeout=30) as client:
            up = client.post("/v1/collections/ferries/documents", files={"file": ("ferry.txt", DOC)})
            assert stack.wait_job(up.json()["job_id"])["status"] == "done"
            accepted = ask(client, "When does the ferry leave?")
            job_id = accepted["job_id"]
            # No generator yet: the job cannot get past the generator's stream.
            gone = client.delete(f"/v1/jobs/{job_id}")
            assert gone.status_code == 200 and gone.json() == {"job_id": job_id, "status": "cancelled"}
            events = list(read_sse(client, accepted["events_url"]))
            assert events[-1].event == "cancelled"
            assert "cancelled by the client" in events[-1].data["error"]
            assert client.delete(f"/v1/jobs/{job_id}").status_code == 409
            assert client.delete("/v1/jobs/nope").status_code == 404
            # A generator starts: it skips the cancelled job and answers the next one.
            stack.start("generator")
            later = ask(client, "Where are tickets sold?")
            assert stack.wait_job(later["job_id"])["status"] == "done"
            assert stack.wait_job(job_id)["status"] == "cancelled"
            assert [e.event for e in read_sse(client, accepted["events_url"])] == [e.event for e in events]
            assert stack.r.xlen(backend.partition_of("ferries").dead_letters()) == 0
    finally:
        stack.stop()


def test_cancelling_a_job_mid_answer_abandons_the_llm_call(backend: Backend, tmp_path: Path) -> None:
    gate = threading.Event()
    with FakeOpenAI() as llm:
        # The LLM sends its first piece, then holds the rest until the gate opens.
        llm.script(
            ok(chunks=["The ferry", " leaves at nine [1]."], gate=gate),
            ok("Tickets are sold at the pier office [1]."),
        )
        stack = Stack(
            backend.url,
            tmp_path,
            **backend.env,
            DOCUMIND_LLM_BASE_URL=llm.base_url,
            DOCUMIND_LLM_API_KEY="test-key",
            DOCUMIND_LLM_MODEL="served-model",
        )
        try:
            stack.start_all()
            with stack.client(timeout=30) as client:
                up = client.post("/v1/collections/ferries/documents", files={"file": ("ferry.txt", DOC)})
                assert stack.wait_job(up.json()["job_id"])["status"] == "done"
                accepted = ask(client, "When does the ferry leave?")
                seen: list[Sse] = []
                for event in read_sse(client, accepted["events_url"]):
                    seen.append(event)
                    if event.event == "token":
                        # Mid-answer: the LLM is holding the rest of its stream.
                        gone = client.delete(f"/v1/jobs/{accepted['job_id']}")
                        assert gone.status_code == 200, gone.text
                assert seen[-1].event == "cancelled"
                assert "".join(e.data["text"] for e in seen if e.event == "token") == "The ferry"
                job = client.get(f"/v1/jobs/{accepted['job_id']}").json()
                assert job["status"] == "cancelled"
                # The generator abandoned the call (it did not wait for the gate) and
                # acknowledged the job without a dead letter.
                assert not gate.is_set()
                later = ask(client, "Where are tickets sold?")
                assert stack.wait_job(later["job_id"])["status"] == "done"
                generator_log = "".join(p.read_text() for p in tmp_path.glob("generator-*.log"))
                assert "abandoning its answer" in generator_log
                assert stack.r.xlen(backend.partition_of("ferries").dead_letters()) == 0
        finally:
            gate.set()
            stack.stop()
