"""The job store: one hash per job with its status, stage, result and timings.

Statuses: queued, embedding, retrieving, generating, indexing (in flight) and
done, failed, expired (final). Every write refreshes the hash's TTL. When a job
reaches a final status one entry is added to its ``done`` stream, which waiters
block on (see :meth:`JobStore.wait`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

from libs.common import constants as C
from libs.common.envelope import Envelope
from libs.common.scripts import SUBMIT

FINAL_STATUSES = frozenset({"done", "failed", "expired"})


class JobStore:
    def __init__(self, client: aioredis.Redis, ttl_s: int = C.JOB_TTL_S) -> None:
        self._r = client
        self.ttl_s = ttl_s
        self._submit = client.register_script(SUBMIT)

    async def submit(
        self,
        env: Envelope,
        *,
        max_backlog: int,
        blob: bytes | None = None,
        extra: dict[str, str] | None = None,
    ) -> bool:
        """Queue a new job at its first stage. False when the backlog is full.

        The job hash, the optional upload blob and the stream entry are written
        atomically: an accepted job is never half-created.
        """
        fields: dict[str, str] = {
            "job_id": env.job_id,
            "kind": env.kind,
            "collection": env.collection,
            "status": "queued",
            "stage": env.stage,
            "attempts": "0",
            "created_at": repr(env.created_at),
            "updated_at": repr(env.created_at),
            "timings": "{}",
            **(extra or {}),
        }
        blob_key = C.blob_key(env.payload["document_id"]) if blob is not None else ""
        flat = [x for kv in fields.items() for x in kv]
        entry = await self._submit(
            keys=[C.stream_key(env.stage), C.job_key(env.job_id), blob_key],
            args=[max_backlog, env.dumps(), self.ttl_s, blob or b"", C.BLOB_TTL_S, *flat],
        )
        return entry is not None

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw = await self._r.hgetall(C.job_key(job_id))
        if not raw:
            return None
        return decode_job(raw)

    async def wait(self, job_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The job once final, or as it stands after ``timeout_s``; None if unknown.

        Blocks on the job's ``done`` stream (no polling).
        """
        if timeout_s > 0:
            job = await self.get(job_id)
            if job is None or job["status"] in FINAL_STATUSES:
                return job
            await self._r.xread({C.done_key(job_id): "0-0"}, count=1, block=max(1, int(timeout_s * 1000)))
        return await self.get(job_id)

    async def backlog(self, stage: str) -> int:
        return int(await self._r.xlen(C.stream_key(stage)))


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def decode_job(raw: dict[Any, Any]) -> dict[str, Any]:
    h = {_text(k): _text(v) for k, v in raw.items()}
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
    return job


def now() -> float:
    return time.time()
