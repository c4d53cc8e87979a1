"""A large document's embedding stops once nobody wants it: deleting the document or
cancelling its job mid-embedding leaves its remaining parts unembedded (the real embedder,
against an OpenAI-compatible embeddings server that counts the texts it is sent and holds
the first model call until the test has deleted or cancelled)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from libs.common.constants import BULK, EMBEDDER
from libs.common.keys import DEFAULT_TENANT, group_name
from libs.common.valkey_server import ValkeyServer
from tests.integration.fake_llm import LocalServer
from tests.integration.harness import P0, Stack

pytestmark = pytest.mark.timeout(240)

DIM = 8
PART_CHUNKS = 8
# About 60 words a line and 120 words a chunk: some 200 chunks, 25 parts.
LINES = 400


class FakeEmbeddings(LocalServer):
    """``POST /v1/embeddings``: counts the texts; the first call waits for ``release``."""

    def __init__(self) -> None:
        self.first = threading.Event()
        self.release = threading.Event()
        self.texts = 0
        self._lock = threading.Lock()
        self._serve(self._handler())

    def _closing(self) -> None:
        self.release.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                inputs = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))["input"]
                with fake._lock:
                    fake.texts += len(inputs)
                fake.first.set()
                fake.release.wait()
                data = [
                    {"object": "embedding", "index": i, "embedding": [1.0 + i % 3] + [0.5] * (DIM - 1)}
                    for i in range(len(inputs))
                ]
                body = json.dumps({"object": "list", "data": data, "model": "fake"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def big_text(marker: str) -> bytes:
    """Every line different: no text is served from the embedding cache."""
    lines = (
        f"Line {n} of the {marker} ledger: " + " ".join(f"w{n}x{k}" for k in range(55)) + "."
        for n in range(LINES)
    )
    return "\n".join(lines).encode()


@pytest.fixture
def embeddings() -> Iterator[FakeEmbeddings]:
    with FakeEmbeddings() as fake:
        yield fake


@pytest.fixture
def stack(embeddings: FakeEmbeddings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("embedding-stops")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(
            server.url,
            tmp,
            DOCUMIND_EMBEDDINGS="openai",
            DOCUMIND_OPENAI_BASE_URL=embeddings.base_url,
            DOCUMIND_OPENAI_API_KEY="test",
            DOCUMIND_EMBEDDING_MODEL="fake",
            DOCUMIND_EMBEDDING_DIM=str(DIM),
            DOCUMIND_EMBEDDING_CACHE_TTL_S="0",
            DOCUMIND_INGEST_PART_CHUNKS=str(PART_CHUNKS),
        )
        try:
            s.start_all()
            yield s
        finally:
            s.stop()


def start_embedding(
    stack: Stack, client: httpx.Client, embeddings: FakeEmbeddings
) -> tuple[dict[str, str], int]:
    """Upload the large document and wait until its first model call is held: (upload, chunks)."""
    up = client.post("/v1/collections/ledgers/documents", files={"file": ("ledger.txt", big_text("harbour"))})
    assert up.status_code == 202, up.text
    assert embeddings.first.wait(60), stack.logs()
    doc = client.get(f"/v1/documents/{up.json()['document_id']}").json()
    total: int = doc["progress"]["chunks_total"]
    assert total >= 20 * PART_CHUNKS, doc
    body: dict[str, str] = up.json()
    return body, total


def embedder_idle(stack: Stack) -> bool:
    """Nothing left to read or pending on the default tenant's bulk stream at the embedder."""
    groups = stack.r.xinfo_groups(P0.stream(EMBEDDER, BULK, DEFAULT_TENANT))
    (group,) = [g for g in groups if g["name"] in (group_name(EMBEDDER), group_name(EMBEDDER).encode())]
    return bool(group["pending"] == 0 and group["lag"] == 0)


def until(condition: Callable[[], bool], what: str, stack: Stack) -> None:
    """Until ``condition`` holds: the services publish no event for it (checked every 20 ms)."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not reached; {stack.logs()}"
        time.sleep(0.02)


def test_deleting_a_document_mid_embedding_stops_its_embedding(
    stack: Stack, embeddings: FakeEmbeddings
) -> None:
    with stack.client(timeout=30) as client:
        up, total = start_embedding(stack, client, embeddings)
        gone = client.delete(f"/v1/documents/{up['document_id']}")
        assert gone.status_code == 200, gone.text
        embeddings.release.set()
        job = stack.wait_job(up["job_id"], timeout_s=120)
    # The job settles as any deleted document's does; what was in flight when the
    # delete came (a model call per batch being handled) is all that was embedded.
    assert job["status"] == "done", job
    assert job["result"]["deleted"] is True and job["result"]["chunks"] == 0, job
    assert embeddings.texts <= total // 4, f"{embeddings.texts} of {total} chunks embedded after the delete"


def test_cancelling_an_ingest_mid_embedding_stops_its_embedding(
    stack: Stack, embeddings: FakeEmbeddings
) -> None:
    with stack.client(timeout=30) as client:
        up, total = start_embedding(stack, client, embeddings)
        cancelled = client.delete(f"/v1/jobs/{up['job_id']}")
        assert cancelled.json()["status"] == "cancelled", cancelled.text
        embeddings.release.set()
        # Every part is read and acknowledged (skipped) all the same.
        until(lambda: embedder_idle(stack), "the embedder's stream drained", stack)
        assert client.get(f"/v1/jobs/{up['job_id']}").json()["status"] == "cancelled"
    assert embeddings.texts <= total // 4, f"{embeddings.texts} of {total} chunks embedded after the cancel"
