"""Hostile uploads against the real services: each ends in bounded time, ready or failed
with a reason that says what was wrong; the embedder lives on with bounded memory, and a
normal question is answered right after each (issue 13, points 1 and 7)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from libs.common.valkey_server import ValkeyServer
from tests import hostile
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(300)

# Small limits, so that every hostile file meets one quickly.
LIMITS = {
    "DOCUMIND_PARSE_TIMEOUT_S": "10",
    "DOCUMIND_PARSE_MEMORY_MB": "400",
    "DOCUMIND_MAX_EXTRACTED_CHARS": "300000",
    "DOCUMIND_MAX_CHUNKS": "2000",
}
# Each upload ends well within this (the longest limit is the 10 s of parsing; the
# memory limit stops the bombs in about a second on an idle machine).
BOUND_S = 30
# The embedder's own peak resident memory: parsing happens in its children.
EMBEDDER_PEAK_MB = 400
HARBOUR = b"The harbour master rings the bell at six. Ferries leave from pier four at seven."
CREME = "Crème brûlée au café: the pâtissier's déjà-vu recipe, served à la française. "
GARCON = "Le garçon de Besançon sert un café noir et une crème fraîche à Noël."


def sections(n: int) -> bytes:
    return "".join(f"<h2>Part {k}</h2><p>Text of part {k}.</p>" for k in range(n)).encode()


MEMORY = "needed more than 400 MB of memory (DOCUMIND_PARSE_MEMORY_MB)"
TIME = "took longer than 10 s (DOCUMIND_PARSE_TIMEOUT_S)"
CHARS = "more than 300,000 characters of text (DOCUMIND_MAX_EXTRACTED_CHARS)"
CHUNKS = "more than 2,000 (DOCUMIND_MAX_CHUNKS)"


@dataclass(frozen=True)
class Case:
    filename: str
    make: Callable[[], bytes]
    status: str  # the document's, in the end
    reason: str = ""  # a fragment of its error


CASES = [
    Case("zlib-bomb.pdf", hostile.zlib_bomb_pdf, "failed", MEMORY),
    Case("shared-stream.pdf", hostile.shared_stream_pdf, "failed", TIME),
    Case("zip-bomb.docx", hostile.docx_zip_bomb, "failed", "zip bomb"),
    Case("dense.docx", hostile.docx_dense, "failed", MEMORY),
    Case("long.txt", lambda: b"word " * 100_000, "failed", CHARS),
    Case("sections.html", lambda: sections(2500), "failed", CHUNKS),
    Case("random.pdf", lambda: random.Random(13).randbytes(20_000), "failed", "could not read PDF"),
    Case("binary.txt", lambda: bytes(range(256)) * 400, "failed", "could not read the file as text"),
    Case("empty.txt", lambda: b"", "failed", "empty file"),
    Case(
        "deep.html", lambda: hostile.deep_html(100_000, "The treasure lies under the granite stone."), "ready"
    ),
    Case("utf16.txt", lambda: (CREME * 500).encode("utf-16"), "ready"),  # 70 KB: parsed in a child
    Case("latin1.txt", lambda: GARCON.encode("latin-1"), "ready"),  # parsed in the embedder
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("hostile")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp, **LIMITS)
        try:
            s.start_all()
            with s.client(timeout=10) as client:
                up = client.post("/v1/collections/docs/documents", files={"file": ("harbour.txt", HARBOUR)})
            assert s.wait_job(up.json()["job_id"])["status"] == "done"
            yield s
        finally:
            s.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=30) as c:
        yield c


def embedder_peak_mb(stack: Stack) -> float:
    embedder = stack.procs[0]  # start_all starts it first
    assert "services.embedder" in " ".join(map(str, embedder.args))
    for line in Path(f"/proc/{embedder.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def ask(stack: Stack, client: httpx.Client, question: str, collection: str) -> dict[str, object]:
    resp = client.post("/v1/chat", json={"question": question, "collection": collection})
    assert resp.status_code == 202, resp.text
    job = stack.wait_job(resp.json()["job_id"], timeout_s=30)
    assert job["status"] == "done", job
    result: dict[str, object] = job["result"]
    return result


@pytest.mark.parametrize("case", CASES, ids=[c.filename for c in CASES])
def test_a_hostile_upload_ends_in_bounded_time_and_the_service_carries_on(
    stack: Stack, client: httpx.Client, case: Case
) -> None:
    filename, status, reason = case.filename, case.status, case.reason
    data = case.make()
    started = time.monotonic()
    up = client.post("/v1/collections/hostile/documents", files={"file": (filename, data)})
    assert up.status_code == 202, up.text
    job = stack.wait_job(up.json()["job_id"], timeout_s=BOUND_S)
    elapsed = time.monotonic() - started
    doc = client.get(f"/v1/documents/{up.json()['document_id']}").json()
    assert elapsed < BOUND_S, f"{filename} took {elapsed:.1f} s"
    assert (job["status"], doc["status"]) == ("done" if status == "ready" else "failed", status), doc
    assert reason in (doc["error"] or ""), doc["error"]
    stack.assert_alive()
    assert embedder_peak_mb(stack) < EMBEDDER_PEAK_MB
    answer = ask(stack, client, "When do the ferries leave?", "docs")
    assert any(c["filename"] == "harbour.txt" for c in answer["citations"])  # type: ignore[attr-defined]


def test_text_from_hostile_but_readable_files_is_searchable(stack: Stack, client: httpx.Client) -> None:
    """After the run above: deep nesting and other encodings lost nothing."""
    for question, filename, fragment in [
        ("Where does the treasure lie?", "deep.html", "The treasure lies under the granite stone."),
        ("What is the crème brûlée recipe?", "utf16.txt", "Crème brûlée au café"),
        ("Who serves coffee in Besançon?", "latin1.txt", GARCON),
    ]:
        resp = client.post("/v1/search", json={"query": question, "collection": "hostile", "top_k": 10})
        hits = stack.wait_job(resp.json()["job_id"])["result"]["hits"]
        assert any(h["filename"] == filename and fragment in h["text"] for h in hits), (filename, hits)
