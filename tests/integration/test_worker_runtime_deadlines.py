"""The stream runtime against a real Valkey server: jobs whose deadline passes while
queued, unread, or while a handler still works on them."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from libs.common import constants, keys
from libs.common.envelope import Envelope
from libs.common.jobs import JobStore
from libs.common.worker import Worker
from tests.integration.worker_runtime import P0, Held, Recorder, run, settings, with_workers


def test_deadline_passed_while_queued_expires_without_processing(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        handler = Recorder(lambda e: {"hits": []})
        # Queued a second ago with a half-second deadline and no worker running since.
        env = Envelope.new("search", "c1", {"query": "q"}, timeout_s=0.5, now=time.time() - 1)
        assert await JobStore(r).submit(env, max_backlog=10) == "ok"
        job = await with_workers(
            [Worker(r, constants.EMBEDDER, handler, settings())], lambda: JobStore(r).wait(env.job_id, 10)
        )
        assert job["status"] == "expired"
        assert "deadline passed" in job["error"]
        assert handler.seen == []

    run(body, valkey_url)


def test_a_job_nobody_picks_up_is_expired_when_read(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        store = JobStore(r, overdue_grace_s=0.5)
        env = Envelope.new("search", "c1", {"query": "q"}, timeout_s=1, now=time.time() - 2)
        assert await store.submit(env, max_backlog=10) == "ok"
        job = await store.wait(env.job_id, 5)
        assert job is not None and job["status"] == "expired"
        assert job["error"] == "deadline passed while queued: no worker finished the job in time"
        # The worker that finally reads it changes nothing and writes no second result.
        handler = Recorder(lambda e: {"vector": "v"})
        w = Worker(r, constants.EMBEDDER, handler, settings())
        await w.ensure_group()
        await w.process(await w.read())
        assert handler.seen == []
        assert await r.xlen(P0.stream(constants.EMBEDDER, constants.INTERACTIVE)) == 0
        assert await r.xlen(keys.job(env.job_id).done) == 1
        assert (await store.get(env.job_id) or {})["status"] == "expired"

    run(body, valkey_url)


def test_a_late_finisher_cannot_overwrite_an_expired_job(valkey_url: str) -> None:
    async def body(r: aioredis.Redis) -> None:
        store = JobStore(r, overdue_grace_s=0)
        handler = Held({"hits": []})
        env = Envelope.new("search", "c1", {"query": "q"}, timeout_s=0.5).model_copy(
            update={"route": [constants.EMBEDDER]}
        )
        assert await store.submit(env, max_backlog=10) == "ok"

        async def expire_meanwhile() -> dict[str, Any] | None:
            await handler.started.wait()
            job = await store.wait(env.job_id, 5)  # wakes at the deadline and expires the job
            handler.release.set()
            return job

        job = await with_workers([Worker(r, constants.EMBEDDER, handler, settings())], expire_meanwhile)
        assert job is not None and job["status"] == "expired"
        # The worker finished after that; its result was dropped, not written over the expiry.
        after = await store.get(env.job_id)
        assert after is not None and after["status"] == "expired" and "result" not in after
        assert await r.xlen(keys.job(env.job_id).done) == 1

    run(body, valkey_url)
