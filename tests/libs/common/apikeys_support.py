"""What the API key tests share: an operator key, a fixed clock, and running a body
with an ``ApiKeyStore`` on a real Valkey."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from pydantic import SecretStr

from libs.common.apikeys import ApiKeyStore, Authenticated, AuthResult

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
