"""API keys (issue 12): who is asking, what they may do, and how often a minute.

Every request carries ``Authorization: Bearer <key>``. A stored key reads
``dm_<id>_<secret>`` (``apikey_record``): Valkey holds its record under its id,
with the sha256 of the secret and never the secret. :meth:`ApiKeyStore.authenticate`
answers one request in at most one Valkey round trip: a malformed token is refused
without one, and the AUTHENTICATE script checks the secret, the key's revocation
and expiry, and counts the request against the key's per-minute limit (GCRA,
``ratelimit``) in one atomic step. Nothing is cached in-process, so a revoked key
is refused by every gateway replica from the next request on.

The operator key (``DOCUMIND_ADMIN_KEY``) is no stored key: it is compared in-process
(constant time) and its requests are rate-limited like a key's, under the id
``operator`` with the default limit (a leaked or looping operator client cannot
flood the service either; raise ``DOCUMIND_RATE_LIMIT_PER_MIN`` if it needs more).

Roles and what they may do (:data:`ROLE_PERMISSIONS`): a reader searches, chats,
lists and reads; a writer also changes collections, documents and jobs; an admin
also manages its own tenant's keys; the operator manages every tenant's keys.
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import hmac
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

import redis.asyncio as aioredis
from pydantic import SecretStr

from libs.common import keys, slots
from libs.common.apikey_record import (
    KEY_ROLES,
    ApiKeyRecord,
    AuthOutcome,
    Role,
    decode_collections,
    is_key_id,
    is_name,
    mint_token,
    new_record,
    parse_token,
)
from libs.common.decode import as_text
from libs.common.errors import (
    ApiKeyNotFound,
    Forbidden,
    RateLimited,
    Unauthorized,
    UnauthorizedReason,
)
from libs.common.ratelimit import RateDecision
from libs.common.scripts import Authenticate, RevokeApiKey
from libs.common.settings import GatewaySettings

__all__ = [
    "OPERATOR_KEY_ID",
    "ROLE_PERMISSIONS",
    "ApiKeyRecord",
    "ApiKeyStore",
    "AuthResult",
    "Authenticated",
    "NewApiKey",
    "Permission",
    "Principal",
    "RateDecision",
    "Refused",
    "Role",
    "bearer_token",
]

logger = logging.getLogger(__name__)

# The id the operator's rate state lives under (no stored key has it: ids are hex).
OPERATOR_KEY_ID: Final = "operator"
# A revoked key's record is kept this long (requests with it are told "revoked"
# rather than "invalid"), and an expired key's this long after its expiry; then
# it goes, and listings drop its id.
KEY_RETENTION_S: Final = 30 * 24 * 3600


class Permission(enum.StrEnum):
    # Search, chat, list and read collections, documents and jobs.
    READ = "read"
    # Create and delete collections, upload and delete documents, cancel jobs.
    WRITE = "write"
    # Create, list and revoke the keys of the principal's own tenant.
    MANAGE_KEYS = "manage_keys"
    # Create, list and revoke the keys of every tenant.
    MANAGE_ALL_KEYS = "manage_all_keys"


ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = MappingProxyType(
    {
        Role.READER: frozenset({Permission.READ}),
        Role.WRITER: frozenset({Permission.READ, Permission.WRITE}),
        Role.ADMIN: frozenset({Permission.READ, Permission.WRITE, Permission.MANAGE_KEYS}),
        Role.OPERATOR: frozenset(Permission),
    }
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: a key's tenant, role and scope."""

    key_id: str
    # None: the operator, who belongs to no tenant and manages them all.
    tenant: str | None
    role: Role
    # None: every collection of the tenant.
    collections: frozenset[str] | None
    requests_per_minute: int

    @classmethod
    def operator(cls, requests_per_minute: int) -> Principal:
        return cls(OPERATOR_KEY_ID, None, Role.OPERATOR, None, requests_per_minute)

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        """Raise :class:`Forbidden`, naming ``permission``, unless the role has it."""
        if not self.can(permission):
            raise Forbidden(permission.value)

    def can_see(self, collection: str) -> bool:
        """Whether the key's collection scope includes ``collection`` (of its tenant)."""
        return self.collections is None or collection in self.collections

    def keys_scope(self) -> str | None:
        """The tenant whose keys this principal lists and revokes (None: every tenant).

        Pass it to :meth:`ApiKeyStore.list` and :meth:`ApiKeyStore.revoke`.
        """
        self.require(Permission.MANAGE_KEYS)
        return None if self.can(Permission.MANAGE_ALL_KEYS) else self.tenant

    def covers(self, record: ApiKeyRecord) -> bool:
        """Whether this principal may see and revoke ``record``: the operator every key;
        an admin its tenant's keys, and when scoped only keys scoped within its own."""
        scope = self.keys_scope()
        if scope is not None and scope != record.tenant:
            return False
        if self.collections is None:
            return True
        return record.collections is not None and set(record.collections) <= self.collections

    def require_grant(self, tenant: str, collections: Iterable[str] | None) -> None:
        """Raise :class:`Forbidden` unless this principal may create a key for ``tenant``
        scoped to ``collections`` (None: all): its own tenant, within its own scope."""
        scope = self.keys_scope()
        if scope is not None and scope != tenant:
            raise Forbidden(Permission.MANAGE_ALL_KEYS.value)
        if self.collections is not None:
            outside = None if collections is None else sorted(set(collections) - self.collections)
            if outside is None or outside:
                raise Forbidden(
                    "collections",
                    "this API key may only grant its own collections: " + ", ".join(sorted(self.collections)),
                )


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A known, live key (or the operator), and the request's rate decision."""

    principal: Principal
    rate: RateDecision

    def check(self) -> Authenticated:
        """Itself, or :class:`RateLimited` when the key's limit is used up."""
        if not self.rate.allowed:
            raise RateLimited(self.rate.retry_after_s, self.rate.limit, self.rate.reset_s)
        return self


@dataclass(frozen=True, slots=True)
class Refused:
    """No principal: why (for logs; the client is told less, see :class:`Unauthorized`)."""

    reason: UnauthorizedReason

    def check(self) -> Authenticated:
        """Always :class:`Unauthorized`."""
        raise Unauthorized(self.reason)


AuthResult = Authenticated | Refused


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A created key: its record, and the token, which is shown once and stored nowhere."""

    record: ApiKeyRecord
    key: str = field(repr=False)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; "" for another scheme,
    None when there is no header (refused as missing rather than malformed)."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class ApiKeyStore:
    """Creates, lists, revokes and authenticates API keys; stores only secrets' hashes."""

    def __init__(
        self, client: aioredis.Redis, *, default_rpm: int, admin_key: SecretStr | None = None
    ) -> None:
        self._r = client
        self.default_rpm = default_rpm
        self._admin_digest = None if admin_key is None else _digest(admin_key.get_secret_value())
        self._authenticate = Authenticate(client)
        self._revoke = RevokeApiKey(client)

    @classmethod
    def from_settings(cls, client: aioredis.Redis, settings: GatewaySettings) -> ApiKeyStore:
        return cls(client, default_rpm=settings.rate_limit_per_min, admin_key=settings.admin_key)

    async def create(
        self,
        *,
        name: str,
        tenant: str,
        role: Role | str,
        collections: Iterable[str] | None = None,
        requests_per_minute: int | None = None,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> NewApiKey:
        """A new key, valid at once; :class:`InvalidRequest` names the value at fault."""
        at = now or datetime.now(UTC)
        token, parsed = mint_token()
        record = new_record(
            parsed.key_id,
            name=name,
            tenant=tenant,
            role=role,
            collections=collections,
            requests_per_minute=requests_per_minute,
            expires_at=expires_at,
            now=at,
        )
        k = keys.api_key(record.id)
        # The tenant's set first: list() skips an id without a record, whereas a
        # record whose id no set holds would be a live key no listing shows.
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.sadd(keys.API_KEY_TENANTS, record.tenant)
            pipe.sadd(keys.tenant_api_keys(record.tenant), record.id)
            await pipe.execute()
        async with slots.transaction(self._r, "apikey create", [k.record]) as tx:
            tx.hset(k.record, mapping=record.fields(parsed.secret_sha256))
            if record.expires_at is not None:
                tx.expireat(k.record, int(record.expires_at.timestamp()) + KEY_RETENTION_S)
            await tx.execute()
        return NewApiKey(record, token)

    async def list(self, tenant: str | None, *, include_revoked: bool = False) -> builtins.list[ApiKeyRecord]:
        """The keys of ``tenant`` (None: of every tenant), oldest first, without secrets.

        Revoked keys are left out unless ``include_revoked``; an id whose record is
        gone (expired past retention, or a create cut short) is skipped and dropped.
        """
        if tenant is None:
            members: Any = await self._r.smembers(keys.API_KEY_TENANTS)
            tenants = sorted(as_text(t) for t in members)
        elif is_name(tenant):
            tenants = [tenant]
        else:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for t in tenants:
                pipe.smembers(keys.tenant_api_keys(t))
            id_sets: builtins.list[Any] = await pipe.execute()
        owned = [(t, as_text(i)) for t, ids in zip(tenants, id_sets, strict=True) for i in sorted(ids)]
        async with self._r.pipeline(transaction=False) as pipe:
            for _, key_id in owned:
                pipe.hgetall(keys.api_key(key_id).record)
            hashes: builtins.list[Any] = await pipe.execute()
        found: builtins.list[ApiKeyRecord] = []
        stale: builtins.list[tuple[str, str]] = []
        for (t, key_id), raw in zip(owned, hashes, strict=True):
            record = ApiKeyRecord.from_fields(raw) if raw else None
            if record is None or record.tenant != t or record.id != key_id:
                stale.append((t, key_id))
            elif include_revoked or record.revoked_at is None:
                found.append(record)
        if stale:
            async with self._r.pipeline(transaction=False) as pipe:
                for t, key_id in stale:
                    pipe.srem(keys.tenant_api_keys(t), key_id)
                await pipe.execute()
        return sorted(found, key=lambda r: (r.created_at, r.id))

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """A key's record (revoked or not); None for no such key."""
        if not is_key_id(key_id) and key_id != OPERATOR_KEY_ID:
            return None
        raw: Any = await self._r.hgetall(keys.api_key(key_id).record)
        return ApiKeyRecord.from_fields(raw) if raw else None

    async def revoke(self, key_id: str, tenant: str | None, *, now: float | None = None) -> None:
        """Revoke a key of ``tenant`` (None: of any tenant, for the operator).

        :class:`ApiKeyNotFound` when there is no such key in that tenant; revoking a
        revoked key again is no error.
        """
        if not is_key_id(key_id):
            raise ApiKeyNotFound(key_id)
        at = time.time() if now is None else now
        k = keys.api_key(key_id)
        if not await self._revoke(k, tenant=tenant, now=at, retention_s=KEY_RETENTION_S):
            raise ApiKeyNotFound(key_id)

    async def authenticate_header(self, authorization: str | None, now: float | None = None) -> AuthResult:
        """:meth:`authenticate` for the value of an ``Authorization`` header."""
        token = bearer_token(authorization)
        if token == "":
            return Refused("malformed")
        return await self.authenticate(token, now)

    async def authenticate(self, token: str | None, now: float | None = None) -> AuthResult:
        """Who ``token`` is, and whether this request fits its rate limit.

        At most one Valkey round trip (none for a missing or malformed token). A
        wrong secret or unknown id counts against no key's limit.
        """
        if not token:
            return Refused("missing")
        at = time.time() if now is None else now
        if self._is_operator(token):
            op = keys.api_key(OPERATOR_KEY_ID)
            reply = await self._authenticate(op, secret_sha256=None, now=at, default_rpm=self.default_rpm)
            if reply.rate is None:  # the script answers the operator OK, always
                raise RuntimeError(f"AUTHENTICATE refused the operator: {reply.outcome.name}")
            return Authenticated(Principal.operator(reply.rate.limit), reply.rate)
        parsed = parse_token(token)
        if parsed is None:
            return Refused("malformed")
        reply = await self._authenticate(
            keys.api_key(parsed.key_id),
            secret_sha256=parsed.secret_sha256,
            now=at,
            default_rpm=self.default_rpm,
        )
        if reply.outcome == AuthOutcome.REVOKED:
            return Refused("revoked")
        if reply.outcome == AuthOutcome.EXPIRED:
            return Refused("expired")
        if reply.outcome != AuthOutcome.OK or reply.rate is None:
            return Refused("unknown")
        try:
            role = Role(reply.role)
            collections = decode_collections(reply.collections)
        except ValueError:
            logger.warning("API key %s has an unreadable record: refused", parsed.key_id)
            return Refused("unknown")
        if role not in KEY_ROLES or not reply.tenant:
            logger.warning("API key %s has an unreadable record: refused", parsed.key_id)
            return Refused("unknown")
        scope = None if collections is None else frozenset(collections)
        principal = Principal(parsed.key_id, reply.tenant, role, scope, reply.rate.limit)
        return Authenticated(principal, reply.rate)

    def _is_operator(self, token: str) -> bool:
        """Constant time whatever the token (digests of equal length are compared)."""
        if self._admin_digest is None:
            return False
        return hmac.compare_digest(_digest(token), self._admin_digest)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()
