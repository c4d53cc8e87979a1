"""The replace swap, message by message: the real retriever worker and handler on a real Valkey.

The stream order is set by the test, so searches land exactly between index
parts: before the last part of the new document a search sees only the old
document; after it, only the new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import redis.asyncio as aioredis

from libs.common import constants, keys
from libs.common.constants import CollectionMode
from libs.common.envelope import Envelope
from libs.common.jobs import JobStore
from libs.common.keys import KeySpace, Partition
from libs.common.scripts import NewDocument
from libs.common.settings import WorkerSettings
from libs.common.vectors import encode_vector
from libs.common.worker import Worker
from services.retriever.handler import RetrieveHandler, ValkeyRegistry
from services.retriever.memory_store import MemoryStore

SPACE = KeySpace()
P0 = Partition(0)

COLLECTION = "rules"
PARTS = 4


async def register(jobs: JobStore, doc_id: str, text: str, *, replace: bool) -> Envelope:
    """An upload as the gateway registers it: job, document, pending, filename, sha256."""
    payload: dict[str, Any] = {"document_id": doc_id, "filename": "rules.txt", "replace": replace}
    env = Envelope.new("ingest", COLLECTION, payload, 60)
    sha = hashlib.sha256(text.encode()).hexdigest()
    document = {
        "document_id": doc_id, "collection": COLLECTION, "filename": "rules.txt", "sha256": sha,
        "created_at": repr(time.time()), "job_id": env.job_id,
    }  # fmt: skip
    upload = NewDocument(keys.document(doc_id), document, filename="rules.txt", sha256=sha)
    answer = await jobs.submit(env, max_backlog=1000, collection=CollectionMode.CREATE, document=upload)
    assert answer == "ok"
    return env


def part(env: Envelope, n: int, vector: list[float]) -> Envelope:
    """Part n of the document as the embedder hands it on: two chunks with vectors."""
    doc_id = env.payload["document_id"]
    chunks = [
        {"document_id": doc_id, "filename": "rules.txt", "chunk_index": 2 * n + k,
         "text": f"{doc_id} {n}.{k}", "page": 1, "page_end": 1, "vector": encode_vector(vector)}
        for k in range(2)
    ]  # fmt: skip
    payload = {
        **env.payload,
        "pages": 1,
        "part": n,
        "parts": PARTS,
        "chunks_total": 2 * PARTS,
        "chunks": chunks,
    }
    return env.model_copy(update={"route": [constants.RETRIEVER], "payload": payload})


def search() -> Envelope:
    payload = {"query": "moor", "top_k": 10, "vector": encode_vector([1.0, 0.0, 0.0, 0.0])}
    return Envelope.new("search", COLLECTION, payload, 60).model_copy(update={"route": [constants.RETRIEVER]})


def test_searches_see_the_old_document_until_the_new_ones_last_part_then_only_the_new(
    valkey_url: str,
) -> None:
    async def body(r: aioredis.Redis) -> None:
        jobs = JobStore(r)
        store = MemoryStore()
        handler = RetrieveHandler(store, 4, ValkeyRegistry(r), job_ttl_s=3600, delete_timeout_s=60)
        one_at_a_time = WorkerSettings(read_count=1, concurrency=1, read_block_ms=50)
        # Index parts normally travel the bulk lane; here they share one stream with the
        # searches, so that the stream's order sets which search lands between which parts.
        worker = Worker(r, constants.RETRIEVER, handler, one_at_a_time)
        stream = P0.stream(constants.RETRIEVER, constants.INTERACTIVE)
        # The replace's delete job takes the bulk lane.
        bulk = Worker(r, constants.RETRIEVER, handler, one_at_a_time, constants.BULK)

        async def queue(env: Envelope) -> Envelope:
            if env.kind == "search":
                assert await jobs.submit(env, max_backlog=1000) == "ok"  # its job hash, then the stream
            else:
                await r.xadd(stream, {constants.ENVELOPE_FIELD: env.dumps()})
            return env

        old = await register(jobs, "old", "the old rules", replace=False)
        for n in range(PARTS):
            await queue(part(old, n, [1.0, 0.1, 0.0, 0.0]))
        new = await register(jobs, "new", "the new rules", replace=True)
        before = await queue(search())
        await queue(part(new, 0, [1.0, 0.0, 0.1, 0.0]))
        await queue(part(new, 1, [1.0, 0.0, 0.1, 0.0]))
        between = await queue(search())
        await queue(part(new, 2, [1.0, 0.0, 0.1, 0.0]))
        await queue(part(new, 3, [1.0, 0.0, 0.1, 0.0]))
        after = await queue(search())

        tasks = [asyncio.create_task(w.run()) for w in (worker, bulk)]
        try:
            results = {}
            for name, env in (("before", before), ("between", between), ("after", after)):
                job = await jobs.wait(env.job_id, 20)
                assert job is not None and job["status"] == "done", job
                results[name] = {h["document_id"] for h in job["result"]["hits"]}
            # The new document's parts were indexed before "between", but it stays hidden.
            assert results == {"before": {"old"}, "between": {"old"}, "after": {"new"}}
            assert (await jobs.wait(new.job_id, 20) or {})["status"] == "done"
            # The old document went in the same commit: unregistered, tombstoned, and a
            # delete job (queued behind) removes its vectors.
            assert await r.exists(keys.document("old").hash) == 0
            assert await r.smembers(SPACE.collection(COLLECTION).documents) == {b"new"}
            assert await r.sismember(SPACE.collection(COLLECTION).deleted, "old")
            assert await r.smembers(SPACE.collection(COLLECTION).pending) == set()
            assert await r.hget(keys.document("new").hash, "status") == b"ready"
            deletes = [
                key
                async for key in r.scan_iter(match=P0.key("job", "*"))
                if await r.hget(key, "kind") == b"delete"
            ]
            assert len(deletes) == 1
            delete_job = (await r.hget(deletes[0], "job_id") or b"").decode()
            assert (await jobs.wait(delete_job, 20) or {})["status"] == "done"
            assert {h.document_id for h in store.search(COLLECTION, [1, 0, 0, 0], 100)} == {"new"}
            assert store.count(COLLECTION) == 2 * PARTS
        finally:
            worker.stop()
            bulk.stop()
            await asyncio.gather(*tasks)

    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            await asyncio.wait_for(body(r), timeout=60)
        finally:
            await r.aclose()

    asyncio.run(main())
