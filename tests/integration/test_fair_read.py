"""The bulk lane's streams per tenant, read in turns, against a real Valkey server with
in-process workers (``libs/common/fair_read.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from libs.common import constants
from libs.common.decode import as_text
from libs.common.envelope import Envelope
from libs.common.errors import RetryableError
from libs.common.jobs import JobStore
from libs.common.keys import Partition
from libs.common.stage import Outcome
from libs.common.worker import Worker
from tests.integration.test_worker_runtime import Recorder, settings, with_workers

P0 = Partition(0)
BULK = constants.BULK


async def queue(r: aioredis.Redis, tenant: str, n: int) -> list[Envelope]:
    """``n`` bulk jobs of ``tenant`` that end at the embedder."""
    envs = []
    for i in range(n):
        env = Envelope.new("ingest", "c1", {"n": i}, 60, route=["embedder"], tenant=tenant)
        assert await JobStore(r).submit(env, max_backlog=1000) == "ok"
        envs.append(env)
    return envs


async def final_status(r: aioredis.Redis, env: Envelope) -> str:
    reply: Any = await r.xread({env.job_keys.done: "0"}, count=1, block=10_000)
    assert reply, f"job {env.job_id} never finished"
    return as_text(reply[0][1][0][1][b"status"])


def test_a_tenants_jobs_queue_on_its_own_stream_and_the_tenant_joins_the_set(valkey_url: str) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        await queue(r, "acme", 2)
        assert await r.xlen(P0.stream("embedder", BULK, "acme")) == 2
        assert await r.xlen(P0.stream("embedder", BULK)) == 0  # the default tenant's
        assert await r.smembers(P0.bulk_tenants("embedder")) == {b"acme"}
        await r.aclose()

    asyncio.run(main())


def test_each_read_shares_the_batch_between_waiting_tenants(valkey_url: str) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        big = await queue(r, "big", 40)
        small = await queue(r, "small", 1)
        batches: list[list[str]] = []

        async def handler(batch: Sequence[Envelope]) -> Sequence[Outcome]:
            batches.append([e.tenant for e in batch])
            return [{} for _ in batch]

        worker = Worker(r, "embedder", handler, settings(bulk_read_count=4, concurrency=1), BULK)

        async def body() -> None:
            for env in [*small, *big]:
                assert await final_status(r, env) == "done"

        await with_workers([worker], body)
        # Queued behind 40 of another tenant's, the small job is in the first read, and
        # handled first, as a sub-batch of its own (then the rest of that read: the big's).
        assert batches[:2] == [["small"], ["big", "big", "big"]]
        assert sum(len(b) for b in batches) == 41
        for tenant in ("big", "small"):
            assert await r.xlen(P0.stream("embedder", BULK, tenant)) == 0
        await r.aclose()

    asyncio.run(main())


def test_a_retry_waits_and_returns_on_its_tenants_stream(valkey_url: str) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        [env] = await queue(r, "acme", 1)
        attempts: list[str] = []

        def reply(e: Envelope) -> Outcome:
            attempts.append(e.tenant)
            return RetryableError("busy", delay_s=0.2) if len(attempts) == 1 else {}

        worker = Worker(r, "embedder", Recorder(reply), settings(), BULK)
        assert await with_workers([worker], lambda: final_status(r, env)) == "done"
        assert attempts == ["acme", "acme"]
        assert await r.zcard(P0.delayed("embedder", BULK, "acme")) == 0
        await r.aclose()

    asyncio.run(main())


def test_a_crashed_consumers_message_is_reclaimed_from_its_tenants_stream(valkey_url: str) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        [env] = await queue(r, "acme", 1)
        stream = P0.stream("embedder", BULK, "acme")
        group = "documind:embedder"
        await r.xgroup_create(stream, group, id="0", mkstream=True)
        # A consumer reads the message and dies without acknowledging it.
        assert await r.xreadgroup(group, "dead-consumer", {stream: ">"}, count=1)
        recorder = Recorder(lambda e: {})
        worker = Worker(r, "embedder", recorder, settings(visibility_timeout_s=0.2), BULK)
        await with_workers([worker], lambda: final_status(r, env))
        assert [e.job_id for e in recorder.seen] == [env.job_id]
        assert await r.xlen(stream) == 0
        await r.aclose()

    asyncio.run(main())
