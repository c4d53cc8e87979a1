"""Sharding, replication and consistency of QdrantStore (services/retriever/qdrant_replication.py).

qdrant-client's local mode ignores sharding and consistency, so these tests run a real
local client and record the arguments each call hands it: what a Qdrant server would
receive, with the searches' results still coming from a real engine. A fake Qdrant
REST server (no Qdrant binary here) shows how those arguments go over the wire.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError
from qdrant_client import QdrantClient, models

from libs.common.models import Chunk
from libs.common.settings import RetrieverSettings
from services.retriever.fusion import Fusion
from services.retriever.qdrant_replication import Replication
from services.retriever.qdrant_store import QdrantStore
from services.retriever.sparse import Bm25
from services.retriever.stores import build_store

DIM = 4
BM25 = Bm25(avgdl=5.0)


class RecordingClient(QdrantClient):
    """A real local-mode client that notes the keyword arguments of the calls a server would see."""

    def __init__(self) -> None:
        super().__init__(location=":memory:")
        self.calls: dict[str, list[dict[str, Any]]] = {}

    def _note(self, name: str, kwargs: dict[str, Any]) -> None:
        self.calls.setdefault(name, []).append(kwargs)

    def create_collection(self, collection_name: str, **kwargs: Any) -> bool:  # type: ignore[override]
        self._note("create_collection", kwargs)
        return super().create_collection(collection_name, **kwargs)

    def upsert(self, collection_name: str, **kwargs: Any) -> models.UpdateResult:  # type: ignore[override]
        self._note("upsert", kwargs)
        return super().upsert(collection_name, **kwargs)

    def delete(self, collection_name: str, **kwargs: Any) -> models.UpdateResult:  # type: ignore[override]
        self._note("delete", kwargs)
        return super().delete(collection_name, **kwargs)

    def query_points(self, collection_name: str, **kwargs: Any) -> models.QueryResponse:  # type: ignore[override]
        self._note("query_points", kwargs)
        return super().query_points(collection_name, **kwargs)

    def query_batch_points(  # type: ignore[override]
        self, collection_name: str, requests: Any, **kwargs: Any
    ) -> list[models.QueryResponse]:
        self._note("query_batch_points", kwargs)
        return super().query_batch_points(collection_name, requests, **kwargs)

    def retrieve(self, collection_name: str, ids: Any, **kwargs: Any) -> list[models.Record]:  # type: ignore[override]
        self._note("retrieve", kwargs)
        return super().retrieve(collection_name, ids, **kwargs)


@pytest.fixture
def client() -> Iterator[RecordingClient]:
    recording = RecordingClient()
    yield recording
    recording.close()


def chunk(document_id: str, text: str) -> Chunk:
    return Chunk(document_id=document_id, filename=f"{document_id}.txt", chunk_index=0, text=text)


def index_and_search(store: QdrantStore) -> None:
    """Every call that carries a consistency: create, upsert, dense and hybrid search, delete."""
    texts = {"doc-a": "replicas keep copies", "doc-b": "shards split points"}
    store.ensure_collection("docs", DIM)
    store.upsert(
        "docs",
        [chunk(doc, text) for doc, text in texts.items()],
        [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]],
        [BM25.document(text) for text in texts.values()],
    )
    assert [h.document_id for h in store.search("docs", [1.0, 0.1, 0.0, 0.0], top_k=1)] == ["doc-a"]
    hybrid = store.search(
        "docs", [0.1, 1.0, 0.0, 0.0], top_k=2, sparse=BM25.query("shards"), fusion=Fusion(dense_weight=0.5)
    )
    assert hybrid[0].document_id == "doc-b"
    store.delete_document("docs", "doc-a")
    assert store.count("docs") == 1


def test_collections_are_created_with_the_settings_shards_and_replicas(client: RecordingClient) -> None:
    replication = Replication(shard_number=2, replication_factor=3, write_consistency_factor=2)
    store = QdrantStore(client, dim_default=DIM, replication=replication)
    store.ensure_collection("docs", DIM)
    [create] = client.calls["create_collection"]
    assert (create["shard_number"], create["replication_factor"], create["write_consistency_factor"]) == (
        2,
        3,
        2,
    )


def test_writes_wait_for_every_replica_by_default(client: RecordingClient) -> None:
    store = QdrantStore(client, dim_default=DIM, replication=Replication(replication_factor=3))
    index_and_search(store)
    [create] = client.calls["create_collection"]
    assert (create["shard_number"], create["replication_factor"], create["write_consistency_factor"]) == (
        1,
        3,
        3,
    )
    for write in client.calls["upsert"] + client.calls["delete"]:
        assert write["wait"] is True
        assert write["ordering"] == models.WriteOrdering.WEAK


def test_reads_and_writes_carry_the_settings_consistency(client: RecordingClient) -> None:
    replication = Replication(replication_factor=3, read_consistency="majority", write_ordering="strong")
    store = QdrantStore(client, dim_default=DIM, replication=replication)
    index_and_search(store)
    reads = client.calls["query_points"] + client.calls["query_batch_points"] + client.calls["retrieve"]
    assert len(reads) == 3
    assert all(read["consistency"] == models.ReadConsistencyType.MAJORITY for read in reads)
    writes = client.calls["upsert"] + client.calls["delete"]
    assert len(writes) == 2
    assert all(w["ordering"] == models.WriteOrdering.STRONG and w["wait"] is True for w in writes)


def test_a_number_of_replicas_as_read_consistency(client: RecordingClient) -> None:
    store = QdrantStore(
        client, dim_default=DIM, replication=Replication(replication_factor=2, read_consistency=2)
    )
    index_and_search(store)
    assert client.calls["query_points"][0]["consistency"] == 2


def test_defaults_are_one_shard_one_replica_and_qdrants_read_consistency(client: RecordingClient) -> None:
    index_and_search(QdrantStore(client, dim_default=DIM))
    [create] = client.calls["create_collection"]
    assert (create["shard_number"], create["replication_factor"], create["write_consistency_factor"]) == (
        1,
        1,
        1,
    )
    assert client.calls["query_points"][0]["consistency"] is None


class FakeQdrant(BaseHTTPRequestHandler):
    """Just enough of Qdrant's REST API for QdrantStore: it notes each request and answers empty."""

    seen: ClassVar[list[tuple[str, str, Any]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append((self.command, self.path, body))
        result: Any = True
        if self.path.endswith("/exists"):
            result = {"exists": False}
        elif "/points/query/batch" in self.path:
            result = [{"points": []} for _ in (body or {})["searches"]]
        elif "/points/query" in self.path:
            result = {"points": []}
        elif "/points" in self.path or "/index" in self.path:
            result = {"operation_id": 1, "status": "completed"}
        data = json.dumps({"result": result, "status": "ok", "time": 0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str, Any]]]]:
    """A fake Qdrant server's URL and the requests it received."""
    seen: list[tuple[str, str, Any]] = []
    handler = type("Handler", (FakeQdrant,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_a_qdrant_server_receives_the_settings(server: tuple[str, list[tuple[str, str, Any]]]) -> None:
    url, seen = server
    replication = Replication(replication_factor=3, read_consistency="all", write_ordering="strong")
    store = QdrantStore.from_url(url, dim_default=DIM, replication=replication)
    try:
        store.upsert(
            "docs", [chunk("doc-a", "replicas")], [[1.0, 0.0, 0.0, 0.0]], [BM25.document("replicas")]
        )
        assert store.search("docs", [1.0, 0.0, 0.0, 0.0], 3) == []
        assert (
            store.search("docs", [1.0, 0.0, 0.0, 0.0], 3, sparse=BM25.query("replicas"), fusion=Fusion())
            == []
        )
        store.delete_document("docs", "doc-a")
    finally:
        store.close()
    requests = {
        (method, path.split("?")[0].removeprefix("/collections/documind_docs")): (path, body)
        for method, path, body in seen
    }
    _, created = requests[("PUT", "")]
    assert (created["shard_number"], created["replication_factor"], created["write_consistency_factor"]) == (
        1,
        3,
        3,
    )
    assert requests[("PUT", "/points")][0].endswith("?wait=true&ordering=strong")
    assert requests[("POST", "/points/delete")][0].endswith("?wait=true&ordering=strong")
    assert requests[("POST", "/points/query")][0].endswith("?consistency=all")
    assert requests[("POST", "/points/query/batch")][0].endswith("?consistency=all")


# -- settings -------------------------------------------------------------------


def test_build_store_takes_the_replication_from_the_settings() -> None:
    settings = RetrieverSettings(
        vector_store="qdrant",
        qdrant_url="http://127.0.0.1:1",
        qdrant_shard_number=2,
        qdrant_replication_factor=3,
        qdrant_read_consistency="quorum",
        qdrant_write_ordering="medium",
    )
    store = build_store(settings)
    try:
        assert isinstance(store, QdrantStore)
        assert store.replication == Replication(
            shard_number=2, replication_factor=3, read_consistency="quorum", write_ordering="medium"
        )
        assert store.replication.write_factor == 3
    finally:
        store.close()


@pytest.mark.parametrize(
    ("value", "expected"), [("ALL", "all"), (" majority ", "majority"), ("quorum", "quorum"), ("2", 2)]
)
def test_read_consistency_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: object
) -> None:
    monkeypatch.setenv("DOCUMIND_QDRANT_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("DOCUMIND_QDRANT_READ_CONSISTENCY", value)
    assert RetrieverSettings(_env_file=None).qdrant_read_consistency == expected  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"DOCUMIND_QDRANT_READ_CONSISTENCY": "most"},
            "READ_CONSISTENCY 'most': expected a number of replicas",
        ),
        ({"DOCUMIND_QDRANT_READ_CONSISTENCY": "0"}, "READ_CONSISTENCY 0: a number of replicas is 1 or more"),
        (
            {"DOCUMIND_QDRANT_READ_CONSISTENCY": "3"},
            "READ_CONSISTENCY 3 exceeds DOCUMIND_QDRANT_REPLICATION_FACTOR 1",
        ),
        (
            {"DOCUMIND_QDRANT_REPLICATION_FACTOR": "2", "DOCUMIND_QDRANT_WRITE_CONSISTENCY_FACTOR": "3"},
            "WRITE_CONSISTENCY_FACTOR 3 exceeds DOCUMIND_QDRANT_REPLICATION_FACTOR 2",
        ),
        ({"DOCUMIND_QDRANT_WRITE_CONSISTENCY_FACTOR": "0"}, "qdrant_write_consistency_factor"),
        ({"DOCUMIND_QDRANT_SHARD_NUMBER": "0"}, "qdrant_shard_number"),
        ({"DOCUMIND_QDRANT_REPLICATION_FACTOR": "many"}, "qdrant_replication_factor"),
        ({"DOCUMIND_QDRANT_WRITE_ORDERING": "strict"}, "'weak', 'medium' or 'strong'"),
    ],
)
def test_bad_settings_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        RetrieverSettings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shard_number": 0},
        {"replication_factor": 0},
        {"replication_factor": 2, "write_consistency_factor": 3},
        {"write_consistency_factor": 0},
        {"read_consistency": 2},
        {"read_consistency": True},
    ],
)
def test_replication_refuses_impossible_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Replication(**kwargs)
