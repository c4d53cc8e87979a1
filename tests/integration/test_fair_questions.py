"""Questions (the interactive lane) on a stream per tenant, read in turns, against a real
Valkey server with in-process workers (``libs/common/fair_read.py``); a tenant joining a
lane wakes an idle worker at once, on either lane."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis

from libs.common import constants
from libs.common.decode import as_text
from libs.common.envelope import Envelope, JobKind
from libs.common.errors import RetryableError
from libs.common.init_streams import init_streams
from libs.common.jobs import JobStore
from libs.common.keys import DEFAULT_TENANT, Lane, Partition
from libs.common.stage import Outcome
from libs.common.worker import Worker
from tests.integration.test_fair_read import final_status
from tests.integration.test_worker_runtime import Recorder, settings, with_workers

P0 = Partition(0)
INTERACTIVE = constants.INTERACTIVE


async def ask(r: aioredis.Redis, tenant: str, n: int, lane: Lane = INTERACTIVE) -> list[Envelope]:
    """``n`` jobs of ``tenant`` on ``lane`` that end at the embedder."""
    envs = []
    for i in range(n):
        kind: JobKind = "search" if lane == INTERACTIVE else "ingest"
        env = Envelope.new(kind, "c1", {"query": f"q{i}"}, 60, route=["embedder"], tenant=tenant)
        assert await JobStore(r).submit(env, max_backlog=1000) == "ok"
        envs.append(env)
    return envs


def test_a_tenants_questions_queue_on_its_own_stream_and_it_joins_the_lane(valkey_url: str) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        await ask(r, "acme", 2)
        assert await r.xlen(P0.stream("embedder", INTERACTIVE, "acme")) == 2
        assert await r.xlen(P0.stream("embedder", INTERACTIVE)) == 0  # the default tenant's
        assert await r.smembers(P0.tenants("embedder", INTERACTIVE)) == {b"acme"}
        # Announced once: as it joined (its stream then held the first of the two).
        arrivals: Any = await r.xrange(P0.arrivals("embedder", INTERACTIVE))
        assert [as_text(fields[b"tenant"]) for _id, fields in arrivals] == ["acme"]
        await r.aclose()

    asyncio.run(main())


def test_a_question_is_read_beside_another_tenants_queued_questions(valkey_url: str) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        flood = await ask(r, "evil", 40)
        victim = await ask(r, "victim", 1)
        batches: list[list[str]] = []

        async def handler(batch: Sequence[Envelope]) -> Sequence[Outcome]:
            batches.append([e.tenant for e in batch])
            return [{} for _ in batch]

        worker = Worker(r, "embedder", handler, settings(read_count=4, concurrency=1), INTERACTIVE)

        async def body() -> None:
            for env in [*victim, *flood]:
                assert await final_status(r, env) == "done"

        await with_workers([worker], body)
        # Queued behind 40 of another tenant's, the question is in the first read, and
        # handled first, as a sub-batch of its own (then the rest of that read: evil's).
        assert batches[:2] == [["victim"], ["evil", "evil", "evil"]]
        assert sum(len(b) for b in batches) == 41
        for tenant in ("evil", "victim"):
            assert await r.xlen(P0.stream("embedder", INTERACTIVE, tenant)) == 0
        await r.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("lane", [constants.INTERACTIVE, constants.BULK])
def test_a_new_tenants_first_job_wakes_an_idle_worker(valkey_url: str, lane: Lane) -> None:
    """A worker blocked on the streams it knows reads a new tenant's first job at once,
    not when its block (here far longer than the test's wait) ends."""

    async def main() -> None:
        # No socket timeout: the worker's block would end at one (the client's default 5 s).
        r = aioredis.Redis.from_url(valkey_url, socket_timeout=None)
        seen = asyncio.Event()
        tenants: list[str] = []

        async def handler(batch: Sequence[Envelope]) -> Sequence[Outcome]:
            tenants.extend(e.tenant for e in batch)
            seen.set()
            return [{} for _ in batch]

        worker = Worker(r, "embedder", handler, settings(read_block_ms=120_000), lane)
        # The worker's read blocks (on the streams of the tenants it knows).
        blocking = asyncio.Event()
        xreadgroup = r.xreadgroup

        async def xreadgroup_seen(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("block"):
                blocking.set()
            return await xreadgroup(*args, **kwargs)

        r.xreadgroup = xreadgroup_seen  # type: ignore[method-assign]
        task = asyncio.create_task(worker.run())
        try:
            await blocking.wait()
            late = await ask(r, "late", 1, lane)
            await asyncio.wait_for(seen.wait(), timeout=30)
            assert tenants == ["late"]
            assert await final_status(r, late[0]) == "done"
            # The announcement was taken and deleted.
            assert await r.xlen(P0.arrivals("embedder", lane)) == 0
        finally:
            worker.stop()
            # Wake the worker's next block so that it sees it is stopping.
            await ask(r, DEFAULT_TENANT, 1, lane)
            await task
            await r.aclose()

    asyncio.run(main())


def test_a_questions_retry_waits_and_returns_on_its_tenants_stream(valkey_url: str) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        [env] = await ask(r, "acme", 1)
        attempts: list[str] = []

        def reply(e: Envelope) -> Outcome:
            attempts.append(e.tenant)
            return RetryableError("busy", delay_s=0.2) if len(attempts) == 1 else {}

        worker = Worker(r, "embedder", Recorder(reply), settings(), INTERACTIVE)

        assert await with_workers([worker], lambda: final_status(r, env)) == "done"
        assert attempts == ["acme", "acme"]
        # It came back on the tenant's stream (queued there twice), from its delayed set.
        stream: Any = await r.xinfo_stream(P0.stream("embedder", INTERACTIVE, "acme"))
        assert stream["entries-added"] == 2
        assert await r.zcard(P0.delayed("embedder", INTERACTIVE, "acme")) == 0
        assert await r.xlen(P0.stream("embedder", INTERACTIVE)) == 0
        await r.aclose()

    asyncio.run(main())


def test_a_crashed_consumers_question_is_reclaimed_from_its_tenants_stream(valkey_url: str) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        [env] = await ask(r, "acme", 1)
        stream = P0.stream("embedder", INTERACTIVE, "acme")
        group = "documind:embedder"
        await r.xgroup_create(stream, group, id="0", mkstream=True)
        # A consumer reads the question and dies without acknowledging it.
        assert await r.xreadgroup(group, "dead-consumer", {stream: ">"}, count=1)
        recorder = Recorder(lambda e: {})
        worker = Worker(r, "embedder", recorder, settings(visibility_timeout_s=0.2), INTERACTIVE)
        await with_workers([worker], lambda: final_status(r, env))
        assert [e.job_id for e in recorder.seen] == [env.job_id]
        assert await r.xlen(stream) == 0
        await r.aclose()

    asyncio.run(main())


def test_init_streams_creates_the_groups_of_tenants_with_questions_queued(valkey_url: str) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        await ask(r, "acme", 1)
        await init_streams(r, 1)
        groups: Any = await r.xinfo_groups(P0.stream("embedder", INTERACTIVE, "acme"))
        assert [(as_text(g["name"]), g["lag"]) for g in groups] == [("documind:embedder", 1)]
        await r.aclose()

    asyncio.run(main())
