"""A job's events as Server-Sent Events, and cancelling a job."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from libs.common import events, keys
from libs.common.apikeys import Permission
from libs.common.errors import JobAlreadyEnded, JobNotFound
from libs.common.jobs import JobStore
from libs.common.status import JobStatus, is_final
from services.gateway.auth import access_of
from services.gateway.deps import settings as settings_of
from services.gateway.deps import submitter
from services.gateway.errors import VALKEY_DOWN
from services.gateway.openapi import rest_errors
from services.gateway.schemas import JobCancelled

logger = logging.getLogger(__name__)
router = APIRouter()

# A stream entry id, "<ms>-<seq>" (19 digits at most each: within Valkey's 64 bits).
EVENT_ID_PATTERN = r"^[0-9]{1,19}-[0-9]{1,19}$"
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
# A final job whose events are no longer kept: its end, as the job hash has it.
_FINAL_EVENT_ID = "0-1"


def sse(event_id: str, event: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def still_there(jobs: JobStore, job_id: str) -> bool | None:
    """Whether a job followed by an open stream still exists (None: Valkey did not say).

    A stream that has started must not end over a busy pool or a Valkey hiccup: the
    caller keeps the stream open and asks again at the next keep-alive."""
    try:
        return await jobs.get(job_id) is not None
    except VALKEY_DOWN as exc:
        logger.info("job %s: not checked at a keep-alive (%s)", job_id, exc)
        return None


def _final_event(job: dict[str, Any]) -> str:
    status = job["status"]
    if status == JobStatus.DONE:
        return sse(_FINAL_EVENT_ID, events.DONE, job.get("result") or {})
    kind = events.CANCELLED if status == JobStatus.CANCELLED else events.ERROR
    return sse(_FINAL_EVENT_ID, kind, {"status": status, "error": job.get("error") or status})


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the job's events"},
        **rest_errors(404),
    },
)
async def job_events(
    job_id: str,
    request: Request,
    last_event_id: Annotated[
        str | None,
        Header(
            description="Resume after this event id (what an EventSource sends when it reconnects); "
            "a value that is no event id is ignored"
        ),
    ] = None,
    after: Annotated[
        str | None,
        Query(
            pattern=EVENT_ID_PATTERN,
            description="Resume after this event id, like 1732440000000-0 (Last-Event-ID comes first)",
        ),
    ] = None,
) -> StreamingResponse:
    """The job's events from the start (or after ``Last-Event-ID``) up to its final one."""
    access = access_of(request, Permission.READ)
    sub, settings = submitter(request), settings_of(request)
    if last_event_id is not None and not _EVENT_ID.fullmatch(last_event_id):
        # Only a client's own bookkeeping sends one (an EventSource echoes our ids): start
        # where the rest of the request says, as if there were none.
        logger.info("job %s: Last-Event-ID %r is no event id; ignored", job_id, last_event_id[:40])
        last_event_id = None
    start = last_event_id or after or "0-0"
    job = await sub.jobs.get(job_id, access)
    if job is None:
        raise JobNotFound(job_id)
    # Every pooled read happens before the response starts (a full pool is a 503 then);
    # once it has started, the stream reads through the waiters' fan-out only.
    final = is_final(job["status"])
    kept = await sub.r.exists(keys.job(job_id).events)
    replay = await events.history(sub.r, job_id, after=start) if final and kept else []

    async def stream() -> AsyncIterator[str]:
        if final:
            # Nothing more will come: replay what is kept after ``start``, and end.
            if not kept and start == "0-0":
                yield _final_event(job)
            for kept_event in replay:
                yield sse(kept_event.id, kept_event.type, kept_event.data)
            return
        block_ms = int(settings.sse_keepalive_s * 1000)
        async with aclosing(events.read(sub.waiters, job_id, start, block_ms=block_ms)) as follow:
            async for event in follow:
                if event is not None:
                    yield sse(event.id, event.type, event.data)
                    continue
                if await request.is_disconnected():
                    return
                # Quiet for a while: is the job still there? (A job past its deadline is
                # expired by this read, which writes its final event.)
                if await still_there(sub.jobs, job_id) is False:
                    return
                yield ": keep-alive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.delete("/v1/jobs/{job_id}", response_model=JobCancelled, responses=rest_errors(404, 409))
async def cancel_job(job_id: str, request: Request) -> JobCancelled:
    """Cancel a queued or running job: stages skip it, its LLM call is abandoned."""
    status = await submitter(request).jobs.cancel(job_id, access_of(request, Permission.WRITE))
    if not status:
        raise JobNotFound(job_id)
    if status != JobStatus.CANCELLED:
        raise JobAlreadyEnded(job_id, status.removeprefix("ended:"))
    return JobCancelled(job_id=job_id, status=status)
