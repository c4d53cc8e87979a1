"""API keys: the operator key, and what each role and collection scope may do."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from libs.common import keys
from libs.common.apikeys import (
    OPERATOR_KEY_ID,
    ROLE_PERMISSIONS,
    ApiKeyStore,
    Permission,
    Principal,
    Refused,
    Role,
)
from libs.common.errors import Forbidden
from tests.libs.common.apikeys_support import ADMIN_KEY, T0, ok, run

# --- the operator ------------------------------------------------------------------


def test_the_operator_key_is_the_operator_and_is_rate_limited_under_its_own_id(valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        first = ok(await store.authenticate(ADMIN_KEY, T0))
        assert first.principal == Principal.operator(2) and first.principal.key_id == OPERATOR_KEY_ID
        assert first.principal.tenant is None and first.principal.can_see("anything")
        assert ok(await store.authenticate_header(f"Bearer {ADMIN_KEY}", T0)).rate.allowed
        assert not ok(await store.authenticate(ADMIN_KEY, T0)).rate.allowed
        assert await r.exists(keys.api_key(OPERATOR_KEY_ID).rate)
        assert await store.authenticate(ADMIN_KEY[:-1], T0) == Refused("malformed")

    run(valkey_url, body, default_rpm=2, admin_key=ADMIN_KEY)


def test_without_an_operator_key_configured_no_token_is_the_operator(valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        assert await store.authenticate(ADMIN_KEY, T0) == Refused("malformed")

    run(valkey_url, body)


# --- roles and scopes --------------------------------------------------------------


def principal(
    role: Role, tenant: str | None = "acme", collections: frozenset[str] | None = None
) -> Principal:
    return Principal("0123456789abcdef", tenant, role, collections, 60)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.READER, {Permission.READ}),
        (Role.WRITER, {Permission.READ, Permission.WRITE}),
        (Role.ADMIN, {Permission.READ, Permission.WRITE, Permission.MANAGE_KEYS}),
        (Role.OPERATOR, set(Permission)),
    ],
)
def test_each_role_has_its_permissions_and_is_refused_the_others(
    role: Role, allowed: set[Permission]
) -> None:
    assert ROLE_PERMISSIONS[role] == allowed
    who = principal(role, None if role == Role.OPERATOR else "acme")
    for permission in Permission:
        if permission in allowed:
            who.require(permission)
        else:
            with pytest.raises(Forbidden, match=f"'{permission.value}'") as refused:
                who.require(permission)
            assert refused.value.permission == permission


def test_an_admin_manages_only_its_tenants_keys_and_the_operator_every_tenants() -> None:
    admin, operator = principal(Role.ADMIN), Principal.operator(60)
    assert (admin.keys_scope(), operator.keys_scope()) == ("acme", None)
    admin.require_grant("acme", ["docs"])
    operator.require_grant("globex", None)
    with pytest.raises(Forbidden, match="manage_all_keys"):
        admin.require_grant("globex", None)
    for role in (Role.READER, Role.WRITER):
        with pytest.raises(Forbidden, match="manage_keys"):
            principal(role).keys_scope()


def test_a_key_scoped_to_collections_sees_and_grants_only_those() -> None:
    scoped = principal(Role.ADMIN, collections=frozenset({"docs"}))
    assert scoped.can_see("docs") and not scoped.can_see("hr")
    assert principal(Role.READER).can_see("hr")
    scoped.require_grant("acme", ["docs"])
    for wider in (["docs", "hr"], None):
        with pytest.raises(Forbidden, match="only grant its own collections"):
            scoped.require_grant("acme", wider)


def test_an_authenticated_key_carries_its_collection_scope(valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        scoped = await store.create(name="n", tenant="acme", role="reader", collections=["docs", "docs"])
        assert scoped.record.collections == ("docs",)
        who = ok(await store.authenticate(scoped.key, T0)).principal
        assert who.collections == frozenset({"docs"}) and not who.can_see("hr")

    run(valkey_url, body)
