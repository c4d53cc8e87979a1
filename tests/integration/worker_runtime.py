"""What the worker-runtime tests share: quick worker settings, recording handlers, and
running in-process workers against a real Valkey server (``valkey_url``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from libs.common.envelope import Envelope
from libs.common.jobs import JobStore
from libs.common.keys import Partition
from libs.common.settings import WorkerSettings
from libs.common.stage import Outcome
from libs.common.worker import Worker

P0 = Partition(0)


def settings(**kw: Any) -> WorkerSettings:
    base: dict[str, Any] = {
        "read_block_ms": 50,
        "maintenance_interval_s": 0.05,
        "retry_backoff_s": 0.01,
        "max_attempts": 3,
        "visibility_timeout_s": 5,
    }
    return WorkerSettings(**(base | kw))


class Recorder:
    """A handler that records what it saw and answers with ``reply``."""

    def __init__(self, reply: Callable[[Envelope], Outcome]) -> None:
        self.reply = reply
        self.seen: list[Envelope] = []

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        self.seen.extend(batch)
        return [self.reply(e) for e in batch]


class Held:
    """A handler that holds its batch until released, then answers ``reply`` for each job."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        self.started.set()
        await self.release.wait()
        return [dict(self.reply) for _ in batch]


async def submit(r: aioredis.Redis, kind: str = "search", timeout_s: float = 60, **payload: Any) -> Envelope:
    env = Envelope.new(kind, "c1", payload or {"query": "q"}, timeout_s)  # type: ignore[arg-type]
    assert await JobStore(r).submit(env, max_backlog=1000) == "ok"
    return env


async def with_workers(workers: list[Worker], body: Callable[[], Awaitable[Any]]) -> Any:
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await asyncio.gather(*(w.ready.wait() for w in workers))
        return await asyncio.wait_for(body(), timeout=30)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)


def run(coro_fn: Callable[[aioredis.Redis], Awaitable[Any]], url: str) -> Any:
    async def main() -> Any:
        r = aioredis.Redis.from_url(url)
        try:
            return await coro_fn(r)
        finally:
            await r.aclose()

    return asyncio.run(main())
