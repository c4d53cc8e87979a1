"""``HEAD`` on the gateway: a ``GET``'s status and headers without its body, behind the
same key check; 405 with ``Allow`` where a path takes no ``GET``. Against a real Valkey
and the in-memory blob store, with the fixtures of ``test_originals``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from services.gateway.head import HeadAsGet
from tests.services.gateway import test_originals

blobs, client, upload = test_originals.blobs, test_originals.client, test_originals.upload

DATA = b"%PDF-1.4\n" + bytes(range(256)) * 8


def test_head_of_a_file_is_its_size_and_type_without_the_bytes(client: TestClient) -> None:
    up = upload(client, "manual.pdf", DATA)
    path = f"/v1/documents/{up['document_id']}/file"
    got, head = client.get(path), client.head(path)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(DATA))
    for name in ("content-type", "content-disposition", "accept-ranges", "cache-control"):
        assert head.headers[name] == got.headers[name], name


def test_head_with_a_range_is_the_partial_answers_headers(client: TestClient) -> None:
    up = upload(client, "manual.pdf", DATA)
    path = f"/v1/documents/{up['document_id']}/file"
    head = client.head(path, headers={"Range": "bytes=10-19"})
    assert head.status_code == 206
    assert head.content == b""
    assert head.headers["content-range"] == f"bytes 10-19/{len(DATA)}"
    assert head.headers["content-length"] == "10"
    assert client.head(path, headers={"Range": f"bytes={len(DATA)}-"}).status_code == 416


def test_head_needs_the_key_a_get_needs(client: TestClient) -> None:
    up = upload(client, "manual.pdf", DATA)
    path = f"/v1/documents/{up['document_id']}/file"
    anonymous = client.head(path, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.content == b""
    assert client.head("/v1/documents/no-such-document/file").status_code == 404


def test_head_where_no_get_is_taken_is_405_and_allow_lists_head_beside_get(client: TestClient) -> None:
    refused = client.head("/v1/chat")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "OPTIONS, POST"
    listed = client.options("/v1/collections")
    assert listed.status_code == 204
    assert listed.headers["allow"] == "GET, HEAD, OPTIONS, POST"


@pytest.mark.timeout(30)
def test_head_of_a_jobs_event_stream_ends_at_the_headers(client: TestClient) -> None:
    # No workers run here: the upload's job stays queued, so its GET would stream on.
    up = upload(client, "notes.txt", b"Ferry at nine.")
    head = client.head(f"/v1/jobs/{up['job_id']}/events")
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/event-stream")
    assert head.content == b""


def test_the_stream_behind_a_head_is_stopped() -> None:
    asyncio.run(_head_of_an_endless_stream())


async def _head_of_an_endless_stream() -> None:
    stopped = asyncio.Event()

    async def forever() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.01)
        finally:
            stopped.set()

    async def ticks(request: Request) -> StreamingResponse:
        return StreamingResponse(forever(), media_type="text/plain")

    app = HeadAsGet(Starlette(routes=[Route("/ticks", ticks, methods=["GET"])]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        resp = await asyncio.wait_for(c.head("/ticks"), 10)
    assert resp.status_code == 200
    assert resp.content == b""
    await asyncio.wait_for(stopped.wait(), 10)
