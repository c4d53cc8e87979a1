"""Every kind of bad input gets a clear 4xx or a failed job; the services keep running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from libs.common.valkey_server import ValkeyServer
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("bad-input")
    with ValkeyServer(tmp / "valkey") as server:
        s = Stack(server.url, tmp, DOCUMIND_MAX_UPLOAD_BYTES="2000", DOCUMIND_MAX_QUESTION_CHARS="200")
        try:
            s.start_all()
            resp = httpx.post(
                f"{s.url}/v1/collections/docs/documents",
                headers=s.headers,
                files={"file": ("a.txt", b"Granite lighthouses stand on the northern cliffs.")},
            )
            assert s.wait_job(resp.json()["job_id"])["status"] == "done"
            yield s
        finally:
            s.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10) as c:
        yield c
    stack.assert_alive()


def detail(resp: httpx.Response) -> str:
    return str(resp.json()["detail"])


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"question": "", "collection": "docs"}, 422, "question"),
        ({"question": "   ", "collection": "docs"}, 422, "must not be empty"),
        ({"question": "x" * 201, "collection": "docs"}, 422, "longer than 200"),
        ({"collection": "docs"}, 422, "question: Field required"),
        ({"question": "hi", "collection": "nope"}, 404, "collection 'nope' not found"),
        ({"question": "hi", "collection": "../etc"}, 422, "collection"),
        ({"question": "hi", "collection": "docs", "top_k": 0}, 422, "top_k"),
        ({"question": "hi", "collection": "docs", "top_k": 500}, 422, "top_k must be at most"),
    ],
)
def test_bad_chat_requests(client: httpx.Client, body: dict[str, object], status: int, fragment: str) -> None:
    resp = client.post("/v1/chat", json=body)
    assert resp.status_code == status
    assert fragment in detail(resp)


def test_invalid_json(client: httpx.Client) -> None:
    resp = client.post("/v1/chat", content=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    assert "JSON" in detail(resp)


def test_bad_search_requests(client: httpx.Client) -> None:
    assert client.post("/v1/search", json={"query": "", "collection": "docs"}).status_code == 422
    assert client.post("/v1/search", json={"query": "x", "collection": "nope"}).status_code == 404


def test_unsupported_file_type(client: httpx.Client) -> None:
    resp = client.post("/v1/collections/docs/documents", files={"file": ("tool.exe", b"MZ\x90\x00")})
    assert resp.status_code == 415
    assert "unsupported file type '.exe'" in detail(resp)


def test_oversized_upload(client: httpx.Client) -> None:
    resp = client.post("/v1/collections/docs/documents", files={"file": ("big.txt", b"a " * 2000)})
    assert resp.status_code == 413
    assert "larger than 2,000 bytes (DOCUMIND_MAX_UPLOAD_BYTES)" in detail(resp)


def test_upload_without_file_field(client: httpx.Client) -> None:
    resp = client.post("/v1/collections/docs/documents", data={"other": "x"})
    assert resp.status_code == 422
    assert "file" in detail(resp)


def test_unknown_job(client: httpx.Client) -> None:
    resp = client.get("/v1/jobs/does-not-exist")
    assert resp.status_code == 404
    assert "not found" in detail(resp)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.txt", b"", "empty file"),
        ("broken.pdf", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog", "could not read PDF"),
    ],
)
def test_unparseable_uploads_fail_with_a_reason(
    stack: Stack, client: httpx.Client, name: str, data: bytes, reason: str
) -> None:
    resp = client.post("/v1/collections/docs/documents", files={"file": (name, data)})
    assert resp.status_code == 202
    job = stack.wait_job(resp.json()["job_id"])
    assert job["status"] == "failed"
    assert reason in job["error"]


def test_services_still_answer_after_bad_input(stack: Stack, client: httpx.Client, tmp_path: Path) -> None:
    resp = client.post("/v1/chat", json={"question": "Where do lighthouses stand?", "collection": "docs"})
    assert resp.status_code == 202
    job = stack.wait_job(resp.json()["job_id"])
    assert job["status"] == "done"
    assert job["result"]["citations"][0]["filename"] == "a.txt"
