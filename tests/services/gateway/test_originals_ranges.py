"""``GET /v1/documents/{id}/file`` with a ``Range`` header, as a PDF viewer, ``curl -r``
or a download manager sends it: 206 with those bytes, 416, or the whole file (200) when
the header is one the route ignores. Against a real Valkey and the in-memory blob store,
with the fixtures of ``test_originals``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from libs.common.admin_key import auth_headers
from libs.common.blobstore import MemoryBlobStore
from libs.common.settings import GatewaySettings
from services.gateway.app import create_app
from services.gateway.originals import SANDBOX
from tests.auth import admin_secret, operator_client
from tests.services.gateway import test_originals

# test_originals' fixtures (a real Valkey, the in-memory blob store) and its upload.
blobs, client, upload = test_originals.blobs, test_originals.client, test_originals.upload

DATA = bytes(range(256)) * 4  # 1024 bytes, each position telling apart
PDF = b"%PDF-1.4\n" + DATA


def file_path(up: dict[str, object]) -> str:
    return f"/v1/documents/{up['document_id']}/file"


def test_the_whole_file_says_ranges_are_accepted(client: TestClient) -> None:
    up = upload(client, "blob.txt", DATA)
    resp = client.get(file_path(up))
    assert resp.status_code == 200
    assert resp.content == DATA
    assert resp.headers["accept-ranges"] == "bytes"
    assert "content-range" not in resp.headers


@pytest.mark.parametrize(
    ("range_", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-199", 100, 199),
        ("bytes=1000-5000", 1000, 1023),  # past the end: to the last byte
        ("bytes=512-", 512, 1023),
        ("bytes=-24", 1000, 1023),
        ("bytes=-99999", 0, 1023),
        ("bytes=1023-1023", 1023, 1023),
    ],
)
def test_a_single_range_is_206_with_just_those_bytes(
    client: TestClient,
    range_: str,
    start: int,
    end: int,
) -> None:
    up = upload(client, "blob.txt", DATA)
    resp = client.get(file_path(up), headers={"Range": range_})
    assert resp.status_code == 206, resp.text
    assert resp.content == DATA[start : end + 1]
    assert resp.headers["content-range"] == f"bytes {start}-{end}/1024"
    assert resp.headers["content-length"] == str(end + 1 - start)
    assert resp.headers["accept-ranges"] == "bytes"


def test_a_partial_answer_keeps_the_whole_files_headers(client: TestClient) -> None:
    up = upload(client, "Notes «été».md", b"# Ferry\nAt nine.")
    whole = client.get(file_path(up))
    part = client.get(file_path(up), headers={"Range": "bytes=2-6"})
    assert part.status_code == 206
    assert part.content == b"Ferry"
    for header in (
        "content-type",
        "content-disposition",
        "content-security-policy",
        "x-content-type-options",
        "cache-control",
        "cross-origin-resource-policy",
        "accept-ranges",
    ):
        assert part.headers[header] == whole.headers[header], header
    assert part.headers["content-security-policy"] == SANDBOX
    assert part.headers["content-type"] == "text/markdown; charset=utf-8"


def test_a_pdf_viewer_reads_a_pdf_in_pieces(client: TestClient) -> None:
    up = upload(client, "manual.pdf", PDF)
    pieces = []
    for start in range(0, len(PDF), 400):
        resp = client.get(file_path(up), headers={"Range": f"bytes={start}-{start + 399}"})
        assert resp.status_code == 206
        assert resp.headers["content-type"] == "application/pdf"
        assert "content-security-policy" not in resp.headers
        assert resp.headers["content-disposition"].startswith('inline; filename="manual.pdf"')
        pieces.append(resp.content)
    assert b"".join(pieces) == PDF
    assert resp.headers["content-range"] == f"bytes 800-{len(PDF) - 1}/{len(PDF)}"


@pytest.mark.parametrize("range_", ["bytes=1024-", "bytes=1024-2000", "bytes=5000-6000", "bytes=-0"])
def test_a_range_of_no_byte_is_416_with_the_size(client: TestClient, range_: str) -> None:
    up = upload(client, "blob.txt", DATA)
    resp = client.get(file_path(up), headers={"Range": range_})
    assert resp.status_code == 416
    assert resp.headers["content-range"] == "bytes */1024"
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"detail": "the range selects none of the file's 1024 bytes"}
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["cache-control"] == "private, no-store"


@pytest.mark.parametrize(
    "range_",
    [
        "bytes=0-1,5-6",  # several ranges: no multipart/byteranges
        "bytes=0-1,5000-6000",
        "bytes=5-2",  # last before first
        "bytes=abc",
        "bytes=-",
        "bytes=+1-2",
        "items=0-1",  # another unit
        "0-1",
        "",
    ],
)
def test_a_range_the_route_ignores_gets_the_whole_file(client: TestClient, range_: str) -> None:
    up = upload(client, "blob.txt", DATA)
    resp = client.get(file_path(up), headers={"Range": range_})
    assert resp.status_code == 200
    assert resp.content == DATA
    assert resp.headers["accept-ranges"] == "bytes"
    assert "content-range" not in resp.headers


def test_if_range_does_not_stop_a_range(client: TestClient) -> None:
    # No ETag or Last-Modified is sent, and an id's bytes never change.
    up = upload(client, "blob.txt", DATA)
    first = client.get(file_path(up))
    assert "etag" not in first.headers and "last-modified" not in first.headers
    for validator in ('"abc"', "Wed, 21 Oct 2015 07:28:00 GMT"):
        resp = client.get(file_path(up), headers={"Range": "bytes=10-19", "If-Range": validator})
        assert resp.status_code == 206
        assert resp.content == DATA[10:20]


def test_an_empty_file(client: TestClient) -> None:
    up = upload(client, "empty.txt", b"")
    path = file_path(up)
    for range_ in ("bytes=0-", "bytes=0-0", "bytes=-0"):
        resp = client.get(path, headers={"Range": range_})
        assert resp.status_code == 416, range_
        assert resp.headers["content-range"] == "bytes */0"
    whole = client.get(path, headers={"Range": "bytes=-5"})
    assert whole.status_code == 200 and whole.content == b""


def test_a_range_follows_the_documents_rules(client: TestClient) -> None:
    up = upload(client, "blob.txt", DATA)

    def key(**body: object) -> dict[str, str]:
        made = client.post("/v1/keys", json={"name": "k", **body})
        assert made.status_code == 201, made.text
        return auth_headers(made.json()["key"])

    reader = client.get(file_path(up), headers={**key(tenant="default", role="reader"), "Range": "bytes=0-3"})
    assert reader.status_code == 206 and reader.content == DATA[:4]
    other = client.get(file_path(up), headers={**key(tenant="other", role="admin"), "Range": "bytes=0-3"})
    assert other.status_code == 404
    assert other.json()["detail"] == f"document '{up['document_id']}' not found"
    nobody = client.get(file_path(up), headers={"Authorization": "", "Range": "bytes=0-3"})
    assert nobody.status_code == 401
    assert client.get("/v1/documents/nope/file", headers={"Range": "bytes=0-3"}).status_code == 404


def test_the_openapi_document_describes_206_and_416(client: TestClient) -> None:
    spec: dict[str, Any] = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/documents/{document_id}/file"]["get"]
    responses = operation["responses"]
    assert {"200", "206", "404", "416"} <= set(responses)
    assert "Accept-Ranges" in responses["200"]["headers"]
    assert "Content-Range" in responses["206"]["headers"]
    assert set(responses["206"]["content"]) == set(responses["200"]["content"])
    assert "Content-Range" in responses["416"]["headers"]
    error = responses["416"]["content"]["application/json"]["schema"]
    assert error == responses["404"]["content"]["application/json"]["schema"]
    assert "Range" in operation["description"]
    assert operation["security"]  # still behind the key check


def test_a_page_of_a_listed_origin_may_read_an_original_in_pieces(valkey_url: str, tmp_path: Path) -> None:
    origin = "https://app.example.com"
    settings = GatewaySettings(  # type: ignore[call-arg]
        _env_file=None,
        valkey_url=valkey_url,
        data_dir=tmp_path,
        admin_key=admin_secret(),
        cors_origins=origin,
    )
    with operator_client(create_app(settings)) as c:
        c.app.state.blobs = MemoryBlobStore()  # type: ignore[attr-defined]
        up = upload(c, "ferry.txt", b"The ferry leaves at nine.")
        url = f"/v1/documents/{up['document_id']}/file"
        preflight = c.options(
            url,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, range",
            },
        )
        assert preflight.status_code == 200
        assert "range" in preflight.headers["access-control-allow-headers"].lower()
        part = c.get(url, headers={"Origin": origin, "Range": "bytes=4-8"})
        assert part.status_code == 206 and part.content == b"ferry"
        exposed = part.headers["access-control-expose-headers"].lower()
        assert {"content-range", "accept-ranges", "content-disposition"} <= set(
            exposed.replace(" ", "").split(",")
        )
