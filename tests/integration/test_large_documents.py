"""A 500-page PDF: bounded index messages, visible progress, bounded memory, page limits."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fpdf import FPDF

from libs.common import constants, keys
from libs.common.envelope import Envelope
from libs.common.keys import Partition
from libs.common.valkey_server import ValkeyServer
from tests.integration.harness import Stack

P0 = Partition(0)

pytestmark = pytest.mark.timeout(600)

PAGES = 500
PART_CHUNKS = 16
# An index message carries at most PART_CHUNKS chunks: each chunk's text (at most
# 256 word pieces, well under 4 KiB), its vector (384 float32, base64) and metadata.
MAX_MESSAGE_BYTES = PART_CHUNKS * 8 * 1024
# Peak memory the embedder may add for the whole 500-page document over a small one.
MAX_PEAK_GROWTH_MB = 250
WORDS = ("tide", "beacon", "granite", "harbour", "lantern", "gull", "ferry", "quay", "anchor", "storm")


SPECIAL_PAGE = 437
SPECIAL = "A humpback whale was seen breaching beside the northern reef while the children watched."


def page_text(n: int) -> str:
    """About 70 words, different on every page; one page tells of a whale."""
    words = " ".join(WORDS[(n * 7 + k * 3) % len(WORDS)] for k in range(40))
    special = f" {SPECIAL}" if n == SPECIAL_PAGE else ""
    return (
        f"Logbook page {n}. The keeper wrote that beacon code K{n:04d} was lit at dusk "
        f"and the weather was {WORDS[n % len(WORDS)]}.{special} Notes: {words}."
    )


@pytest.fixture(scope="module")
def big_pdf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for n in range(1, PAGES + 1):
        pdf.add_page()
        pdf.multi_cell(0, 6, page_text(n))
    return bytes(pdf.output())


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Gateway and embedder (the real model) only: each test starts the retriever when it wants."""
    tmp = tmp_path_factory.mktemp("large")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp, DOCUMIND_EMBEDDINGS="local", DOCUMIND_INGEST_PART_CHUNKS=str(PART_CHUNKS))
        try:
            s.start("embedder")
            s.start("gateway")
            s.wait_healthy()
            s.wait_group(constants.EMBEDDER)
            yield s
        finally:
            s.stop()


def upload(client: httpx.Client, collection: str, name: str, data: bytes) -> dict[str, Any]:
    resp = client.post(f"/v1/collections/{collection}/documents", files={"file": (name, data)})
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    return body


def watch_until_indexing(
    stack: Stack, client: httpx.Client, document_id: str, job_id: str
) -> list[dict[str, Any]]:
    """The document as the API shows it after every change to its record, until its job
    has handed every part to the retriever. Synchronised on keyspace events of the
    document's and the job's hashes, not on sleeps."""
    stack.r.config_set("notify-keyspace-events", "Kh")
    pubsub = stack.r.pubsub()
    pubsub.subscribe(
        *(f"__keyspace@0__:{key}" for key in (keys.document(document_id).hash, keys.job(job_id).hash))
    )
    seen: list[dict[str, Any]] = []
    try:
        for _ in range(10_000):
            doc = client.get(f"/v1/documents/{document_id}").json()
            seen.append(doc)
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("indexing", "done", "failed"):
                return seen
            assert pubsub.get_message(timeout=120) is not None, stack.logs()
            while pubsub.get_message(timeout=0) is not None:
                pass  # several changes since: one read shows them all
    finally:
        pubsub.close()
    raise AssertionError("the document never finished embedding")


def test_a_500_page_pdf_flows_as_bounded_parts_with_visible_progress_and_bounded_memory(
    stack: Stack, big_pdf: bytes
) -> None:
    with stack.client(timeout=30) as client:
        check_large_pdf(stack, client, big_pdf)


def check_large_pdf(stack: Stack, client: httpx.Client, big_pdf: bytes) -> None:
    embedder = stack.procs[0]
    # Warm up on a small document first: the model is loaded and has embedded once.
    small = upload(client, "logbook", "small.txt", b"A short note about the harbour lantern.")
    watch_until_indexing(stack, client, small["document_id"], small["job_id"])
    baseline = peak_rss_mb(embedder.pid)

    up = upload(client, "logbook", "logbook.pdf", big_pdf)
    doc_id, job_id = up["document_id"], up["job_id"]
    seen = watch_until_indexing(stack, client, doc_id, job_id)
    final = seen[-1]
    assert final["status"] == "indexing", stack.logs()
    total = final["chunks"]
    assert final["pages"] == PAGES
    assert total >= PAGES // 2

    # Progress moved visibly: several distinct values between none and all, never backwards.
    done = [d["progress"]["chunks_embedded"] for d in seen if d["progress"]["chunks_total"]]
    assert done == sorted(done)
    assert len({n for n in done if 0 < n < total}) >= 3, done
    assert all(d["progress"]["chunks_total"] == total for d in seen if d["progress"]["chunks_total"])
    assert {"embedding", "indexing"} <= {d["status"] for d in seen}
    # The upload's bytes were deleted once parsed.
    assert stack.r.exists(keys.document(doc_id).blob) == 0

    # No retriever yet: the index messages wait in its stream, each one bounded.
    entries = stack.r.xrange(P0.stream(constants.RETRIEVER, constants.BULK))
    mine = [Envelope.loads(fields[b"data"]) for _id, fields in entries]
    assert {e.job_id for e in mine} <= {job_id, small["job_id"]}, stack.logs()
    mine = [e for e in mine if e.job_id == job_id]
    assert len(mine) == math.ceil(total / PART_CHUNKS)
    sizes = [len(fields[b"data"]) for _id, fields in entries]
    assert max(sizes) <= MAX_MESSAGE_BYTES, sizes
    assert all(len(e.payload["chunks"]) <= PART_CHUNKS for e in mine)
    indexes = sorted(c["chunk_index"] for e in mine for c in e.payload["chunks"])
    assert indexes == list(range(total))  # every chunk once

    growth = peak_rss_mb(embedder.pid) - baseline
    print(f"embedder peak RSS {baseline:.0f} MB after a small document, +{growth:.0f} MB for {PAGES} pages")
    assert growth < MAX_PEAK_GROWTH_MB

    # Not searchable while parts wait; searchable whole once the last part is indexed.
    stack.start("retriever")
    job = stack.wait_job(job_id, timeout_s=300)
    assert job["status"] == "done", stack.logs()
    assert job["result"]["chunks"] == total
    doc = client.get(f"/v1/documents/{doc_id}").json()
    assert (doc["status"], doc["pages"], doc["chunks"]) == ("ready", PAGES, total)
    assert doc["progress"] == {"chunks_embedded": total, "chunks_total": total}
    query = {"query": "whale breaching near the reef", "collection": "logbook", "top_k": 3}
    resp = client.post("/v1/search", json=query)
    hits = stack.wait_job(resp.json()["job_id"])["result"]["hits"]
    assert hits and "humpback whale" in hits[0]["text"], json.dumps(hits)[:2000]
    assert hits[0]["page"] == SPECIAL_PAGE


def test_a_pdf_over_the_page_limit_fails_with_the_reason_and_leaves_nothing(
    big_pdf: bytes, tmp_path: Path
) -> None:
    with ValkeyServer(tmp_path / "valkey") as server:
        stack = Stack(server.url, tmp_path, DOCUMIND_MAX_PAGES="100")
        try:
            stack.start_all()
            with stack.client(timeout=30) as client:
                up = upload(client, "limits", "logbook.pdf", big_pdf)
                job = stack.wait_job(up["job_id"])
                assert job["status"] == "failed"
                assert "100" in job["error"] and "page" in job["error"], job["error"]
                doc = client.get(f"/v1/documents/{up['document_id']}").json()
                assert doc["status"] == "failed" and doc["error"] == job["error"]
                # Its bytes are gone, and nothing of it is searchable.
                assert stack.r.exists(keys.document(up["document_id"]).blob) == 0
                resp = client.post("/v1/search", json={"query": "beacon code", "collection": "limits"})
                assert stack.wait_job(resp.json()["job_id"])["result"]["hits"] == []
                # The worker keeps going: a small document still becomes ready.
                ok = upload(client, "limits", "note.txt", b"The beacon is lit at dusk.")
                assert stack.wait_job(ok["job_id"])["status"] == "done"
        finally:
            stack.stop()
