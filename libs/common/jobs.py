"""The job store: one hash per job with its status, stage, result and timings.

Statuses: queued, embedding, retrieving, generating, indexing (in flight) and
done, failed, expired, cancelled (final). Every write refreshes the hash's TTL. When a job
reaches a final status one entry is added to its ``done`` stream, which waiters
block on (see :meth:`JobStore.wait`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal

import redis.asyncio as aioredis

from libs.common import constants as C
from libs.common.decode import as_text
from libs.common.envelope import Envelope
from libs.common.events import queued_ttl_s
from libs.common.scripts import CANCEL, EXPIRE_OVERDUE, SUBMIT
from libs.common.telemetry import trace_id_of

FINAL_STATUSES = C.FINAL_STATUSES


class JobStore:
    def __init__(
        self,
        client: aioredis.Redis,
        ttl_s: int = C.JOB_TTL_S,
        overdue_grace_s: float = 5.0,
        events_ttl_s: int = 3600,
    ) -> None:
        self._r = client
        self.ttl_s = ttl_s
        self.events_ttl_s = events_ttl_s
        self.overdue_grace_s = overdue_grace_s
        self._submit = client.register_script(SUBMIT)
        self._expire_overdue = client.register_script(EXPIRE_OVERDUE)
        self._cancel = client.register_script(CANCEL)

    async def submit(
        self,
        env: Envelope,
        *,
        max_backlog: int,
        blob: bytes | None = None,
        extra: dict[str, str] | None = None,
        collection: Literal["require", "create", "any"] = "any",
        document: dict[str, str] | None = None,
        sha256: str = "",
    ) -> str:
        """Queue a new job at its first stage; the answer says what happened.

        'ok'; 'unknown' when ``collection="require"`` and the collection does
        not exist; 'full' when the first stage's backlog is at ``max_backlog``;
        'duplicate:<document id>' when ``sha256`` is already in the collection.
        ``collection="create"`` registers the collection with the job;
        ``document`` registers an upload (its hash fields) in the collection.
        The checks, the job hash, the document, the upload blob and the stream
        entry are one atomic step: an accepted job is never half-created.
        """
        fields = {**job_fields(env), **(extra or {})}
        document_id = env.payload.get("document_id", "")
        blob_key = C.blob_key(document_id) if blob is not None else ""
        job_items = [x for kv in fields.items() for x in kv]
        doc_items = [x for kv in (document or {}).items() for x in kv]
        name = env.collection
        events_ttl = queued_ttl_s(self.events_ttl_s, env.deadline - env.created_at)
        answer = await self._submit(
            keys=[
                C.job_stream(env.stage, env.kind),
                C.job_key(env.job_id),
                blob_key,
                C.COLLECTIONS_KEY,
                C.collection_key(name),
                C.document_key(document_id) if document else "",
                C.collection_documents_key(name),
                C.collection_hashes_key(name),
                C.collection_pending_key(name) if document else "",
                C.collection_filename_key(name, document.get("filename", "")) if document else "",
                C.events_key(env.job_id),
            ],
            args=[max_backlog, env.dumps(), self.ttl_s, blob or b"", C.BLOB_TTL_S, name, collection,
                  repr(env.created_at), sha256, document_id, events_ttl, len(job_items), *job_items,
                  *doc_items],
        )  # fmt: skip
        return as_text(answer)

    async def cancel(self, job_id: str) -> str:
        """Cancel a job not yet final: 'cancelled' when this call cancelled it,
        'ended:<status>' when it was already final, '' for an unknown job."""
        raw = await self._r.hget(C.job_key(job_id), "document_id")
        status = await self._cancel(
            keys=[
                C.job_key(job_id),
                C.done_key(job_id),
                C.events_key(job_id),
                C.document_key(as_text(raw)) if raw else "",
            ],
            args=[time.time(), C.DONE_TTL_S, self.events_ttl_s, C.EVENTS_MAXLEN, C.CANCEL_CHANNEL, job_id],
        )
        return as_text(status)

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw = await self._r.hgetall(C.job_key(job_id))
        if not raw:
            return None
        if self._overdue(raw) and await self._expire_overdue(
            keys=[C.job_key(job_id), C.done_key(job_id), C.events_key(job_id)],
            args=[time.time(), self.overdue_grace_s, C.DONE_TTL_S, self.events_ttl_s, C.EVENTS_MAXLEN],
        ):
            raw = await self._r.hgetall(C.job_key(job_id))
        return decode_job(raw)

    def _overdue(self, raw: dict[Any, Any]) -> bool:
        """Still in flight though past its deadline and the grace after it."""
        if as_text(raw.get(b"status", b"")) in FINAL_STATUSES:
            return False
        deadline = float(raw.get(b"deadline") or "inf")
        return time.time() > deadline + self.overdue_grace_s

    async def wait(self, job_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The job once final, or as it stands after ``timeout_s``; None if unknown.

        Reads the job and blocks on its ``done`` stream side by side (one round
        trip's latency); the stream's entry carries the final fields, so no read
        follows the wake-up. For an unknown or already final job the blocking
        read is abandoned (its connection is dropped, not reused). A job past
        its deadline and grace is expired here if no stage finished it.
        """
        if timeout_s <= 0:
            return await self.get(job_id)
        block_ms = max(1, int(timeout_s * 1000))
        notified = asyncio.ensure_future(self._r.xread({C.done_key(job_id): "0-0"}, count=1, block=block_ms))
        try:
            raw = await self._r.hgetall(C.job_key(job_id))
        except BaseException:
            notified.cancel()
            raise
        final = bool(raw) and as_text(raw.get(b"status", b"")) in FINAL_STATUSES
        if not raw or final or self._overdue(raw):
            if final:
                # A recently finished job's notification is already there: let the
                # read complete rather than drop a connection for it.
                await asyncio.wait({notified}, timeout=0.02)
            if not notified.done():
                notified.cancel()
            await asyncio.gather(notified, return_exceptions=True)
            if not raw:
                return None
            return decode_job(raw) if final else await self.get(job_id)
        # Wake by the deadline's end at the latest, to expire the job if nobody finished it.
        overdue_in = float(raw.get(b"deadline") or "inf") + self.overdue_grace_s - time.time()
        limit = max(0.0, overdue_in) + 0.05 if overdue_in < timeout_s else None
        done, _ = await asyncio.wait({notified}, timeout=limit)
        if not done:
            notified.cancel()
            await asyncio.gather(notified, return_exceptions=True)
            return await self.get(job_id)
        reply: Any = notified.result()
        if reply:
            _key, entries = reply[0]
            return decode_job({**raw, **entries[0][1]})
        return await self.get(job_id)


def job_fields(env: Envelope) -> dict[str, str]:
    """The hash of a job just queued at its first stage."""
    return {
        "job_id": env.job_id,
        "kind": env.kind,
        "collection": env.collection,
        "status": "queued",
        "stage": env.stage,
        "attempts": "0",
        "created_at": repr(env.created_at),
        "updated_at": repr(env.created_at),
        "deadline": repr(env.deadline),
        "timings": "{}",
        # The trace every stage's span joins: find the job in the trace viewer.
        "trace_id": trace_id_of(env.traceparent),
    }


def decode_job(raw: dict[Any, Any]) -> dict[str, Any]:
    h = {as_text(k): as_text(v) for k, v in raw.items()}
    job: dict[str, Any] = {
        "job_id": h.get("job_id", ""),
        "kind": h.get("kind", ""),
        "collection": h.get("collection", ""),
        "status": h.get("status", "queued"),
        "stage": h.get("stage") or None,
        "attempts": int(h.get("attempts", "0")),
        "timings": json.loads(h.get("timings") or "{}"),
        "created_at": float(h.get("created_at", "0") or 0),
        "updated_at": float(h.get("updated_at", "0") or 0),
    }
    if "result" in h:
        job["result"] = json.loads(h["result"])
    if h.get("error"):
        job["error"] = h["error"]
    if h.get("document_id"):
        job["document_id"] = h["document_id"]
    if h.get("trace_id"):
        job["trace_id"] = h["trace_id"]
    return job
