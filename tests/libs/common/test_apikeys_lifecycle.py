"""API keys on a real Valkey: creating one (and what is stored), refusals that do not
burn its budget, revocation, expiry and listing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from libs.common import keys, slots
from libs.common.apikeys import (
    ApiKeyStore,
    Principal,
    Refused,
    Role,
)
from libs.common.decode import as_text
from libs.common.errors import ApiKeyNotFound, InvalidRequest, Unauthorized
from libs.common.ratelimit import RateDecision
from tests.libs.common.apikeys_support import T0, ok, run, secret_of

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
