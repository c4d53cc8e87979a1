"""API keys: create (the secret is shown once), list (never a secret), revoke.

An admin key manages its own tenant's keys, within its own collections; the
operator key manages every tenant's. Another tenant's key is not found (404).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from libs.common.apikeys import ApiKeyRecord, ApiKeyStore
from services.gateway.auth import principal_of
from services.gateway.schemas import KeyCreate, KeyCreated, KeyList, KeyRevoked, KeyView

router = APIRouter(tags=["keys"])


def _store(request: Request) -> ApiKeyStore:
    store: ApiKeyStore = request.app.state.keys
    return store


def _view(record: ApiKeyRecord, default_rpm: int) -> dict[str, object]:
    return {
        "id": record.id,
        "name": record.name,
        "tenant": record.tenant,
        "role": record.role.value,
        "collections": None if record.collections is None else list(record.collections),
        "requests_per_minute": record.rate_limit(default_rpm),
        "created_at": record.created_at,
        "expires_at": record.expires_at,
    }


@router.post("/v1/keys", status_code=201, response_model=KeyCreated)
async def create_key(body: KeyCreate, request: Request) -> KeyCreated:
    principal = principal_of(request)
    principal.require_grant(body.tenant, body.collections)
    store = _store(request)
    created = await store.create(
        name=body.name,
        tenant=body.tenant,
        role=body.role,
        collections=body.collections,
        requests_per_minute=body.requests_per_minute,
        expires_at=body.expires_at,
    )
    return KeyCreated.model_validate({**_view(created.record, store.default_rpm), "key": created.key})


@router.get("/v1/keys", response_model=KeyList)
async def list_keys(request: Request) -> KeyList:
    scope = principal_of(request).keys_scope()
    store = _store(request)
    found = await store.list(scope)
    return KeyList(keys=[KeyView.model_validate(_view(r, store.default_rpm)) for r in found])


@router.delete("/v1/keys/{key_id}", response_model=KeyRevoked)
async def revoke_key(key_id: str, request: Request) -> KeyRevoked:
    scope = principal_of(request).keys_scope()
    await _store(request).revoke(key_id, scope)
    return KeyRevoked(id=key_id, revoked=True)
