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
from typing import NamedTuple, Protocol

import redis.asyncio as aioredis

from libs.common import document_ops, keys, slots
from libs.common.blobstore import BlobStore, delete_document_blobs
from libs.common.commit import Op, SetIfExists
from libs.common.constants import RETRIEVER
from libs.common.decode import as_text
from libs.common.document_ops import DocumentRef
from libs.common.envelope import Envelope
from libs.common.errors import BlobStoreError, PermanentError
from libs.common.jobs import job_fields
from libs.common.keys import CollectionKeys
from libs.common.logs import job_log
from libs.common.models import Chunk
from libs.common.payloads import ChatVector, DeleteDocument, IngestPart, SearchVector, view
from libs.common.stage import Outcome, Output
from libs.common.vectors import decode_vector
from services.retriever.fusion import Fusion
from services.retriever.sparse import Bm25
from services.retriever.store import VectorStore, store_collection

logger = logging.getLogger(__name__)


class Hidden(NamedTuple):
    """Documents of one collection that searches must not return."""

    deleted: frozenset[str] = frozenset()
    pending: frozenset[str] = frozenset()

    @property
    def all(self) -> frozenset[str]:
        return self.deleted | self.pending


class Registry(Protocol):
    """What the retriever reads from the document registry (Valkey in production)."""

    async def hidden(self, collections: set[CollectionKeys]) -> dict[CollectionKeys, Hidden]: ...

    async def replaced_by(self, env: Envelope) -> list[DocumentRef]: ...


class ValkeyRegistry:
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client

    async def hidden(self, collections: set[CollectionKeys]) -> dict[CollectionKeys, Hidden]:
        """Hidden documents per collection (of any tenant, in any partition)."""
        found: dict[CollectionKeys, Hidden] = {}
        for partition in {c.partition for c in collections}:
            mine = sorted(
                (c for c in collections if c.partition == partition), key=lambda c: (c.tenant, c.name)
            )
            names = [k for c in mine for k in (c.deleted, c.pending)]
            # One transaction: a replace's swap is seen whole or not at all.
            async with slots.transaction(self.r, "hidden", names) as pipe:
                for name in names:
                    pipe.smembers(name)
                sets = await pipe.execute()
            for k, c in enumerate(mine):
                deleted, pending = sets[2 * k], sets[2 * k + 1]
                found[c] = Hidden(
                    frozenset(as_text(m) for m in deleted), frozenset(as_text(m) for m in pending)
                )
        return found

    async def replaced_by(self, env: Envelope) -> list[DocumentRef]:
        """The collection's documents under the same filename, uploaded before this one."""
        p = view(env, IngestPart)
        found = await self.r.smembers(env.collection_keys.filename(p["filename"]))
        ids = [as_text(i) for i in found]
        others = sorted(i for i in ids if i != p["document_id"])
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hget(keys.document(p["document_id"]).hash, "created_at")
            for doc_id in others:
                pipe.hmget(keys.document(doc_id).hash, "created_at", "sha256")
            mine, *theirs = await pipe.execute()
        if mine is None:
            return []  # the new document itself was deleted
        created = float(as_text(mine))
        return [
            DocumentRef(doc_id, as_text(sha or b""), p["filename"])
            for doc_id, (at, sha) in zip(others, theirs, strict=True)
            if at is not None and float(as_text(at)) < created
        ]


class NoRegistry:
    """Nothing hidden, nothing replaced: for a store used without Valkey (tests)."""

    async def hidden(self, collections: set[CollectionKeys]) -> dict[CollectionKeys, Hidden]:
        return {c: Hidden() for c in collections}

    async def replaced_by(self, env: Envelope) -> list[DocumentRef]:
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
        blobs: BlobStore | None = None,
    ) -> None:
        self.store = store
        # Where deleted documents' originals and text are removed from (None: nowhere).
        self.blobs = blobs
        self.dim = dim
        self.registry = registry or NoRegistry()
        self.job_ttl_s = job_ttl_s
        self.delete_timeout_s = delete_timeout_s
        self.bm25 = bm25 or Bm25()
        # Sparse vectors are indexed whatever this says, so hybrid search can be turned on later.
        self.fusion = fusion or Fusion()

    def on_failure(self, env: Envelope, error: str, now: float) -> list[Op]:
        """An ingest that fails here leaves its document failed, with the reason."""
        return document_ops.ingest_failed(env, error, now)

    def close(self) -> None:
        """Release the vector store once the workers have stopped (the edge store flushes)."""
        self.store.close()

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        hidden = await self.registry.hidden({e.collection_keys for e in batch})
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
            now_hidden = await self.registry.hidden({e.collection_keys for e in indexed})
            late = [e for e in indexed if e.payload["document_id"] in now_hidden[e.collection_keys].deleted]
            for env in late:
                await asyncio.to_thread(
                    self.store.delete_document, store_collection(env), env.payload["document_id"]
                )
        if self.blobs is not None:
            return await self._delete_blobs(self.blobs, batch, outcomes)
        return outcomes

    async def _delete_blobs(
        self, blobs: BlobStore, batch: Sequence[Envelope], outcomes: list[Outcome]
    ) -> list[Outcome]:
        """A deleted document's original and text go once its vectors have: here, in its
        delete job, which is retried until it succeeds (so a process that dies midway
        leaves the work to the next attempt). A store that fails fails the message as it
        says (retried, or dead-lettered: the blobs are then the sweep's)."""
        done = list(outcomes)
        for i, env in enumerate(batch):
            if env.kind != "delete" or isinstance(done[i], BaseException):
                continue
            document_id = view(env, DeleteDocument)["document_id"]
            try:
                count = await delete_document_blobs(blobs, env.tenant, document_id)
            except BlobStoreError as exc:
                done[i] = exc
                continue
            logger.info("deleted %d blobs of %s", count, document_id, extra=job_log(env, RETRIEVER))
        return done

    def _run(
        self,
        batch: Sequence[Envelope],
        hidden: dict[CollectionKeys, Hidden],
        replaced: dict[str, list[DocumentRef]],
    ) -> list[Outcome]:
        out: list[Outcome] = []
        for env in batch:
            try:
                if env.kind == "ingest":
                    if env.payload["document_id"] in hidden[env.collection_keys].deleted:
                        out.append(self._skip(env))
                    else:
                        out.append(self._index(env, replaced.get(env.job_id, [])))
                elif env.kind == "delete":
                    out.append(self._delete(env))
                else:
                    out.append(self._search(env, hidden[env.collection_keys].all))
            except PermanentError as exc:
                out.append(exc)
        return out

    def _skip(self, env: Envelope) -> Output:
        p = view(env, IngestPart)
        logger.info("document %s was deleted; not indexed", p["document_id"], extra=job_log(env, RETRIEVER))
        result = {"document_id": p["document_id"], "filename": p["filename"], "chunks": 0, "deleted": True}
        return Output(result, parts=int(p.get("parts", 1)))

    def _delete(self, env: Envelope) -> dict[str, object]:
        document_id = view(env, DeleteDocument)["document_id"]
        self.store.delete_document(store_collection(env), document_id)
        return {"document_id": document_id, "deleted": True}

    def _index(self, env: Envelope, replaced: list[DocumentRef]) -> Output:
        p = view(env, IngestPart)
        items = p["chunks"]
        chunks = [Chunk.model_validate({k: v for k, v in c.items() if k != "vector"}) for c in items]
        vectors = [decode_vector(c["vector"]) for c in items]
        sparse = [self.bm25.document(sparse_text(chunk)) for chunk in chunks]
        self.store.ensure_collection(store_collection(env), self.dim)
        self.store.upsert(store_collection(env), chunks, vectors, sparse)
        parts = int(p.get("parts", 1))
        logger.info(
            "indexed %d chunks of %s (part %d of %d)",
            len(chunks),
            p["filename"],
            int(p.get("part", 0)) + 1,
            parts,
            extra=job_log(env, RETRIEVER),
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
            ops=[SetIfExists(keys.document(p["document_id"]).hash, ready)],
            on_complete=document_ops.ingest_ready(
                env, [op for old in replaced for op in self._retire(env, old)]
            ),
        )

    def _retire(self, env: Envelope, old: DocumentRef) -> list[Op]:
        """Delete a replaced document as ``DELETE /v1/documents/{id}`` does: hidden at once,
        unregistered, and its vectors removed by a delete job."""
        delete = Envelope.new(
            "delete",
            env.collection,
            {"document_id": old.document_id},
            self.delete_timeout_s,
            partition=env.partition,
            tenant=env.tenant,
            key_id=env.key_id,
        )
        collection = env.collection_keys
        return document_ops.delete_document(
            collection, old, delete, job_fields(delete), self.job_ttl_s, bump_version=False
        )

    def _search(self, env: Envelope, hidden: frozenset[str]) -> Output:
        p = view(env, SearchVector)
        hits = self.store.search(
            store_collection(env),
            decode_vector(p["vector"]),
            int(p["top_k"]),
            exclude=hidden,
            sparse=None
            if self.fusion.dense_only
            else self.bm25.query(str(p.get("query") or view(env, ChatVector).get("question") or "")),
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
    """What BM25 indexes of a chunk: its context (the document's title and heading path,
    a table's header or a list's lead-in: what its embedding reads too), else its heading
    path, then its text, so a chunk deep in a section still matches the section's words."""
    lead = chunk.context or chunk.heading
    return f"{lead}\n{chunk.text}" if lead else chunk.text
