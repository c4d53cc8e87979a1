"""What the gateway's routes refuse, as clients see it, against a real Valkey (no workers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from libs.common.settings import GatewaySettings
from services.gateway.app import create_app
from tests.auth import admin_secret, operator_client


@pytest.fixture
def client(valkey_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = GatewaySettings(  # type: ignore[call-arg]
        _env_file=None,
        valkey_url=valkey_url,
        # Uploads keep their originals under it.
        data_dir=tmp_path,
        max_backlog=1,
        max_top_k=5,
        max_question_chars=20,
        admin_key=admin_secret(),
    )
    with operator_client(create_app(settings)) as c:
        assert c.post("/v1/collections", json={"name": "town"}).status_code == 201
        yield c


def refused(resp: object, status: int) -> str:
    assert getattr(resp, "status_code", None) == status, getattr(resp, "text", resp)
    detail: str = resp.json()["detail"]  # type: ignore[attr-defined]
    return detail


def test_unknown_things_are_404_naming_them(client: TestClient) -> None:
    assert refused(client.get("/v1/collections/nope"), 404) == "collection 'nope' not found"
    assert refused(client.delete("/v1/collections/nope"), 404) == "collection 'nope' not found"
    assert refused(client.get("/v1/collections/nope/documents"), 404) == "collection 'nope' not found"
    assert refused(client.get("/v1/documents/d1"), 404) == "document 'd1' not found"
    assert refused(client.delete("/v1/documents/d1"), 404) == "document 'd1' not found"
    assert refused(client.get("/v1/jobs/j1"), 404) == "job 'j1' not found"
    assert refused(client.get("/result/j1"), 404) == "job 'j1' not found"
    assert refused(client.get("/v1/jobs/j1/events"), 404) == "job 'j1' not found"
    assert refused(client.delete("/v1/jobs/j1"), 404) == "job 'j1' not found"
    chat = client.post("/v1/chat", json={"question": "q", "collection": "nope"})
    assert refused(chat, 404) == "collection 'nope' not found"


def test_conflicts_are_409(client: TestClient) -> None:
    assert refused(client.post("/v1/collections", json={"name": "town"}), 409) == (
        "collection 'town' already exists"
    )
    job_id = client.post("/v1/chat", json={"question": "q", "collection": "town"}).json()["job_id"]
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
    assert refused(client.delete(f"/v1/jobs/{job_id}"), 409) == f"job '{job_id}' already ended: cancelled"


def test_values_no_schema_caught_are_422(client: TestClient) -> None:
    top_k = client.post("/v1/chat", json={"question": "q", "collection": "town", "top_k": 6})
    assert refused(top_k, 422) == "top_k must be at most 5"
    long = client.post("/v1/search", json={"query": "q" * 21, "collection": "town"})
    assert refused(long, 422) == "query is longer than 20 characters"
    # A Last-Event-ID that is no event id is ignored (an EventSource sends back ours only).
    events = client.get("/v1/jobs/j1/events", headers={"Last-Event-ID": "yesterday"})
    assert refused(events, 404) == "job 'j1' not found"
    after = client.get("/v1/jobs/j1/events", params={"after": "yesterday"})
    assert refused(after, 422).startswith("query.after: String should match pattern")
    upload = client.post("/v1/collections/bad name/documents", files={"file": ("a.txt", b"a")})
    assert refused(upload, 422) == "collection names are 1-64 letters, digits, '_', '.', '-'"


def test_unreadable_uploads_are_415(client: TestClient) -> None:
    resp = client.post("/v1/collections/town/documents", files={"file": ("tool.exe", b"MZ")})
    assert refused(resp, 415).startswith("tool.exe: unsupported file type '.exe'; supported: ")


def test_a_full_queue_is_503_with_retry_after(client: TestClient) -> None:
    assert client.post("/v1/chat", json={"question": "q", "collection": "town"}).status_code == 202
    resp = client.post("/v1/chat", json={"question": "q2", "collection": "town"})
    assert refused(resp, 503) == "too many jobs queued; retry later"
    assert resp.headers["Retry-After"] == "2"


def test_an_upload_cut_short_by_a_full_queue_names_the_files_accepted(client: TestClient) -> None:
    files = [("file", ("a.txt", b"alpha")), ("file", ("b.txt", b"beta"))]
    resp = client.post("/v1/collections/town/documents", files=files)
    detail = refused(resp, 503)
    assert resp.headers["Retry-After"] == "2"
    prefix = "too many jobs queued; retry later; already accepted: a.txt ("
    assert detail.startswith(prefix) and detail.endswith(")")
    document_id = detail.removeprefix(prefix).removesuffix(")")
    assert client.get(f"/v1/documents/{document_id}").json()["filename"] == "a.txt"
    # Nothing accepted: the plain message.
    again = client.post("/v1/collections/town/documents", files=[("file", ("c.txt", b"gamma"))])
    assert refused(again, 503) == "too many jobs queued; retry later"
