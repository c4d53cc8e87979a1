"""API keys: create (the secret is shown once), list (never a secret), revoke, and
``GET /v1/me``: what the key in use may do (any valid key may ask; the web app
offers what the role allows).

An admin key manages its own tenant's keys, within its own collections, and grants
no more than it has (requests per minute, expiry); the operator key manages every
tenant's. A key out of reach is not found (404).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from libs.common.apikeys import ApiKeyRecord, ApiKeyStore, Permission
from libs.common.errors import ApiKeyNotFound, Forbidden
from libs.common.keys import DEFAULT_TENANT
from services.gateway.auth import principal_of
from services.gateway.openapi import rest_errors
from services.gateway.schemas import KeyCreate, KeyCreated, KeyIdentity, KeyList, KeyRevoked, KeyView

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


@router.post("/v1/keys", status_code=201, response_model=KeyCreated, responses=rest_errors(400, 413))
async def create_key(body: KeyCreate, request: Request) -> KeyCreated:
    principal = principal_of(request)
    principal.require_grant(body.tenant, body.collections)
    store = _store(request)
    rpm, expires_at = body.requests_per_minute, body.expires_at
    if not principal.can(Permission.MANAGE_ALL_KEYS):
        # A key an admin makes reaches no further than the admin's own: not faster,
        # not for longer.
        own = await store.get(principal.key_id)
        if own is None:
            raise Forbidden(Permission.MANAGE_KEYS.value)
        limit = own.rate_limit(store.default_rpm)
        if rpm is not None and rpm > limit:
            raise Forbidden(
                "requests_per_minute", f"this API key may grant at most {limit} requests per minute"
            )
        rpm = rpm or limit
        if own.expires_at is not None:
            if expires_at is not None and expires_at > own.expires_at:
                raise Forbidden(
                    "expires_at", f"this API key may grant keys expiring by {own.expires_at.isoformat()}"
                )
            expires_at = expires_at or own.expires_at
    created = await store.create(
        name=body.name,
        tenant=body.tenant,
        role=body.role,
        collections=body.collections,
        requests_per_minute=rpm,
        expires_at=expires_at,
    )
    return KeyCreated.model_validate({**_view(created.record, store.default_rpm), "key": created.key})


@router.get("/v1/keys", response_model=KeyList)
async def list_keys(request: Request) -> KeyList:
    principal = principal_of(request)
    store = _store(request)
    found = [r for r in await store.list(principal.keys_scope()) if principal.covers(r)]
    return KeyList(keys=[KeyView.model_validate(_view(r, store.default_rpm)) for r in found])


@router.delete("/v1/keys/{key_id}", response_model=KeyRevoked, responses=rest_errors(404))
async def revoke_key(key_id: str, request: Request) -> KeyRevoked:
    principal = principal_of(request)
    store = _store(request)
    record = await store.get(key_id)
    # A key out of reach is not found, as one that does not exist.
    if record is None or not principal.covers(record):
        raise ApiKeyNotFound(key_id)
    await store.revoke(key_id, principal.keys_scope())
    return KeyRevoked(id=key_id, revoked=True)


@router.get("/v1/me", response_model=KeyIdentity)
async def who_am_i(request: Request) -> KeyIdentity:
    """The key in use: its id, tenant, role, collections, limit and permissions."""
    principal = principal_of(request)
    return KeyIdentity(
        id=principal.key_id,
        tenant=principal.tenant or DEFAULT_TENANT,
        role=principal.role.value,
        collections=None if principal.collections is None else sorted(principal.collections),
        requests_per_minute=principal.requests_per_minute,
        permissions=sorted(p.value for p in principal.permissions),
    )
