"""API keys on a real Valkey: tokens, the store, the AUTHENTICATE script's rate limit, roles and scopes."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from pydantic import SecretStr, ValidationError

from libs.common import apikey_record, keys, lua_apikeys, slots
from libs.common.apikey_record import AuthOutcome, parse_token
from libs.common.apikeys import (
    OPERATOR_KEY_ID,
    ROLE_PERMISSIONS,
    ApiKeyStore,
    Authenticated,
    AuthResult,
    Permission,
    Principal,
    Refused,
    Role,
    bearer_token,
)
from libs.common.decode import as_text
from libs.common.errors import ApiKeyNotFound, Forbidden, InvalidRequest, RateLimited, Unauthorized
from libs.common.ratelimit import RateDecision
from libs.common.settings import GatewaySettings

ADMIN_KEY = "op-" + "Zq8xV2mK9pL4wR7tY1uE6nB3cD5fG0hJ"
# Whole seconds, so the expected GCRA numbers are exact.
T0 = float(int(time.time()))

Body = Callable[[ApiKeyStore, aioredis.Redis], Awaitable[None]]


def run(url: str, body: Body, *, default_rpm: int = 600, admin_key: str | None = None) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(url)
        try:
            secret = SecretStr(admin_key) if admin_key else None
            await body(ApiKeyStore(client, default_rpm=default_rpm, admin_key=secret), client)
        finally:
            await client.aclose()

    asyncio.run(main())


def ok(result: AuthResult) -> Authenticated:
    assert isinstance(result, Authenticated), result
    return result


def secret_of(token: str) -> str:
    return token.split("_", 2)[2]


# --- tokens -----------------------------------------------------------------------


def test_a_minted_token_parses_to_its_id_and_the_hash_of_its_secret() -> None:
    token, parsed = apikey_record.mint_token()
    assert token.startswith(f"dm_{parsed.key_id}_") and len(parsed.key_id) == 16
    assert parse_token(token) == parsed
    assert parsed.secret_sha256 == hashlib.sha256(secret_of(token).encode()).hexdigest()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "dm_",
        "Bearer dm_0123456789abcdef_" + "a" * 43,
        "dm_0123456789ABCDEF_" + "a" * 43,  # upper-case id
        "dm_0123456789abcde_" + "a" * 44,  # short id
        "dm_0123456789abcdef_" + "a" * 42,  # short secret
        "dm_0123456789abcdef_" + "a" * 42 + "=",  # not base64url
        "dm_0123456789abcdef_" + "a" * 43 + "\n",
        "xx_0123456789abcdef_" + "a" * 43,
        "dm_0123456789abcdef-" + "a" * 43,
    ],
)
def test_a_malformed_token_is_refused_by_the_parser(token: str) -> None:
    assert parse_token(token) is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", ""),
    ],
)
def test_the_bearer_token_of_an_authorization_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_a_malformed_or_missing_token_is_refused_without_touching_valkey() -> None:
    async def main() -> None:
        # Nothing listens there: any round trip would fail.
        client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
        store = ApiKeyStore(client, default_rpm=10, admin_key=SecretStr(ADMIN_KEY))
        try:
            assert await store.authenticate("dm_nothex_x", T0) == Refused("malformed")
            assert await store.authenticate(None, T0) == Refused("missing")
            assert await store.authenticate_header(None, T0) == Refused("missing")
            assert await store.authenticate_header(f"Basic {ADMIN_KEY}", T0) == Refused("malformed")
            assert await store.authenticate_header("Bearer ", T0) == Refused("malformed")
        finally:
            await client.aclose()

    asyncio.run(main())


# --- create, authenticate, what is stored -----------------------------------------


def test_a_created_key_authenticates_and_its_secret_is_stored_nowhere(valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        new = await store.create(name="ci bot", tenant="acme", role="writer", collections=["docs", "faq"])
        assert new.key not in repr(new)
        got = ok(await store.authenticate(new.key, T0))
        assert got.principal == Principal(new.record.id, "acme", Role.WRITER, frozenset({"docs", "faq"}), 600)
        assert got.rate == RateDecision(True, 600, 599, 1, 0)
        stored = await everything_in(r)
        secret = secret_of(new.key)
        assert not [k for k, v in stored.items() if secret in k or secret in v]
        record: Any = await r.hgetall(keys.api_key(new.record.id).record)
        assert as_text(record[b"secret_sha256"]) == hashlib.sha256(secret.encode()).hexdigest()

    run(valkey_url, body)


async def everything_in(r: aioredis.Redis) -> dict[str, str]:
    """Every key of the database and its value(s), as text."""
    found: dict[str, str] = {}
    async for key in r.scan_iter(count=1000):
        kind = as_text(await r.type(key))
        value: Any
        if kind == "string":
            value = await r.get(key)
        elif kind == "hash":
            value = await r.hgetall(key)
        elif kind == "set":
            value = await r.smembers(key)
        else:
            value = await r.dump(key)
        found[as_text(key)] = repr(value)
    assert found, "nothing stored?"
    return found


def test_the_record_and_the_rate_state_of_a_key_share_one_slot() -> None:
    k = keys.api_key("0123456789abcdef")
    assert (k.record, k.rate) == ("documind:{k0123456789abcdef}:apikey", "documind:{k0123456789abcdef}:rate")
    assert len(slots.slots_of([k.record, k.rate])) == 1
    assert keys.tenant_api_keys("acme") == "documind:{tacme}:apikeys"
    with pytest.raises(ValueError):
        keys.tenant_api_keys("a}b")


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"name": "  "}, "name"),
        ({"tenant": "no/slash"}, "tenant"),
        ({"tenant": "{t}"}, "tenant"),
        ({"role": "operator"}, "role"),
        ({"role": "root"}, "role"),
        ({"collections": []}, "collections"),
        ({"collections": "docs"}, "collections"),
        ({"collections": ["ok", "not ok"]}, "collections"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"requests_per_minute": True}, "requests_per_minute"),
        ({"expires_at": datetime(2030, 1, 1)}, "expires_at"),  # naive
        ({"expires_at": datetime.now(UTC) - timedelta(seconds=1)}, "expires_at"),
    ],
)
def test_create_refuses_what_a_key_cannot_hold(change: dict[str, Any], param: str, valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        args: dict[str, Any] = {"name": "n", "tenant": "acme", "role": "reader", **change}
        with pytest.raises(InvalidRequest) as refused:
            await store.create(**args)
        assert refused.value.param == param
        assert await r.dbsize() == 0

    run(valkey_url, body)


# --- refusals that must not burn a key's budget ------------------------------------


def test_a_wrong_secret_a_malformed_token_or_an_unknown_id_does_not_use_the_keys_budget(
    valkey_url: str,
) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        new = await store.create(name="n", tenant="acme", role="reader", requests_per_minute=3)
        wrong = new.key[:-1] + ("B" if new.key.endswith("A") else "A")
        unknown = "dm_ffffffffffffffff_" + secret_of(new.key)
        for _ in range(5):
            assert await store.authenticate(wrong, T0) == Refused("unknown")
            assert await store.authenticate(unknown, T0) == Refused("unknown")
            assert await store.authenticate(new.key + "x", T0) == Refused("malformed")
        remaining = [ok(await store.authenticate(new.key, T0)).rate.remaining for _ in range(3)]
        assert remaining == [2, 1, 0]

    run(valkey_url, body)


def test_the_client_is_told_invalid_api_key_for_malformed_and_unknown_alike() -> None:
    messages = {}
    for reason in ("missing", "malformed", "unknown", "revoked", "expired"):
        with pytest.raises(Unauthorized) as refused:
            Refused(reason).check()
        assert refused.value.reason == reason
        messages[reason] = refused.value.message
    assert messages["malformed"] == messages["unknown"] == "invalid API key"
    assert len(set(messages.values())) == 4


# --- revocation and expiry ---------------------------------------------------------


def test_a_revoked_key_is_refused_on_the_very_next_call_from_any_connection(valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        other_client = aioredis.Redis.from_url(valkey_url)
        other = ApiKeyStore(other_client, default_rpm=600)
        try:
            new = await store.create(name="n", tenant="acme", role="reader")
            ok(await other.authenticate(new.key, T0))
            await store.revoke(new.record.id, "acme", now=T0)
            assert await other.authenticate(new.key, T0) == Refused("revoked")
            assert await store.authenticate(new.key, T0) == Refused("revoked")
            assert not await r.exists(keys.api_key(new.record.id).rate)
            assert await r.ttl(keys.api_key(new.record.id).record) > 0
        finally:
            await other_client.aclose()

    run(valkey_url, body)


def test_an_admin_revokes_only_its_own_tenants_keys_and_the_operator_any(valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        acme = await store.create(name="a", tenant="acme", role="reader")
        globex = await store.create(name="g", tenant="globex", role="reader")
        with pytest.raises(ApiKeyNotFound):
            await store.revoke(globex.record.id, "acme")
        ok(await store.authenticate(globex.key, T0))
        await store.revoke(acme.record.id, "acme")
        await store.revoke(acme.record.id, "acme")  # again: no error
        await store.revoke(globex.record.id, None)
        assert await store.authenticate(globex.key, T0) == Refused("revoked")
        for missing in ("ffffffffffffffff", "not-a-key-id"):
            with pytest.raises(ApiKeyNotFound):
                await store.revoke(missing, None)

    run(valkey_url, body)


def test_a_key_is_refused_from_its_expiry_on(valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        created = datetime.fromtimestamp(T0, UTC)
        expires = created + timedelta(seconds=60)
        new = await store.create(name="n", tenant="acme", role="reader", expires_at=expires, now=created)
        assert new.record.expires_at == expires
        ok(await store.authenticate(new.key, T0 + 59.9))
        assert await store.authenticate(new.key, T0 + 60) == Refused("expired")
        # The record goes after the retention period, and the listing with it.
        assert await r.ttl(keys.api_key(new.record.id).record) > 0

    run(valkey_url, body)


# --- the rate limit (GCRA) ---------------------------------------------------------


def test_a_key_takes_a_burst_of_its_limit_then_one_request_per_emission_interval(valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        new = await store.create(name="n", tenant="acme", role="reader", requests_per_minute=3)
        burst = [ok(await store.authenticate(new.key, T0)).rate for _ in range(3)]
        assert [(d.allowed, d.remaining, d.reset_s) for d in burst] == [
            (True, 2, 20),
            (True, 1, 40),
            (True, 0, 60),
        ]
        limited = ok(await store.authenticate(new.key, T0))
        assert limited.rate == RateDecision(False, 3, 0, 60, 20)
        with pytest.raises(RateLimited) as refused:
            limited.check()
        assert (refused.value.retry_after_s, refused.value.limit, refused.value.reset_s) == (20, 3, 60)
        assert limited.rate.headers() == {
            "RateLimit-Limit": "3",
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": "60",
            "Retry-After": "20",
        }
        # A refused request changed nothing: just short of one interval later it is still early.
        assert ok(await store.authenticate(new.key, T0 + 19.5)).rate.retry_after_s == 1
        after = ok(await store.authenticate(new.key, T0 + 20)).check()
        assert after.rate == RateDecision(True, 3, 0, 60, 0)
        assert not ok(await store.authenticate(new.key, T0 + 20)).rate.allowed
        # A minute idle refills the whole burst.
        assert ok(await store.authenticate(new.key, T0 + 80)).rate.remaining == 2

    run(valkey_url, body)


def test_two_client_connections_share_one_limit(valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        other_client = aioredis.Redis.from_url(valkey_url)
        other = ApiKeyStore(other_client, default_rpm=600)
        try:
            new = await store.create(name="n", tenant="acme", role="reader", requests_per_minute=3)
            first = ok(await store.authenticate(new.key, T0)).rate
            second = ok(await other.authenticate(new.key, T0)).rate
            assert (first.remaining, second.remaining) == (2, 1)
            assert ok(await store.authenticate(new.key, T0)).rate.allowed
            assert not ok(await other.authenticate(new.key, T0)).rate.allowed
        finally:
            await other_client.aclose()

    run(valkey_url, body)


def test_a_key_without_its_own_limit_gets_the_default_in_force_at_each_request(valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        new = await store.create(name="n", tenant="acme", role="reader")
        assert new.record.requests_per_minute is None and new.record.rate_limit(5) == 5
        assert ok(await store.authenticate(new.key, T0)).rate.limit == 5
        raised = ApiKeyStore(r, default_rpm=50)
        assert ok(await raised.authenticate(new.key, T0 + 60)).rate.limit == 50

    run(valkey_url, body, default_rpm=5)


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


# --- listing -----------------------------------------------------------------------


def test_listing_is_per_tenant_without_secrets_and_tolerates_records_that_are_gone(valkey_url: str) -> None:
    async def body(store: ApiKeyStore, r: aioredis.Redis) -> None:
        a1 = await store.create(name="a1", tenant="acme", role="reader")
        a2 = await store.create(name="a2", tenant="acme", role="admin", requests_per_minute=9)
        gone = await store.create(name="gone", tenant="acme", role="reader")
        g1 = await store.create(name="g1", tenant="globex", role="writer")
        await r.delete(keys.api_key(gone.record.id).record)
        await store.revoke(a2.record.id, "acme")
        listed = await store.list("acme")
        assert [k.id for k in listed] == [a1.record.id]
        assert listed[0] == a1.record
        assert not any(hasattr(k, "secret_sha256") or hasattr(k, "key") for k in listed)
        with_revoked = await store.list("acme", include_revoked=True)
        assert [(k.name, k.revoked_at is not None) for k in with_revoked] == [("a1", False), ("a2", True)]
        assert not await r.sismember(keys.tenant_api_keys("acme"), gone.record.id)
        assert [k.id for k in await store.list(None)] == [a1.record.id, g1.record.id]
        assert await store.list("nobody") == [] and await store.list("not/a/tenant") == []

    run(valkey_url, body)


# --- settings, errors, Lua ---------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "short-but-random-9fK2",
        "changeme" * 4,
        "admin" * 7,
        "Your_Admin_Key_Here_Change_Me_123",
        "password" * 4,
        "0" * 40,
        "ab" * 20,
    ],
)
def test_a_weak_or_placeholder_admin_key_is_refused_without_echoing_it(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCUMIND_ADMIN_KEY", value)
    with pytest.raises(ValidationError, match="admin_key") as refused:
        GatewaySettings(_env_file=None)
    if value:
        assert value not in str(refused.value)


def test_the_admin_key_may_be_unset_or_strong(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings(_env_file=None)
    assert (settings.admin_key, settings.rate_limit_per_min, settings.tenant_max_inflight) == (
        None,
        600,
        1000,
    )
    monkeypatch.setenv("DOCUMIND_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("DOCUMIND_RATE_LIMIT_PER_MIN", "30")
    settings = GatewaySettings(_env_file=None)
    assert settings.admin_key is not None and settings.admin_key.get_secret_value() == ADMIN_KEY
    assert ADMIN_KEY not in repr(settings)
    store = ApiKeyStore.from_settings(aioredis.Redis(), settings)
    assert store.default_rpm == 30


def test_the_api_key_names_read_back_from_valkey_match_python(valkey: redis.Redis) -> None:
    probe = lua_apikeys.APIKEY_NAMES + (
        "return {A_OK, A_UNKNOWN, A_REVOKED, A_EXPIRED, K_SECRET, K_TENANT, K_ROLE, K_COLLECTIONS,"
        " K_RPM, K_EXPIRES, K_REVOKED}"
    )
    got = valkey.eval(probe, 0)
    assert got[:4] == [AuthOutcome.OK, AuthOutcome.UNKNOWN, AuthOutcome.REVOKED, AuthOutcome.EXPIRED]
    assert [v.decode() for v in got[4:]] == [
        apikey_record.SECRET_FIELD,
        apikey_record.TENANT_FIELD,
        apikey_record.ROLE_FIELD,
        apikey_record.COLLECTIONS_FIELD,
        apikey_record.RPM_FIELD,
        apikey_record.EXPIRES_FIELD,
        apikey_record.REVOKED_FIELD,
    ]
