"""Idle tenants leave the bulk lane (``lua.PRUNE_TENANT``, ``Maintenance.prune``), on a
real Valkey: the set of bulk tenants and the streams a bulk worker walks hold only the
tenants with work, however many tenants ever uploaded; a dropped tenant's next upload
is served as its first was; a tenant with anything left (queued, pending, waiting out a
retry, queued recently) is never dropped."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis

from libs.common import constants
from libs.common.envelope import Envelope
from libs.common.keys import DEFAULT_TENANT, Partition, group_name
from libs.common.scripts import PruneTenant
from libs.common.stage import Outcome
from libs.common.worker import Worker
from tests.integration.test_fair_read import final_status, queue
from tests.integration.test_worker_runtime import run, settings, with_workers

P0 = Partition(0)
BULK = constants.BULK
EMBEDDER = constants.EMBEDDER
GROUP = group_name(EMBEDDER)
TENANTS = P0.bulk_tenants(EMBEDDER)


async def done(batch: Sequence[Envelope]) -> Sequence[Outcome]:
    return [{} for _ in batch]


def test_an_idle_tenant_leaves_the_lane_and_its_next_upload_is_served(valkey_url: str) -> None:
    async def main(r: aioredis.Redis) -> None:
        worker = Worker(r, EMBEDDER, done, settings(bulk_tenant_idle_s=0), BULK)
        acme = P0.stream(EMBEDDER, BULK, "acme")

        async def body() -> None:
            (first,) = await queue(r, "acme", 1)
            assert await final_status(r, first) == "done"
            assert acme in {s for s, _ in worker.queues()}
            await worker.maintenance.refresh_gauges()
            assert await r.smembers(TENANTS) == set()
            assert not await r.exists(acme)
            # The worker's next read forgets the stream; the default tenant's stays.
            (second,) = await queue(r, "acme", 1)
            assert await r.smembers(TENANTS) == {b"acme"}
            assert await final_status(r, second) == "done"
            assert await r.xlen(acme) == 0

        await with_workers([worker], body)

    run(main, valkey_url)


def test_a_worker_forgets_a_dropped_tenants_stream(valkey_url: str) -> None:
    async def main(r: aioredis.Redis) -> None:
        worker = Worker(r, EMBEDDER, done, settings(), BULK)
        await r.sadd(TENANTS, "acme", "other")
        await worker.ensure_group()
        streams = {s for s, _ in worker.queues()}
        assert P0.stream(EMBEDDER, BULK, "acme") in streams
        prune = PruneTenant(r)
        assert await prune(
            tenants=TENANTS,
            stream=P0.stream(EMBEDDER, BULK, "acme"),
            delayed=P0.delayed(EMBEDDER, BULK, "acme"),
            tenant="acme",
            group=GROUP,
            idle_s=0,
        )
        assert worker.tenants is not None
        await worker.tenants.refresh()
        streams = {s for s, _ in worker.queues()}
        assert P0.stream(EMBEDDER, BULK, "acme") not in streams
        assert P0.stream(EMBEDDER, BULK, "other") in streams
        # Reclaiming from a stream dropped under it takes nothing and raises nothing.
        assert await worker.maintenance._reclaim_from(P0.stream(EMBEDDER, BULK, "acme")) == 0

    run(main, valkey_url)


@pytest.mark.parametrize("left", ["queued", "pending", "retry", "recent"])
def test_a_tenant_with_anything_left_stays(valkey_url: str, left: str) -> None:
    async def main(r: aioredis.Redis) -> None:
        stream, delayed = P0.stream(EMBEDDER, BULK, "acme"), P0.delayed(EMBEDDER, BULK, "acme")
        await r.sadd(TENANTS, "acme")
        await r.xgroup_create(stream, GROUP, id="0", mkstream=True)
        mid = await r.xadd(stream, {"data": "x"})
        if left == "pending":
            await r.xreadgroup(GROUP, "c", {stream: ">"}, count=1)
        if left in ("retry", "recent"):
            await r.xreadgroup(GROUP, "c", {stream: ">"}, count=1)
            await r.xack(stream, GROUP, mid)
            await r.xdel(stream, mid)
        if left == "retry":
            await r.zadd(delayed, {"envelope": 1.0})
        idle_s = 3600.0 if left == "recent" else 0.0
        prune = PruneTenant(r)
        kept = not await prune(
            tenants=TENANTS, stream=stream, delayed=delayed, tenant="acme", group=GROUP, idle_s=idle_s
        )
        assert kept
        assert await r.smembers(TENANTS) == {b"acme"}
        assert await r.exists(stream)
        # With that out of the way (and the idle time past), it goes.
        if left in ("queued", "pending"):
            await r.xreadgroup(GROUP, "c", {stream: ">"}, count=1)
            await r.xack(stream, GROUP, mid)
            await r.xdel(stream, mid)
        await r.delete(delayed)
        assert await prune(
            tenants=TENANTS, stream=stream, delayed=delayed, tenant="acme", group=GROUP, idle_s=0
        )
        assert await r.smembers(TENANTS) == set()
        assert not await r.exists(stream)

    run(main, valkey_url)


def test_many_idle_tenants_leave_and_the_walk_shrinks(valkey_url: str) -> None:
    async def main(r: aioredis.Redis) -> None:
        worker = Worker(r, EMBEDDER, done, settings(bulk_tenant_idle_s=0), BULK)
        envs = [env for i in range(30) for env in await queue(r, f"t{i}", 1)]

        async def body() -> None:
            for env in envs:
                assert await final_status(r, env) == "done"
            await worker.maintenance.refresh_gauges()
            assert await r.scard(TENANTS) == 0
            assert worker.tenants is not None
            await worker.tenants.refresh()
            assert [s for s, _ in worker.queues()] == [P0.stream(EMBEDDER, BULK, DEFAULT_TENANT)]

        await with_workers([worker], body)

    run(main, valkey_url)
