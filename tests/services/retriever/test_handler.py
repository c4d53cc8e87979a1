from __future__ import annotations

import asyncio
from pathlib import Path

from libs.common import constants, keys
from libs.common.blobstore import MemoryBlobStore, original_key, put_original, put_text
from libs.common.commit import SetIfExists
from libs.common.document_ops import DocumentRef
from libs.common.envelope import Envelope
from libs.common.errors import BlobStoreUnavailable, PermanentError
from libs.common.keys import CollectionKeys, KeySpace, Partition
from libs.common.stage import Output
from libs.common.vectors import encode_vector
from services.retriever.edge_store import EdgeStore
from services.retriever.fusion import DENSE_ONLY, Fusion
from services.retriever.handler import Hidden, RetrieveHandler
from services.retriever.memory_store import MemoryStore

SPACE = KeySpace()
P0 = Partition(0)


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


def updates(out: Output) -> dict[str, dict[str, object]]:
    """The hash fields an output sets, with its commit, on hashes that exist."""
    return {op.key: dict(op.fields) for op in out.ops if isinstance(op, SetIfExists)}


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
    assert updates(indexed)[keys.document("d1").hash]["status"] == "ready"
    assert updates(indexed)[keys.document("d1").hash]["chunks"] == "2"
    assert isinstance(found, Output) and found.payload["hits"][0]["page"] == 2
    assert set(found.payload["hits"][0]) == {"document_id", "filename", "page", "score", "text"}
    assert isinstance(chat, Output) and chat.payload["question"] == "q"
    assert chat.payload["hits"][0]["text"] == "chunk 0"
    assert "vector" not in chat.payload
    assert chat.event == {"hits": 1}  # the "retrieving" event says how many


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
    assert isinstance(good, Output) and good.payload["hits"]


class FixedRegistry:
    """Deleted / pending ids per call (the last repeats), and older documents a replace retires."""

    def __init__(
        self,
        *rounds: set[str],
        pending: set[str] | None = None,
        replaced: list[DocumentRef] | None = None,
    ) -> None:
        self.rounds = list(rounds) or [set()]
        self.pending = frozenset(pending or ())
        self.replaced = replaced or []

    async def hidden(self, collections: set[CollectionKeys]) -> dict[CollectionKeys, Hidden]:
        ids = self.rounds.pop(0) if len(self.rounds) > 1 else self.rounds[0]
        return {c: Hidden(frozenset(ids), self.pending) for c in collections}

    async def replaced_by(self, env: Envelope) -> list[DocumentRef]:
        return self.replaced


def test_searches_never_return_deleted_documents() -> None:
    store = MemoryStore()
    asyncio.run(RetrieveHandler(store, dim=4)([ingest_env()]))
    handler = RetrieveHandler(store, dim=4, registry=FixedRegistry({"d1"}))
    (found,) = asyncio.run(handler([query_env("search", [1, 0, 0, 0])]))
    assert isinstance(found, Output) and found.payload["hits"] == []


def test_a_deleted_document_is_not_indexed() -> None:
    store = MemoryStore()
    (out,) = asyncio.run(RetrieveHandler(store, dim=4, registry=FixedRegistry({"d1"}))([ingest_env()]))
    assert isinstance(out, Output) and out.payload["deleted"] is True
    assert store.count("docs") == 0


def test_an_index_that_raced_a_delete_leaves_no_vectors() -> None:
    store = MemoryStore()
    # Not deleted when the batch starts, deleted by the time its chunks are in.
    handler = RetrieveHandler(store, dim=4, registry=FixedRegistry(set(), {"d1"}))
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


def test_two_tenants_collections_of_one_name_keep_their_own_vectors() -> None:
    store = MemoryStore()
    handler = RetrieveHandler(store, dim=4)
    theirs = ingest_env()
    theirs = theirs.model_copy(update={"tenant": "acme"})
    asyncio.run(handler([theirs]))
    mine = query_env("search", [1, 0, 0, 0])
    (found,) = asyncio.run(handler([mine]))
    assert isinstance(found, Output) and found.payload["hits"] == []
    (found,) = asyncio.run(handler([mine.model_copy(update={"tenant": "acme"})]))
    assert isinstance(found, Output) and [h["document_id"] for h in found.payload["hits"]] == ["d1"]


def test_pending_documents_are_not_searchable() -> None:
    store = MemoryStore()
    asyncio.run(RetrieveHandler(store, dim=4)([ingest_env()]))
    handler = RetrieveHandler(store, dim=4, registry=FixedRegistry(pending={"d1"}))
    (found,) = asyncio.run(handler([query_env("search", [1, 0, 0, 0])]))
    assert isinstance(found, Output) and found.payload["hits"] == []


def test_the_last_part_completes_the_document_and_unhides_it() -> None:
    env = ingest_env()
    env.payload.update(part=2, parts=3, chunks_total=70)
    (out,) = asyncio.run(RetrieveHandler(MemoryStore(), dim=4)([env]))
    assert isinstance(out, Output)
    assert out.parts == 3
    assert out.payload["chunks"] == 70
    assert updates(out)[keys.document("d1").hash]["chunks"] == "70"
    # The collection's version moves on (its cached answers go stale), unless it was dropped.
    assert [op.encode() for op in out.on_complete] == [
        ["SREM", SPACE.collection("docs").pending, "d1"],
        ["HINCRBYXX", SPACE.collection("docs").meta, constants.COLLECTION_VERSION_FIELD, 1],
    ]


def test_a_replace_retires_the_older_documents_in_its_completing_commit() -> None:
    env = ingest_env()
    env.payload["replace"] = True
    old = DocumentRef("old1", "sha-old", "f.pdf")
    (out,) = asyncio.run(RetrieveHandler(MemoryStore(), dim=4, registry=FixedRegistry(replaced=[old]))([env]))
    assert isinstance(out, Output)
    ops = [op.encode() for op in out.on_complete]
    assert ops[0] == ["SREM", SPACE.collection("docs").pending, "d1"]
    # The new document must still exist for the swap to happen.
    assert ops[1] == ["IFEXISTS", keys.document("d1").hash]
    assert ["SADD", SPACE.collection("docs").deleted, "old1"] in ops
    assert ["SREM", SPACE.collection("docs").documents, "old1"] in ops
    assert ["HDELEQ", SPACE.collection("docs").hashes, "sha-old", "old1"] in ops
    assert ["DEL", keys.document("old1").hash] in ops
    [xadd] = [op for op in ops if op[0] == "XADD"]
    delete = Envelope.loads(xadd[4])
    assert xadd[1] == P0.stream(constants.RETRIEVER, constants.BULK)
    assert (delete.kind, delete.payload) == ("delete", {"document_id": "old1"})
    # One version step for the swap, last, after the retirements.
    assert [op for op in ops if op[0] == "HINCRBYXX"] == [ops[-1]]
    assert ops[-1] == ["HINCRBYXX", SPACE.collection("docs").meta, constants.COLLECTION_VERSION_FIELD, 1]


def hybrid_ingest() -> Envelope:
    texts = [f"Printer {i}: replace the toner cartridge." for i in range(6)] + ["Code ZX81: the fan failed."]
    chunks = []
    for i, text in enumerate(texts):
        item = chunk(i, [1, 0.1 * i, 0, 0] if i < 6 else [0, 0, 1, 0])
        chunks.append({**item, "text": text})
    payload = {"document_id": "d1", "filename": "f.pdf", "pages": 1, "chunks": chunks}
    return Envelope.new("ingest", "docs", payload, 60).model_copy(update={"route": ["retriever"]})


def ask(kind: str, question: str, top_k: int = 2) -> Envelope:
    payload = {"question": question, "query": question, "top_k": top_k, "vector": encode_vector([1, 0, 0, 0])}
    return Envelope.new(kind, "docs", payload, 60)  # type: ignore[arg-type]


def test_the_question_text_finds_a_rare_term_with_hybrid_search() -> None:
    store = MemoryStore()
    asyncio.run(RetrieveHandler(store, dim=4)([hybrid_ingest()]))
    hybrid = RetrieveHandler(store, dim=4, fusion=Fusion(dense_weight=0.5))
    dense = RetrieveHandler(store, dim=4, fusion=DENSE_ONLY)
    for kind in ("search", "chat"):
        (found,) = asyncio.run(hybrid([ask(kind, "What does code ZX81 mean?")]))
        assert isinstance(found, Output)
        assert "Code ZX81: the fan failed." in [h["text"] for h in found.payload["hits"]]
        (plain,) = asyncio.run(dense([ask(kind, "What does code ZX81 mean?")]))
        assert isinstance(plain, Output)
        assert "Code ZX81: the fan failed." not in [h["text"] for h in plain.payload["hits"]]


def test_chunks_are_indexed_with_their_heading_for_bm25() -> None:
    store = MemoryStore()
    env = ingest_env()
    env.payload["chunks"][1]["heading"] = "Zeolite catalysts"
    asyncio.run(RetrieveHandler(store, dim=4)([env]))
    handler = RetrieveHandler(store, dim=4, fusion=Fusion(dense_weight=0.0))
    (found,) = asyncio.run(handler([ask("search", "zeolite", top_k=5)]))
    assert isinstance(found, Output)
    assert [h["text"] for h in found.payload["hits"]] == ["chunk 1"]


def test_closing_the_handler_closes_the_store(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, dim_default=4)
    handler = RetrieveHandler(store, dim=4)
    asyncio.run(handler([ingest_env()]))
    handler.close()
    reopened = EdgeStore(tmp_path, dim_default=4)  # the directory lock was released
    try:
        assert reopened.count("docs") == 2
    finally:
        reopened.close()


def test_a_delete_removes_the_documents_blobs_with_its_vectors() -> None:
    blobs = MemoryBlobStore()

    async def keep(document_id: str) -> None:
        await put_original(blobs, "default", document_id, b"x", "text/plain")
        await put_text(blobs, "default", document_id, ["x"])

    for document_id in ("d1", "d2"):
        asyncio.run(keep(document_id))
    store = MemoryStore()
    handler = RetrieveHandler(store, dim=4, blobs=blobs)
    asyncio.run(handler([ingest_env()]))
    delete = Envelope.new("delete", "docs", {"document_id": "d1"}, 60)
    (out,) = asyncio.run(handler([delete]))
    assert out == {"document_id": "d1", "deleted": True}
    assert sorted(blobs.blobs) == [original_key("default", "d2"), "default/d2/text.json"]
    # The store down: the delete fails as the store says (retried), the vectors go all the same.
    blobs.down = True
    (failed,) = asyncio.run(handler([Envelope.new("delete", "docs", {"document_id": "d2"}, 60)]))
    assert isinstance(failed, BlobStoreUnavailable) and failed.retryable


def test_chunks_are_indexed_with_their_context_for_bm25() -> None:
    store = MemoryStore()
    env = ingest_env()
    env.payload["chunks"][0]["heading"] = "Setup"
    env.payload["chunks"][0]["context"] = "Zeolite handbook > Setup\nPore size | Cation"
    asyncio.run(RetrieveHandler(store, dim=4)([env]))
    handler = RetrieveHandler(store, dim=4, fusion=Fusion(dense_weight=0.0))
    # The context's table header and title are searchable, though never part of the text.
    for question in ("cation", "zeolite"):
        (found,) = asyncio.run(handler([ask("search", question, top_k=5)]))
        assert isinstance(found, Output)
        assert [h["text"] for h in found.payload["hits"]] == ["chunk 0"]


def test_chat_hits_carry_their_evidence_score() -> None:
    store = MemoryStore()
    asyncio.run(RetrieveHandler(store, dim=4)([ingest_env()]))
    (found,) = asyncio.run(RetrieveHandler(store, dim=4)([ask("chat", "chunk", top_k=2)]))
    assert isinstance(found, Output)
    assert all(0.0 <= h["relevance"] <= 1.0 for h in found.payload["hits"])
