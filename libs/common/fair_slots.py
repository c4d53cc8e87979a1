"""A fixed number of slots shared round-robin among keys (tenants), for asyncio tasks.

A semaphore serves its waiters first come, first served: one tenant's twenty queued
parses would hold another tenant's one behind them. :class:`FairSlots` keeps a queue
per key and, each time a slot frees, serves the key whose turn it is; a key still
waiting goes to the back of the line. A key's one waiter thus waits for at most one
grant per other waiting key, however many those keys have queued.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairSlots:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("at least one slot")
        self._free = slots
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        # Keys with waiters, whose turn comes first first.
        self._turns: deque[str] = deque()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Wait for a slot in ``key``'s turn; hold it for the block."""
        await self._acquire(key)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, key: str) -> None:
        if self._free > 0 and not self._turns:
            self._free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._turns.append(key)
        queue.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release()  # granted as it was cancelled: pass the slot on
            else:
                self._forget(key, granted)
            raise

    def _forget(self, key: str, granted: asyncio.Future[None]) -> None:
        queue = self._queues.get(key)
        if queue is None or granted not in queue:
            return
        queue.remove(granted)
        if not queue:
            del self._queues[key]
            self._turns.remove(key)

    def _release(self) -> None:
        while self._turns:
            key = self._turns.popleft()
            queue = self._queues[key]
            granted = queue.popleft()
            if queue:
                self._turns.append(key)  # its next waiter: back of the line
            else:
                del self._queues[key]
            if not granted.done():
                granted.set_result(None)
                return
        self._free += 1
