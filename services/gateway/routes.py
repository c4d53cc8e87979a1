"""REST routes: questions, searches, jobs, and the seed-compatible shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from libs.common.apikeys import Permission
from libs.common.constants import COLLECTION_NAME_PATTERN
from libs.common.errors import InvalidRequest, JobNotFound
from libs.common.settings import GatewaySettings
from services.gateway.answer_cache import bypass_requested
from services.gateway.auth import access_of
from services.gateway.chat import submit_chat
from services.gateway.deps import settings as settings_of
from services.gateway.deps import submitter
from services.gateway.openapi import rest_errors
from services.gateway.schemas import (
    NOT_BLANK,
    ChatRequest,
    JobAccepted,
    JobView,
    SearchRequest,
)

router = APIRouter()


def events_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/events"


def _check_question(text: str, settings: GatewaySettings, field: str) -> None:
    if len(text) > settings.max_question_chars:
        raise InvalidRequest(f"{field} is longer than {settings.max_question_chars} characters")


@router.post("/v1/chat", status_code=202, response_model=JobAccepted, responses=rest_errors(400, 404, 413))
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


@router.post("/v1/search", status_code=202, response_model=JobAccepted, responses=rest_errors(400, 404, 413))
async def search(body: SearchRequest, request: Request) -> JobAccepted:
    access = access_of(request, Permission.READ)
    sub, settings = submitter(request), settings_of(request)
    _check_question(body.query, settings, "query")
    payload = {"query": body.query, "top_k": sub.top_k(body.top_k)}
    env = await sub.submit("search", body.collection, payload, access=access)
    return JobAccepted(job_id=env.job_id, events_url=events_url(env.job_id))


@router.get(
    "/v1/jobs/{job_id}", response_model=JobView, response_model_exclude_none=True, responses=rest_errors(404)
)
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


@router.post("/chat", status_code=202, response_model=JobAccepted, responses=rest_errors(404))
async def chat_compat(
    request: Request,
    # At most DOCUMIND_MAX_QUESTION_CHARS characters (``openapi.limits``).
    query: Annotated[str, Query(min_length=1, json_schema_extra=NOT_BLANK)],
    collection: Annotated[str, Query(pattern=COLLECTION_NAME_PATTERN)],
) -> JobAccepted:
    try:
        body = ChatRequest(question=query, collection=collection)
    except ValidationError as exc:  # a blank query
        raise InvalidRequest(f"query: {exc.errors()[0]['msg']}", param="query") from None
    return await chat(body, request)


@router.get(
    "/result/{job_id}", response_model=JobView, response_model_exclude_none=True, responses=rest_errors(404)
)
async def result_compat(job_id: str, request: Request) -> JobView:
    return await get_job(job_id, request, 0)
