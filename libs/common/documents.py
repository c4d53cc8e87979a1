"""Collections and documents as users see them: the read side of the registry.

An upload registers its document atomically with its ingest job (see
``JobStore.submit``). The document then follows its job: ``queued``,
``parsing``, ``embedding``, ``indexing``, and finally ``ready`` or ``failed``,
which are written on the document itself because it outlives the job.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from libs.common import keys
from libs.common.access import Access, reaches
from libs.common.commit import STOPPED, CommitBatch, Require
from libs.common.constants import EMBEDDED_PART_FIELD
from libs.common.decode import as_text
from libs.common.document_ops import DocumentRef, delete_document
from libs.common.envelope import Envelope
from libs.common.jobs import JobStore, job_fields
from libs.common.keys import CollectionKeys, KeySpace
from libs.common.scripts import Commit, CreateCollection, DropCollection
from libs.common.status import DOCUMENT_FINAL, DocumentStatus, JobStatus


def _int(h: dict[str, str], key: str) -> int | None:
    value = h.get(key, "")
    return int(value) if value.isdigit() else None


def _embedded(h: dict[str, str], status: str) -> int:
    """Chunks embedded: all of them once ready, else the sum over the parts embedded so far."""
    if status == "ready":
        return _int(h, "chunks") or 0
    return sum(int(v) for k, v in h.items() if k.startswith(EMBEDDED_PART_FIELD) and v.isdigit())


class DocumentStore:
    def __init__(self, client: aioredis.Redis, jobs: JobStore, space: KeySpace | None = None) -> None:
        self._r = client
        self.jobs = jobs
        self.space = space or KeySpace()
        self._create = CreateCollection(client)
        self._drop = DropCollection(client)
        # A delete job is accepted by this commit: a replica confirms it as a submit.
        self._commit = Commit(client, jobs.durability)

    # --- collections -----------------------------------------------------------

    def collection_keys(self, name: str, tenant: str = keys.DEFAULT_TENANT) -> CollectionKeys:
        return self.space.collection(name, tenant)

    async def create_collection(self, access: Access, name: str, description: str = "") -> bool:
        """False when the tenant has a collection of that name already."""
        target = self.collection_keys(name, access.tenant)
        return await self._create(target, description=description, now=time.time())

    async def collection_exists(self, access: Access, name: str) -> bool:
        """Whether the tenant has ``name`` and ``access`` reaches it."""
        if not access.sees(name):
            return False
        collection = self.collection_keys(name, access.tenant)
        return bool(await self._r.sismember(collection.registry, name))

    async def collection(self, access: Access, name: str) -> dict[str, Any] | None:
        if not await self.collection_exists(access, name):
            return None
        raw = await self._r.hgetall(self.collection_keys(name, access.tenant).meta)
        meta = {as_text(k): as_text(v) for k, v in raw.items()}
        docs = await self.documents(access, name)
        return {
            "name": name,
            "description": meta.get("description", ""),
            "created_at": float(meta.get("created_at") or 0),
            "documents": len(docs),
            "chunks": sum(d["chunks"] or 0 for d in docs if d["status"] == DocumentStatus.READY),
        }

    async def collections(self, access: Access) -> list[dict[str, Any]]:
        """The tenant's collections within reach, from every partition, by name."""
        async with self._r.pipeline(transaction=False) as pipe:
            for partition in self.space.all():
                pipe.smembers(partition.collections(access.tenant))
            found_sets: list[set[bytes]] = await pipe.execute()
        names = {as_text(n) for members in found_sets for n in members}
        found = [await self.collection(access, name) for name in sorted(names) if access.sees(name)]
        return [c for c in found if c is not None]

    # --- documents ---------------------------------------------------------------

    async def under_filename(self, access: Access, collection: str, filename: str) -> list[str]:
        """The ids of the collection's documents uploaded under ``filename``."""
        ids = await self._r.smembers(self.collection_keys(collection, access.tenant).filename(filename))
        return sorted(as_text(i) for i in ids)

    async def get(self, document_id: str, access: Access | None = None) -> dict[str, Any] | None:
        """The document; None when unknown or out of ``access``'s reach."""
        raw = await self._r.hgetall(keys.document(document_id).hash)
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        if not fields or not reaches(access, fields.get("tenant"), fields.get("collection")):
            return None
        return await self._view(fields)

    async def documents(self, access: Access, collection: str) -> list[dict[str, Any]]:
        target = self.collection_keys(collection, access.tenant)
        ids = sorted(as_text(i) for i in await self._r.smembers(target.documents))
        async with self._r.pipeline(transaction=False) as pipe:
            for doc_id in ids:
                pipe.hgetall(keys.document(doc_id).hash)
            raws = await pipe.execute()
        views = [await self._view({as_text(k): as_text(v) for k, v in raw.items()}) for raw in raws if raw]
        return sorted(views, key=lambda d: d["created_at"])

    async def delete(self, document_id: str, timeout_s: float, access: Access | None = None) -> str | None:
        """Remove a document; None if unknown (or out of reach), else the id of the job
        removing its vectors.

        When this returns, searches no longer return the document: its id is a
        tombstone that the retriever filters on until, and after, the vectors go.
        The collection's version moves on in the same step (cached answers go stale).
        """
        doc_keys = keys.document(document_id)
        found = await self._r.hmget(doc_keys.hash, ["filename", "sha256", "tenant", "collection"])
        filename, sha256, tenant, collection = (as_text(x) if x is not None else None for x in found)
        if filename is None or collection is None:
            return None
        if not reaches(access, tenant, collection):
            return None
        # The document's partition is its collection's (its id was minted there), whatever
        # the partition count says now.
        target = keys.collection_of(tenant or keys.DEFAULT_TENANT, collection, document_id)
        env = Envelope.new(
            "delete",
            collection,
            {"document_id": document_id},
            timeout_s,
            partition=target.partition,
            tenant=target.tenant,
            key_id=access.key_id if access else "",
        )
        ref = DocumentRef(document_id, sha256 or "", filename)
        batch = CommitBatch(doc_keys.hash)
        # Gone meanwhile (a concurrent delete): nothing is written, and it is unknown here.
        batch.add(
            "", [Require(doc_keys.hash), *delete_document(target, ref, env, job_fields(env), self.jobs.ttl_s)]
        )
        (result,) = await self._commit(batch, group="", subject=f"job_id={env.job_id}")
        return env.job_id if result != STOPPED else None

    async def delete_collection(self, access: Access, name: str, timeout_s: float) -> list[str] | None:
        """Remove a collection and all its documents; None if unknown, else the delete jobs.

        The collection disappears first (questions get 404, an upload starts a
        fresh one); then each of its documents is deleted as by ``delete``:
        hidden at once, blobs removed, vectors removed by the retriever. A
        same-named collection created meanwhile keeps its own documents.
        """
        if not access.sees(name):
            return None
        target = self.collection_keys(name, access.tenant)
        if not await self._drop(target):
            return None
        ids = sorted(as_text(i) for i in await self._r.smembers(target.documents))
        jobs = [await self.delete(doc_id, timeout_s, access) for doc_id in ids]
        return [j for j in jobs if j is not None]

    async def _view(self, h: dict[str, str]) -> dict[str, Any]:
        status, error = h.get("status", "queued"), h.get("error") or None
        chunks = _int(h, "chunks")
        if status not in DOCUMENT_FINAL:
            job = await self.jobs.get(h.get("job_id", ""))
            if job is None:
                status, error = "failed", "its ingest job expired before the document was ready"
            elif job["status"] == JobStatus.DONE:
                status = DocumentStatus.READY
            elif job["status"] in (JobStatus.FAILED, JobStatus.EXPIRED):
                status, error = DocumentStatus.FAILED, job.get("error", job["status"])
            elif job["status"] in (JobStatus.EMBEDDING, JobStatus.INDEXING):
                # A large document is embedded part by part: it is indexing once every part is.
                if chunks is None:
                    status = "parsing"
                elif _embedded(h, status) < chunks:
                    status = "embedding"
                else:
                    status = "indexing"
            else:
                status = job["status"]
        return {
            "document_id": h.get("document_id", ""),
            "collection": h.get("collection", ""),
            "filename": h.get("filename", ""),
            "type": h.get("type", ""),
            "size": _int(h, "size"),
            "sha256": h.get("sha256", ""),
            "pages": _int(h, "pages"),
            "chunks": chunks,
            "status": status,
            "error": error,
            "progress": {"chunks_embedded": _embedded(h, status), "chunks_total": chunks},
            "job_id": h.get("job_id", ""),
            "created_at": float(h.get("created_at") or 0),
        }
