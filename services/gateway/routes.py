"""REST routes: jobs, documents, health, and the seed-compatible shape."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from redis.exceptions import BusyLoadingError, RedisError, ResponseError

from libs.common.apikeys import Permission
from libs.common.constants import COLLECTION_NAME_PATTERN, STAGE_LANES
from libs.common.decode import as_text
from libs.common.errors import InvalidRequest, JobNotFound
from libs.common.keys import group_name
from libs.common.settings import GatewaySettings
from services.gateway.answer_cache import bypass_requested
from services.gateway.auth import access_of
from services.gateway.chat import submit_chat
from services.gateway.deps import settings as settings_of
from services.gateway.deps import submitter
from services.gateway.schemas import (
    ChatRequest,
    JobAccepted,
    JobView,
    SearchRequest,
)

router = APIRouter()
logger = logging.getLogger(__name__)


def events_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/events"


def _check_question(text: str, settings: GatewaySettings, field: str) -> None:
    if len(text) > settings.max_question_chars:
        raise InvalidRequest(f"{field} is longer than {settings.max_question_chars} characters")


@router.post("/v1/chat", status_code=202, response_model=JobAccepted)
async def chat(body: ChatRequest, request: Request) -> JobAccepted:
    access = access_of(request, Permission.READ)
    sub, settings = submitter(request), settings_of(request)
    _check_question(body.question, settings, "question")
    env = await submit_chat(
        sub,
        access,
        body.collection,
        body.question,
        top_k=body.top_k,
        bypass_cache=bypass_requested(request.headers),
    )
    return JobAccepted(job_id=env.job_id, events_url=events_url(env.job_id))


@router.post("/v1/search", status_code=202, response_model=JobAccepted)
async def search(body: SearchRequest, request: Request) -> JobAccepted:
    access = access_of(request, Permission.READ)
    sub, settings = submitter(request), settings_of(request)
    _check_question(body.query, settings, "query")
    payload = {"query": body.query, "top_k": sub.top_k(body.top_k)}
    env = await sub.submit("search", body.collection, payload, access=access)
    return JobAccepted(job_id=env.job_id, events_url=events_url(env.job_id))


@router.get("/v1/jobs/{job_id}", response_model=JobView, response_model_exclude_none=True)
async def get_job(
    job_id: str,
    request: Request,
    wait: Annotated[float, Query(ge=0, description="Seconds to wait for a final status")] = 0,
) -> JobView:
    access = access_of(request, Permission.READ)
    sub, settings = submitter(request), settings_of(request)
    job = await sub.jobs.wait(job_id, min(wait, settings.max_wait_s), access)
    if job is None:
        raise JobNotFound(job_id)
    return JobView.model_validate(job)


# --- the seed-compatible shape --------------------------------------------------


@router.post("/chat", status_code=202, response_model=JobAccepted)
async def chat_compat(
    request: Request,
    query: Annotated[str, Query(min_length=1)],
    collection: Annotated[str, Query(pattern=COLLECTION_NAME_PATTERN)],
) -> JobAccepted:
    return await chat(ChatRequest(question=query, collection=collection), request)


@router.get("/result/{job_id}", response_model=JobView, response_model_exclude_none=True)
async def result_compat(job_id: str, request: Request) -> JobView:
    return await get_job(job_id, request, 0)


# --- health ---------------------------------------------------------------------


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, response: Response) -> dict[str, object]:
    sub = submitter(request)
    r = sub.r
    partitions = sub.space.all()
    missing: list[str] = []
    try:
        await r.ping()
        for partition in partitions:
            for stage, lanes in STAGE_LANES.items():
                for lane in lanes:
                    try:
                        groups = await r.xinfo_groups(partition.stream(stage, lane))
                    except ResponseError:  # no such stream yet
                        groups = []
                    names = {as_text(g["name"]) for g in groups}
                    if group_name(stage) not in names:
                        name = stage if lane == "interactive" else f"{stage}:{lane}"
                        missing.append(name if len(partitions) == 1 else f"{name} ({partition.tag})")
    except BusyLoadingError:
        # Restarted (by `documind up`'s supervisor, say) and still reading its AOF.
        response.status_code = 503
        return {"status": "unavailable", "reason": "valkey is loading its data"}
    except RedisError as exc:
        # The probe is public: the details (addresses) go to the log only.
        logger.warning("readyz: valkey: %s", exc)
        response.status_code = 503
        return {"status": "unavailable", "reason": "valkey does not answer"}
    if missing:
        response.status_code = 503
        return {"status": "unavailable", "reason": f"no consumer group yet for: {', '.join(missing)}"}
    return {"status": "ready"}
