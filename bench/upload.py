"""Documents through the stack's HTTP API: multipart uploads, then a blocking wait on each job.

:func:`ingest` uploads documents in multipart batches and blocks on each job
(``GET /v1/jobs/{id}?wait=``) until every document is ready; :class:`Ingest` is
what it measured.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from bench.client import Http, multipart
from bench.corpus import Corpus


@dataclass
class Ingest:
    docs: int
    seconds: float  # from the first upload request to the last document ready
    upload_seconds: float  # until every upload request was answered
    chunks: int
    ready: int
    failed: dict[str, str] = field(default_factory=dict)  # filename -> error

    @property
    def per_s(self) -> float:
        return self.docs / self.seconds


async def ingest(
    port: int, docs: dict[str, str], collection: str, files_per_upload: int, timeout_s: float = 3600.0
) -> Ingest:
    """Upload ``docs`` (corpus id -> text) in multipart batches, then block on every job in turn.

    Jobs finish roughly in the order they were queued, so by the time the wait
    reaches a job it is usually done and the GET answers at once. A document is
    ready exactly when its ingest job is done (the same commit).
    """
    conn = await Http.connect(port)
    try:
        started = time.perf_counter()
        ids = list(docs)
        jobs: list[str] = []
        for i in range(0, len(ids), files_per_upload):
            batch = [(Corpus.filename(d), docs[d].encode()) for d in ids[i : i + files_per_upload]]
            body, content_type = multipart(batch)
            status, raw = await conn.request(
                "POST", f"/v1/collections/{collection}/documents", body, {"Content-Type": content_type}
            )
            if status != 202:
                raise RuntimeError(f"upload answered {status}: {raw[:500]!r}")
            accepted = json.loads(raw)["documents"]
            if any(d["duplicate"] for d in accepted):
                raise RuntimeError(f"collection {collection!r} already holds some of these documents")
            jobs += [d["job_id"] for d in accepted]
        uploaded = time.perf_counter() - started
        deadline = time.monotonic() + timeout_s
        for job_id in jobs:
            await conn.wait_job(job_id, max(1.0, deadline - time.monotonic()))
        seconds = time.perf_counter() - started
        status, listing = await conn.call("GET", f"/v1/collections/{collection}/documents")
        if status != 200:
            raise RuntimeError(f"GET /v1/collections/{collection}/documents answered {status}")
    finally:
        await conn.close()
    ready = [d for d in listing["documents"] if d["status"] == "ready"]
    failed = {
        d["filename"]: d.get("error") or d["status"] for d in listing["documents"] if d["status"] != "ready"
    }
    chunks = sum(int(d["chunks"] or 0) for d in ready)
    return Ingest(len(jobs), seconds, uploaded, chunks, len(ready), failed)
