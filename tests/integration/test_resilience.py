"""Crash recovery, graceful shutdown and backpressure with the real service processes,
on one Valkey server and on a Valkey Cluster with 3 partitions (``backend``)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

import httpx
import pytest

from libs.common import constants, keys
from tests.integration.backends import Backend
from tests.integration.fake_llm import FakeLLM
from tests.integration.harness import Stack

DOC = b"""Valkey streams keep jobs safe. A consumer group shares the work of a stream.
Pending entries stay with their consumer until they are acknowledged.
The lighthouse keeper counted forty ships in the harbour on Tuesday."""

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def stack(backend: Backend, tmp_path: Path) -> Iterator[Stack]:
    # One tenant queues 200 questions at once here (a worker killed while holding
    # many): past the per-tenant cap on questions in flight.
    s = Stack(backend.url, tmp_path, **backend.env, DOCUMIND_TENANT_MAX_INTERACTIVE="1000")
    try:
        yield s
    finally:
        s.stop()


def ingest(stack: Stack, collection: str = "docs") -> None:
    resp = httpx.post(
        f"{stack.url}/v1/collections/{collection}/documents",
        files={"file": ("notes.txt", DOC)},
        headers=stack.headers,
        timeout=10,
    )
    assert resp.status_code == 202, resp.text
    job = stack.wait_job(resp.json()["job_id"])
    assert job["status"] == "done", (job, stack.logs())


def submit_chats(stack: Stack, n: int, collection: str = "docs") -> list[str]:
    ids = []
    with stack.client(timeout=10) as client:
        for i in range(n):
            resp = client.post(
                "/v1/chat",
                json={"question": f"How many ships did the keeper count? #{i}", "collection": collection},
            )
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["job_id"])
    return ids


def pending_of(
    stack: Stack, stage: keys.Stage, lane: keys.Lane = constants.INTERACTIVE, collection: str = "docs"
) -> dict[str, int]:
    """Pending entries per consumer of ``stage``'s stream in ``collection``'s partition."""
    stream = stack.partition_of(collection).stream(stage, lane)
    info = stack.r.xpending(stream, keys.group_name(stage))
    return {c["name"].decode(): int(c["pending"]) for c in info["consumers"]}


def start_with_stuck_generator(
    stack: Stack, llm: FakeLLM, consumer: str, chats: int
) -> tuple[Popen[bytes], list[str]]:
    """The stack, with one generator whose LLM holds every request; ``chats`` jobs queued behind it.

    Returns once that generator has read a batch and is blocked on the LLM with it.
    """
    for name in ("embedder", "retriever", "gateway"):
        stack.start(name)
    generator = stack.start(
        "generator",
        DOCUMIND_LLM_BASE_URL=llm.base_url,
        DOCUMIND_LLM_API_KEY="test-key",
        DOCUMIND_MIN_SCORE="-1",
        DOCUMIND_CONSUMER=consumer,
    )
    stack.wait_ready()
    ingest(stack)
    ids = submit_chats(stack, chats)
    assert llm.received.wait(60)
    assert pending_of(stack, constants.GENERATOR).get(consumer, 0) > 0
    return generator, ids


def test_kill_9_of_a_worker_holding_messages_loses_nothing(stack: Stack) -> None:
    with FakeLLM(hold=True) as llm:
        doomed, ids = start_with_stuck_generator(stack, llm, "doomed", 200)
        doomed.kill()
        doomed.wait()
        stack.start(
            "generator",
            DOCUMIND_MIN_SCORE="-1",
            DOCUMIND_VISIBILITY_TIMEOUT_S="1",
            DOCUMIND_CONSUMER="survivor",
        )
        jobs = [stack.wait_job(job_id) for job_id in ids]
    assert [j["status"] for j in jobs] == ["done"] * 200
    assert all(j["result"]["answer"] for j in jobs)
    # Exactly one final write per job: one entry on each job's done stream.
    assert {stack.r.xlen(keys.job(job_id).done) for job_id in ids} == {1}
    assert pending_of(stack, constants.GENERATOR).get("survivor", 0) == 0
    assert stack.r.xlen(stack.partition_of("docs").stream(constants.GENERATOR, constants.INTERACTIVE)) == 0


def test_sigterm_lets_in_flight_work_finish(stack: Stack) -> None:
    with FakeLLM(hold=True) as llm:
        gen, ids = start_with_stuck_generator(stack, llm, "leaving", 8)
        held = pending_of(stack, constants.GENERATOR)["leaving"]
        gen.send_signal(signal.SIGTERM)
        llm.release.set()
        assert gen.wait(30) == 0
        # Everything it had taken was finished and acknowledged before it exited.
        assert pending_of(stack, constants.GENERATOR).get("leaving", 0) == 0
        assert llm.answered >= held
        stack.start("generator", DOCUMIND_MIN_SCORE="-1")
        jobs = [stack.wait_job(job_id) for job_id in ids]
    assert [j["status"] for j in jobs] == ["done"] * 8
    assert sum(j["result"]["mode"].startswith("llm:") for j in jobs) == llm.answered


def test_backpressure_refuses_new_jobs_and_keeps_accepted_ones(stack: Stack) -> None:
    stack.start("gateway", DOCUMIND_MAX_BACKLOG="5", DOCUMIND_RETRY_AFTER_S="3")
    stack.wait_healthy()
    with stack.client(timeout=10) as client:
        up = client.post("/v1/collections/docs/documents", files={"file": ("notes.txt", DOC)})
        assert up.status_code == 202
        accepted = [up.json()["job_id"]]
        # The backlog limit is per lane: the upload waits on the bulk lane, questions
        # fill the interactive one.
        for i in range(5):
            resp = client.post("/v1/chat", json={"question": f"ships? {i}", "collection": "docs"})
            assert resp.status_code == 202
            accepted.append(resp.json()["job_id"])
        refused = client.post("/v1/chat", json={"question": "one more", "collection": "docs"})
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "3"
        assert "retry" in refused.json()["detail"]
        # A full question lane does not turn uploads away.
        up2 = client.post("/v1/collections/docs/documents", files={"file": ("more.txt", DOC)})
        assert up2.status_code == 202, up2.text
        accepted.append(up2.json()["job_id"])
        # A long wait on a job nobody works on yet answers with its status, not an error.
        waited = client.get(f"/v1/jobs/{accepted[1]}", params={"wait": 6})
        assert waited.status_code == 200
        assert waited.json()["status"] == "queued"
        for name in ("embedder", "retriever", "generator"):
            stack.start(name)
        jobs = [stack.wait_job(job_id) for job_id in accepted]
        assert [j["status"] for j in jobs] == ["done"] * 7
        # With the backlog drained, new jobs are accepted again.
        again = client.post("/v1/chat", json={"question": "ships?", "collection": "docs"})
        assert again.status_code == 202


def test_queue_keeps_flowing_when_a_killed_worker_is_replaced(stack: Stack) -> None:
    stack.start_all()
    ingest(stack)
    victim = next(p for p in stack.procs if "services.embedder" in p.args)
    victim.kill()
    victim.wait()
    ids = submit_chats(stack, 3)
    stack.start("embedder")
    jobs = [stack.wait_job(job_id) for job_id in ids]
    assert [j["status"] for j in jobs] == ["done"] * 3
    assert victim.returncode == -signal.SIGKILL


def test_kill_9_of_the_retriever_mid_ingest_leaves_one_copy_of_each_chunk(stack: Stack) -> None:
    for name in ("embedder", "generator", "gateway"):
        stack.start(name)
    # A long block: the doomed retriever waits inside XREADGROUP, so the server hands it
    # the index messages (they become its pending entries) even while it is stopped.
    doomed = stack.start("retriever", DOCUMIND_READ_BLOCK_MS="60000", DOCUMIND_CONSUMER="doomed")
    stack.wait_ready()
    doomed.send_signal(signal.SIGSTOP)
    texts = [
        f"Report {i}. The river gauge {i} read {i * 7} centimetres at dawn on day {i}." for i in range(6)
    ]
    with stack.client(timeout=10) as client:
        ups = [
            client.post("/v1/collections/gauges/documents", files={"file": (f"r{i}.txt", t.encode())})
            for i, t in enumerate(texts)
        ]
        ids = [u.json()["job_id"] for u in ups]
        # Its one blocked read is served with the first index message(s); the rest wait in the stream.
        while pending_of(stack, constants.RETRIEVER, constants.BULK, "gauges").get("doomed", 0) == 0:
            time.sleep(0.05)  # the embedder hands the messages on; the server assigns them
        doomed.kill()
        doomed.wait()
        stack.start("retriever", DOCUMIND_VISIBILITY_TIMEOUT_S="1", DOCUMIND_CONSUMER="survivor")
        jobs = [stack.wait_job(job_id) for job_id in ids]
        assert [j["status"] for j in jobs] == ["done"] * len(ids)
        # Every report is in once: as many hits as chunks, none repeated.
        resp = client.post("/v1/search", json={"query": "river gauge", "collection": "gauges", "top_k": 50})
        hits = stack.wait_job(resp.json()["job_id"])["result"]["hits"]
        total = sum(j["result"]["chunks"] for j in jobs)
        assert len(hits) == total == len({(h["document_id"], h["text"]) for h in hits})
        assert {h["filename"] for h in hits} == {f"r{i}.txt" for i in range(len(texts))}
