"""REST routes: jobs, documents, health, and the seed-compatible shape."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, Request, Response, UploadFile
from redis.exceptions import RedisError

from libs.common import constants as C
from libs.common.settings import GatewaySettings
from services.gateway.deps import settings as settings_of
from services.gateway.deps import submitter
from services.gateway.schemas import (
    ChatRequest,
    DocumentAccepted,
    JobAccepted,
    JobView,
    SearchRequest,
)
from services.gateway.submit import DuplicateDocument

router = APIRouter()


def _check_question(text: str, settings: GatewaySettings, field: str) -> None:
    if len(text) > settings.max_question_chars:
        raise HTTPException(422, f"{field} is longer than {settings.max_question_chars} characters")


@router.post("/v1/chat", status_code=202, response_model=JobAccepted)
async def chat(body: ChatRequest, request: Request) -> JobAccepted:
    sub, settings = submitter(request), settings_of(request)
    _check_question(body.question, settings, "question")
    env = await sub.submit(
        "chat",
        body.collection,
        {"question": body.question, "query": body.question, "top_k": sub.top_k(body.top_k)},
    )
    return JobAccepted(job_id=env.job_id)


@router.post("/v1/search", status_code=202, response_model=JobAccepted)
async def search(body: SearchRequest, request: Request) -> JobAccepted:
    sub, settings = submitter(request), settings_of(request)
    _check_question(body.query, settings, "query")
    env = await sub.submit("search", body.collection, {"query": body.query, "top_k": sub.top_k(body.top_k)})
    return JobAccepted(job_id=env.job_id)


@router.post("/v1/collections/{collection}/documents", status_code=202, response_model=DocumentAccepted)
async def upload_document(
    collection: str,
    file: Annotated[UploadFile, File(description="The document: .txt, .md, .pdf, .docx or .html")],
    request: Request,
) -> DocumentAccepted:
    sub, settings = submitter(request), settings_of(request)
    if not _valid_collection(collection):
        raise HTTPException(422, "collection names are 1-64 letters, digits, '_', '.', '-'")
    # The filename is metadata only: keep its last component, never use it as a path.
    filename = PurePath((file.filename or "").replace("\\", "/")).name
    ext = PurePath(filename).suffix.lower()
    if ext not in C.SUPPORTED_EXTENSIONS:
        supported = ", ".join(sorted(C.SUPPORTED_EXTENSIONS))
        raise HTTPException(415, f"unsupported file type '{ext or filename}'; supported: {supported}")
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, f"file is larger than {settings.max_upload_bytes} bytes")
    document_id = uuid.uuid4().hex
    sha256 = hashlib.sha256(data).hexdigest()
    document = {
        "document_id": document_id,
        "collection": collection,
        "filename": filename,
        "type": ext.lstrip("."),
        "size": str(len(data)),
        "sha256": sha256,
        "created_at": repr(time.time()),
    }
    try:
        env = await sub.submit(
            "ingest",
            collection,
            {"document_id": document_id, "filename": filename, "size": len(data)},
            blob=data,
            extra={"document_id": document_id},
            timeout_s=settings.ingest_timeout_s,
            collection_must_exist=False,
            document=document,
            sha256=sha256,
        )
    except DuplicateDocument as dup:
        # Same content, same collection: the existing document, nothing added.
        existing = await sub.docs.get(dup.document_id)
        job_id = existing["job_id"] if existing else ""
        return DocumentAccepted(job_id=job_id, document_id=dup.document_id, duplicate=True)
    return DocumentAccepted(job_id=env.job_id, document_id=document_id)


def _valid_collection(name: str) -> bool:
    return re.fullmatch(C.COLLECTION_NAME_PATTERN, name) is not None


@router.get("/v1/jobs/{job_id}", response_model=JobView, response_model_exclude_none=True)
async def get_job(
    job_id: str,
    request: Request,
    wait: Annotated[float, Query(ge=0, description="Seconds to wait for a final status")] = 0,
) -> JobView:
    sub, settings = submitter(request), settings_of(request)
    job = await sub.jobs.wait(job_id, min(wait, settings.max_wait_s))
    if job is None:
        raise HTTPException(404, f"job '{job_id}' not found")
    return JobView.model_validate(job)


# --- the seed-compatible shape --------------------------------------------------


@router.post("/chat", status_code=202, response_model=JobAccepted)
async def chat_compat(
    request: Request,
    query: Annotated[str, Query(min_length=1)],
    collection: Annotated[str, Query(pattern=C.COLLECTION_NAME_PATTERN)],
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
    r = submitter(request).r
    missing: list[str] = []
    try:
        await r.ping()
        for stage in C.STAGES:
            try:
                groups = await r.xinfo_groups(C.stream_key(stage))
            except RedisError:
                groups = []
            names = {g["name"].decode() if isinstance(g["name"], bytes) else g["name"] for g in groups}
            if C.group_name(stage) not in names:
                missing.append(stage)
    except RedisError as exc:
        response.status_code = 503
        return {"status": "unavailable", "reason": f"valkey: {exc}"}
    if missing:
        response.status_code = 503
        return {"status": "unavailable", "reason": f"no consumer group yet for: {', '.join(missing)}"}
    return {"status": "ready"}
