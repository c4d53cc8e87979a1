"""Originals at the gateway, against a real Valkey (no workers) and the in-memory blob
store: what an upload keeps and when, what ``GET .../file`` and ``.../text`` answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from libs.common.admin_key import auth_headers
from libs.common.blobstore import MemoryBlobStore, original_key, put_text
from libs.common.settings import GatewaySettings
from services.gateway.app import create_app
from services.gateway.originals import SANDBOX, disposition, media_type
from tests.auth import admin_secret, operator_client

UPLOAD = "/v1/collections/town/documents"


@pytest.fixture
def blobs() -> MemoryBlobStore:
    return MemoryBlobStore()


@pytest.fixture
def client(valkey_url: str, tmp_path: Path, blobs: MemoryBlobStore) -> Iterator[TestClient]:
    settings = GatewaySettings(  # type: ignore[call-arg]
        _env_file=None, valkey_url=valkey_url, data_dir=tmp_path, max_backlog=2, admin_key=admin_secret()
    )
    with operator_client(create_app(settings)) as c:
        c.app.state.blobs = blobs  # type: ignore[attr-defined]
        yield c


def upload(client: TestClient, name: str, data: bytes, collection: str = "town") -> dict[str, object]:
    resp = client.post(f"/v1/collections/{collection}/documents", files={"file": (name, data)})
    assert resp.status_code == 202, resp.text
    body: dict[str, object] = resp.json()
    return body


def test_an_upload_keeps_its_original_with_its_type(client: TestClient, blobs: MemoryBlobStore) -> None:
    up = upload(client, "Notes «été».md", b"# Ferry\nAt nine.")
    resp = client.get(f"/v1/documents/{up['document_id']}/file")
    assert resp.status_code == 200
    assert resp.content == b"# Ferry\nAt nine."
    assert resp.headers["content-type"] == "text/markdown; charset=utf-8"
    assert resp.headers["content-disposition"] == (
        "inline; filename=\"Notes __t__.md\"; filename*=UTF-8''Notes%20%C2%AB%C3%A9t%C3%A9%C2%BB.md"
    )
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["content-security-policy"] == SANDBOX
    assert resp.headers["cache-control"] == "private, no-store"
    assert list(blobs.blobs) == [original_key("default", str(up["document_id"]))]


def test_a_pdf_keeps_the_browsers_viewer(client: TestClient) -> None:
    up = upload(client, "manual.pdf", b"%PDF-1.4 not parsed here")
    resp = client.get(f"/v1/documents/{up['document_id']}/file")
    assert resp.headers["content-type"] == "application/pdf"
    assert "content-security-policy" not in resp.headers
    assert resp.headers["content-disposition"].startswith('inline; filename="manual.pdf"')


def test_html_is_a_sandboxed_download(client: TestClient) -> None:
    hostile = b"<html><body><script>fetch('/v1/keys')</script>hello</body></html>"
    up = upload(client, "page.html", hostile)
    resp = client.get(f"/v1/documents/{up['document_id']}/file")
    assert resp.content == hostile
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["content-disposition"].startswith("attachment;")
    assert resp.headers["content-security-policy"].startswith("sandbox;")
    assert "default-src 'none'" in resp.headers["content-security-policy"]


def test_a_store_that_is_down_refuses_the_upload_with_503_and_queues_nothing(
    client: TestClient, blobs: MemoryBlobStore
) -> None:
    blobs.down = True
    resp = client.post(UPLOAD, files={"file": ("a.txt", b"alpha")})
    assert resp.status_code == 503, resp.text
    assert resp.json()["detail"] == "the store of original files is unavailable; retry later"
    assert resp.headers["Retry-After"] == "2"
    blobs.down = False
    assert client.get("/v1/collections/town/documents").status_code == 404  # never created


def test_a_duplicate_or_a_refused_upload_leaves_no_original(
    client: TestClient, blobs: MemoryBlobStore
) -> None:
    first = upload(client, "a.txt", b"alpha")
    again = upload(client, "b.txt", b"alpha")
    assert again["duplicate"] is True and again["document_id"] == first["document_id"]
    upload(client, "c.txt", b"gamma")
    full = client.post(UPLOAD, files={"file": ("d.txt", b"delta")})
    assert full.status_code == 503 and "too many jobs queued" in full.json()["detail"]
    documents = [d["document_id"] for d in client.get("/v1/collections/town/documents").json()["documents"]]
    assert len(documents) == 2
    assert sorted(blobs.blobs) == sorted(original_key("default", d) for d in documents)


def test_the_text_is_served_once_extracted(client: TestClient, blobs: MemoryBlobStore) -> None:
    up = upload(client, "a.txt", b"alpha")
    document_id = str(up["document_id"])
    early = client.get(f"/v1/documents/{document_id}/text")
    assert early.status_code == 404
    assert early.json()["detail"] == f"document '{document_id}' has no extracted text (it is queued)"
    asyncio.run(put_text(blobs, "default", document_id, ["alpha"]))
    resp = client.get(f"/v1/documents/{document_id}/text")
    assert resp.status_code == 200
    assert resp.json() == [{"page": 1, "text": "alpha"}]
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_other_tenants_and_collections_get_404_and_a_reader_may_read(client: TestClient) -> None:
    up = upload(client, "a.txt", b"alpha")
    upload(client, "b.txt", b"beta", collection="harbour")
    path = f"/v1/documents/{up['document_id']}/file"

    def key(**body: object) -> dict[str, str]:
        made = client.post("/v1/keys", json={"name": "k", **body})
        assert made.status_code == 201, made.text
        return auth_headers(made.json()["key"])

    reader = key(tenant="default", role="reader")
    assert client.get(path, headers=reader).content == b"alpha"
    for headers in (
        key(tenant="other", role="admin"),
        key(tenant="default", role="reader", collections=["harbour"]),
    ):
        for suffix in ("file", "text"):
            resp = client.get(f"/v1/documents/{up['document_id']}/{suffix}", headers=headers)
            assert resp.status_code == 404
            assert resp.json()["detail"] == f"document '{up['document_id']}' not found"
    assert client.get("/v1/documents/nope/file").status_code == 404


def test_a_document_without_its_original_says_so(client: TestClient, blobs: MemoryBlobStore) -> None:
    up = upload(client, "a.txt", b"alpha")
    blobs.blobs.clear()
    resp = client.get(f"/v1/documents/{up['document_id']}/file")
    assert resp.status_code == 404
    assert "has no original kept" in resp.json()["detail"]
    blobs.down = True
    down = client.get(f"/v1/documents/{up['document_id']}/file")
    assert down.status_code == 503 and down.headers["Retry-After"] == "2"


# --- content types and names ---------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "data", "expected"),
    [
        ("pdf", b"%PDF", "application/pdf"),
        ("docx", b"PK", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("txt", "café".encode(), "text/plain; charset=utf-8"),
        ("md", "\ufeff# x".encode(), "text/markdown; charset=utf-8"),
        ("txt", "hi".encode("utf-16"), "text/plain; charset=utf-16"),
        ("html", "<p>é</p>".encode("latin-1"), "text/html"),
        ("htm", b"<p>x</p>", "text/html; charset=utf-8"),
        ("exe", b"MZ", "application/octet-stream"),
    ],
)
def test_media_types(ext: str, data: bytes, expected: str) -> None:
    assert asyncio.run(media_type(ext, data)) == expected


def test_a_legacy_encoding_is_named_when_it_can_be_told() -> None:
    text = "Le café est très bon, même à Noël. " * 20
    found = asyncio.run(media_type("txt", text.encode("cp1252")))
    assert found.startswith("text/plain; charset=")
    assert text.encode("cp1252").decode(found.split("charset=")[1]) == text


def test_a_filename_cannot_break_out_of_its_header() -> None:
    assert disposition("text/plain", 'a"; filename=evil.html\\.txt') == (
        'inline; filename="a_; filename=evil.html_.txt"; '
        "filename*=UTF-8''a%22%3B%20filename%3Devil.html%5C.txt"
    )
    assert disposition("text/html; charset=utf-8", "x.html").startswith("attachment; ")
    assert (
        disposition("text/plain", "日本.txt")
        == "inline; filename=\"__.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt"
    )
