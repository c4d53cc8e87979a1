"""The retriever stage: index ingested chunks, search for questions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

import redis.asyncio as aioredis

from libs.common import constants as C
from libs.common.envelope import Envelope
from libs.common.errors import PermanentError
from libs.common.models import Chunk
from libs.common.vectors import decode_vector
from libs.common.worker import Outcome, Output
from services.retriever.store import VectorStore

logger = logging.getLogger(__name__)


Deleted = dict[str, set[str]]


class Tombstones(Protocol):
    """Deleted document ids per collection (Valkey in production)."""

    async def deleted(self, collections: set[str]) -> Deleted: ...


class ValkeyTombstones:
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client

    async def deleted(self, collections: set[str]) -> Deleted:
        names = sorted(collections)
        async with self.r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.smembers(C.deleted_documents_key(name))
            found = await pipe.execute()
        return {
            n: {m.decode() if isinstance(m, bytes) else m for m in ids}
            for n, ids in zip(names, found, strict=True)
        }


class NoTombstones:
    async def deleted(self, collections: set[str]) -> Deleted:
        return {name: set() for name in collections}


class RetrieveHandler:
    def __init__(self, store: VectorStore, dim: int, tombstones: Tombstones | None = None) -> None:
        self.store = store
        self.dim = dim
        self.tombstones = tombstones or NoTombstones()

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        deleted = await self.tombstones.deleted({e.collection for e in batch})
        # The store's calls block; the whole batch runs in one worker thread.
        outcomes = await asyncio.to_thread(self._run, batch, deleted)
        # A document deleted while its chunks were being indexed: remove them again,
        # so that no delete ever leaves vectors behind.
        indexed = [
            e for e, o in zip(batch, outcomes, strict=True) if e.kind == "ingest" and isinstance(o, Output)
        ]
        if indexed:
            now_deleted = await self.tombstones.deleted({e.collection for e in indexed})
            late = [e for e in indexed if e.payload["document_id"] in now_deleted[e.collection]]
            for env in late:
                await asyncio.to_thread(
                    self.store.delete_document, env.collection, env.payload["document_id"]
                )
        return outcomes

    def _run(self, batch: Sequence[Envelope], deleted: Deleted) -> list[Outcome]:
        out: list[Outcome] = []
        for env in batch:
            gone = deleted[env.collection]
            try:
                if env.kind == "ingest":
                    out.append(self._skip(env) if env.payload["document_id"] in gone else self._index(env))
                elif env.kind == "delete":
                    out.append(self._delete(env))
                else:
                    out.append(self._search(env, gone))
            except PermanentError as exc:
                out.append(exc)
        return out

    def _skip(self, env: Envelope) -> dict[str, object]:
        p = env.payload
        logger.info(
            "job_id=%s stage=retriever document %s was deleted; not indexed", env.job_id, p["document_id"]
        )
        return {"document_id": p["document_id"], "filename": p["filename"], "chunks": 0, "deleted": True}

    def _delete(self, env: Envelope) -> dict[str, object]:
        self.store.delete_document(env.collection, env.payload["document_id"])
        return {"document_id": env.payload["document_id"], "deleted": True}

    def _index(self, env: Envelope) -> Output:
        p = env.payload
        items = p["chunks"]
        chunks = [Chunk.model_validate({k: v for k, v in c.items() if k != "vector"}) for c in items]
        vectors = [decode_vector(c["vector"]) for c in items]
        self.store.ensure_collection(env.collection, self.dim)
        self.store.upsert(env.collection, chunks, vectors)
        logger.info(
            "job_id=%s stage=retriever indexed %d chunks of %s", env.job_id, len(chunks), p["filename"]
        )
        n, pages = len(chunks), p.get("pages", 0)
        result = {"document_id": p["document_id"], "filename": p["filename"], "pages": pages, "chunks": n}
        # The document is ready with this commit (its vectors are already searchable).
        ready = {
            "status": "ready",
            "pages": str(pages),
            "chunks": str(n),
            "chunks_embedded": str(n),
            "error": "",
        }
        return Output(result, updates={C.document_key(p["document_id"]): ready})

    def _search(self, env: Envelope, deleted: set[str]) -> dict[str, object]:
        p = env.payload
        top_k = int(p["top_k"])
        # Ask for a few more while deleted documents may still have vectors.
        hits = self.store.search(env.collection, decode_vector(p["vector"]), top_k + min(len(deleted), 100))
        hits = [h for h in hits if h.document_id not in deleted][:top_k]
        if env.kind == "search":
            keep = {"document_id", "filename", "page", "score", "text"}
            return {"hits": [h.model_dump(include=keep) for h in hits]}
        return {"question": p["question"], "top_k": p["top_k"], "hits": [h.model_dump() for h in hits]}
