"""The memory guard against a real Valkey: new work is refused near the limit, with a reason."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from libs.common.errors import StoreFull
from libs.common.memory_guard import MB, MemoryGuard


def check(url: str, limit_mb: int, high_water: float) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(url)
        try:
            await MemoryGuard(r, limit_mb, high_water, retry_after_s=5).check()
        finally:
            await r.aclose()

    asyncio.run(main())


def test_work_is_refused_above_the_high_water_mark(valkey_url: str, valkey: redis.Redis) -> None:
    used = int(valkey.memory_stats()["total.allocated"])
    roomy = (used * 4) // MB + 1
    check(valkey_url, roomy, 0.9)
    # 10 MB more data: now above 90 % of a limit just above what is used.
    valkey.set("filler", b"x" * (10 * MB))
    tight = (used + 10 * MB) // MB + 1
    with pytest.raises(StoreFull) as refused:
        check(valkey_url, tight, 0.9)
    assert refused.value.retry_after_s == 5
    assert "MB, DOCUMIND_VALKEY_MAXMEMORY_MB): new work is refused" in refused.value.message


def test_an_unknown_limit_checks_nothing(valkey_url: str) -> None:
    check(valkey_url, 0, 0.01)
