"""Turning new work away while Valkey is near its memory limit.

With ``maxmemory`` and ``noeviction``, a full Valkey refuses every write: a job
accepted just before would fail mid-way. So the gateway stops accepting new jobs
a little earlier, at ``high_water`` of the limit (``DOCUMIND_VALKEY_MAXMEMORY_MB``,
``DOCUMIND_VALKEY_MEMORY_HIGH_WATER``): what is in flight keeps room to finish, and
a client is told why (503 :class:`StoreFull`, with ``Retry-After``) until finished
jobs expire. Valkey's memory is read with ``MEMORY STATS`` (the services' ACL user
may; ``INFO`` it may not), at most once per ``refresh_s`` per process. On a Valkey
Cluster the limit is each node's ``maxmemory`` and the reading is the fullest
primary's: a job's keys all live on one of them, whichever it is.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from libs.common.errors import StoreFull

MB = 1024 * 1024


class MemoryGuard:
    def __init__(
        self,
        client: aioredis.Redis,
        limit_mb: int,
        high_water: float,
        retry_after_s: int,
        refresh_s: float = 1.0,
    ) -> None:
        self._r = client
        # 0: the limit is unknown; nothing is checked.
        self.limit_bytes = limit_mb * MB
        self.high_water = high_water
        self.retry_after_s = retry_after_s
        self.refresh_s = refresh_s
        self._used = 0
        self._read_at = float("-inf")

    async def used_bytes(self) -> int:
        """Valkey's allocated memory, read again when the last reading is stale."""
        now = time.monotonic()
        if now - self._read_at >= self.refresh_s:
            if isinstance(self._r, RedisCluster):
                per_node: Any = await self._r.memory_stats(target_nodes=RedisCluster.PRIMARIES)
                self._used = max((_allocated(stats) for stats in per_node.values()), default=0)
            else:
                self._used = _allocated(await self._r.memory_stats())
            self._read_at = now
        return self._used

    async def check(self) -> None:
        """:class:`StoreFull` when Valkey is above the high-water mark of its limit."""
        if not self.limit_bytes:
            return
        used = await self.used_bytes()
        if used >= self.high_water * self.limit_bytes:
            share = used / self.limit_bytes
            raise StoreFull(
                self.retry_after_s,
                f"the job store is {share:.0%} full ({used / MB:.0f} of {self.limit_bytes / MB:.0f} MB, "
                f"DOCUMIND_VALKEY_MAXMEMORY_MB): new work is refused until finished jobs expire; retry later",
            )


def _allocated(stats: Any) -> int:
    """``total.allocated`` of one node's MEMORY STATS."""
    return int(stats.get("total.allocated") or stats.get(b"total.allocated") or 0)
