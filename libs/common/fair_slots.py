"""A fixed number of slots shared round-robin among keys (tenants), for asyncio tasks.

A semaphore serves its waiters first come, first served: one tenant's twenty queued
parses would hold another tenant's one behind them. :class:`FairSlots` keeps a queue
per key and, each time a slot frees, serves the key whose turn it is; a key still
waiting goes to the back of the line. A key's one waiter thus waits for at most one
grant per other waiting key, however many those keys have queued.

With ``per_key``, no key holds more than that many slots at once, even while others
are free: one key's work, however slow, always leaves ``slots - per_key`` of them to
the other keys. A key at its cap waits, and :meth:`FairSlots.waiting_keys` names it
(the embedder's bulk reads leave such a tenant out until its waiter is served).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class FairSlots:
    def __init__(self, slots: int, per_key: int | None = None) -> None:
        if slots < 1:
            raise ValueError("at least one slot")
        if per_key is not None and per_key < 1:
            raise ValueError("a key may hold at least one slot")
        self._free = slots
        self._per_key = per_key
        # Slots each key holds now (keys holding none are left out).
        self._held: dict[str, int] = {}
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        # Keys with waiters, whose turn comes first first.
        self._turns: deque[str] = deque()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def waiting_keys(self) -> frozenset[str]:
        """The keys with a waiter: every slot is taken, or the key holds its ``per_key``."""
        return frozenset(self._queues)

    @asynccontextmanager
    async def hold(self, key: str, on_capped: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """Wait for a slot in ``key``'s turn; hold it for the block. ``on_capped`` is called
        when ``key`` has to wait because it holds its ``per_key`` (before waiting)."""
        await self.acquire(key, on_capped)
        try:
            yield
        finally:
            self.release(key)

    def _at_cap(self, key: str) -> bool:
        return self._per_key is not None and self._held.get(key, 0) >= self._per_key

    def _take(self, key: str) -> None:
        self._free -= 1
        self._held[key] = self._held.get(key, 0) + 1

    async def acquire(self, key: str, on_capped: Callable[[], None] | None = None) -> None:
        """:meth:`hold`'s wait, for a caller that must do something else while it waits
        (then :meth:`release` the slot). Cancelled, the wait leaves the line, or passes on
        a slot granted at that moment."""
        # A free slot with a waiter that may take it is never left: whoever waits is at its cap.
        if self._free > 0 and key not in self._queues and not self._at_cap(key):
            self._take(key)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._turns.append(key)
        queue.append(granted)
        if on_capped is not None and self._at_cap(key):
            on_capped()
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(key)  # granted as it was cancelled: pass the slot on
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

    def release(self, key: str) -> None:
        """Give back a slot :meth:`acquire` granted to ``key``."""
        self._free += 1
        left = self._held[key] - 1
        if left:
            self._held[key] = left
        else:
            del self._held[key]
        self._grant()

    def _grant(self) -> None:
        """Free slots to waiters: each to the first key in turn not at its cap, which then
        goes to the back of the line if it still waits."""
        while self._free > 0:
            key = next((k for k in self._turns if not self._at_cap(k)), None)
            if key is None:
                return
            self._turns.remove(key)
            queue = self._queues[key]
            granted = queue.popleft()
            if queue:
                self._turns.append(key)  # its next waiter: back of the line
            else:
                del self._queues[key]
            if not granted.done():  # a cancelled waiter's place is skipped
                self._take(key)
                granted.set_result(None)
