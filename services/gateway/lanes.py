"""A bounded, first-come first-served lane: a few places, and a queue that gives up.

:class:`Lane` is the primitive of :mod:`services.gateway.key_concurrency`: at most
``limit`` holders at once; a caller beyond them waits in line for up to a given time,
then is told no. A place given back goes straight to the first caller still waiting
(nobody who arrives later takes it first), and a caller that gave up, or whose request
was cancelled, leaves no place taken.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Lane:
    """At most ``limit`` holders at once (see the module's docstring)."""

    __slots__ = ("_line", "held", "limit", "waiting")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a lane needs at least one place")
        self.limit = limit
        self.held = 0
        # Callers in line right now (the line may also hold those that left it).
        self.waiting = 0
        self._line: deque[asyncio.Future[None]] = deque()

    @property
    def idle(self) -> bool:
        """Nobody holds a place nor waits for one."""
        return self.held == 0 and self.waiting == 0

    def take_now(self) -> bool:
        """Take a free place at once; False when there is none."""
        if self.held < self.limit:
            self.held += 1
            return True
        return False

    async def take(self, wait_s: float) -> bool:
        """Take a place, waiting in line up to ``wait_s`` for one; False when none came."""
        if self.take_now():
            return True
        if wait_s <= 0:
            return False
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._line.append(handed)
        self.waiting += 1
        try:
            async with asyncio.timeout(wait_s):
                await handed
        except TimeoutError:
            # Handed over just as the time ran out: the place is ours all the same.
            return handed.done() and not handed.cancelled()
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():
                self.give()
            raise
        finally:
            self.waiting -= 1
        return True

    def give(self) -> None:
        """Give a place back: to the first caller still in line, else free it."""
        while self._line:
            first = self._line.popleft()
            if not first.done():
                first.set_result(None)
                return
        self.held -= 1
