"""An API key as stored: its token format, its record, and the names Lua shares with Python.

A key is shown to its owner once, as ``dm_<id>_<secret>``: ``id`` is 16 hex digits
(it names the key's Valkey keys, see ``keys.api_key``), ``secret`` is
``secrets.token_urlsafe(32)`` (always 43 URL-safe characters). Valkey holds only
``sha256(secret)`` in hex, never the secret or the token. :func:`parse_token`
refuses anything else without touching Valkey.

The record's field names and the AUTHENTICATE script's outcomes are spelled here
once; ``lua.py`` generates them into the scripts. :func:`new_record` validates
what a new key may hold.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from libs.common.constants import COLLECTION_NAME_PATTERN
from libs.common.decode import as_text
from libs.common.errors import InvalidRequest
from libs.common.settings import MAX_REQUESTS_PER_MINUTE

TOKEN_PREFIX: Final = "dm_"
KEY_ID_HEX_DIGITS: Final = 16
# secrets.token_urlsafe(32): 32 random bytes in unpadded base64url.
SECRET_BYTES: Final = 32
_SECRET_CHARS: Final = 43
_TOKEN: Final = re.compile(rf"dm_([0-9a-f]{{{KEY_ID_HEX_DIGITS}}})_([A-Za-z0-9_-]{{{_SECRET_CHARS}}})")
_TOKEN_LENGTH: Final = len(TOKEN_PREFIX) + KEY_ID_HEX_DIGITS + 1 + _SECRET_CHARS
_KEY_ID: Final = re.compile(rf"[0-9a-f]{{{KEY_ID_HEX_DIGITS}}}")
# Tenant and collection names (a tenant's name is in its keys' hash tag, ``{t<tenant>}``).
_NAME: Final = re.compile(COLLECTION_NAME_PATTERN)
MAX_NAME_CHARS: Final = 200


class Role(enum.StrEnum):
    """What a key may do (``apikeys.ROLE_PERMISSIONS``); the operator is no stored key."""

    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"
    # DOCUMIND_ADMIN_KEY, checked in-process: manages every tenant's keys.
    OPERATOR = "operator"


# The roles a stored key may have.
KEY_ROLES: Final = frozenset({Role.READER, Role.WRITER, Role.ADMIN})

# --- the record: one hash per key (keys.api_key(id).record) --------------------
ID_FIELD: Final = "id"
NAME_FIELD: Final = "name"
TENANT_FIELD: Final = "tenant"
ROLE_FIELD: Final = "role"
# "" for every collection of the tenant, else a JSON list of names.
COLLECTIONS_FIELD: Final = "collections"
# "" for the deployment's default (DOCUMIND_RATE_LIMIT_PER_MIN), read at each request.
RPM_FIELD: Final = "requests_per_minute"
SECRET_FIELD: Final = "secret_sha256"
# Epoch seconds; "" when unset.
CREATED_FIELD: Final = "created_at"
EXPIRES_FIELD: Final = "expires_at"
REVOKED_FIELD: Final = "revoked_at"


class AuthOutcome(enum.IntEnum):
    """AUTHENTICATE's first reply item (the script gets these numbers from here)."""

    OK = 1
    # No record, or the secret's hash does not match: nothing was counted.
    UNKNOWN = 2
    REVOKED = 3
    EXPIRED = 4


def is_key_id(value: str) -> bool:
    return len(value) == KEY_ID_HEX_DIGITS and _KEY_ID.fullmatch(value) is not None


def hash_secret(secret: str) -> str:
    """What Valkey stores of a secret: its sha256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A well-formed token: the key id and the hash of its secret (the secret is not kept)."""

    key_id: str
    secret_sha256: str


def parse_token(token: str) -> ParsedToken | None:
    """The id and secret hash of ``dm_<16 hex>_<43 base64url chars>``; None for anything else."""
    if len(token) != _TOKEN_LENGTH:
        return None
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    return ParsedToken(match[1], hash_secret(match[2]))


def mint_token() -> tuple[str, ParsedToken]:
    """A new key: the token to hand out once, and its id and secret hash (what is stored)."""
    key_id = secrets.token_hex(KEY_ID_HEX_DIGITS // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return f"{TOKEN_PREFIX}{key_id}_{secret}", ParsedToken(key_id, hash_secret(secret))


def _epoch(at: datetime | None) -> str:
    return "" if at is None else repr(at.timestamp())


def _datetime(value: str) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value else None


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as listed: everything but its secret."""

    id: str
    name: str
    tenant: str
    role: Role
    # None: every collection of the tenant.
    collections: tuple[str, ...] | None
    # None: the deployment's default (DOCUMIND_RATE_LIMIT_PER_MIN).
    requests_per_minute: int | None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def rate_limit(self, default_rpm: int) -> int:
        """Requests per minute this key gets."""
        return self.requests_per_minute or default_rpm

    def fields(self, secret_sha256: str) -> dict[str, str]:
        """The record's hash fields (with the secret's hash, which nothing reads back)."""
        return {
            ID_FIELD: self.id,
            NAME_FIELD: self.name,
            TENANT_FIELD: self.tenant,
            ROLE_FIELD: self.role.value,
            COLLECTIONS_FIELD: encode_collections(self.collections),
            RPM_FIELD: "" if self.requests_per_minute is None else str(self.requests_per_minute),
            SECRET_FIELD: secret_sha256,
            CREATED_FIELD: _epoch(self.created_at),
            EXPIRES_FIELD: _epoch(self.expires_at),
            REVOKED_FIELD: _epoch(self.revoked_at),
        }

    @classmethod
    def from_fields(cls, raw: Mapping[bytes, bytes] | Mapping[str, str]) -> ApiKeyRecord | None:
        """The record read back from its hash; None when the hash is gone or incomplete."""
        f = {as_text(k): as_text(v) for k, v in raw.items()}
        try:
            rpm = f.get(RPM_FIELD, "")
            created = _datetime(f[CREATED_FIELD])
            if created is None:
                return None
            return cls(
                id=f[ID_FIELD],
                name=f[NAME_FIELD],
                tenant=f[TENANT_FIELD],
                role=Role(f[ROLE_FIELD]),
                collections=decode_collections(f.get(COLLECTIONS_FIELD, "")),
                requests_per_minute=int(rpm) if rpm else None,
                created_at=created,
                expires_at=_datetime(f.get(EXPIRES_FIELD, "")),
                revoked_at=_datetime(f.get(REVOKED_FIELD, "")),
            )
        except (KeyError, ValueError):
            return None


def encode_collections(collections: tuple[str, ...] | None) -> str:
    return "" if collections is None else json.dumps(list(collections))


def decode_collections(value: str) -> tuple[str, ...] | None:
    """The stored collections field: None (every collection) or the names."""
    if not value:
        return None
    names = json.loads(value)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"not a list of collection names: {value!r}")
    return tuple(names)


# --- a new key's record, validated ------------------------------------------------


def is_name(value: str) -> bool:
    """Whether ``value`` is a valid tenant or collection name."""
    return _NAME.fullmatch(value) is not None


def new_record(
    key_id: str,
    *,
    name: str,
    tenant: str,
    role: Role | str,
    collections: Iterable[str] | None,
    requests_per_minute: int | None,
    expires_at: datetime | None,
    now: datetime,
) -> ApiKeyRecord:
    """A new key's record; :class:`InvalidRequest` names the value at fault."""
    return ApiKeyRecord(
        id=key_id,
        name=_valid_name(name),
        tenant=_valid_tenant(tenant),
        role=_valid_role(role),
        collections=_valid_collections(collections),
        requests_per_minute=_valid_rpm(requests_per_minute),
        created_at=now,
        expires_at=_valid_expiry(expires_at, now),
    )


def _valid_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise InvalidRequest(f"a key's name must be 1 to {MAX_NAME_CHARS} printable characters", "name")
    return name


def _valid_tenant(tenant: str) -> str:
    if not is_name(tenant):
        raise InvalidRequest(f"invalid tenant name {tenant!r}: {COLLECTION_NAME_PATTERN}", "tenant")
    return tenant


def _valid_role(role: Role | str) -> Role:
    if role not in KEY_ROLES:
        choices = ", ".join(sorted(r.value for r in KEY_ROLES))
        raise InvalidRequest(f"invalid role {role!r}: one of {choices}", "role")
    return Role(role)


def _valid_collections(collections: Iterable[str] | None) -> tuple[str, ...] | None:
    if collections is None:
        return None
    if isinstance(collections, str):
        raise InvalidRequest("collections must be a list of names", "collections")
    names = list(collections)
    for name in names:
        if not isinstance(name, str) or not is_name(name):
            raise InvalidRequest(f"invalid collection name {name!r}", "collections")
    if not names:
        raise InvalidRequest("collections must name at least one collection (omit it for all)", "collections")
    return tuple(sorted(set(names)))


def _valid_rpm(rpm: int | None) -> int | None:
    if rpm is None:
        return None
    if isinstance(rpm, bool) or not isinstance(rpm, int) or not 1 <= rpm <= MAX_REQUESTS_PER_MINUTE:
        raise InvalidRequest(
            f"requests_per_minute must be an integer from 1 to {MAX_REQUESTS_PER_MINUTE}",
            "requests_per_minute",
        )
    return rpm


def _valid_expiry(expires_at: datetime | None, now: datetime) -> datetime | None:
    if expires_at is None:
        return None
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise InvalidRequest("expires_at must carry a time zone (RFC 3339)", "expires_at")
    if expires_at <= now:
        raise InvalidRequest("expires_at must be in the future", "expires_at")
    return expires_at.astimezone(UTC)
