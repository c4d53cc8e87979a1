"""Collections and documents: create, list, inspect."""

from __future__ import annotations

from fastapi import APIRouter, Request

from libs.common.errors import CollectionExists, CollectionNotFound, DocumentNotFound
from services.gateway.deps import submitter
from services.gateway.schemas import (
    CollectionCreate,
    CollectionDeleted,
    CollectionList,
    CollectionView,
    DocumentDeleted,
    DocumentList,
    DocumentView,
)

router = APIRouter()


@router.post("/v1/collections", status_code=201, response_model=CollectionView)
async def create_collection(body: CollectionCreate, request: Request) -> CollectionView:
    docs = submitter(request).docs
    if not await docs.create_collection(body.name, body.description):
        raise CollectionExists(body.name)
    return await get_collection(body.name, request)


@router.get("/v1/collections", response_model=CollectionList)
async def list_collections(request: Request) -> CollectionList:
    found = await submitter(request).docs.collections()
    return CollectionList(collections=[CollectionView.model_validate(c) for c in found])


@router.get("/v1/collections/{name}", response_model=CollectionView)
async def get_collection(name: str, request: Request) -> CollectionView:
    found = await submitter(request).docs.collection(name)
    if found is None:
        raise CollectionNotFound(name)
    return CollectionView.model_validate(found)


@router.delete("/v1/collections/{name}", response_model=CollectionDeleted)
async def delete_collection(name: str, request: Request) -> CollectionDeleted:
    sub = submitter(request)
    jobs = await sub.docs.delete_collection(name, sub.s.job_timeout_s)
    if jobs is None:
        raise CollectionNotFound(name)
    return CollectionDeleted(name=name, deleted=True, documents=len(jobs), job_ids=jobs)


@router.get("/v1/collections/{name}/documents", response_model=DocumentList)
async def list_documents(name: str, request: Request) -> DocumentList:
    docs = submitter(request).docs
    if not await docs.collection_exists(name):
        raise CollectionNotFound(name)
    return DocumentList(documents=[DocumentView.model_validate(d) for d in await docs.documents(name)])


@router.get("/v1/documents/{document_id}", response_model=DocumentView)
async def get_document(document_id: str, request: Request) -> DocumentView:
    found = await submitter(request).docs.get(document_id)
    if found is None:
        raise DocumentNotFound(document_id)
    return DocumentView.model_validate(found)


@router.delete("/v1/documents/{document_id}", response_model=DocumentDeleted)
async def delete_document(document_id: str, request: Request) -> DocumentDeleted:
    sub = submitter(request)
    collection = await sub.docs.collection_of(document_id)
    job_id = await sub.docs.delete(document_id, collection, sub.s.job_timeout_s) if collection else None
    if job_id is None:
        raise DocumentNotFound(document_id)
    return DocumentDeleted(document_id=document_id, deleted=True, job_id=job_id)
