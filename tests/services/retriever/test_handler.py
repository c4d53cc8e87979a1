from __future__ import annotations

import asyncio

from libs.common import constants as C
from libs.common.envelope import Envelope
from libs.common.errors import PermanentError
from libs.common.vectors import encode_vector
from libs.common.worker import Output
from services.retriever.handler import RetrieveHandler
from services.retriever.memory_store import MemoryStore


def chunk(i: int, vector: list[float], page: int = 1) -> dict[str, object]:
    return {
        "document_id": "d1",
        "filename": "f.pdf",
        "chunk_index": i,
        "text": f"chunk {i}",
        "page": page,
        "page_end": page,
        "vector": encode_vector(vector),
    }


def ingest_env() -> Envelope:
    payload = {
        "document_id": "d1",
        "filename": "f.pdf",
        "pages": 2,
        "chunks": [chunk(0, [1, 0, 0, 0]), chunk(1, [0, 1, 0, 0], page=2)],
    }
    return Envelope.new("ingest", "docs", payload, 60).model_copy(update={"route": ["retriever"]})


def query_env(kind: str, vector: list[float]) -> Envelope:
    payload = {"question": "q", "query": "q", "top_k": 1, "vector": encode_vector(vector)}
    return Envelope.new(kind, "docs", payload, 60)  # type: ignore[arg-type]


def test_indexes_then_searches_in_one_batch_order() -> None:
    store = MemoryStore()
    handler = RetrieveHandler(store, dim=4)
    indexed, found, chat = asyncio.run(
        handler([ingest_env(), query_env("search", [0, 1, 0, 0]), query_env("chat", [1, 0, 0, 0])])
    )
    assert isinstance(indexed, Output)
    assert indexed.payload == {"document_id": "d1", "filename": "f.pdf", "pages": 2, "chunks": 2}
    # The document turns ready in the same commit that completes the job.
    assert indexed.updates[C.document_key("d1")]["status"] == "ready"
    assert indexed.updates[C.document_key("d1")]["chunks"] == "2"
    assert isinstance(found, dict) and found["hits"][0]["page"] == 2
    assert set(found["hits"][0]) == {"document_id", "filename", "page", "score", "text"}
    assert isinstance(chat, dict) and chat["question"] == "q" and chat["hits"][0]["text"] == "chunk 0"


def test_replayed_index_message_adds_nothing() -> None:
    store = MemoryStore()
    handler = RetrieveHandler(store, dim=4)
    asyncio.run(handler([ingest_env()]))
    asyncio.run(handler([ingest_env()]))
    assert store.count("docs") == 2


def test_wrong_dimension_fails_that_job_only() -> None:
    handler = RetrieveHandler(MemoryStore(), dim=4)
    asyncio.run(handler([ingest_env()]))
    bad, good = asyncio.run(handler([query_env("search", [1, 0, 0]), query_env("search", [1, 0, 0, 0])]))
    assert isinstance(bad, PermanentError)
    assert isinstance(good, dict) and good["hits"]


class FixedTombstones:
    def __init__(self, *rounds: set[str]) -> None:
        self.rounds = list(rounds)

    async def deleted(self, collections: set[str]) -> dict[str, set[str]]:
        ids = self.rounds.pop(0) if len(self.rounds) > 1 else self.rounds[0]
        return {name: ids for name in collections}


def test_searches_never_return_deleted_documents() -> None:
    store = MemoryStore()
    asyncio.run(RetrieveHandler(store, dim=4)([ingest_env()]))
    handler = RetrieveHandler(store, dim=4, tombstones=FixedTombstones({"d1"}))
    (found,) = asyncio.run(handler([query_env("search", [1, 0, 0, 0])]))
    assert isinstance(found, dict) and found["hits"] == []


def test_a_deleted_document_is_not_indexed() -> None:
    store = MemoryStore()
    (out,) = asyncio.run(RetrieveHandler(store, dim=4, tombstones=FixedTombstones({"d1"}))([ingest_env()]))
    assert isinstance(out, dict) and out["deleted"] is True
    assert store.count("docs") == 0


def test_an_index_that_raced_a_delete_leaves_no_vectors() -> None:
    store = MemoryStore()
    # Not deleted when the batch starts, deleted by the time its chunks are in.
    handler = RetrieveHandler(store, dim=4, tombstones=FixedTombstones(set(), {"d1"}))
    (out,) = asyncio.run(handler([ingest_env()]))
    assert isinstance(out, Output)
    assert store.count("docs") == 0


def test_delete_job_removes_the_vectors() -> None:
    store = MemoryStore()
    handler = RetrieveHandler(store, dim=4)
    asyncio.run(handler([ingest_env()]))
    delete = Envelope.new("delete", "docs", {"document_id": "d1"}, 60)
    (out,) = asyncio.run(handler([delete]))
    assert out == {"document_id": "d1", "deleted": True}
    assert store.count("docs") == 0
