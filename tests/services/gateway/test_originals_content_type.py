"""``GET /v1/documents/{id}/file`` answers the content type the original was stored
with, as it is: a text type whose charset is unknown gets none added (an HTML page
keeps its own ``<meta charset>``), in a whole answer and a partial one."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.services.gateway import test_originals

# test_originals' fixtures (a real Valkey, the in-memory blob store) and its upload.
blobs, client, upload = test_originals.blobs, test_originals.client, test_originals.upload

LATIN1_PAGE = '<html><head><meta charset="iso-8859-1"></head><body>café</body></html>'.encode("latin-1")


def test_a_page_of_unknown_charset_is_served_without_one(client: TestClient) -> None:
    up = upload(client, "page.html", LATIN1_PAGE)
    path = f"/v1/documents/{up['document_id']}/file"
    whole = client.get(path)
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "text/html"
    assert whole.content == LATIN1_PAGE
    part = client.get(path, headers={"Range": "bytes=0-5"})
    assert part.status_code == 206
    assert part.headers["content-type"] == "text/html"
    assert part.content == LATIN1_PAGE[:6]


def test_a_known_charset_and_a_binary_type_are_kept(client: TestClient) -> None:
    up = upload(client, "a.txt", "café".encode())
    assert client.get(f"/v1/documents/{up['document_id']}/file").headers["content-type"] == (
        "text/plain; charset=utf-8"
    )
    up = upload(client, "m.pdf", b"%PDF-1.4")
    assert client.get(f"/v1/documents/{up['document_id']}/file").headers["content-type"] == "application/pdf"
