"""Collections and documents: create, list, inspect."""

from __future__ import annotations

from fastapi import APIRouter, Request

from libs.common.apikeys import Permission
from libs.common.errors import CollectionExists, CollectionNotFound, DocumentNotFound, Forbidden
from services.gateway.auth import access_of
from services.gateway.deps import submitter
from services.gateway.openapi import rest_errors
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


@router.post(
    "/v1/collections", status_code=201, response_model=CollectionView, responses=rest_errors(400, 409, 413)
)
async def create_collection(body: CollectionCreate, request: Request) -> CollectionView:
    access = access_of(request, Permission.WRITE)
    if not access.sees(body.name):
        raise Forbidden("collections", f"this API key may not reach collection '{body.name}'")
    docs = submitter(request).docs
    if not await docs.create_collection(access, body.name, body.description):
        raise CollectionExists(body.name)
    return await get_collection(body.name, request)


@router.get("/v1/collections", response_model=CollectionList)
async def list_collections(request: Request) -> CollectionList:
    found = await submitter(request).docs.collections(access_of(request, Permission.READ))
    return CollectionList(collections=[CollectionView.model_validate(c) for c in found])


@router.get("/v1/collections/{name}", response_model=CollectionView, responses=rest_errors(404))
async def get_collection(name: str, request: Request) -> CollectionView:
    found = await submitter(request).docs.collection(access_of(request, Permission.READ), name)
    if found is None:
        raise CollectionNotFound(name)
    return CollectionView.model_validate(found)


@router.delete("/v1/collections/{name}", response_model=CollectionDeleted, responses=rest_errors(404))
async def delete_collection(name: str, request: Request) -> CollectionDeleted:
    access = access_of(request, Permission.WRITE)
    sub = submitter(request)
    jobs = await sub.docs.delete_collection(access, name, sub.s.job_timeout_s)
    if jobs is None:
        raise CollectionNotFound(name)
    return CollectionDeleted(name=name, deleted=True, documents=len(jobs), job_ids=jobs)


# {collection}, as the upload's path has it: one path, GET and POST.
@router.get("/v1/collections/{collection}/documents", response_model=DocumentList, responses=rest_errors(404))
async def list_documents(collection: str, request: Request) -> DocumentList:
    access = access_of(request, Permission.READ)
    docs = submitter(request).docs
    if not await docs.collection_exists(access, collection):
        raise CollectionNotFound(collection)
    found = await docs.documents(access, collection)
    return DocumentList(documents=[DocumentView.model_validate(d) for d in found])


@router.get("/v1/documents/{document_id}", response_model=DocumentView, responses=rest_errors(404))
async def get_document(document_id: str, request: Request) -> DocumentView:
    found = await submitter(request).docs.get(document_id, access_of(request, Permission.READ))
    if found is None:
        raise DocumentNotFound(document_id)
    return DocumentView.model_validate(found)


@router.delete("/v1/documents/{document_id}", response_model=DocumentDeleted, responses=rest_errors(404))
async def delete_document(document_id: str, request: Request) -> DocumentDeleted:
    access = access_of(request, Permission.WRITE)
    sub = submitter(request)
    job_id = await sub.docs.delete(document_id, sub.s.job_timeout_s, access)
    if job_id is None:
        raise DocumentNotFound(document_id)
    return DocumentDeleted(document_id=document_id, deleted=True, job_id=job_id)
