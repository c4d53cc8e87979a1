"""The OpenAI-compatible facade: collections as models, answers as chat completions.

- ``GET /v1/models`` lists the collections as models (``GET /v1/models/{model}``: one).
- ``POST /v1/chat/completions`` with ``model`` = a collection and OpenAI ``messages``
  queues a chat job through ``submit_chat`` (the path ``POST /v1/chat`` takes) for the
  last user message. Earlier user and assistant messages go with it as ``history``: the
  generator first rewrites the question as a standalone one, which is what is retrieved
  and answered. System messages are ignored (DocuMind's own prompt governs answers).
  Plain, the request blocks on the job's done stream until it is final (the job's
  deadline bounds it) and answers ``chat.completion``; with ``stream: true`` the job's
  events become ``chat.completion.chunk`` frames (see ``openai_stream``). Nothing runs in
  the request itself: the gateway submits, then waits on the job or reads its events.
- DocuMind's own data (job id, mode, abstained, citations, the standalone question)
  rides in the extra top-level field ``documind`` (``openai_schemas.DocuMindExtra``);
  the header ``X-DocuMind-Job-Id`` names the job on every completion, streamed or not,
  answered or failed (a stream's first chunk carries ``documind.job_id`` as well).
- Errors come in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``
  (``openai_errors``): an unknown model is 404 ``model_not_found``; bad messages 400
  ``invalid_request_error``; a full queue 503 with ``Retry-After``; a job that failed,
  expired or was cancelled 500, 504 or 409 (with ``x-should-retry: false``: the
  pipeline already retried).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from libs.common import events
from libs.common.apikeys import Permission
from libs.common.constants import COLLECTION_NAME_PATTERN
from libs.common.envelope import Envelope
from libs.common.errors import (
    JOB_OUTCOMES,
    CollectionNotFound,
    InvalidRequest,
    JobFailed,
    JobUnanswered,
    job_unanswered,
)
from libs.common.settings import GatewaySettings
from libs.common.status import JobStatus, is_final
from services.gateway.answer_cache import bypass_requested
from services.gateway.auth import access_of
from services.gateway.chat import submit_chat
from services.gateway.deps import settings as settings_of
from services.gateway.deps import submitter
from services.gateway.events import still_there
from services.gateway.openai_errors import OpenAIRoute, openai_body, openai_response
from services.gateway.openai_schemas import (
    ROLES,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    ModelCard,
    ModelList,
)
from services.gateway.openai_stream import JOB_ID_HEADER, ChunkStream, documind_extra, estimate_tokens
from services.gateway.openapi import openai_errors
from services.gateway.submit import Submitter

# Earlier messages sent with a question as its history: the latest this many.
MAX_HISTORY_MESSAGES = 8
_ROLES = frozenset(ROLES)
_COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)


router = APIRouter(route_class=OpenAIRoute, tags=["openai"])


def _unknown_model(model: str) -> CollectionNotFound:
    return CollectionNotFound(model, f"The model '{model}' does not exist: no such collection")


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """The collections, as OpenAI models."""
    found = await submitter(request).docs.collections(access_of(request, Permission.READ))
    return ModelList(data=[ModelCard(id=c["name"], created=int(c["created_at"])) for c in found])


@router.get("/v1/models/{model}", response_model=ModelCard, responses=openai_errors(404))
async def get_model(model: str, request: Request) -> ModelCard:
    access = access_of(request, Permission.READ)
    found = await submitter(request).docs.collection(access, model) if _COLLECTION_NAME.match(model) else None
    if found is None:
        raise _unknown_model(model)
    return ModelCard(id=found["name"], created=int(found["created_at"]))


def _text(message: ChatMessage, index: int) -> str:
    """A message's text: its string content, or its text parts joined."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content.strip()
    texts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequest("only text content is supported", param=f"messages.{index}.content")
        texts.append(part["text"])
    return "".join(texts).strip()


def split_messages(messages: list[ChatMessage], max_chars: int) -> tuple[str, list[dict[str, str]]]:
    """The question (the last message, the user's) and the earlier turns as history.

    System and developer messages are left out; the history keeps the latest
    ``MAX_HISTORY_MESSAGES`` user and assistant messages, each cut to ``max_chars``.
    """
    turns: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        if message.role not in _ROLES:
            raise InvalidRequest(
                f"messages.{i}.role: '{message.role}' is not supported (system, user or assistant)",
                param=f"messages.{i}.role",
            )
        text = _text(message, i)
        if message.role == "user" and not text:
            raise InvalidRequest(f"messages.{i}.content: must not be empty", param=f"messages.{i}.content")
        if message.role in ("user", "assistant") and text:
            turns.append({"role": message.role, "content": text})
    if not turns or turns[-1]["role"] != "user" or messages[-1].role != "user":
        raise InvalidRequest("messages must end with the user's question", param="messages")
    question = turns[-1]["content"]
    if len(question) > max_chars:
        raise InvalidRequest(
            f"the question is longer than {max_chars} characters", param=f"messages.{len(messages) - 1}"
        )
    history = [{**t, "content": t["content"][:max_chars]} for t in turns[:-1][-MAX_HISTORY_MESSAGES:]]
    return question, history


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={
        **openai_errors(400, 404, 409, 500, 504),
        200: {
            "description": "a chat.completion, or with stream: true chat.completion.chunk events",
            "content": {"text/event-stream": {}},
            "headers": {
                JOB_ID_HEADER: {
                    "description": "the job answering the question (GET /v1/jobs/{job_id}, DELETE to cancel)",
                    "schema": {"type": "string"},
                }
            },
        },
    },
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """Answer the last user message from the collection named by ``model``."""
    access = access_of(request, Permission.READ)
    sub, settings = submitter(request), settings_of(request)
    if not _COLLECTION_NAME.match(body.model):
        raise _unknown_model(body.model)
    question, history = split_messages(body.messages, settings.max_question_chars)
    env = await submit_chat(
        sub,
        access,
        body.model,
        question,
        top_k=body.top_k,
        history=history or None,
        bypass_cache=bypass_requested(request.headers),
    )
    prompt_tokens = sum(estimate_tokens(_text(m, i)) for i, m in enumerate(body.messages))
    if body.stream:
        chunks = ChunkStream(
            job_id=env.job_id,
            model=body.model,
            created=int(env.created_at),
            prompt_tokens=prompt_tokens,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
        )
        return StreamingResponse(
            _stream(request, sub, settings, env.job_id, chunks),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", JOB_ID_HEADER: env.job_id},
        )
    job = await _wait_final(sub, settings, env)
    if job is None or job["status"] != "done":
        refused = openai_response(_no_answer(job))
        refused.headers[JOB_ID_HEADER] = env.job_id
        return refused
    result: dict[str, Any] = job.get("result") or {}
    answer = str(result.get("answer", ""))
    completion_tokens = estimate_tokens(answer)
    completion = ChatCompletion.model_validate(
        {
            "id": f"chatcmpl-{env.job_id}",
            "created": int(env.created_at),
            "model": body.model,
            "choices": [{"message": {"content": answer}}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "documind": documind_extra(env.job_id, result),
        }
    )
    return JSONResponse(
        completion.model_dump(mode="json", exclude_none=True), headers={JOB_ID_HEADER: env.job_id}
    )


def _no_answer(job: dict[str, Any] | None) -> JobUnanswered:
    """The error for a job that ended without an answer (or did not end in time)."""
    if job is None:
        return JobFailed("it was lost")
    status = job["status"]
    if status not in JOB_OUTCOMES:  # still in flight past its deadline and grace
        status = JobStatus.EXPIRED
    return job_unanswered(status, job.get("error") or "it did not finish in time")


async def _wait_final(sub: Submitter, settings: GatewaySettings, env: Envelope) -> dict[str, Any] | None:
    """The job once final: blocking reads of its done stream, each shorter than the
    client's socket timeout; the job's deadline (plus grace, when a read expires it)
    bounds the whole wait."""
    step = max(settings.max_wait_s, settings.sse_keepalive_s)
    give_up = env.deadline + settings.overdue_grace_s + step
    job = await sub.jobs.wait(env.job_id, step)
    while job is not None and not is_final(job["status"]) and time.time() < give_up:
        job = await sub.jobs.wait(env.job_id, step)
    return job


async def _stream(
    request: Request, sub: Submitter, settings: GatewaySettings, job_id: str, chunks: ChunkStream
) -> AsyncIterator[str]:
    """The completion's frames, from the job's events as they come (through the waiters'
    fan-out: the stream, once started, needs no pooled connection)."""
    yield chunks.start()
    block_ms = int(settings.sse_keepalive_s * 1000)
    async with aclosing(events.read(sub.waiters, job_id, block_ms=block_ms)) as follow:
        async for event in follow:
            if event is not None:
                for out in chunks.feed(event):
                    yield out
                if chunks.ended:
                    return
                continue
            if await request.is_disconnected():
                return
            # Quiet for a while: is the job still there? (A job past its deadline is
            # expired by this read, which writes its final event.)
            if await still_there(sub.jobs, job_id) is False:
                for out in chunks.fail(openai_body(JobFailed("the job is gone"))):
                    yield out
                return
            yield ": keep-alive\n\n"
