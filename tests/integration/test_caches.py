"""The embedding and answer caches through the real services (hash embeddings, extractive answers).

Every wait is on a job's result (its done stream); a cache hit is a job that is
already done when the POST returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.common.valkey_server import ValkeyServer, free_port
from services.generator.prompt import NOTHING_RELEVANT
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(180)

FERRY = (
    b"The Inishmore ferry leaves Rossaveal at nine every morning. "
    b"Tickets are sold at the pier office and on board. Bicycles travel free of charge."
)
RED = b"The lighthouse on the headland is painted red and white. Its lamp turns every ten seconds."
GREEN = b"The lighthouse on the headland is painted green and white. Its lamp turns every twelve seconds."
LIGHTHOUSE = "What colour is the lighthouse painted?"


class Services:
    """The stack, with the metrics ports of its embedder and generator known."""

    def __init__(self, stack: Stack, embedder_port: int, generator_port: int) -> None:
        self.stack = stack
        self.embedder_metrics = f"http://127.0.0.1:{embedder_port}/metrics"
        self.generator_metrics = f"http://127.0.0.1:{generator_port}/metrics"
        self.client = stack.client(timeout=30)

    def upload(self, collection: str, filename: str, data: bytes, *, replace: bool = False) -> str:
        resp = self.client.post(
            f"/v1/collections/{collection}/documents",
            files={"file": (filename, data)},
            params={"replace": "true"} if replace else {},
        )
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert self.stack.wait_job(body["job_id"])["status"] == "done", self.stack.logs()
        return str(body["document_id"])

    def post(self, collection: str, question: str, headers: dict[str, str] | None = None) -> str:
        resp = self.client.post(
            "/v1/chat", json={"question": question, "collection": collection}, headers=headers or {}
        )
        assert resp.status_code == 202, resp.text
        return str(resp.json()["job_id"])

    def ask(self, collection: str, question: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """The finished job of one question."""
        job = self.stack.wait_job(self.post(collection, question, headers))
        assert job["status"] == "done", (job, self.stack.logs())
        return job

    def answered(self) -> float:
        """Chat jobs the generator has finished (its documind_messages_total)."""
        return metric(self.generator_metrics, "documind_messages", {"stage": "generator", "outcome": "done"})


def metric(url: str, name: str, labels: dict[str, str], headers: dict[str, str] | None = None) -> float:
    """The value of one counter series at ``url`` (0 when absent)."""
    resp = httpx.get(url, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    text = resp.text
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_total" and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def answer_cache(services: Services, result: str) -> float:
    labels = {"cache": "answer", "result": result}
    return metric(services.stack.gateway_metrics_url, "documind_cache_requests", labels)


def embedding_hits(services: Services) -> float:
    return metric(
        services.embedder_metrics, "documind_cache_requests", {"cache": "embedding", "result": "hit"}
    )


def is_hit(job: dict[str, Any]) -> bool:
    """Answered from the cache: marked so, and no stage worked on it."""
    cached = job["result"].get("cached") is True
    assert cached == (set(job["timings"]) == {"cache"}), job
    return cached


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    tmp = tmp_path_factory.mktemp("caches")
    with ValkeyServer(tmp / "valkey") as server:
        stack = Stack(server.url, tmp)
        embedder_port, generator_port = free_port(), free_port()
        try:
            stack.start("embedder", DOCUMIND_METRICS_PORT=str(embedder_port))
            stack.start("retriever")
            stack.start("generator", DOCUMIND_METRICS_PORT=str(generator_port))
            stack.start("gateway")
            stack.wait_ready()
            s = Services(stack, embedder_port, generator_port)
            try:
                yield s
            finally:
                s.client.close()
        finally:
            stack.stop()


def test_the_same_question_again_is_answered_from_the_cache_at_once(services: Services) -> None:
    services.upload("ferries", "ferry.txt", FERRY)
    first = services.ask("ferries", "When does the ferry leave Rossaveal?")
    assert not is_hit(first) and "nine" in first["result"]["answer"]
    answered = services.answered()

    job_id = services.post("ferries", "When does the ferry leave Rossaveal?")
    # Done when the POST returns: no wait.
    job = services.client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "done" and is_hit(job)
    assert job["result"] == {**first["result"], "cached": True}
    # The generator never saw it.
    assert services.answered() == answered
    # It reads like any finished job: a wait returns at once, its events end with the result.
    assert services.client.get(f"/v1/jobs/{job_id}", params={"wait": 5}).json() == job
    with services.client.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        lines = [line for line in resp.iter_lines() if line.startswith(("event: ", "data: "))]
    assert lines[0::2] == ["event: queued", "event: done"]
    assert json.loads(lines[3].removeprefix("data: ")) == job["result"]

    # Another phrasing of the same question: case, spacing, trailing punctuation.
    same = services.ask("ferries", "  when does the FERRY leave   Rossaveal ?! ")
    assert is_hit(same) and same["result"] == job["result"]
    assert services.answered() == answered
    # Another question is not.
    assert not is_hit(services.ask("ferries", "Where are tickets sold?"))


def test_a_document_becoming_ready_replaced_or_deleted_invalidates(services: Services) -> None:
    services.upload("lights", "ferry.txt", FERRY)
    before = services.ask("lights", LIGHTHOUSE)
    assert not is_hit(before) and before["result"]["answer"] == NOTHING_RELEVANT
    # "Nothing relevant" is cached too, while the collection stays as it is.
    assert is_hit(services.ask("lights", LIGHTHOUSE))

    services.upload("lights", "lighthouse.txt", RED)
    red = services.ask("lights", LIGHTHOUSE)
    assert not is_hit(red) and "red" in red["result"]["answer"]
    assert is_hit(services.ask("lights", LIGHTHOUSE))

    green_id = services.upload("lights", "lighthouse.txt", GREEN, replace=True)
    green = services.ask("lights", LIGHTHOUSE)
    assert not is_hit(green)
    assert "green" in green["result"]["answer"] and "red" not in green["result"]["answer"]
    assert is_hit(services.ask("lights", LIGHTHOUSE))

    # Deleted: hidden at once, and the next question is answered afresh without it.
    assert services.client.delete(f"/v1/documents/{green_id}").status_code == 200
    gone = services.ask("lights", LIGHTHOUSE)
    assert not is_hit(gone) and gone["result"]["answer"] == NOTHING_RELEVANT


def test_the_bypass_headers_force_a_fresh_answer_that_refreshes_the_cache(services: Services) -> None:
    services.upload("piers", "ferry.txt", FERRY)
    question = "Do bicycles travel free on the ferry?"
    assert not is_hit(services.ask("piers", question))
    answered = services.answered()
    embedded_hits = metric(
        services.embedder_metrics, "documind_cache_requests", {"cache": "embedding", "result": "hit"}
    )
    for headers in ({"Cache-Control": "no-cache"}, {"X-DocuMind-Cache": "bypass"}):
        fresh = services.ask("piers", question, headers)
        assert not is_hit(fresh) and "free" in fresh["result"]["answer"]
    assert services.answered() == answered + 2
    # The embedder had the question's vector already: the model was not asked again.
    assert embedding_hits(services) == embedded_hits + 2
    assert is_hit(services.ask("piers", question))


def test_hits_and_misses_are_counted_on_the_gateways_metrics(services: Services) -> None:
    services.upload("counted", "ferry.txt", FERRY)
    hits, misses = answer_cache(services, "hit"), answer_cache(services, "miss")
    question = "Where are tickets for the ferry sold?"
    assert not is_hit(services.ask("counted", question))
    assert is_hit(services.ask("counted", question))
    assert is_hit(services.ask("counted", question))
    assert (answer_cache(services, "hit") - hits, answer_cache(services, "miss") - misses) == (2, 1)
