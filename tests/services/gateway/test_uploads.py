"""An upload request holds about one file at a time, against a real Valkey (no workers)
and a spying in-memory blob store: a file refused for its name, type or size refuses the
request before any file is read; the others are read and stored one after another and
submitted after; what a request stored and did not submit is removed again."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import UploadFile
from fastapi.testclient import TestClient
from starlette.datastructures import UploadFile as StarletteUpload

from libs.common.blobstore import MemoryBlobStore, original_key
from libs.common.errors import BlobStoreUnavailable
from libs.common.settings import GatewaySettings
from services.gateway.app import create_app
from services.gateway.submit import Submitter
from services.gateway.uploads import _size_of
from tests.auth import admin_secret, operator_client

UPLOAD = "/v1/collections/town/documents"
MAX_BYTES = 64 * 1024

Files = list[tuple[str, tuple[str, bytes]]]


class SpyStore(MemoryBlobStore):
    """Records each put of an original (by the file named at its start) in ``events``;
    the put numbered ``fail_at`` (from 1) finds the store down."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events
        self.fail_at = 0
        self.puts = 0

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        self.puts += 1
        if self.puts == self.fail_at:
            raise BlobStoreUnavailable("the store of original files is unavailable; retry later")
        self.events.append(f"put {data.split(b' ', 1)[0].decode()}")
        await super().put(key, data, content_type)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``read NAME`` for each file's bytes read, ``submit NAME`` for each SUBMIT."""
    seen: list[str] = []
    read, submit = StarletteUpload.read, Submitter.submit

    async def spy_read(self: StarletteUpload, size: int = -1) -> bytes:
        seen.append(f"read {self.filename}")
        return await read(self, size)

    async def spy_submit(self: Submitter, *args: Any, **kwargs: Any) -> Any:
        seen.append(f"submit {args[2]['filename']}")
        return await submit(self, *args, **kwargs)

    # The route's files are Starlette's (fastapi.UploadFile only subclasses it).
    monkeypatch.setattr(StarletteUpload, "read", spy_read)
    monkeypatch.setattr(Submitter, "submit", spy_submit)
    return seen


@pytest.fixture
def blobs(events: list[str]) -> SpyStore:
    return SpyStore(events)


@pytest.fixture
def client(valkey_url: str, tmp_path: Path, blobs: SpyStore) -> Iterator[TestClient]:
    settings = GatewaySettings(  # type: ignore[call-arg]
        _env_file=None,
        valkey_url=valkey_url,
        data_dir=tmp_path,
        max_backlog=3,
        max_upload_bytes=MAX_BYTES,
        admin_key=admin_secret(),
    )
    with operator_client(create_app(settings)) as c:
        c.app.state.blobs = blobs  # type: ignore[attr-defined]
        yield c


def content(name: str, size: int = MAX_BYTES) -> bytes:
    """``size`` bytes that start with the file's name (how SpyStore tells them apart)."""
    return (f"{name} ".encode() * size)[:size]


def many(*names: str) -> Files:
    return [("file", (name, content(name))) for name in names]


def documents(client: TestClient) -> list[str]:
    resp = client.get("/v1/collections/town/documents")
    if resp.status_code == 404:
        return []
    assert resp.status_code == 200, resp.text
    return [d["document_id"] for d in resp.json()["documents"]]


def test_an_unsupported_last_file_refuses_the_upload_before_any_file_is_read(
    client: TestClient, blobs: SpyStore, events: list[str]
) -> None:
    names = [f"part{n}.txt" for n in range(1, 21)]
    resp = client.post(UPLOAD, files=[*many(*names), ("file", ("tool.exe", b"MZ" * 1000))])
    assert resp.status_code == 415, resp.text
    assert resp.json()["detail"].startswith("tool.exe: unsupported file type '.exe'; supported: ")
    assert events == []  # not a byte read, nothing stored, nothing queued
    assert blobs.blobs == {}
    assert documents(client) == []


def test_an_oversized_last_file_refuses_the_upload_before_any_file_is_read(
    client: TestClient, blobs: SpyStore, events: list[str]
) -> None:
    files = [*many("a.txt", "b.md"), ("file", ("big.txt", content("big.txt", MAX_BYTES + 1)))]
    resp = client.post(UPLOAD, files=files)
    assert resp.status_code == 413, resp.text
    assert resp.json()["detail"] == (
        f"big.txt: the file is larger than {MAX_BYTES:,} bytes (DOCUMIND_MAX_UPLOAD_BYTES)"
    )
    assert events == []
    assert blobs.blobs == {}
    assert documents(client) == []


def test_a_long_last_filename_refuses_the_upload_before_any_file_is_read(
    client: TestClient, events: list[str]
) -> None:
    resp = client.post(UPLOAD, files=[*many("a.txt"), ("file", ("n" * 300 + ".txt", b"x"))])
    assert resp.status_code == 422, resp.text
    assert "the filename has 304 characters; at most 255" in resp.json()["detail"]
    assert events == []


def test_files_are_read_and_stored_one_at_a_time_then_submitted(
    client: TestClient, blobs: SpyStore, events: list[str]
) -> None:
    resp = client.post(UPLOAD, files=many("a.txt", "b.md", "c.txt"))
    assert resp.status_code == 202, resp.text
    # A file's bytes are read only once the one before is stored: one file at a time.
    assert events == [
        "read a.txt", "put a.txt",
        "read b.md", "put b.md",
        "read c.txt", "put c.txt",
        "submit a.txt", "submit b.md", "submit c.txt",
    ]  # fmt: skip
    body = resp.json()
    accepted = body["documents"]
    assert [d["filename"] for d in accepted] == ["a.txt", "b.md", "c.txt"]
    assert (body["job_id"], body["document_id"], body["duplicate"]) == (
        accepted[0]["job_id"],
        accepted[0]["document_id"],
        False,
    )
    assert sorted(documents(client)) == sorted(d["document_id"] for d in accepted)
    for doc in accepted:
        original = client.get(f"/v1/documents/{doc['document_id']}/file")
        assert original.content == content(doc["filename"])


def test_a_store_failing_midway_refuses_the_upload_and_keeps_nothing(
    client: TestClient, blobs: SpyStore, events: list[str]
) -> None:
    blobs.fail_at = 3
    resp = client.post(UPLOAD, files=many("a.txt", "b.txt", "c.txt", "d.txt"))
    assert resp.status_code == 503, resp.text
    assert resp.json()["detail"] == "the store of original files is unavailable; retry later"
    assert resp.headers["Retry-After"] == "2"
    assert events == ["read a.txt", "put a.txt", "read b.txt", "put b.txt", "read c.txt"]
    assert blobs.blobs == {}  # the two stored are removed again
    assert documents(client) == []  # nothing queued


def test_a_full_queue_midway_keeps_only_the_accepted_originals(
    client: TestClient, blobs: SpyStore, events: list[str]
) -> None:
    resp = client.post(UPLOAD, files=many(*(f"f{n}.txt" for n in range(1, 7))))
    assert resp.status_code == 503, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith("too many jobs queued; retry later; already accepted: f1.txt (")
    kept = documents(client)
    assert len(kept) == 3 and all(d in detail for d in kept)
    assert sorted(blobs.blobs) == sorted(original_key("default", d) for d in kept)


def test_a_duplicate_in_a_later_upload_keeps_the_existing_documents_original(
    client: TestClient, blobs: SpyStore
) -> None:
    first = client.post(UPLOAD, files=many("a.txt")).json()
    resp = client.post(UPLOAD, files=[("file", ("again.txt", content("a.txt"))), *many("c.txt")])
    assert resp.status_code == 202, resp.text
    dup, new = resp.json()["documents"]
    assert dup["duplicate"] is True and dup["document_id"] == first["document_id"]
    assert resp.json()["duplicate"] is True and resp.json()["document_id"] == first["document_id"]
    assert sorted(blobs.blobs) == sorted(
        original_key("default", d) for d in (first["document_id"], new["document_id"])
    )
    assert client.get(f"/v1/documents/{first['document_id']}/file").content == content("a.txt")


def test_a_size_starlette_did_not_count_is_the_spools_length() -> None:
    spool = io.BytesIO(b"abcdef")
    spool.seek(2)
    upload = UploadFile(spool, filename="a.txt")
    assert upload.size is None
    assert _size_of(upload) == 6
    assert spool.tell() == 2  # left where it was
    assert _size_of(UploadFile(io.BytesIO(b"abc"), size=3, filename="b.txt")) == 3
