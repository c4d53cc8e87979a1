"""The backlog gauges a worker's maintenance sets (``Maintenance.refresh_gauges``), on a real Valkey.

One series per stage, lane and partition: a process serves every partition, and a
partition must not overwrite another's figures. The bulk lane's figures add up every
tenant's stream. A group lag Valkey cannot count (NULL) is computed, never shown as 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from libs.common.constants import BULK, EMBEDDER, INTERACTIVE
from libs.common.envelope import Envelope
from libs.common.keys import Lane, Partition, group_name
from libs.common.settings import WorkerSettings
from libs.common.stage import Outcome
from libs.common.worker import Worker

GROUP = group_name(EMBEDDER)
GAUGES = {
    "length": "documind_stream_length",
    "lag": "documind_consumer_group_lag",
    "pending": "documind_pending_messages",
    "delayed": "documind_delayed_retries",
}


async def idle(batch: Sequence[Envelope]) -> Sequence[Outcome]:
    raise AssertionError("these workers never read")


def worker(r: aioredis.Redis, lane: Lane, partition: int) -> Worker:
    return Worker(r, EMBEDDER, idle, WorkerSettings(consumer="gauges"), lane, partition=Partition(partition))


def gauges(lane: Lane, partition: int) -> dict[str, float | None]:
    labels = {"stage": EMBEDDER, "lane": lane, "partition": str(partition)}
    return {key: REGISTRY.get_sample_value(name, labels) for key, name in GAUGES.items()}


def dead_letters(partition: int) -> float | None:
    return REGISTRY.get_sample_value("documind_dead_letter_stream_length", {"partition": str(partition)})


async def fill(r: aioredis.Redis, stream: str, n: int) -> list[bytes]:
    return [await r.xadd(stream, {"data": str(i)}) for i in range(n)]


def run(body: Callable[[aioredis.Redis], Awaitable[Any]], url: str) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(url)
        try:
            await body(r)
        finally:
            await r.aclose()

    asyncio.run(main())


def test_each_partition_reports_its_own_backlog(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        workers = [worker(r, INTERACTIVE, 0), worker(r, INTERACTIVE, 1)]
        for w in workers:
            await w.ensure_group()
        p0, p1 = Partition(0), Partition(1)
        await fill(r, p0.stream(EMBEDDER, INTERACTIVE), 3)
        await fill(r, p1.stream(EMBEDDER, INTERACTIVE), 5)
        await r.xreadgroup(GROUP, "c", {p1.stream(EMBEDDER, INTERACTIVE): ">"}, count=1)
        await r.zadd(p1.delayed(EMBEDDER, INTERACTIVE), {"retry-a": 1.0, "retry-b": 2.0})
        await r.xadd(p1.dead_letters(), {"stage": EMBEDDER})
        # In the order a process may run them: the last refresh must not hide the first.
        for w in workers:
            await w.maintenance.refresh_gauges()

    run(body, valkey_url)
    assert gauges(INTERACTIVE, 0) == {"length": 3, "lag": 3, "pending": 0, "delayed": 0}
    assert gauges(INTERACTIVE, 1) == {"length": 5, "lag": 4, "pending": 1, "delayed": 2}
    assert (dead_letters(0), dead_letters(1)) == (0, 1)
    # The heartbeat of each loop too: the healthcheck must see every partition's loop.
    for partition in ("0", "1"):
        labels = {"stage": EMBEDDER, "lane": INTERACTIVE, "partition": partition}
        assert REGISTRY.get_sample_value("documind_worker_heartbeat_timestamp_seconds", labels)


def test_the_bulk_lane_adds_up_every_tenant_of_its_partition(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        p0, p1 = Partition(0), Partition(1)
        await r.sadd(p0.bulk_tenants(EMBEDDER), "acme")
        bulk = worker(r, BULK, 0)
        await bulk.ensure_group()  # the groups of the default tenant's stream and acme's
        await fill(r, p0.stream(EMBEDDER, BULK), 2)
        acme = p0.stream(EMBEDDER, BULK, "acme")
        await fill(r, acme, 3)
        await r.xreadgroup(GROUP, "c", {acme: ">"}, count=2)
        await r.zadd(p0.delayed(EMBEDDER, BULK, "acme"), {"retry": 1.0})
        # A tenant that joined after the worker's last read: its stream has no group yet.
        await r.sadd(p0.bulk_tenants(EMBEDDER), "late")
        await fill(r, p0.stream(EMBEDDER, BULK, "late"), 4)
        # Another partition's tenants are that partition's.
        await r.sadd(p1.bulk_tenants(EMBEDDER), "acme")
        await fill(r, p1.stream(EMBEDDER, BULK, "acme"), 7)
        other = worker(r, BULK, 1)
        await other.ensure_group()
        await bulk.maintenance.refresh_gauges()
        await other.maintenance.refresh_gauges()

    run(body, valkey_url)
    assert gauges(BULK, 0) == {"length": 2 + 3 + 4, "lag": 2 + 1 + 4, "pending": 2, "delayed": 1}
    assert gauges(BULK, 1) == {"length": 7, "lag": 7, "pending": 0, "delayed": 0}


def test_a_lag_valkey_cannot_count_is_computed(valkey_url: str) -> None:
    """Batches acknowledged out of order: Valkey's lag is NULL, the gauge still counts."""

    async def body(r: aioredis.Redis) -> None:
        w = worker(r, INTERACTIVE, 0)
        await w.ensure_group()
        stream = Partition(0).stream(EMBEDDER, INTERACTIVE)
        ids = await fill(r, stream, 6)
        await r.xreadgroup(GROUP, "a", {stream: ">"}, count=2)
        await r.xreadgroup(GROUP, "b", {stream: ">"}, count=2)
        # The later batch is done first: acknowledged, and deleted as DocuMind does.
        await r.xack(stream, GROUP, *ids[2:4])
        await r.xdel(stream, *ids[2:4])
        (info,) = await r.xinfo_groups(stream)
        assert info["lag"] is None, "the case under test: Valkey reports no lag"
        await w.maintenance.refresh_gauges()
        assert gauges(INTERACTIVE, 0) == {"length": 4, "lag": 2, "pending": 2, "delayed": 0}
        # Read on while the earlier batch is still pending: still NULL, still counted.
        await r.xreadgroup(GROUP, "c", {stream: ">"}, count=1)
        (info,) = await r.xinfo_groups(stream)
        assert info["lag"] is None
        await w.maintenance.refresh_gauges()
        assert gauges(INTERACTIVE, 0) == {"length": 4, "lag": 1, "pending": 3, "delayed": 0}
        # Once the stream has no hole, Valkey counts again, and agrees.
        await r.xack(stream, GROUP, *ids[:2], ids[4])
        await r.xdel(stream, *ids[:2], ids[4])
        await fill(r, stream, 2)
        (info,) = await r.xinfo_groups(stream)
        assert info["lag"] == 3
        await w.maintenance.refresh_gauges()
        assert gauges(INTERACTIVE, 0) == {"length": 3, "lag": 3, "pending": 0, "delayed": 0}

    run(body, valkey_url)
