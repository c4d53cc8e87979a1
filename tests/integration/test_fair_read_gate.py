"""A bulk batch waiting on its tenant's own cap gives its read slot back, and that tenant is
left out of the reads meanwhile (``fair_read.TenantGate``, ``worker.yield_read_slot``):
in-process workers against a real Valkey server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import redis.asyncio as aioredis

from libs.common import constants
from libs.common.envelope import Envelope
from libs.common.stage import Outcome
from libs.common.worker import Worker, yield_read_slot
from tests.integration.test_fair_read import final_status, queue
from tests.integration.test_worker_runtime import settings, with_workers

BULK = constants.BULK


class Capped:
    """Tenant ``slow``'s jobs wait for ``release`` as if on their tenant's share of a
    resource: the batch gives its read slot back and ``slow`` is saturated meanwhile."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()
        self.seen: list[str] = []
        self._saturated: set[str] = set()

    def saturated(self) -> frozenset[str]:
        return frozenset(self._saturated)

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]:
        self.seen += [e.tenant for e in batch]
        if any(e.tenant == "slow" for e in batch) and not self.release.is_set():
            self._saturated.add("slow")
            yield_read_slot()
            self.waiting.set()
            await self.release.wait()
            self._saturated.discard("slow")
        return [{} for _ in batch]


def test_a_batch_waiting_on_its_tenants_cap_lets_another_tenant_be_read(valkey_url: str) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        slow = await queue(r, "slow", 2)
        handler = Capped()
        # One batch at a time, one job a batch: before, slow's first job held the only slot.
        worker = Worker(r, "embedder", handler, settings(bulk_read_count=1, concurrency=1), BULK)

        async def body() -> None:
            await handler.waiting.wait()
            try:
                quick = await queue(r, "quick", 1)
                assert await final_status(r, quick[0]) == "done"
                # slow's second job was not read while slow waited.
                assert handler.seen == ["slow", "quick"]
            finally:
                handler.release.set()
            for env in slow:
                assert await final_status(r, env) == "done"

        await with_workers([worker], body)
        assert handler.seen == ["slow", "quick", "slow"]
        await r.aclose()

    asyncio.run(main())
