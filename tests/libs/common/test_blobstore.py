"""Every blob store keeps the same contract: the in-memory fake, a directory, and S3
against a real SeaweedFS server (``tests/seaweed.py``)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from libs.common.blobstore import (
    BlobStore,
    DirectoryBlobStore,
    MemoryBlobStore,
    S3BlobStore,
    build_blob_store,
    check_key,
    delete_document_blobs,
    document_of,
    original_key,
    put_original,
    put_text,
    sweep_orphans,
    text_key,
)
from libs.common.errors import BlobStoreRefused, BlobStoreUnavailable
from libs.common.settings import CommonSettings
from libs.common.valkey_server import free_port
from tests.seaweed import SeaweedS3

T = TypeVar("T")
PDF = b"%PDF-1.4\n\x00\x01\x02\xff binary \r\n%%EOF\n"


def run(call: Awaitable[T]) -> T:
    async def main() -> T:
        return await call

    return asyncio.run(main())


@pytest.fixture(params=["memory", "dir", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "memory":
        yield MemoryBlobStore()
    elif request.param == "dir":
        yield DirectoryBlobStore(tmp_path / "originals")
    else:
        seaweed: SeaweedS3 = request.getfixturevalue("seaweed")
        yield seaweed.store()


@pytest.fixture
def tenant() -> str:
    """A tenant of this test alone (the S3 bucket is the session's)."""
    return f"t{secrets.token_hex(6)}"


def listed(store: BlobStore, prefix: str = "") -> dict[str, int]:
    async def collect() -> dict[str, int]:
        return {info.key: info.size async for info in store.list(prefix)}

    return asyncio.run(collect())


# --- the contract ---------------------------------------------------------------


def test_a_blob_comes_back_as_it_went_in_with_its_type(store: BlobStore, tenant: str) -> None:
    key = original_key(tenant, "p0-doc1")
    run(store.put(key, PDF, "application/pdf"))
    blob = run(store.get(key))
    assert blob is not None
    assert (blob.data, blob.content_type) == (PDF, "application/pdf")
    run(store.put(key, b"", "text/plain; charset=utf-8"))
    again = run(store.get(key))
    assert again is not None and (again.data, again.content_type) == (b"", "text/plain; charset=utf-8")


def test_nothing_there_is_none_and_deleting_it_is_fine(store: BlobStore, tenant: str) -> None:
    key = original_key(tenant, "p0-missing")
    assert run(store.get(key)) is None
    run(store.delete(key))
    run(store.put(key, b"x", "text/plain"))
    run(store.delete(key))
    run(store.delete(key))
    assert run(store.get(key)) is None


def test_deleting_a_document_removes_its_blobs_and_no_others(store: BlobStore, tenant: str) -> None:
    for doc in ("p0-doc1", "p0-doc10", "p0-doc2"):
        run(put_original(store, tenant, doc, doc.encode(), "text/plain"))
        run(put_text(store, tenant, doc, [f"text of {doc}"]))
    assert run(delete_document_blobs(store, tenant, "p0-doc1")) == 2
    assert run(delete_document_blobs(store, tenant, "p0-doc1")) == 0
    assert sorted(listed(store, f"{tenant}/")) == sorted(
        [original_key(tenant, d) for d in ("p0-doc10", "p0-doc2")]
        + [text_key(tenant, d) for d in ("p0-doc10", "p0-doc2")]
    )


def test_a_listing_gives_keys_and_sizes_under_a_prefix(store: BlobStore, tenant: str) -> None:
    other = f"{tenant}x"
    run(put_original(store, tenant, "p0-a", b"12345", "text/plain"))
    run(put_original(store, other, "p0-b", b"1", "text/plain"))
    assert listed(store, f"{tenant}/") == {original_key(tenant, "p0-a"): 5}
    assert listed(store, f"{tenant}/p0-a/") == {original_key(tenant, "p0-a"): 5}
    everything = listed(store)
    assert everything[original_key(tenant, "p0-a")] == 5 and everything[original_key(other, "p0-b")] == 1


def test_the_text_is_json_pages_numbered_from_one(store: BlobStore, tenant: str) -> None:
    run(put_text(store, tenant, "p0-doc", ["first «page»", "", "third"]))
    blob = run(store.get(text_key(tenant, "p0-doc")))
    assert blob is not None and blob.content_type == "application/json"
    assert json.loads(blob.data) == [
        {"page": 1, "text": "first «page»"},
        {"page": 2, "text": ""},
        {"page": 3, "text": "third"},
    ]


def test_a_long_text_is_encoded_off_the_event_loop_all_the_same(store: BlobStore, tenant: str) -> None:
    pages = ["word " * 100_000, "end"]
    run(put_text(store, tenant, "p0-long", pages))
    blob = run(store.get(text_key(tenant, "p0-long")))
    assert blob is not None and [p["text"] for p in json.loads(blob.data)] == pages


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "../x", "a/../b", "a//b", ".hidden/x", "a/.b", "a/b/c/d", "a\\b", "a b", "a/b/", "é/x"],
)
def test_keys_that_are_no_keys_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="not a blob key"):
        run(store.put(key, b"x", "text/plain"))
    with pytest.raises(ValueError, match="not a blob key"):
        run(store.get(key))


def test_keys_come_only_from_ids() -> None:
    assert original_key("acme", "p0-abc") == "acme/p0-abc/original"
    assert text_key("acme", "p0-abc") == "acme/p0-abc/text.json"
    assert document_of("acme/p0-abc/original") == ("acme", "p0-abc")
    assert document_of("acme/p0-abc") is None
    for tenant, doc in (("..", "d"), ("a", "../../etc"), ("a/b", "d"), ("a", "")):
        with pytest.raises(ValueError):
            original_key(tenant, doc)
    assert check_key("a.b-c_d/E9") == "a.b-c_d/E9"


# --- the sweep --------------------------------------------------------------------


def test_the_sweep_removes_old_blobs_of_unregistered_documents_only() -> None:
    now = [100.0]
    store = MemoryBlobStore(clock=lambda: now[0])
    run(put_original(store, "t", "p0-orphan", b"o", "text/plain"))
    run(put_text(store, "t", "p0-orphan", ["o"]))
    run(put_original(store, "t", "p0-kept", b"k", "text/plain"))
    now[0] = 200.0
    run(put_original(store, "t", "p0-young", b"y", "text/plain"))  # its SUBMIT may be on its way

    async def registered(document_id: str) -> bool:
        return document_id == "p0-kept"

    removed = run(sweep_orphans(store, registered, older_than_s=50, now=210.0))
    assert removed == ["p0-orphan"]
    assert sorted(store.blobs) == [original_key("t", "p0-kept"), original_key("t", "p0-young")]


# --- each store's own failures ------------------------------------------------------


def test_a_store_that_is_down_says_retry() -> None:
    store = MemoryBlobStore()
    store.down = True
    with pytest.raises(BlobStoreUnavailable):
        run(store.put(original_key("t", "p0-d"), b"x", "text/plain"))
    assert BlobStoreUnavailable("x").retryable


def test_a_directory_keeps_plain_files_and_nothing_half_written(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "originals")
    run(put_original(store, "acme", "p0-doc", PDF, "application/pdf"))
    doc_dir = tmp_path / "originals" / "acme" / "p0-doc"
    assert (doc_dir / "original").read_bytes() == PDF
    assert sorted(p.name for p in doc_dir.iterdir()) == [".original.type", "original"]
    run(store.delete(original_key("acme", "p0-doc")))
    assert not doc_dir.exists()


def test_a_directory_that_cannot_be_one_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "originals"
    blocker.write_text("a file where the directory should be")
    store = DirectoryBlobStore(blocker)
    with pytest.raises(BlobStoreRefused, match="blob directory"):
        run(store.put(original_key("t", "p0-d"), b"x", "text/plain"))


def test_the_settings_pick_the_store(tmp_path: Path) -> None:
    local = build_blob_store(CommonSettings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    assert isinstance(local, DirectoryBlobStore) and local.root == tmp_path / "originals"
    s3 = build_blob_store(
        CommonSettings(  # type: ignore[call-arg]
            _env_file=None, blob_store="s3", s3_endpoint_url="http://127.0.0.1:1", s3_bucket="b"
        )
    )
    assert isinstance(s3, S3BlobStore) and s3.bucket == "b"


def test_s3_with_wrong_credentials_is_refused(seaweed: SeaweedS3) -> None:
    store = S3BlobStore(
        seaweed.bucket,
        endpoint_url=seaweed.endpoint_url,
        access_key_id=seaweed.access_key,
        secret_access_key="not-the-secret",
    )
    with pytest.raises(BlobStoreRefused, match="refused access"):
        run(store.put(original_key("t", "p0-d"), b"x", "text/plain"))


def test_s3_that_does_not_answer_says_retry_soon() -> None:
    store = S3BlobStore(
        "b",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="k",
        secret_access_key="s",
        timeout_s=5,
        connect_timeout_s=1,
    )
    with pytest.raises(BlobStoreUnavailable, match="unavailable"):
        run(asyncio.wait_for(store.put(original_key("t", "p0-d"), b"x", "text/plain"), 20))


def test_the_sweep_command_asks_valkey_which_documents_exist(valkey_url: str, tmp_path: Path) -> None:
    import redis

    from libs.common import keys
    from libs.common.blobstore.sweep import sweep

    settings = CommonSettings(_env_file=None, valkey_url=valkey_url, data_dir=tmp_path)  # type: ignore[call-arg]
    store = build_blob_store(settings)
    for document_id in ("p0-registered", "p0-orphan"):
        run(put_original(store, "default", document_id, b"x", "text/plain"))
    client = redis.Redis.from_url(valkey_url)
    client.hset(keys.document("p0-registered").hash, "filename", "a.txt")
    client.close()
    # -1: every blob counts as old enough.
    assert run(sweep(settings, older_than_s=-1)) == ["p0-orphan"]
    assert sorted(listed(store)) == [original_key("default", "p0-registered")]
    assert run(sweep(settings, older_than_s=3600)) == []


def test_the_public_surface() -> None:
    from libs.common import blobstore

    assert sorted(blobstore.__all__) == sorted(
        name for name in vars(blobstore) if not name.startswith("_") and name not in {"sweep"}
    )
