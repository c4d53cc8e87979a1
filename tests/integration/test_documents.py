"""Collections and documents through the API: registry, status, progress, dedup; on one
Valkey server and on a Valkey Cluster with 3 partitions (the ``backend`` fixtures)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from libs.common import keys
from libs.common.blobstore import DirectoryBlobStore, original_key
from tests.integration.backends import Backend
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(180)

TEXT = b"The ferry to Inishmore leaves at nine. Tickets are sold at the pier office."


@pytest.fixture(scope="module")
def stack(module_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("documents")
    s = Stack(module_backend.url, tmp, **module_backend.env)
    try:
        s.start_all()
        yield s
    finally:
        s.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10) as c:
        yield c


def upload(client: httpx.Client, collection: str, name: str, data: bytes) -> dict[str, object]:
    resp = client.post(f"/v1/collections/{collection}/documents", files={"file": (name, data)})
    assert resp.status_code == 202, resp.text
    body: dict[str, object] = resp.json()
    return body


def test_create_list_and_get_collections(client: httpx.Client) -> None:
    made = client.post("/v1/collections", json={"name": "manuals", "description": "Product manuals"})
    assert made.status_code == 201
    assert made.json() | {"created_at": 0} == {
        "name": "manuals", "description": "Product manuals", "created_at": 0, "documents": 0, "chunks": 0,
    }  # fmt: skip
    again = client.post("/v1/collections", json={"name": "manuals"})
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]
    assert client.post("/v1/collections", json={"name": "bad/name"}).status_code == 422
    names = [c["name"] for c in client.get("/v1/collections").json()["collections"]]
    assert "manuals" in names
    assert client.get("/v1/collections/nope").status_code == 404


def test_document_goes_ready_with_its_details(stack: Stack, client: httpx.Client) -> None:
    up = upload(client, "ferries", "ferry.txt", TEXT)
    assert up["duplicate"] is False
    assert stack.wait_job(str(up["job_id"]))["status"] == "done"
    doc = client.get(f"/v1/documents/{up['document_id']}").json()
    assert doc["status"] == "ready"
    assert doc["error"] is None
    assert (doc["filename"], doc["type"], doc["size"], doc["collection"]) == (
        "ferry.txt",
        "txt",
        len(TEXT),
        "ferries",
    )
    assert doc["sha256"] == hashlib.sha256(TEXT).hexdigest()
    assert doc["pages"] == 1 and doc["chunks"] >= 1
    assert doc["progress"] == {"chunks_embedded": doc["chunks"], "chunks_total": doc["chunks"]}
    listed = client.get("/v1/collections/ferries/documents").json()["documents"]
    assert [d["document_id"] for d in listed] == [up["document_id"]]
    coll = client.get("/v1/collections/ferries").json()
    assert (coll["documents"], coll["chunks"]) == (1, doc["chunks"])


def test_same_content_is_stored_once_per_collection(stack: Stack, client: httpx.Client) -> None:
    first = upload(client, "dedup", "a.txt", TEXT + b" Once.")
    stack.wait_job(str(first["job_id"]))
    second = upload(client, "dedup", "renamed.txt", TEXT + b" Once.")
    assert {k: second[k] for k in ("job_id", "document_id", "duplicate")} == {
        "job_id": first["job_id"], "document_id": first["document_id"], "duplicate": True,
    }  # fmt: skip
    assert len(client.get("/v1/collections/dedup/documents").json()["documents"]) == 1
    elsewhere = upload(client, "dedup-other", "a.txt", TEXT + b" Once.")
    assert elsewhere["duplicate"] is False and elsewhere["document_id"] != first["document_id"]


def test_failed_document_keeps_its_reason(stack: Stack, client: httpx.Client) -> None:
    up = upload(client, "broken", "empty.txt", b"")
    assert stack.wait_job(str(up["job_id"]))["status"] == "failed"
    doc = client.get(f"/v1/documents/{up['document_id']}").json()
    assert doc["status"] == "failed"
    assert "empty file" in doc["error"]
    assert client.get("/v1/collections/broken").json()["chunks"] == 0


def test_unknown_things_are_404(client: httpx.Client) -> None:
    assert client.get("/v1/documents/nope").status_code == 404
    assert client.get("/v1/collections/nope/documents").status_code == 404


def test_a_queued_document_says_so(backend: Backend, tmp_path: Path) -> None:
    stack = Stack(backend.url, tmp_path, **backend.env)
    try:
        stack.start("gateway")
        stack.wait_healthy()
        with stack.client(timeout=10) as client:
            up = upload(client, "later", "x.txt", TEXT)
            doc = client.get(f"/v1/documents/{up['document_id']}").json()
        assert doc["status"] == "queued"
        assert doc["progress"] == {"chunks_embedded": 0, "chunks_total": None}
    finally:
        stack.stop()


def test_deleted_document_is_gone_at_once(stack: Stack, client: httpx.Client) -> None:
    keep = upload(client, "harbour", "keep.txt", b"The harbour master keeps the tide tables in the office.")
    drop = upload(client, "harbour", "drop.txt", b"The ferry timetable lists sailings to Inishmore at nine.")
    for up in (keep, drop):
        assert stack.wait_job(str(up["job_id"]))["status"] == "done"

    def search_files(query: str) -> set[str]:
        resp = client.post("/v1/search", json={"query": query, "collection": "harbour", "top_k": 5})
        return {h["filename"] for h in stack.wait_job(resp.json()["job_id"])["result"]["hits"]}

    assert "drop.txt" in search_files("ferry timetable sailings")
    gone = client.delete(f"/v1/documents/{drop['document_id']}")
    assert gone.status_code == 200
    assert gone.json()["deleted"] is True
    assert "drop.txt" not in search_files("ferry timetable sailings")
    assert client.get(f"/v1/documents/{drop['document_id']}").status_code == 404
    assert client.delete(f"/v1/documents/{drop['document_id']}").status_code == 404
    listed = [d["filename"] for d in client.get("/v1/collections/harbour/documents").json()["documents"]]
    assert listed == ["keep.txt"]
    # Its vectors are removed by the retriever, and the same content can come back as a new document.
    assert stack.wait_job(gone.json()["job_id"])["result"] == {
        "document_id": drop["document_id"],
        "deleted": True,
    }
    again = upload(client, "harbour", "drop.txt", b"The ferry timetable lists sailings to Inishmore at nine.")
    assert again["duplicate"] is False and again["document_id"] != drop["document_id"]
    assert stack.wait_job(str(again["job_id"]))["status"] == "done"
    assert "drop.txt" in search_files("ferry timetable sailings")


def test_docx_and_html_uploads_become_searchable(stack: Stack, client: httpx.Client) -> None:
    import io

    from docx import Document

    doc = Document()
    doc.add_heading("Boiler maintenance", level=1)
    doc.add_paragraph("Bleed the radiators every autumn before the heating season starts.")
    buf = io.BytesIO()
    doc.save(buf)
    html = (
        b"<html><head><style>.x{}</style><script>var secret='tracking pixel';</script></head>"
        b"<body><nav>Home | About</nav>"
        b"<main><h1>Garden</h1><p>Prune the apple trees in late winter.</p></main>"
        b"<footer>Copyright</footer></body></html>"
    )
    ups = [
        upload(client, "house", "boiler.docx", buf.getvalue()),
        upload(client, "house", "garden.html", html),
    ]
    for up in ups:
        assert stack.wait_job(str(up["job_id"]))["status"] == "done"
    views = {d["filename"]: d for d in client.get("/v1/collections/house/documents").json()["documents"]}
    assert views["boiler.docx"]["type"] == "docx" and views["boiler.docx"]["status"] == "ready"
    assert views["garden.html"]["type"] == "html" and views["garden.html"]["status"] == "ready"
    resp = client.post("/v1/search", json={"query": "prune apple trees winter", "collection": "house"})
    hits = stack.wait_job(resp.json()["job_id"])["result"]["hits"]
    assert hits[0]["filename"] == "garden.html"
    assert "Prune the apple trees" in hits[0]["text"]
    assert all("tracking pixel" not in h["text"] and "Home | About" not in h["text"] for h in hits)


def test_many_files_in_one_upload(stack: Stack, client: httpx.Client) -> None:
    files = [
        ("file", ("one.txt", b"First file about owls.")),
        ("file", ("two.md", b"# Two\n\nSecond file about bats.")),
    ]
    resp = client.post("/v1/collections/many/documents", files=files)
    assert resp.status_code == 202
    body = resp.json()
    assert [d["filename"] for d in body["documents"]] == ["one.txt", "two.md"]
    assert (body["job_id"], body["document_id"]) == (
        body["documents"][0]["job_id"],
        body["documents"][0]["document_id"],
    )
    for d in body["documents"]:
        assert stack.wait_job(d["job_id"])["status"] == "done"
    assert len(client.get("/v1/collections/many/documents").json()["documents"]) == 2


def test_one_bad_file_rejects_the_whole_upload(client: httpx.Client) -> None:
    files = [("file", ("fine.txt", b"Fine.")), ("file", ("tool.exe", b"MZ"))]
    resp = client.post("/v1/collections/mixed/documents", files=files)
    assert resp.status_code == 415
    assert resp.json()["detail"].startswith("tool.exe: unsupported file type '.exe'")
    assert client.get("/v1/collections/mixed").status_code == 404  # nothing was queued


def test_deleted_collection_takes_its_documents_vectors_and_blobs(stack: Stack, client: httpx.Client) -> None:
    ups = [
        upload(client, "doomed", "one.txt", b"Lanterns hang in the boathouse rafters."),
        upload(client, "doomed", "two.txt", b"Oars are stacked by the slipway door."),
    ]
    for up in ups:
        assert stack.wait_job(str(up["job_id"]))["status"] == "done"
    gone = client.delete("/v1/collections/doomed")
    assert gone.status_code == 200
    body = gone.json()
    assert (body["name"], body["deleted"], body["documents"]) == ("doomed", True, 2)
    assert client.get("/v1/collections/doomed").status_code == 404
    assert client.delete("/v1/collections/doomed").status_code == 404
    assert client.post("/v1/chat", json={"question": "lanterns?", "collection": "doomed"}).status_code == 404
    for up in ups:
        assert client.get(f"/v1/documents/{up['document_id']}").status_code == 404
    for job_id in body["job_ids"]:
        assert stack.wait_job(job_id)["status"] == "done"
    # A new collection of the same name starts empty and is not touched by the old one's cleanup.
    fresh = upload(client, "doomed", "three.txt", b"Lanterns are lit at dusk on the quay.")
    assert fresh["duplicate"] is False
    assert stack.wait_job(str(fresh["job_id"]))["status"] == "done"
    resp = client.post("/v1/search", json={"query": "lanterns", "collection": "doomed", "top_k": 10})
    hits = stack.wait_job(resp.json()["job_id"])["result"]["hits"]
    assert {h["filename"] for h in hits} == {"three.txt"}
    assert client.get("/v1/collections/doomed").json()["documents"] == 1


def test_deleting_a_collection_while_its_upload_is_queued_leaves_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    stack = Stack(backend.url, tmp_path, **backend.env)
    try:
        stack.start("gateway")
        stack.wait_healthy()
        with stack.client(timeout=10) as client:
            up = upload(client, "brief", "x.txt", TEXT)
            assert client.delete("/v1/collections/brief").json()["documents"] == 1
            # The upload's bytes went with it; the queued ingest finds nothing to index.
            assert stack.r.exists(keys.document(up["document_id"]).blob) == 0
            for name in ("embedder", "retriever", "generator"):
                stack.start(name)
            job = stack.wait_job(str(up["job_id"]))
            assert job["status"] == "failed"
            assert "expired before it could be parsed" in job["error"]
    finally:
        stack.stop()


def delete_jobs_of(stack: Stack, collection: str) -> list[str]:
    """The ids of the delete jobs queued for a collection (the job hashes say their kind)."""
    found = []
    for key in stack.r.scan_iter(match=stack.partition_of(collection).key("job", "*"), count=1000):
        job = stack.r.hgetall(key)
        if job.get(b"kind") == b"delete" and job.get(b"collection") == collection.encode():
            found.append(job[b"job_id"].decode())
    return found


def test_replace_swaps_the_old_document_for_the_new_one(stack: Stack, client: httpx.Client) -> None:
    old_text = b"The ferry to Inishmore leaves at nine from the west pier."
    new_text = b"The ferry to Inishmore now leaves at ten from the east pier."
    other = upload(client, "timetables", "other.txt", b"The bus to Galway leaves hourly.")
    old = upload(client, "timetables", "ferry.txt", old_text)
    for up in (other, old):
        assert stack.wait_job(str(up["job_id"]))["status"] == "done"
    resp = client.post(
        "/v1/collections/timetables/documents?replace=true", files={"file": ("ferry.txt", new_text)}
    )
    assert resp.status_code == 202, resp.text
    new = resp.json()
    assert new["documents"][0]["replaces"] == [old["document_id"]]
    assert stack.wait_job(new["job_id"])["status"] == "done"

    resp = client.post(
        "/v1/search", json={"query": "ferry Inishmore", "collection": "timetables", "top_k": 10}
    )
    hits = stack.wait_job(resp.json()["job_id"])["result"]["hits"]
    assert {h["document_id"] for h in hits} == {new["document_id"], other["document_id"]}
    assert client.get(f"/v1/documents/{old['document_id']}").status_code == 404
    listed = client.get("/v1/collections/timetables/documents").json()["documents"]
    assert sorted((d["filename"], d["document_id"]) for d in listed) == [
        ("ferry.txt", new["document_id"]), ("other.txt", other["document_id"]),
    ]  # fmt: skip
    # The old document's vectors are removed by a delete job queued in the swap.
    [delete_job] = delete_jobs_of(stack, "timetables")
    assert stack.wait_job(delete_job)["result"] == {"document_id": old["document_id"], "deleted": True}
    # The old content is no longer in the collection: uploading it again adds it anew.
    again = upload(client, "timetables", "ferry-2019.txt", old_text)
    assert again["duplicate"] is False
    # Same content with replace: nothing changes, the existing document is returned.
    same = client.post(
        "/v1/collections/timetables/documents?replace=true", files={"file": ("ferry.txt", new_text)}
    ).json()
    assert (same["duplicate"], same["document_id"]) == (True, new["document_id"])


def test_replace_is_atomic_for_searches_running_throughout(backend: Backend, tmp_path: Path) -> None:
    """Every search during the swap sees the old document or the new one, whole: never
    both, never neither, never part of the new one."""
    stack = Stack(
        backend.url,
        tmp_path,
        **backend.env,
        DOCUMIND_CHUNK_SIZE_WORDS="8",
        DOCUMIND_CHUNK_OVERLAP_WORDS="0",
        DOCUMIND_INGEST_PART_CHUNKS="1",
        DOCUMIND_READ_COUNT="1",
    )
    sentences = [f"Harbour rule {n}: boats moor at berth {n} and pay the fee." for n in range(40)]
    old_text = " ".join(sentences).encode()
    new_text = " ".join(s.replace("pay", "settle") for s in sentences).encode()
    try:
        stack.start_all()
        with stack.client(timeout=30) as client:
            old = upload(client, "rules", "rules.txt", old_text)
            assert stack.wait_job(old["job_id"])["status"] == "done"
            resp = client.post(
                "/v1/collections/rules/documents?replace=true", files={"file": ("rules.txt", new_text)}
            )
            new = resp.json()
            done = threading.Event()
            seen: list[frozenset[str]] = []

            def search_until_done() -> None:
                with stack.client(timeout=30) as c:
                    while not done.is_set():
                        query = {"query": "boats moor at berth", "collection": "rules", "top_k": 8}
                        job = stack.wait_job(c.post("/v1/search", json=query).json()["job_id"])
                        seen.append(frozenset(h["document_id"] for h in job["result"]["hits"]))

            searcher = threading.Thread(target=search_until_done)
            searcher.start()
            try:
                assert stack.wait_job(new["job_id"])["status"] == "done", stack.logs()
                parts = int(stack.r.hget(keys.document(new["document_id"]).hash, "parts") or 0)
            finally:
                done.set()
                searcher.join()
            assert parts > 10  # the new document was indexed in many separate messages
            versions = [{old["document_id"]}, {new["document_id"]}]
            assert seen and all(s in versions for s in seen), seen
            switched = [s == {new["document_id"]} for s in seen]
            assert switched == sorted(switched)  # old, then new: never back
            query = {"query": "boats moor at berth", "collection": "rules", "top_k": 8}
            job = stack.wait_job(client.post("/v1/search", json=query).json()["job_id"])
            assert {h["document_id"] for h in job["result"]["hits"]} == {new["document_id"]}
    finally:
        stack.stop()


def test_an_uploads_bytes_wait_in_the_blob_store_not_in_valkey(backend: Backend, tmp_path: Path) -> None:
    """A backlog of large uploads must not fill Valkey's memory, which every tenant's
    questions need: the embedder parses each upload from its original in the store."""
    stack = Stack(backend.url, tmp_path, **backend.env)
    originals = DirectoryBlobStore(tmp_path / "data" / "originals")
    try:
        stack.start("gateway")
        stack.wait_healthy()
        with stack.client(timeout=10) as client:
            kept = upload(client, "queue", "ferry.txt", TEXT)
            lost = upload(client, "queue", "tides.txt", b"High tide at the pier is at noon.")
            # Queued, no embedder yet: the bytes are in the store only.
            for up in (kept, lost):
                assert stack.r.exists(keys.document(str(up["document_id"])).blob) == 0
            original = asyncio.run(originals.get(original_key("default", str(kept["document_id"]))))
            assert original is not None and original.data == TEXT
            # An original gone from the store (lost by its operator) fails its job, saying so.
            asyncio.run(originals.delete(original_key("default", str(lost["document_id"]))))
            for name in ("embedder", "retriever", "generator"):
                stack.start(name)
            assert stack.wait_job(str(kept["job_id"]))["status"] == "done"
            failed = stack.wait_job(str(lost["job_id"]))
            assert failed["status"] == "failed" and "the uploaded file is gone" in failed["error"]
            resp = client.post("/v1/search", json={"query": "ferry", "collection": "queue"})
            hits = stack.wait_job(resp.json()["job_id"])["result"]["hits"]
            assert {h["filename"] for h in hits} == {"ferry.txt"}
    finally:
        stack.stop()
