"""The retriever stage: index ingested chunks, search for questions.

A document's vectors stay hidden from searches until the document is ready:
its id is in the collection's "pending" set from upload until the commit that
completes its last index part, and deleted documents' ids stay in the
"deleted" set. Searches read both sets in one transaction and filter them
inside the vector store, so a document appears whole, at once, and an upload
with ``replace`` swaps the old document for the new one in that same commit.

Hybrid search: the retriever computes the BM25 sparse vectors itself, from each
chunk's heading and text when it indexes it and from the question's text (the
payload's ``query``, the standalone question for a follow-up) when it searches;
the store merges the dense and the sparse rankings as ``fusion`` says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import redis.asyncio as aioredis

from libs.common import constants as C
from libs.common.decode import as_text
from libs.common.envelope import Envelope
from libs.common.errors import PermanentError
from libs.common.jobs import job_fields
from libs.common.logs import job_log
from libs.common.models import Chunk
from libs.common.vectors import decode_vector
from libs.common.worker import Outcome, Output
from services.retriever.fusion import Fusion
from services.retriever.sparse import Bm25
from services.retriever.store import VectorStore

logger = logging.getLogger(__name__)


class Hidden(NamedTuple):
    """Documents of one collection that searches must not return."""

    deleted: frozenset[str] = frozenset()
    pending: frozenset[str] = frozenset()

    @property
    def all(self) -> frozenset[str]:
        return self.deleted | self.pending


class Replaced(NamedTuple):
    """An older document that a ``replace`` upload retires when it is ready."""

    document_id: str
    sha256: str
    filename: str


class Registry(Protocol):
    """What the retriever reads from the document registry (Valkey in production)."""

    async def hidden(self, collections: set[str]) -> dict[str, Hidden]: ...

    async def replaced_by(self, env: Envelope) -> list[Replaced]: ...


class ValkeyRegistry:
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client

    async def hidden(self, collections: set[str]) -> dict[str, Hidden]:
        names = sorted(collections)
        # One transaction: a replace's swap is seen whole or not at all.
        async with self.r.pipeline(transaction=True) as pipe:
            for name in names:
                pipe.smembers(C.deleted_documents_key(name))
                pipe.smembers(C.collection_pending_key(name))
            found = await pipe.execute()
        return {
            name: Hidden(
                frozenset(as_text(m) for m in found[2 * k]), frozenset(as_text(m) for m in found[2 * k + 1])
            )
            for k, name in enumerate(names)
        }

    async def replaced_by(self, env: Envelope) -> list[Replaced]:
        """The collection's documents under the same filename, uploaded before this one."""
        p = env.payload
        found = await self.r.smembers(C.collection_filename_key(env.collection, p["filename"]))
        ids = [as_text(i) for i in found]
        others = sorted(i for i in ids if i != p["document_id"])
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hget(C.document_key(p["document_id"]), "created_at")
            for doc_id in others:
                pipe.hmget(C.document_key(doc_id), "created_at", "sha256")
            mine, *theirs = await pipe.execute()
        if mine is None:
            return []  # the new document itself was deleted
        created = float(as_text(mine))
        return [
            Replaced(doc_id, as_text(sha or b""), p["filename"])
            for doc_id, (at, sha) in zip(others, theirs, strict=True)
            if at is not None and float(as_text(at)) < created
        ]


class NoRegistry:
    """Nothing hidden, nothing replaced: for a store used without Valkey (tests)."""

    async def hidden(self, collections: set[str]) -> dict[str, Hidden]:
        return {name: Hidden() for name in collections}

    async def replaced_by(self, env: Envelope) -> list[Replaced]:
        return []


class RetrieveHandler:
    def __init__(
        self,
        store: VectorStore,
        dim: int,
        registry: Registry | None = None,
        *,
        job_ttl_s: int = 86400,
        delete_timeout_s: float = 3600.0,
        bm25: Bm25 | None = None,
        fusion: Fusion | None = None,
    ) -> None:
        self.store = store
        self.dim = dim
        self.registry = registry or NoRegistry()
        self.job_ttl_s = job_ttl_s
        self.delete_timeout_s = delete_timeout_s
        self.bm25 = bm25 or Bm25()
        # Sparse vectors are indexed whatever this says, so hybrid search can be turned on later.
        self.fusion = fusion or Fusion()

    def close(self) -> None:
        """Release the vector store once the workers have stopped (the edge store flushes)."""
        self.store.close()

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        hidden = await self.registry.hidden({e.collection for e in batch})
        # Once per replacing document, however many of its parts this batch holds.
        replacing = {e.job_id: e for e in batch if e.kind == "ingest" and e.payload.get("replace")}
        replaced = {job_id: await self.registry.replaced_by(e) for job_id, e in replacing.items()}
        # The store's calls block; the whole batch runs in one worker thread.
        outcomes = await asyncio.to_thread(self._run, batch, hidden, replaced)
        # A document deleted while its chunks were being indexed: remove them again,
        # so that no delete ever leaves vectors behind.
        indexed = [
            e
            for e, o in zip(batch, outcomes, strict=True)
            if e.kind == "ingest" and isinstance(o, Output) and not o.payload.get("deleted")
        ]
        if indexed:
            now_hidden = await self.registry.hidden({e.collection for e in indexed})
            late = [e for e in indexed if e.payload["document_id"] in now_hidden[e.collection].deleted]
            for env in late:
                await asyncio.to_thread(
                    self.store.delete_document, env.collection, env.payload["document_id"]
                )
        return outcomes

    def _run(
        self, batch: Sequence[Envelope], hidden: dict[str, Hidden], replaced: dict[str, list[Replaced]]
    ) -> list[Outcome]:
        out: list[Outcome] = []
        for env in batch:
            try:
                if env.kind == "ingest":
                    if env.payload["document_id"] in hidden[env.collection].deleted:
                        out.append(self._skip(env))
                    else:
                        out.append(self._index(env, replaced.get(env.job_id, [])))
                elif env.kind == "delete":
                    out.append(self._delete(env))
                else:
                    out.append(self._search(env, hidden[env.collection].all))
            except PermanentError as exc:
                out.append(exc)
        return out

    def _skip(self, env: Envelope) -> Output:
        p = env.payload
        logger.info("document %s was deleted; not indexed", p["document_id"], extra=job_log(env, C.RETRIEVER))
        result = {"document_id": p["document_id"], "filename": p["filename"], "chunks": 0, "deleted": True}
        return Output(result, parts=int(p.get("parts", 1)))

    def _delete(self, env: Envelope) -> dict[str, object]:
        self.store.delete_document(env.collection, env.payload["document_id"])
        return {"document_id": env.payload["document_id"], "deleted": True}

    def _index(self, env: Envelope, replaced: list[Replaced]) -> Output:
        p = env.payload
        items = p["chunks"]
        chunks = [Chunk.model_validate({k: v for k, v in c.items() if k != "vector"}) for c in items]
        vectors = [decode_vector(c["vector"]) for c in items]
        sparse = [self.bm25.document(sparse_text(chunk)) for chunk in chunks]
        self.store.ensure_collection(env.collection, self.dim)
        self.store.upsert(env.collection, chunks, vectors, sparse)
        parts = int(p.get("parts", 1))
        logger.info(
            "indexed %d chunks of %s (part %d of %d)",
            len(chunks),
            p["filename"],
            int(p.get("part", 0)) + 1,
            parts,
            extra=job_log(env, C.RETRIEVER),
        )
        total, pages = int(p.get("chunks_total", len(chunks))), p.get("pages", 0)
        result = {"document_id": p["document_id"], "filename": p["filename"], "pages": pages, "chunks": total}
        # With the last part's commit the document is ready and its vectors searchable.
        ready = {
            "status": "ready",
            "pages": str(pages),
            "chunks": str(total),
            "chunks_embedded": str(total),
            "error": "",
        }
        return Output(
            result,
            parts=parts,
            updates={C.document_key(p["document_id"]): ready},
            on_complete=self._completion(env, replaced),
        )

    def _completion(self, env: Envelope, replaced: list[Replaced]) -> list[list[Any]]:
        """Ops applied with the job's completion: unhide the document, retire what it replaces,
        and move the collection's version on (its cached answers are no longer served)."""
        doc_id = env.payload["document_id"]
        ops: list[list[Any]] = [["SREM", C.collection_pending_key(env.collection), doc_id]]
        if replaced:
            # Unless the new document was deleted meanwhile, the old ones go in this same step.
            ops.append(["IFEXISTS", C.document_key(doc_id)])
            for old in replaced:
                ops.extend(self._retire(env.collection, old))
        # Last: IFEXISTS skips what follows it, and a dropped collection's hash must not
        # come back as a bare version counter.
        collection = C.collection_key(env.collection)
        ops.extend([["IFEXISTS", collection], ["HINCRBY", collection, C.COLLECTION_VERSION_FIELD, 1]])
        return ops

    def _retire(self, collection: str, old: Replaced) -> list[list[Any]]:
        """Delete a replaced document as ``DELETE /v1/documents/{id}`` does: hidden at once,
        unregistered, and its vectors removed by a delete job."""
        delete = Envelope.new("delete", collection, {"document_id": old.document_id}, self.delete_timeout_s)
        job = C.job_key(delete.job_id)
        return [
            ["SADD", C.deleted_documents_key(collection), old.document_id],
            ["SREM", C.collection_documents_key(collection), old.document_id],
            ["SREM", C.collection_pending_key(collection), old.document_id],
            ["SREM", C.collection_filename_key(collection, old.filename), old.document_id],
            ["HDELEQ", C.collection_hashes_key(collection), old.sha256, old.document_id],
            ["DEL", C.document_key(old.document_id)],
            ["DEL", C.blob_key(old.document_id)],
            ["HSET", job, *[x for kv in job_fields(delete).items() for x in kv]],
            ["EXPIRE", job, self.job_ttl_s],
            ["XADD", C.job_stream(C.RETRIEVER, delete.kind), "*", C.ENVELOPE_FIELD, delete.dumps()],
        ]

    def _search(self, env: Envelope, hidden: frozenset[str]) -> Output:
        p = env.payload
        hits = self.store.search(
            env.collection,
            decode_vector(p["vector"]),
            int(p["top_k"]),
            exclude=hidden,
            sparse=None
            if self.fusion.dense_only
            else self.bm25.query(str(p.get("query") or p.get("question") or "")),
            fusion=self.fusion,
        )
        if env.kind == "search":
            keep = {"document_id", "filename", "page", "score", "text"}
            return Output({"hits": [h.model_dump(include=keep) for h in hits]})
        return Output(
            {**{k: v for k, v in p.items() if k != "vector"}, "hits": [h.model_dump() for h in hits]},
            event={"hits": len(hits)},
        )


def sparse_text(chunk: Chunk) -> str:
    """What BM25 indexes of a chunk: its heading path (a document's title, a section's
    name) and its text, so a chunk deep in a section still matches the section's words."""
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text
