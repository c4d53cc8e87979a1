"""The API-key scripts on a real Valkey, under the session's slot audit: each call stays in one slot."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from libs.common import keys, slots
from libs.common.apikeys import ApiKeyStore, Authenticated, Refused


def test_a_key_is_created_authenticated_and_revoked_in_one_slot_per_call(valkey_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(valkey_url)
        try:
            store = ApiKeyStore(client, default_rpm=60)
            new = await store.create(name="integration", tenant="acme", role="writer")
            k = keys.api_key(new.record.id)
            assert len(slots.slots_of([k.record, k.rate])) == 1
            now = time.time()
            result = await store.authenticate(new.key, now)  # AUTHENTICATE
            assert isinstance(result, Authenticated) and result.rate.allowed
            assert result.principal.tenant == "acme"
            await store.revoke(new.record.id, "acme", now=now)  # REVOKE_API_KEY
            assert await store.authenticate(new.key, now) == Refused("revoked")
        finally:
            await client.aclose()

    asyncio.run(main())
