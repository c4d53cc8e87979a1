"""API keys on a real Valkey: the AUTHENTICATE script's rate limit (GCRA) per key."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from libs.common.apikeys import (
    ApiKeyStore,
)
from libs.common.errors import RateLimited
from libs.common.ratelimit import RateDecision
from tests.libs.common.apikeys_support import T0, ok, run

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
