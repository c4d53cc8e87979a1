"""One tenant's slow parses leave the embedder to another tenant's upload (the real services).

Tenant ``slow`` uploads PDFs that each take about 100 s to parse; once the embedder has
read two of them, tenant ``quick`` uploads a small note. Every upload is parsed in the
sandbox here (``PARSE_INLINE_BYTES=0``), so the note needs a parse process as well as a
place in the embedder's bulk batches. Its document must be ready while ``slow``'s are all
still parsing: ``slow`` holds at most one of the two processes
(``DOCUMIND_TENANT_MAX_PARSES``, by default one fewer than ``PARSE_PROCESSES``), and its
uploads waiting for more neither hold a batch nor are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from libs.common import keys
from libs.common.constants import EVENT_TYPE_FIELD
from libs.common.decode import as_text
from libs.common.events import PARSING
from libs.common.valkey_server import ValkeyServer
from tests import hostile
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(240)


def slow_pdf(n: int) -> bytes:
    """About 100 s of parsing and no text (200 pages sharing one stream of a million text
    moves, as in test_parse_sandbox); ``n`` makes each upload a document of its own."""
    return hostile.shared_stream_pdf(pages=200 + n)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("fair-parses")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(
            server.url,
            tmp,
            DOCUMIND_PARSE_INLINE_BYTES="0",
            DOCUMIND_PARSE_PROCESSES="2",
            DOCUMIND_PARSE_TIMEOUT_S="120",
        )
        try:
            s.start_all()
            yield s
        finally:
            s.stop()


def wait_parsing(stack: Stack, job_ids: list[str], count: int) -> None:
    """Until ``count`` of the jobs have their "parsing" event (the embedder read them)."""
    last = {keys.job(j).events: "0-0" for j in job_ids}
    seen: set[str] = set()
    while len(seen) < count:
        reply: Any = stack.r.xread(last, block=60_000)  # type: ignore[arg-type]
        assert reply, f"only {len(seen)} of the uploads were read; {stack.logs()}"
        for stream, entries in reply:
            key = as_text(stream)
            for entry_id, fields in entries:
                last[key] = as_text(entry_id)
                if as_text(fields[EVENT_TYPE_FIELD.encode()]) == PARSING:
                    seen.add(key)


def test_a_tenants_slow_parses_leave_a_process_and_a_batch_to_another_tenant(stack: Stack) -> None:
    with stack.tenant_client("slow") as slow, stack.tenant_client("quick") as quick:
        uploads = []
        for n in range(3):
            pdf = {"file": (f"scan-{n}.pdf", slow_pdf(n))}
            resp = slow.post("/v1/collections/scans/documents", files=pdf)
            assert resp.status_code == 202, resp.text
            uploads.append(resp.json())
        try:
            # Two of them read: before, they held both parse processes (and each of the
            # embedder's bulk batches held one of them).
            wait_parsing(stack, [u["job_id"] for u in uploads], 2)

            note = quick.post(
                "/v1/collections/notes/documents",
                files={"file": ("note.txt", b"The harbour office opens at eight on weekdays.")},
            )
            assert note.status_code == 202, note.text
            job = stack.wait_job(note.json()["job_id"], timeout_s=60, headers=quick.headers)
            assert job["status"] == "done", job
            assert quick.get(f"/v1/documents/{note.json()['document_id']}").json()["status"] == "ready"
            # ... while every one of slow's documents is still being parsed (or waits to be).
            statuses = [slow.get(f"/v1/documents/{u['document_id']}").json()["status"] for u in uploads]
            assert set(statuses) <= {"queued", "parsing"}, statuses
            assert "parsing" in statuses, statuses
        finally:
            for u in uploads:
                slow.delete(f"/v1/jobs/{u['job_id']}")
