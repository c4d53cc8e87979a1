"""The job store: one hash per job with its status, stage, result and timings.

Statuses: queued, embedding, retrieving, generating, indexing (in flight) and
done, failed, expired, cancelled (final). Every write refreshes the hash's TTL. When a job
reaches a final status one entry is added to its ``done`` stream, which waiters
follow (see :meth:`JobStore.wait`).
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

import redis.asyncio as aioredis

from libs.common import keys
from libs.common.access import Access, reaches
from libs.common.constants import (
    BLOB_TTL_S,
    BULK,
    DONE_TTL_S,
    EVENTS_MAXLEN,
    JOB_TTL_S,
    CollectionMode,
    lane_of,
)
from libs.common.decode import as_text
from libs.common.durability import Durability
from libs.common.envelope import Envelope
from libs.common.events import queued_ttl_s
from libs.common.keys import CANCEL_CHANNEL, DEFAULT_TENANT
from libs.common.scripts import Cancel, ExpireOverdue, NewDocument, Submit
from libs.common.status import JobStatus, is_final
from libs.common.telemetry import trace_id_of
from libs.common.watch import DirectReads, Watcher

# More jobs in flight than any tenant could have: no limit.
NO_LIMIT: Final = 2**53


class JobStore:
    def __init__(
        self,
        client: aioredis.Redis,
        ttl_s: int = JOB_TTL_S,
        overdue_grace_s: float = 5.0,
        events_ttl_s: int = 3600,
        watcher: Watcher | None = None,
        *,
        durability: Durability | None = None,
    ) -> None:
        """``watcher`` follows done streams for :meth:`wait` (default: reads on ``client``);
        ``durability``: a replica confirms each accepted job (``durability.py``)."""
        self._r = client
        self.durability = durability
        self._watcher: Watcher = watcher or DirectReads(client)
        self.ttl_s = ttl_s
        self.events_ttl_s = events_ttl_s
        self.overdue_grace_s = overdue_grace_s
        self._submit = Submit(client, durability)
        self._expire_overdue = ExpireOverdue(client)
        self._cancel = Cancel(client)

    async def submit(
        self,
        env: Envelope,
        *,
        max_backlog: int,
        max_inflight: int | None = None,
        max_interactive: int | None = None,
        extra: dict[str, str] | None = None,
        collection: CollectionMode = CollectionMode.ANY,
        document: NewDocument | None = None,
    ) -> str:
        """Queue a new job at its first stage; the answer says what happened.

        'ok'; 'unknown' when ``collection`` is REQUIRE and the collection does
        not exist; 'full' when the first stage's backlog is at ``max_backlog``;
        'busy' when the tenant has ``max_inflight`` jobs in flight in the job's
        partition (None: no limit); 'busy-interactive' when the job is on the
        interactive lane and the tenant has ``max_interactive`` of those in flight;
        'duplicate:<document id>' when the document's sha256 is already in the
        collection. CREATE registers the collection with the job; ``document``
        registers an upload (its hash fields and bytes) in the collection. The
        checks, the job hash, the document, the upload blob and the stream entry
        are one atomic step: an accepted job is never half-created.
        """
        fields = job_fields(env)
        if extra:
            fields.update(extra)
        return await self._submit(
            stream=env.stream,
            job=env.job_keys,
            collection=env.collection_keys,
            mode=collection,
            bulk_tenants=env.partition.bulk_tenants(env.stage) if lane_of(env.kind) == BULK else None,
            envelope=env.dumps(),
            job_fields=fields,
            job_ttl_s=self.ttl_s,
            events_ttl_s=queued_ttl_s(self.events_ttl_s, env.deadline - env.created_at),
            max_backlog=max_backlog,
            max_inflight=NO_LIMIT if max_inflight is None else max_inflight,
            max_interactive=NO_LIMIT if max_interactive is None else max_interactive,
            now=fields["created_at"],
            deadline=fields["deadline"],
            document=document,
            blob_ttl_s=BLOB_TTL_S,
        )

    async def cancel(self, job_id: str, access: Access | None = None) -> str:
        """Cancel a job not yet final: 'cancelled' when this call cancelled it,
        'ended:<status>' when it was already final, '' for an unknown job (or one
        out of ``access``'s reach)."""
        job = keys.job(job_id)
        document_id, tenant, collection = await self._r.hmget(
            job.hash, ["document_id", "tenant", "collection"]
        )
        if collection is None:
            return ""
        if not reaches(access, tenant, collection):
            return ""
        return await self._cancel(
            job,
            inflight=job.partition.inflight(as_text(tenant or DEFAULT_TENANT)),
            interactive_inflight=job.partition.interactive_inflight(as_text(tenant or DEFAULT_TENANT)),
            document=keys.document(as_text(document_id)) if document_id else None,
            now=time.time(),
            done_ttl_s=DONE_TTL_S,
            events_ttl_s=self.events_ttl_s,
            events_maxlen=EVENTS_MAXLEN,
            channel=CANCEL_CHANNEL,
        )

    async def get(self, job_id: str, access: Access | None = None) -> dict[str, Any] | None:
        """The job as it stands; None when unknown or out of ``access``'s reach."""
        job = keys.job(job_id)
        raw = await self._r.hgetall(job.hash)
        if not raw or not reaches(access, raw.get(b"tenant"), raw.get(b"collection")):
            return None
        if self._overdue(raw) and await self._expire_overdue(
            job,
            now=time.time(),
            grace_s=self.overdue_grace_s,
            done_ttl_s=DONE_TTL_S,
            events_ttl_s=self.events_ttl_s,
            events_maxlen=EVENTS_MAXLEN,
        ):
            raw = await self._r.hgetall(job.hash)
        return decode_job(raw)

    def _overdue(self, raw: dict[Any, Any]) -> bool:
        """Still in flight though past its deadline and the grace after it."""
        if is_final(as_text(raw.get(b"status", b""))):
            return False
        deadline = float(raw.get(b"deadline") or "inf")
        return time.time() > deadline + self.overdue_grace_s

    async def wait(
        self, job_id: str, timeout_s: float, access: Access | None = None
    ) -> dict[str, Any] | None:
        """The job once final, or as it stands after ``timeout_s``; None if unknown.

        Reads the job, then, while it is in flight, watches its ``done`` stream (through
        the store's watcher: in the gateway the fan-out, so no pooled connection is held
        while waiting). The stream keeps its entry, so a job that ends in between is not
        missed, and the entry carries the final fields, so no read follows the wake-up.
        A job past its deadline and grace is expired here if no stage finished it.
        """
        if timeout_s <= 0:
            return await self.get(job_id, access)
        job = keys.job(job_id)
        raw = await self._r.hgetall(job.hash)
        if raw and not reaches(access, raw.get(b"tenant"), raw.get(b"collection")):
            raw = {}
        if not raw:
            return None
        if is_final(as_text(raw.get(b"status", b""))):
            return decode_job(raw)
        if self._overdue(raw):
            return await self.get(job_id)
        # Wake by the deadline's end at the latest, to expire the job if nobody finished it.
        overdue_in = float(raw.get(b"deadline") or "inf") + self.overdue_grace_s - time.time()
        async with self._watcher.watch(job.done, "0-0") as watch:
            entries = await watch.next(min(timeout_s, max(0.0, overdue_in) + 0.05))
        if entries:
            return decode_job({**raw, **entries[0][1]})
        return await self.get(job_id)


def job_fields(env: Envelope) -> dict[str, str]:
    """The hash of a job just queued at its first stage."""
    created = repr(env.created_at)  # a float's repr costs a microsecond or two: once
    return {
        "job_id": env.job_id,
        "kind": env.kind,
        "tenant": env.tenant,
        "key_id": env.key_id,
        "collection": env.collection,
        "status": JobStatus.QUEUED,
        "stage": env.stage,
        "attempts": "0",
        "created_at": created,
        "updated_at": created,
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
        "status": h.get("status", JobStatus.QUEUED.value),
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
