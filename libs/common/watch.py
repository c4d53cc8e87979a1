"""Following one stream from a position: what a waiter asks of whoever reads for it.

A route that waits (``?wait=``, an events stream) opens a :class:`Watch` on one
stream key after an entry id and takes the entries that come, in order, until it
has what it waits for or its timeout passes; leaving the ``async with`` ends the
watch. Two sources give watches:

- :class:`libs.common.fanout.Fanout`: the gateway's. A few dedicated connections
  read the streams of every watch of the process (see its module).
- :class:`DirectReads`: each watch blocks on the given client itself, holding one
  of its pooled connections while it waits; for tools and tests that wait on a
  job or two.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import redis.asyncio as aioredis

# A stream entry: its id and its fields (as Valkey returns them: bytes).
Entry = tuple[str, dict[Any, Any]]
# A stream id as numbers, to compare: "1732440000000-5" -> (1732440000000, 5).
StreamId = tuple[int, int]


def parse_id(entry_id: str) -> StreamId:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Watch(Protocol):
    async def next(self, timeout_s: float) -> list[Entry]:
        """The stream's entries after those already taken, waiting up to ``timeout_s``
        for one; [] when none came in time."""
        ...


class Watcher(Protocol):
    def watch(self, key: str, after: str) -> AbstractAsyncContextManager[Watch]:
        """A watch of stream ``key`` from just after entry id ``after`` ("0-0": the start)."""
        ...


class _DirectWatch:
    def __init__(self, client: aioredis.Redis, key: str, after: str, count: int) -> None:
        self._r, self._key, self._last, self._count = client, key, after, count

    async def next(self, timeout_s: float) -> list[Entry]:
        reply: Any = await self._r.xread(
            {self._key: self._last}, count=self._count, block=max(1, int(timeout_s * 1000))
        )
        if not reply:
            return []
        entries = [(i.decode() if isinstance(i, bytes) else str(i), f) for i, f in reply[0][1]]
        self._last = entries[-1][0]
        return entries


class DirectReads:
    """Watches that each block on ``client`` (one pooled connection per waiting watch)."""

    def __init__(self, client: aioredis.Redis, count: int = 500) -> None:
        self._r, self._count = client, count

    @asynccontextmanager
    async def _watch(self, key: str, after: str) -> AsyncIterator[Watch]:
        yield _DirectWatch(self._r, key, after, self._count)

    def watch(self, key: str, after: str) -> AbstractAsyncContextManager[Watch]:
        return self._watch(key, after)
