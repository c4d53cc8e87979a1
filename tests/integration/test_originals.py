"""Originals kept (issue 14) through the real services: the directory store of the
embedded stack, and S3 against a real SeaweedFS server (``tests/seaweed.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from libs.common.admin_key import auth_headers
from libs.common.blobstore import BlobStore, DirectoryBlobStore, document_prefix
from libs.common.valkey_server import ValkeyServer
from tests.hostile import text_pdf
from tests.integration.harness import Stack
from tests.seaweed import SeaweedS3

pytestmark = pytest.mark.timeout(240)

PDF = text_pdf("The ferry to Inishmore leaves at nine.", "Tickets are sold at the pier office.")
NOTE = "# Tides\n\nHigh tide at the pier is at *noon* — «bring boots».\n".encode()


@pytest.fixture(scope="module", params=["dir", "s3"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"originals-{request.param}")
    env: dict[str, str] = {}
    if request.param == "s3":
        seaweed: SeaweedS3 = request.getfixturevalue("seaweed")
        env = seaweed.env()
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp, **env)
        try:
            s.start_all()
            yield s
        finally:
            s.stop()


@pytest.fixture
def blobs(stack: Stack, request: pytest.FixtureRequest) -> BlobStore:
    """The store the stack's services use, as a test reads it."""
    if stack.env.get("DOCUMIND_BLOB_STORE") == "s3":
        seaweed: SeaweedS3 = request.getfixturevalue("seaweed")
        return seaweed.store()
    return DirectoryBlobStore(stack.tmp / "data" / "originals")


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=30) as c:
        yield c


def kept(blobs: BlobStore, document_id: str, tenant: str = "default") -> list[str]:
    """The names of the blobs kept of a document."""

    async def collect() -> list[str]:
        prefix = document_prefix(tenant, document_id)
        return sorted([info.key.removeprefix(prefix) async for info in blobs.list(prefix)])

    return asyncio.run(collect())


def ingest(stack: Stack, client: httpx.Client, collection: str, name: str, data: bytes) -> str:
    resp = client.post(f"/v1/collections/{collection}/documents", files={"file": (name, data)})
    assert resp.status_code == 202, resp.text
    accepted: dict[str, Any] = resp.json()
    assert stack.wait_job(accepted["job_id"], headers=client.headers)["status"] == "done", stack.logs()
    return str(accepted["document_id"])


def new_key(client: httpx.Client, **body: Any) -> dict[str, str]:
    resp = client.post("/v1/keys", json={"name": "viewer", **body})
    assert resp.status_code == 201, resp.text
    return auth_headers(resp.json()["key"])


def test_originals_and_their_text_come_back_as_uploaded(
    stack: Stack, client: httpx.Client, blobs: BlobStore
) -> None:
    pdf_id = ingest(stack, client, "harbour", "timetable.pdf", PDF)
    note_id = ingest(stack, client, "harbour", "tides.md", NOTE)
    pdf = client.get(f"/v1/documents/{pdf_id}/file")
    assert pdf.status_code == 200
    assert (pdf.content, pdf.headers["content-type"]) == (PDF, "application/pdf")
    note = client.get(f"/v1/documents/{note_id}/file")
    assert (note.content, note.headers["content-type"]) == (NOTE, "text/markdown; charset=utf-8")
    assert note.headers["x-content-type-options"] == "nosniff"
    assert note.headers["content-disposition"] == "inline; filename=\"tides.md\"; filename*=UTF-8''tides.md"
    pages = client.get(f"/v1/documents/{pdf_id}/text").json()
    assert [p["page"] for p in pages] == [1, 2]
    assert "Inishmore" in pages[0]["text"] and "pier office" in pages[1]["text"]
    (page,) = client.get(f"/v1/documents/{note_id}/text").json()
    assert "bring boots" in page["text"]
    assert kept(blobs, pdf_id) == ["original", "text.json"]


def test_another_tenant_gets_404_and_a_reader_may_fetch(stack: Stack, client: httpx.Client) -> None:
    document_id = ingest(stack, client, "shared", "tides.md", NOTE)
    reader = new_key(client, tenant="default", role="reader")
    other = new_key(client, tenant="elsewhere", role="admin")
    elsewhere = new_key(client, tenant="default", role="reader", collections=["harbour"])
    for suffix in ("file", "text"):
        path = f"/v1/documents/{document_id}/{suffix}"
        assert client.get(path, headers=reader).status_code == 200
        for headers in (other, elsewhere):
            resp = client.get(path, headers=headers)
            assert resp.status_code == 404
            assert resp.json() == {"detail": f"document '{document_id}' not found"}
    assert client.get(f"/v1/documents/{document_id}/file", headers={"Authorization": ""}).status_code == 401


def test_deleting_a_document_deletes_its_files(stack: Stack, client: httpx.Client, blobs: BlobStore) -> None:
    keep = ingest(stack, client, "ferries", "keep.md", NOTE)
    drop = ingest(stack, client, "ferries", "drop.pdf", PDF)
    assert kept(blobs, drop) == ["original", "text.json"]
    gone = client.delete(f"/v1/documents/{drop}")
    assert gone.status_code == 200
    assert client.get(f"/v1/documents/{drop}/file").status_code == 404  # at once
    assert stack.wait_job(gone.json()["job_id"])["status"] == "done"
    assert kept(blobs, drop) == []
    assert kept(blobs, keep) == ["original", "text.json"]


def test_dropping_a_collection_deletes_every_documents_files(
    stack: Stack, client: httpx.Client, blobs: BlobStore
) -> None:
    ids = [ingest(stack, client, "drafts", name, data) for name, data in (("a.pdf", PDF), ("b.md", NOTE))]
    dropped = client.delete("/v1/collections/drafts")
    assert dropped.status_code == 200
    for job_id in dropped.json()["job_ids"]:
        assert stack.wait_job(job_id)["status"] == "done"
    assert [kept(blobs, document_id) for document_id in ids] == [[], []]
